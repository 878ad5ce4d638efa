"""The trainer job: the fairness-aware ("debiased") LSTM beside a LightGBM, judged and served.

The package reads as its parts, one concern a folder:

- `trainer.data`: sales in (`load`), data quality (`quality`), augmentation
  (`augment`), the panel and features (`features`), windows (`windowing`) and
  `prepare`, which runs them in that order.
- `trainer.models`: the candidates and how they are trained — the LSTM (`network`, the
  Keras graph; `lstm`, its training, prediction and forecasts), group DRO
  (`fairness`), bias offsets (`bias`), LightGBM (`gbm`), Optuna (`tuning`), forecast
  intervals (`intervals`) and the challenger (`challenger`: train the candidates,
  choose the served one on validation, save and load it).
- `trainer.judge`: metrics and baselines (`evaluate`), the champion/challenger rule
  (`promotion`).
- `trainer.serve`: which forecaster serves and its forecasts (`forecast`), the run's
  sealed artifacts and the champion pointer (`artifacts`).
- `trainer.report`: the report (`render`), SHAP attributions (`explain`), the email
  (`emailer`).
- `trainer.run`: the job — flags (`cli`), options (`options`), the steps of a run in
  order (`steps`) and the orchestrator (`main`).
- `trainer.config` (`TrainConfig`, `ModelParams`) and `trainer.types` (`Prepared`,
  `Trained`), used everywhere.

Everything is importable without TensorFlow being loaded except `trainer.models.network`
and `trainer.models.fairness`; `trainer.models.lstm` loads Keras inside its functions.
"""
