"""The judge: a server-side second opinion on a device detection, served over the Wyoming protocol. The model
itself is loaded and scored by `components.runtime.judge`.

- `protocol`: a bounded Wyoming frame reader (limits on every length a client declares).
- `server`: the asyncio Wyoming server (`wakeline judge serve`).
- `client`: `JudgeClient(uri).check(samples) -> JudgeAnswer` (`wakeline judge check`).

Pure core: no kfp import anywhere here.
"""
