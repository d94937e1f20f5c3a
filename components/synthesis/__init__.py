"""Synthetic audio from packages, offline: voices (`piper_tts`, `espeak`, `neural_tts` for Kokoro and hibari),
speaker perturbation (`perturb`), ambient sound (`ambient`), rooms (`rirs`) and channels (`channels`: telephone
bands, codecs, microphones, speed, reverberation; augmentation applies them to training audio too). data_prep
builds the dataset from them; background mining's probe borrows the ambient generators.

Above `common`; imports no stage package. Pure core: no kfp import.
"""
