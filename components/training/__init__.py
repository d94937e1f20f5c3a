"""The training library that teacher training, distillation, background mining's probe and quantization share:
the model zoo (`models`), the fit loop (`fit`, `trainer`), batches and SpecAugment (`batches`, `specaugment`),
scoring on a feature store (`scoring`) and the frozen speech-embedding front end (`speech_embedding`,
`embedding_head`).

Above `common`; imports no stage package. Pure core: no kfp import.
"""
