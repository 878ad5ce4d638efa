"""A global LightGBM on the LSTM's features, trained beside it (direct, all 28 steps).

One row per (window, forecast step): the window's last day of sequence features (units,
lags, rolling statistics, calendar, promotion — already scaled by the feature
pipeline), the value of the same weekday in the window's last week, the window's level
(mean standardised units of the 28 days before the origin), the product's mean and
std, the step's known features (calendar, holidays, promotion, last year's value, the
step) and the product as a categorical feature. The target is the step's standardised
units (absolute, not relative to the level: trees split on the level instead).
Training rows come from the training windows (every `stride`-th origin, so the rows
stay within `max_rows`); boosting stops early on the validation days, with windows from
an origin every `val_origin_every` days (5 origins over 56 days instead of the split's 2;
with 2 the stopping round was noisy and mostly early — 31 to 191 rounds at learning rate
0.05 in the backtest — hence also a patience of 100 rounds).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from forecastguard.logs import get_logger, timed

if TYPE_CHECKING:
    import lightgbm as lgb

    from trainer.features import FeaturePipeline
    from trainer.types import Prepared
    from trainer.windowing import Windows

log = get_logger(__name__)

PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.05,
    "num_leaves": 63,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
}
MODEL_FILE = "lightgbm.txt"
META_FILE = "lightgbm.json"


def row_names(feature_names: tuple[str, ...], known_names: tuple[str, ...]) -> list[str]:
    """Column names of `rows` for a pipeline's sequence and known feature names."""
    return [
        *(f"last_{n}" for n in feature_names),
        "same_weekday_last_week",
        "level",
        "product_mean",
        "product_std",
        *(f"known_{n}" for n in known_names),
        "product",
    ]


def rows(w: Windows, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(N * H, features) float32 rows of windows `w` (window-major, then step)."""
    n, lookback, _ = w.x.shape
    horizon = w.known.shape[1]
    step = np.arange(horizon)
    weekday_back = lookback - 7 + (step % 7)  # same weekday within the last 7 input days
    same = w.x[:, np.clip(weekday_back, 0, lookback - 1), 0]  # (N, H), scaled units
    stats = np.column_stack([w.level, np.log1p(mean), np.log1p(std)])
    cols = [
        np.repeat(w.x[:, -1, :], horizon, axis=0),
        same.reshape(-1, 1),
        np.repeat(stats, horizon, axis=0),
        w.known.reshape(n * horizon, -1),
        np.repeat(w.product, horizon)[:, None],
    ]
    return np.concatenate(cols, axis=1).astype(np.float32)


def _targets(w: Windows) -> np.ndarray:
    return (w.y + w.level[:, None]).reshape(-1)


@dataclass
class GBMForecaster:
    """A trained LightGBM booster and the column names it expects."""

    booster: lgb.Booster
    names: list[str]
    best_iteration: int

    def predict_z(self, w: Windows, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        """(N, H) standardised forecasts of windows `w`."""
        x = rows(w, mean, std)
        z = self.booster.predict(x, num_iteration=self.best_iteration or None)
        return np.asarray(z, dtype=float).reshape(len(w), -1)

    def predict_units(
        self, w: Windows, pipeline: FeaturePipeline, products: list[str]
    ) -> np.ndarray:
        """(N, H) forecasts in units for windows `w` of `products`."""
        mean, std = pipeline.series_stats(products)
        return pipeline.inverse_target(self.predict_z(w, mean, std), products)

    def save(self, directory: str | Path) -> list[Path]:
        """Write the booster (LightGBM's text format) and its metadata; returns the files."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(d / MODEL_FILE), num_iteration=self.best_iteration or None)
        (d / META_FILE).write_text(
            json.dumps({"names": self.names, "best_iteration": self.best_iteration})
        )
        return [d / MODEL_FILE, d / META_FILE]

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """Inverse of `save`."""
        import lightgbm as lgb

        d = Path(directory)
        meta = json.loads((d / META_FILE).read_text())
        booster = lgb.Booster(model_file=str(d / MODEL_FILE))
        return cls(booster=booster, names=list(meta["names"]), best_iteration=0)


def _thin(w: Windows, horizon: int, max_rows: int) -> tuple[Windows, int]:
    """Every `stride`-th origin (the latest always kept) so the rows stay within `max_rows`."""
    origins = np.unique(w.origin)
    stride = max(1, int(np.ceil(len(w) * horizon / max_rows)))
    return w.subset(np.isin(w.origin, origins[::-1][::stride])), stride


def _dataset(prepared: Prepared, w: Windows, names: list[str], **kw: Any) -> lgb.Dataset:
    import lightgbm as lgb

    from trainer.pipeline import _window_stats

    mean, std = _window_stats(prepared, w)
    return lgb.Dataset(
        rows(w, mean, std), label=_targets(w), feature_name=names, free_raw_data=True, **kw
    )


def _training_set(prepared: Prepared, w: Windows, names: list[str]) -> lgb.Dataset:
    """Training rows of windows `w`: each window's weight on its steps, the product a category."""
    weight = np.repeat(w.weight, prepared.cfg.horizon)
    return _dataset(prepared, w, names, weight=weight, categorical_feature=["product"])


def _booster_params(seed: int, num_threads: int, params: dict[str, Any] | None) -> dict[str, Any]:
    return {**PARAMS, "seed": seed, "num_threads": num_threads, **(params or {})}


def train_gbm(
    prepared: Prepared,
    *,
    seed: int = 0,
    max_rows: int = 600_000,
    rounds: int = 600,
    early_stopping: int = 100,
    num_threads: int = 2,
    params: dict[str, Any] | None = None,
) -> GBMForecaster:
    """Train on the training windows (thinned to `max_rows` rows), stop on validation."""
    import lightgbm as lgb

    from trainer.fairness import validation_windows

    train, stride = _thin(prepared.train, prepared.cfg.horizon, max_rows)
    names = row_names(prepared.feature_names, prepared.known_names)
    with timed(log, "stage lightgbm", stage="lightgbm") as out:
        dtrain = _training_set(prepared, train, names)
        val = validation_windows(prepared, prepared.cfg.val_origin_every)
        dval = _dataset(prepared, val, names, reference=dtrain)
        booster = lgb.train(
            _booster_params(seed, num_threads, params),
            dtrain,
            num_boost_round=rounds,
            valid_sets=[dval],
            callbacks=[lgb.early_stopping(early_stopping, verbose=False)],
        )
        out.update(
            rows=int(dtrain.num_data()), origin_stride=stride, best_iteration=booster.best_iteration
        )
    return GBMForecaster(booster=booster, names=names, best_iteration=int(booster.best_iteration))


def refit_gbm(
    prepared: Prepared,
    heldout: GBMForecaster,
    *,
    seed: int = 0,
    max_rows: int = 600_000,
    num_threads: int = 2,
    params: dict[str, Any] | None = None,
) -> GBMForecaster:
    """The same LightGBM refitted on windows over every day (train + validation + test),
    with the boosting rounds validation chose for `heldout` (no early stopping: nothing
    is held out). Its figures are `heldout`'s; it is what gets served, `val_days +
    test_days` days fresher."""
    import lightgbm as lgb

    every_day = prepared.refit_windows(through="test")
    windows, stride = _thin(every_day, prepared.cfg.horizon, max_rows)
    rounds = max(1, heldout.best_iteration or heldout.booster.current_iteration())
    with timed(log, "stage lightgbm refit", stage="lightgbm_refit") as out:
        dtrain = _training_set(prepared, windows, heldout.names)
        booster = lgb.train(
            _booster_params(seed, num_threads, params), dtrain, num_boost_round=rounds
        )
        out.update(rows=int(dtrain.num_data()), origin_stride=stride, rounds=rounds)
    return GBMForecaster(booster=booster, names=heldout.names, best_iteration=rounds)
