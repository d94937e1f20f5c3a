"""The judge: a server-side second opinion on a device detection, served over the Wyoming protocol.

- `scoring`: load a wakeline `Model` directory (Keras teacher or student) or an ESPHome `.tflite` and score
  16 kHz mono int16 audio through the device frontend (`Judge`, `load_judge`).
- `protocol`: a bounded Wyoming frame reader (limits on every length a client declares).
- `server`: the asyncio Wyoming server (`wakeline judge serve`).
- `client`: `JudgeClient(uri).check(samples) -> Verdict` (`wakeline judge check`).

Pure core: no kfp import anywhere here.
"""
