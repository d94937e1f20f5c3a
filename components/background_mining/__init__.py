"""background_mining: hard negatives from long-form training background audio, with persistent sessions."""
