"""The device's runtime, shared by every stage that measures a model and by the judge and `wakeline serve`.

- `tflm`: the INT8 model in TFLite-Micro fed as ESPHome feeds it (`TflmStreamer`, `esphome_input`).
- `arena`: the smallest tensor arena TFLite-Micro accepts for a model (bisection in a subprocess).
- `evaluate`: behaviour on the device path (`EvalAudio`, `behaviour`, FA/h budgets, device-budget reasons).
- `folders`: a user's folders of recordings through a published model (`wakeline evaluate`).
- `scorers`: anything that scores long audio for mining (NumPy MixedNet, Keras, `.tflite`; `load_scorer`).
- `judge`: a Keras or `.tflite` model as the cascade's second opinion (`Judge`, `load_judge`).

Above `training` and `common`; no stage package is imported from here. Pure core: no kfp import.
"""
