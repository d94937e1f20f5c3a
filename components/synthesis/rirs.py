"""Room impulse responses from pyroomacoustics' image-source model: random shoebox rooms and positions."""
from __future__ import annotations

import numpy as np

from components.common.artifacts import SAMPLE_RATE_HZ
from components.common.config import RoomImpulseResponses


def room_impulse_response(cfg: RoomImpulseResponses, seed: int) -> tuple[np.ndarray, dict[str, float]]:
    """One RIR (float32, peak 1) and the room it came from."""
    import pyroomacoustics as pra

    rng = np.random.default_rng(seed)
    dims = rng.uniform(cfg.room_size_m_min, cfg.room_size_m_max)
    rt60 = float(rng.uniform(*cfg.rt60_s_range))
    try:
        absorption, order = pra.inverse_sabine(rt60, dims)
    except ValueError:  # the room is too small for that reverberation time: use the most reverberant it allows
        absorption, order = 0.01, cfg.max_image_order
    room = pra.ShoeBox(dims, fs=SAMPLE_RATE_HZ, materials=pra.Material(absorption),
                       max_order=min(int(order), cfg.max_image_order))
    margin = np.minimum(0.5, dims / 4)
    source = rng.uniform(margin, dims - margin)
    mic = rng.uniform(margin, dims - margin)
    room.add_source(source)
    room.add_microphone(mic)
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    rir /= np.max(np.abs(rir)) or 1.0
    info = {"rt60_s": round(rt60, 3), "room_m": [round(float(d), 2) for d in dims],
            "distance_m": round(float(np.linalg.norm(source - mic)), 2)}
    return rir.astype(np.float32), info
