"""The trainer (jobs/trainer) at every cutoff, trained as the production job trains it.

One fit per cutoff and seed (`trainer.models.challenger.train_challenger`) gives several forecasts,
each scored as a model of its own, so they differ in one thing at a time and share seed,
data and split:

- `lstm`: the plain LSTM (no group DRO, no bias correction);
- `dro_lstm`: the same LSTM trained with online group DRO, uncorrected;
- `debiased_lstm`: `dro_lstm` plus the per-product bias offsets;
- `trainer_lightgbm`: the trainer's LightGBM ensemble (one booster per training-history
  length) on the same features, as served: refitted
  on every day up to the cutoff with the boosting rounds validation chose
  (`TrainConfig.gbm_refit`);
- `trainer_lightgbm_heldout`: its held-out twin (training days only), the one
  validation scored — the pair isolates what the refit buys;
- `blend`: `debiased_lstm` and `trainer_lightgbm`, the LSTM's share (¼ or ½) chosen on
  validation;
- `trainer_conformal` (with `tail_levels` only): the served kind's point with the
  residual-conformal quantiles alone, without the LightGBM kinds' quantile tails
  (issue 27: what the tails change);
- `trainer`: the one the trainer serves — the best of the three above on its validation
  windows (the promotion rule's baseline fallback is not part of the backtest).

With several seeds, the names get a `#s<seed>` suffix and the report averages the seeds.
As in production, `prepare` holds out the last `val_days` before the cutoff for early
stopping, the bias fit and the choice, and the `horizon` days before them as the
trainer's test split, so the models learn from targets up to cutoff − val − horizon
days; the forecast itself starts from the cutoff with the full history as input.
Default `ModelParams` (no Optuna tuning); training windows start every `train_stride`
days (production: 2) and training stops after `epochs` (production: 12) to fit the
2-core budget — both stated in the report.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.models.base import (
    QUANTILE_LEVELS,
    Forecast,
    ForecastTask,
    seasonal_naive_values,
)

OUTPUTS = (
    "lstm",
    "dro_lstm",
    "debiased_lstm",
    "trainer_lightgbm",
    "trainer_lightgbm_heldout",
    "blend",
)


def horizon_table(
    frame: pd.DataFrame, task: ForecastTask, column: str = "predicted_units"
) -> np.ndarray:
    """(H, N) `column` of a trainer forecast frame on the task's days and products (NaN
    where a product is not forecast)."""
    table = frame.pivot(index="target_date", columns="product_id", values=column)
    table = table.reindex(index=task.future_dates, columns=list(task.history.products))
    return table.to_numpy(dtype=float)


@dataclass
class TrainerForecaster:
    """The trainer's candidates and its served forecaster, from one fit per cutoff."""

    epochs: int = 8
    train_stride: int = 4
    val_days: int = 56
    seed: int = 42
    suffix: str = ""
    n_jobs: int = 2
    name: str = ""
    # a folder to write each cutoff's interval inputs into (`dump_interval_inputs`)
    dump_dir: Path | None = None
    # the LightGBM kinds' quantile tails (`trainer.models.gbm.TAIL_LEVELS`; (): none)
    tail_levels: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"trainer{self.suffix}"

    def forecast(self, task: ForecastTask) -> Forecast:
        """Prepare, train the candidates, choose on validation, forecast every candidate."""
        from trainer.config import ModelParams, TrainConfig
        from trainer.data.prepare import prepare
        from trainer.models.challenger import (
            BLEND,
            LIGHTGBM,
            LSTM,
            forecast_served,
            train_challenger,
        )
        from trainer.models.intervals import column_name
        from trainer.models.lstm import forecast_next

        cfg = TrainConfig(
            horizon=task.horizon,
            val_days=self.val_days,
            test_days=task.horizon,
            epochs=self.epochs,
            train_stride=self.train_stride,
            seed=self.seed,
        )
        params = ModelParams()
        sales = task.history.to_long()
        prepared = prepare(sales, cfg)
        import trainer.models.gbm as gbm_module

        default_tails, gbm_module.TAIL_LEVELS = gbm_module.TAIL_LEVELS, tuple(self.tail_levels)
        try:
            ch = train_challenger(prepared, params, cfg, gbm_threads=self.n_jobs, always_refit=True)
        finally:
            gbm_module.TAIL_LEVELS = default_tails
        promos = pd.DataFrame(
            {
                "product_id": np.tile(np.array(task.history.products, dtype=object), task.horizon),
                "date": np.repeat(task.future_dates.to_numpy(), len(task.history.products)),
                "promo": task.future_promo.reshape(-1),
            }
        )
        promos = promos[promos["promo"] > 0][["product_id", "date"]]
        fallback = seasonal_naive_values(task.history.filled, task.horizon)
        notes: dict[str, object] = {
            "chosen": ch.kind,
            "blend_weight": ch.blend_weight,
            "epochs_run": ch.lstm.epochs_run,
            "best_epoch": ch.lstm.best_epoch,
            **{f"val_rmsse_{k}": round(v["val_rmsse"], 4) for k, v in ch.candidates.items()},
        }

        def wide(frame: pd.DataFrame, column: str = "predicted_units") -> np.ndarray:
            values = horizon_table(frame, task, column)
            missing = np.isnan(values)
            if missing.any():  # products the trainer does not forecast: seasonal naive
                notes["fallbacks"] = int(missing.any(axis=0).sum())
                values = np.where(missing, fallback, values)
            return np.clip(values, 0.0, None)

        def quantiles(frame: pd.DataFrame) -> dict[float, np.ndarray]:
            return {a: wide(frame, column_name(a)) for a in QUANTILE_LEVELS}

        common = dict(
            params=params,
            correction=ch.correction,
            gbm=ch.gbm,
            blend_weight=ch.blend_weight,
            pipeline=prepared.pipeline,
            sales=sales,
            cfg=cfg,
            promotions=promos,
        )
        frames = {
            kind: forecast_served(kind, model=ch.lstm.model, intervals=ch.intervals[kind], **common)
            for kind in (LSTM, LIGHTGBM, BLEND)
        }
        served = {kind: wide(frame) for kind, frame in frames.items()}
        served_q = {kind: quantiles(frame) for kind, frame in frames.items()}
        # the served kind's residual-conformal quantiles, without the quantile tails
        # (issue 27: the same fit, the tails' effect alone)
        plain_cal = replace(ch.intervals[ch.kind], tail_levels=(), tail_shifts=())
        conformal_q = quantiles(
            forecast_served(ch.kind, model=ch.lstm.model, intervals=plain_cal, **common)
        )
        coverage = ch.interval_test.get(ch.kind, {})
        notes["test_coverage_80"] = coverage.get("coverage")
        raw = {
            "lstm": wide(
                forecast_next(ch.plain.model, prepared.pipeline, sales, cfg, params, promos)
            ),
            "dro_lstm": wide(
                forecast_next(ch.lstm.model, prepared.pipeline, sales, cfg, params, promos)
            ),
        }
        extra = {
            f"lstm{self.suffix}": raw["lstm"],
            f"dro_lstm{self.suffix}": raw["dro_lstm"],
            f"debiased_lstm{self.suffix}": served[LSTM],
            f"trainer_lightgbm{self.suffix}": served[LIGHTGBM],
            f"blend{self.suffix}": served[BLEND],
        }
        extra_q = {
            f"debiased_lstm{self.suffix}": served_q[LSTM],
            f"trainer_lightgbm{self.suffix}": served_q[LIGHTGBM],
            f"blend{self.suffix}": served_q[BLEND],
        }
        if self.tail_levels:
            extra_q[f"trainer_conformal{self.suffix}"] = conformal_q
            extra[f"trainer_conformal{self.suffix}"] = served[ch.kind]
        if ch.gbm_heldout is not None:  # the refit's held-out twin: what validation scored
            held = forecast_served(
                LIGHTGBM,
                model=ch.lstm.model,
                intervals=ch.intervals[LIGHTGBM],
                **(common | {"gbm": ch.gbm_heldout}),
            )
            extra[f"trainer_lightgbm_heldout{self.suffix}"] = wide(held)
            extra_q[f"trainer_lightgbm_heldout{self.suffix}"] = quantiles(held)
            frames["lightgbm_heldout"] = held
        if self.dump_dir is not None:
            path = dump_interval_inputs(
                Path(self.dump_dir) / f"{task.history.dates[-1].date()}{self.suffix}.pkl",
                ch,
                prepared,
                cfg,
                frames,
                task,
                served_tails(ch, prepared, sales, cfg, promos),
            )
            notes["interval_inputs"] = str(path)
        return Forecast(
            values=served[ch.kind],
            notes=notes,
            extra=extra,
            quantiles=served_q[ch.kind],
            extra_quantiles=extra_q,
        )


def served_tails(
    ch: Any, prepared: Any, sales: pd.DataFrame, cfg: Any, promos: pd.DataFrame
) -> pd.DataFrame:
    """The served LightGBM's tail forecasts from the cutoff (product_id, target_date,
    predicted_units, tail_p10, ...; without tail columns when it has none), as
    `forecast_served` computes them, and the held-out tails' (`heldout_tail_p10`, ...:
    the boosters validation calibrated, when the served ones were refitted)."""
    from trainer.models.challenger import tail_forecasts
    from trainer.models.intervals import tail_column
    from trainer.models.lstm import forecast_windows, future_frame

    w, products, dates = forecast_windows(prepared.pipeline, sales, cfg, cfg.lookback, promos)
    frame = future_frame(products, dates, ch.gbm.predict_units(w, prepared.pipeline, products))
    tails = tail_forecasts(ch.gbm, w, prepared.pipeline, products, sales, cfg, promos)
    frame = frame.assign(**{tail_column(a): v.reshape(-1) for a, v in tails.items()})
    if ch.gbm_heldout is not None:
        held = ch.gbm_heldout.predict_tails(w, prepared.pipeline, products)
        frame = frame.assign(
            **{f"heldout_{tail_column(a)}": v.reshape(-1) for a, v in held.items()}
        )
    return frame


def dump_interval_inputs(
    path: Path,
    ch: Any,
    prepared: Any,
    cfg: Any,
    served: dict[str, pd.DataFrame],
    task: ForecastTask,
    tails: pd.DataFrame | None = None,
) -> Path:
    """Write what an interval calibration of this cutoff needs, so that interval methods
    can be compared offline without training again (issue 27).

    The pickle holds, per candidate kind: the validation forecasts the trainer calibrated
    on (`calibration`: origins every `val_origin_every` days, the LSTM's offsets
    cross-fitted, the held-out LightGBM; rebuilt from the trained models exactly as
    `train_challenger` builds them, and checked against its served calibration, which
    may include the test split's: `served_with_test`), their
    forecasts of the trainer's test split (`test`, the horizon before the cutoff), the served
    forecasts from the cutoff (`served`), each product's naive scale, the history's units
    and the trainer's choice. Raises `RuntimeError` if the rebuilt frames do not give the
    trainer's own calibration.
    """
    from trainer.models.challenger import (
        BLEND,
        LIGHTGBM,
        LSTM,
        blend,
        cross_fitted,
        gbm_frame,
        naive_scales,
    )
    from trainer.models.intervals import fit_intervals
    from trainer.models.lstm import predict_split

    gbm = ch.gbm_heldout if ch.gbm_heldout is not None else ch.gbm
    val_every = predict_split(ch.lstm.model, prepared, "val", every=cfg.val_origin_every)
    cal = {LSTM: cross_fitted(val_every, cfg.bias_shrinkage)}
    cal[LIGHTGBM] = gbm_frame(gbm, prepared, "val", every=cfg.val_origin_every)
    cal[BLEND] = blend(cal[LSTM], cal[LIGHTGBM], ch.blend_weight)
    # the trainer's test split (the horizon before the cutoff), out of sample as well
    test = {LSTM: ch.correction.apply(ch.lstm_test_raw), LIGHTGBM: gbm_frame(gbm, prepared, "test")}
    test[BLEND] = blend(test[LSTM], test[LIGHTGBM], ch.blend_weight)
    naive = naive_scales(prepared)
    with_test = {}  # kind -> whether the served calibration includes the test forecasts
    for kind, frame in cal.items():
        served_q = ch.intervals[kind].quantiles
        for extended in (True, False):
            data = pd.concat([frame, test[kind]], ignore_index=True) if extended else frame
            again = fit_intervals(
                data, naive, levels=cfg.interval_levels, shrinkage=cfg.interval_shrinkage
            )
            if np.allclose(again.quantiles, served_q):
                with_test[kind] = extended
                break
        else:
            raise RuntimeError(f"{kind}: the rebuilt forecasts give another calibration")
    keep = ["product_id", "target_date", "horizon_step", "origin_date", "actual", "predicted"]
    keep += [c for c in cal[LIGHTGBM].columns if str(c).startswith("tail_")]
    payload = {
        "cutoff": str(task.history.dates[-1].date()),
        "chosen": ch.kind,
        "blend_weight": ch.blend_weight,
        "calibration": {k: f[[c for c in keep if c in f.columns]] for k, f in cal.items()},
        "test": {k: f[[c for c in keep if c in f.columns]] for k, f in test.items()},
        "served": {
            k: f[["product_id", "target_date", "predicted_units"]] for k, f in served.items()
        },
        "naive": naive,
        "products": list(task.history.products),
        "dates": task.history.dates,
        "units": task.history.units,
        "config": {"levels": cfg.interval_levels, "shrinkage": cfg.interval_shrinkage},
        "served_with_test": with_test,
        # the served LightGBM's point (predicted_units) and tails from the cutoff
        "served_tails": tails,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump(payload, fh)
    return path
