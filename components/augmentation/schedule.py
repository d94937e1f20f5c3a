"""The SNR curriculum: each augmentation epoch's SNR range, from easy (start) to hard (end)."""
from __future__ import annotations

import math

from components.common.config import ScheduleShape, SnrSchedule


def progress_at(epoch: int, epochs: int, shape: ScheduleShape) -> float:
    """0 at the first epoch, 1 at the last; cosine eases in and out."""
    t = epoch / (epochs - 1) if epochs > 1 else 0.0
    return (1 - math.cos(math.pi * t)) / 2 if shape is ScheduleShape.COSINE else t


def snr_range(schedule: SnrSchedule, epoch: int, epochs: int) -> tuple[float, float]:
    t = progress_at(epoch, epochs, schedule.shape)
    (a0, a1), (b0, b1) = schedule.start_db_range, schedule.end_db_range
    return a0 + t * (b0 - a0), a1 + t * (b1 - a1)
