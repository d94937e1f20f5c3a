"""distillation: the ESPHome-sized student learns from two teachers."""
