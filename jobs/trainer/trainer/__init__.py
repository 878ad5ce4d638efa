"""The trainer job: the fairness-aware ("debiased") LSTM pipeline, one module per stage.

The stages are importable without TensorFlow being loaded; `trainer.model`, and the
`train`/`predict_split`/`forecast_next` functions of `trainer.pipeline`, load Keras
lazily. See `trainer.pipeline` for the public API.
"""
