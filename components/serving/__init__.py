"""`wakeline serve`: published models as a streaming Wyoming wake-word service (what Home Assistant's wake-word
platform talks to) and their ESPHome manifests over HTTP.

- `catalog`: find the published models in a store folder (latest per wake word) or a folder of manifests.
- `stream`: the device's detection on an endless stream (frontend, TFLite-Micro with state, sliding window,
  refractory period), one object per stream and model.
- `confirm`: with `--confirm-with-judge`, a published cascade's judge confirms each detection of its model.
- `server`: the Wyoming service and the HTTP model server in one asyncio process.

Pure core: no kfp import anywhere here.
"""
