"""Batched waveform augmentation, written once against an array module `xp` (NumPy or CuPy).

Every random choice is drawn on the host with NumPy (`draw_params`) and handed to `augment_batch`, so the
same seed gives the same audio on the CPU and on the GPU, and a clip's augmentation does not depend on
which shard or worker processed it.

Order of operations (each optional per clip): speed change (anchored at the end of the speech, so a wake
word keeps ending where it was placed) -> EQ and band-stop -> room impulse response -> background and
coloured noise scaled together to the target SNR over the speech -> gain -> peak guard -> int16.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from components.common.artifacts import SAMPLE_RATE_HZ
from components.common.config import AugmentOps

SR = SAMPLE_RATE_HZ
EQ_BANDS_HZ = np.array([100.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 7000.0])
BAND_STOP_WIDTH_OCT = 0.3
PEAK_LIMIT = 0.999


@dataclass
class BatchParams:
    """Host-side random choices for one batch of B clips of N samples."""

    speech_start: np.ndarray  # int [B]: where the signal of interest starts in the window
    speech_end: np.ndarray  # int [B]
    anchor: np.ndarray  # int [B]: the sample a speed change keeps in place
    speed: np.ndarray  # float [B]; 1.0 = unchanged
    eq_gain_db: np.ndarray  # float [B, bands]; zeros = unchanged
    stop_center_hz: np.ndarray  # float [B]
    stop_depth_db: np.ndarray  # float [B]; 0 = no band-stop
    rir_index: np.ndarray  # int [B]; -1 = no reverberation
    background: np.ndarray  # float32 [B, N]: background segments (zeros = none)
    white: np.ndarray  # float32 [B, N]: white noise, coloured on the device
    noise_exponent: np.ndarray  # float [B]: 0 white, 1 pink, 2 brown
    colored_gain: np.ndarray  # float [B]: RMS of the coloured part relative to full scale (0 = none)
    snr_db: np.ndarray  # float [B]; NaN = no noise added
    gain_db: np.ndarray  # float [B]


def next_pow2(n: int) -> int:
    return 1 << (int(n) - 1).bit_length()


class RirBank:
    """Room impulse responses pre-transformed once for FFT convolution of N-sample windows."""

    def __init__(self, rirs: list[np.ndarray], n_samples: int, max_len: int, xp) -> None:
        self.xp = xp
        self.max_len = max(1, max_len)
        self.nfft = next_pow2(n_samples + self.max_len - 1)
        self.count = len(rirs)
        bank = np.zeros((max(1, self.count), self.max_len), np.float32)
        delays = np.zeros(max(1, self.count), np.int64)
        for i, r in enumerate(rirs):
            r = np.asarray(r, np.float32)[: self.max_len]
            bank[i, : len(r)] = r / (np.max(np.abs(r)) or 1.0)
            delays[i] = int(np.argmax(np.abs(r))) if len(r) else 0
        self.spectra = xp.fft.rfft(xp.asarray(bank), n=self.nfft, axis=1).astype(xp.complex64)
        self.delays = delays  # direct-path delay, removed so the speech stays where it was placed


def convolve_rir(x, rir, xp):
    """Full linear convolution of a batch `[B, N]` with one RIR via FFT (what `scipy.signal.fftconvolve`
    computes), exposed for tests and single-clip use."""
    n = x.shape[-1] + len(rir) - 1
    nfft = next_pow2(n)
    y = xp.fft.irfft(xp.fft.rfft(x, n=nfft, axis=-1) * xp.fft.rfft(xp.asarray(rir), n=nfft), n=nfft, axis=-1)
    return y[..., :n]


def _speed(x, p: BatchParams, xp):
    """Resample each row by its factor around its anchor (linear interpolation): mild pitch+tempo change."""
    b, n = x.shape
    f = xp.asarray(p.speed, dtype=xp.float32)[:, None]
    anchor = xp.asarray(p.anchor, dtype=xp.float32)[:, None]
    pos = anchor + (xp.arange(n, dtype=xp.float32)[None, :] - anchor) * f
    i0 = xp.floor(pos).astype(xp.int64)
    frac = (pos - i0).astype(xp.float32)
    valid = (i0 >= 0) & (i0 + 1 < n)
    i0c = xp.clip(i0, 0, n - 2)
    y = xp.take_along_axis(x, i0c, axis=1) * (1 - frac) + xp.take_along_axis(x, i0c + 1, axis=1) * frac
    return xp.where(valid, y, 0).astype(xp.float32)


def _eq_gain(p: BatchParams, freqs, xp):
    """Per-clip magnitude response in dB: 7-band EQ interpolated over log-frequency, plus a band-stop dip."""
    logf = xp.log2(xp.maximum(freqs, 20.0))
    centers = xp.log2(xp.asarray(EQ_BANDS_HZ))
    # Linear interpolation between band centres over log-frequency, as a [bands, F] basis.
    basis = xp.maximum(0, 1 - xp.abs(logf[None, :] - centers[:, None]) /
                       xp.diff(centers).mean())
    basis = basis / xp.maximum(basis.sum(axis=0, keepdims=True), 1e-9)
    db = xp.asarray(p.eq_gain_db, dtype=xp.float32) @ basis.astype(xp.float32)
    stop_c = xp.log2(xp.asarray(p.stop_center_hz, dtype=xp.float32))[:, None]
    db -= xp.asarray(p.stop_depth_db, dtype=xp.float32)[:, None] * xp.exp(
        -0.5 * ((logf[None, :] - stop_c) / BAND_STOP_WIDTH_OCT) ** 2)
    return (10 ** (db / 20)).astype(xp.float32)


def _region_power(x, start, end, xp):
    n = x.shape[1]
    idx = xp.arange(n)[None, :]
    mask = (idx >= xp.asarray(start)[:, None]) & (idx < xp.asarray(end)[:, None])
    count = xp.maximum(mask.sum(axis=1), 1)
    return (x * x * mask).sum(axis=1) / count


def augment_batch(clean: np.ndarray, p: BatchParams, rirs: RirBank, xp, *, return_parts: bool = False):
    """Augment a batch `[B, N]` of float32 clips in [-1, 1]; returns int16 `[B, N]` on the host
    (and, with `return_parts`, the processed clean signal and the scaled noise before gain)."""
    b, n = clean.shape
    x = xp.asarray(clean, dtype=xp.float32)
    if np.any(p.speed != 1.0):
        x = _speed(x, p, xp)

    # EQ, band-stop and reverberation in one FFT pass.
    nfft = rirs.nfft
    spec = xp.fft.rfft(x, n=nfft, axis=1)
    freqs = xp.fft.rfftfreq(nfft, 1 / SR).astype(xp.float32)
    if np.any(p.eq_gain_db != 0) or np.any(p.stop_depth_db > 0):
        spec *= _eq_gain(p, freqs, xp)
    has_rir = p.rir_index >= 0
    shift = np.zeros(b, np.int64)
    if has_rir.any() and rirs.count:
        rows = np.flatnonzero(has_rir)
        spec[rows] *= rirs.spectra[xp.asarray(p.rir_index[rows])]
        shift[rows] = rirs.delays[p.rir_index[rows]]
    y = xp.fft.irfft(spec, n=nfft, axis=1)
    cols = xp.arange(n)[None, :] + xp.asarray(shift)[:, None]
    x = xp.take_along_axis(y, cols, axis=1).astype(xp.float32)

    # Noise: background segment + coloured noise, scaled together to the target SNR over the speech.
    noise = xp.asarray(p.background, dtype=xp.float32)
    if np.any(p.colored_gain > 0):
        f = xp.fft.rfftfreq(n, 1 / SR).astype(xp.float32)
        f[0] = f[1]
        tilt = f[None, :] ** (-xp.asarray(p.noise_exponent, dtype=xp.float32)[:, None] / 2)
        colour = xp.fft.irfft(xp.fft.rfft(xp.asarray(p.white, dtype=xp.float32), axis=1) * tilt, n=n, axis=1)
        colour /= xp.sqrt(xp.maximum((colour * colour).mean(axis=1, keepdims=True), 1e-20))
        noise = noise + colour.astype(xp.float32) * xp.asarray(p.colored_gain, dtype=xp.float32)[:, None]
    mix = ~np.isnan(p.snr_db)
    p_sig = _region_power(x, p.speech_start, p.speech_end, xp)
    p_noise = _region_power(noise, p.speech_start, p.speech_end, xp)
    snr = xp.asarray(np.nan_to_num(p.snr_db), dtype=xp.float32)
    scale = xp.sqrt(p_sig / xp.maximum(p_noise, 1e-20) / 10 ** (snr / 10))
    scale = xp.where(xp.asarray(mix) & (p_sig > 0) & (p_noise > 0), scale, 0).astype(xp.float32)
    noise = noise * scale[:, None]
    out = (x + noise) * (10 ** (xp.asarray(p.gain_db, dtype=xp.float32) / 20))[:, None]
    peak = xp.abs(out).max(axis=1, keepdims=True)
    out = out * xp.where(peak > PEAK_LIMIT, PEAK_LIMIT / xp.maximum(peak, 1e-20), 1)
    pcm = xp.clip(xp.rint(out * 32767), -32768, 32767).astype(xp.int16)
    pcm = xp.asnumpy(pcm) if hasattr(xp, "asnumpy") else pcm
    if return_parts:
        to_np = xp.asnumpy if hasattr(xp, "asnumpy") else np.asarray
        return pcm, to_np(x), to_np(noise)
    return pcm


def draw_params(rng: np.random.Generator, speech_start: np.ndarray, speech_end: np.ndarray, anchor: np.ndarray,
                n: int, ops: AugmentOps, snr_range: tuple[float, float], n_rirs: int,
                backgrounds: list[np.ndarray], mixable: np.ndarray) -> BatchParams:
    """Every random choice for a batch, in a fixed order (so a seed fixes the result)."""
    b = len(speech_start)

    def coin(prob: float) -> np.ndarray:
        return rng.random(b) < prob

    speed = np.where(coin(ops.speed_probability), rng.uniform(*ops.speed_factor_range, b), 1.0)
    eq = np.where(coin(ops.eq_probability)[:, None],
                  rng.uniform(-ops.eq_max_gain_db, ops.eq_max_gain_db, (b, len(EQ_BANDS_HZ))), 0.0)
    stop_on = coin(ops.band_stop_probability)
    stop_c = rng.uniform(*ops.band_stop_center_hz_range, b)
    stop_d = np.where(stop_on, rng.uniform(*ops.band_stop_depth_db_range, b), 0.0)
    rir_on = coin(ops.rir_probability) & (n_rirs > 0)
    rir_idx = np.where(rir_on, rng.integers(0, max(n_rirs, 1), b), -1)
    bg_on = coin(ops.background_probability) & bool(backgrounds) & mixable
    col_on = coin(ops.colored_noise_probability) & mixable
    bg_pick = rng.integers(0, max(len(backgrounds), 1), b)
    bg_pos = rng.random(b)
    exponent = rng.choice([0.0, 1.0, 2.0], b)
    white = rng.standard_normal((b, n)).astype(np.float32)
    snr = rng.uniform(*snr_range, b)
    gain = np.where(coin(ops.gain_probability), rng.uniform(*ops.gain_db_range, b), 0.0)

    background = np.zeros((b, n), np.float32)
    for i in np.flatnonzero(bg_on):
        background[i] = _segment(backgrounds[bg_pick[i]], bg_pos[i], n)
    # Coloured noise alone, or 0-15 dB under the background when both are on (SNR scales the sum).
    bg_rms = np.sqrt(np.mean(background ** 2, axis=1))
    under = 10 ** (-rng.uniform(0, 15, b) / 20)
    colored_gain = np.where(col_on, np.where(bg_on & (bg_rms > 0), bg_rms * under, 1.0), 0.0)
    snr = np.where(bg_on | col_on, snr, np.nan)
    return BatchParams(speech_start, speech_end, anchor, speed, eq, stop_c, stop_d, rir_idx, background,
                       white, exponent, colored_gain, snr, gain)


def _segment(audio: np.ndarray, position: float, n: int) -> np.ndarray:
    """A window of n samples from a long int16 recording at a relative position (looped if short)."""
    if len(audio) == 0:
        return np.zeros(n, np.float32)
    if len(audio) < n:
        audio = np.tile(audio, n // len(audio) + 1)
    start = int(position * (len(audio) - n + 1))
    return audio[start:start + n].astype(np.float32) / 32768.0
