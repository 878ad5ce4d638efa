"""The trainer's LSTM (jobs/trainer), trained at every cutoff exactly as the production job trains it.

Two variants of the same network, data and features (`trainer.pipeline`):

- `lstm`: the plain LSTM — `train(..., fairness=False)`, no bias correction.
- `debiased_lstm`: the trainer's recipe — fairness re-weighting on (per-epoch
  exponentiated weights towards the products with the worst validation RMSSE) and the
  per-product bias correction fitted on the validation forecasts.

As in production, `prepare` holds out the last `val_days` of the history for early
stopping and the fairness weights and the `test_days` before the cutoff as the
trainer's test split, so the network learns from targets up to cutoff − val − test
days; the forecast itself starts from the cutoff with the full history as input.
Default `ModelParams` (no Optuna tuning: the backtest compares model families); training
windows start every `train_stride` days (production: 2) and training stops after
`epochs` (production: 12) to fit the 2-core budget — both stated in the report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from experiments.models.base import Forecast, ForecastTask, seasonal_naive_values


@dataclass
class TrainerLSTM:
    """`fairness=True`: the debiased LSTM; `False`: the same LSTM, plain."""

    fairness: bool = True
    epochs: int = 8
    train_stride: int = 4
    val_days: int = 56
    seed: int = 42
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            self.name = "debiased_lstm" if self.fairness else "lstm"

    def forecast(self, task: ForecastTask) -> Forecast:
        """Prepare, train and forecast with the trainer's pipeline API."""
        from trainer import pipeline as tp
        from trainer.config import ModelParams, TrainConfig

        cfg = TrainConfig(
            horizon=task.horizon,
            val_days=self.val_days,
            test_days=task.horizon,
            epochs=self.epochs,
            train_stride=self.train_stride,
            seed=self.seed,
            fairness=self.fairness,
        )
        params = ModelParams()
        sales = task.history.to_long()
        prepared = tp.prepare(sales, cfg)
        trained = tp.train(prepared, params, cfg, fairness=self.fairness, verbose=False)
        promos = pd.DataFrame(
            {
                "product_id": np.tile(np.array(task.history.products, dtype=object), task.horizon),
                "date": np.repeat(task.future_dates.to_numpy(), len(task.history.products)),
                "promo": task.future_promo.reshape(-1),
            }
        )
        promos = promos[promos["promo"] > 0][["product_id", "date"]]
        future = tp.forecast_next(trained.model, prepared.pipeline, sales, cfg, params, promos)
        notes: dict[str, object] = {
            "epochs_run": trained.epochs_run,
            "best_epoch": trained.best_epoch,
            "val_rmsse": round(float(trained.val_metrics["rmsse"]), 4),
            "val_disparity": round(float(trained.val_metrics["disparity_p90_over_median"]), 4),
        }
        if self.fairness:
            correction = tp.fit_bias_correction(
                tp.predict_split(trained.model, prepared, "val"), cfg.bias_shrinkage
            )
            future = correction.apply(future, column="predicted_units")
        wide = future.pivot(index="target_date", columns="product_id", values="predicted_units")
        wide = wide.reindex(index=task.future_dates, columns=list(task.history.products))
        values = wide.to_numpy(dtype=float)
        missing = np.isnan(values)
        if missing.any():
            # Products the trainer does not forecast (e.g. discontinued): seasonal naive.
            fallback = seasonal_naive_values(task.history.filled, task.horizon)
            values = np.where(missing, fallback, values)
            notes["fallbacks"] = int(missing.any(axis=0).sum())
        return Forecast(values=np.clip(values, 0.0, None), notes=notes)
