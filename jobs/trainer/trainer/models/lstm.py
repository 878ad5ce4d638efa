"""The LSTM's training and prediction: train, predict a split, forecast the next days.

The network itself is `trainer.models.network` (Keras is loaded lazily, inside these
functions). Typical use, with the rest of a run's parts::

    from trainer.config import ModelParams, TrainConfig
    from trainer.data.load import load_sales
    from trainer.data.prepare import prepare
    from trainer.judge.evaluate import evaluate
    from trainer.models.bias import correction_effect, fit_bias_correction
    from trainer.models.lstm import forecast_next, predict_split, train

    cfg = TrainConfig()
    prepared = prepare(load_sales(engine), cfg)             # quality, features, windows
    trained = train(prepared, ModelParams(), cfg)           # fairness on per cfg.fairness
    val = predict_split(trained.model, prepared, "val")
    correction = fit_bias_correction(val, cfg.bias_shrinkage)
    test = predict_split(trained.model, prepared, "test")
    result = evaluate(correction.apply(test), prepared)     # .metrics (metrics.json), .per_product
    effect = correction_effect(test, correction)            # test bias before / after
    prepared.pipeline.save(model_dir); trained.model.save(model_dir / "model.keras")
    future = forecast_next(model, pipeline, sales, cfg)     # product_id, target_date, predicted_units

Public API:

- `train(prepared, params, cfg, *, fairness=None, callbacks=(), train_windows=None,
  early_stopping=True, verbose=True) -> Trained`: `.model`, `.history` (Keras history
  dict: loss, val_loss, val_rmsse, val_disparity per epoch), `.fairness_history` (per
  epoch disparity, per-product RMSSE and weights), `.val_metrics` (rmsse,
  disparity_p90_over_median, worst_decile_rmsse, val_loss), `.best_epoch`. `callbacks`
  are extra Keras callbacks (e.g. an Optuna pruning callback on `val_loss`).
- `predict_split(model, prepared, split) -> DataFrame` (product_id, origin_date,
  target_date, horizon_step, actual, predicted) in original units; split is "val" or "test".
- `forecast_next(model, pipeline, sales, cfg, params=None, promotions=None) -> DataFrame`
  (product_id, target_date, predicted_units): the `cfg.horizon` days after the last sale;
  pass `load_promotions(engine)` so planned promotions reach the model.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from forecastguard.logs import get_logger
from trainer.config import ModelParams, TrainConfig
from trainer.data.features import FeaturePipeline, build_panel
from trainer.data.load import DataError
from trainer.data.quality import check_quality
from trainer.data.windowing import Windows, make_windows
from trainer.judge.evaluate import disparity
from trainer.types import Prepared, Trained

if TYPE_CHECKING:
    import keras

__all__ = ["forecast_next", "forecast_windows", "predict_split", "train", "windows_frame"]

log = get_logger(__name__)


def _model_lookback(model: keras.Model) -> int:
    return int(model.get_layer("sequence").batch_shape[1])


def _window_stats(prepared: Prepared, w: Windows) -> tuple[np.ndarray, np.ndarray]:
    products = [prepared.panel.product_ids[s] for s in w.series]
    return prepared.pipeline.series_stats(products)


def _actual_units(prepared: Prepared, w: Windows) -> np.ndarray:
    idx = w.origin[:, None] + np.arange(prepared.cfg.horizon)[None, :]
    return prepared.panel.units[w.series[:, None], idx]


def train(
    prepared: Prepared,
    params: ModelParams,
    cfg: TrainConfig | None = None,
    *,
    fairness: bool | None = None,
    callbacks: tuple[Any, ...] | list[Any] = (),
    train_windows: Windows | None = None,
    early_stopping: bool = True,
    verbose: bool = True,
) -> Trained:
    """Train the LSTM on the training windows, validating (and re-weighting) every epoch.

    `fairness` (default `cfg.fairness`) turns the re-weighting on; the callback always
    measures the per-product disparity. `verbose` logs every epoch.
    """
    import keras

    from trainer.models.fairness import FairnessCallback, plain, validation_windows
    from trainer.models.network import DROSettings, WeightedWindowData, build_model

    cfg = cfg or prepared.cfg
    mitigate = cfg.fairness if fairness is None else fairness
    if params.lookback > prepared.cfg.lookback:
        raise ValueError(
            f"ModelParams.lookback={params.lookback} exceeds the prepared windows' "
            f"lookback {prepared.cfg.lookback}; prepare with a longer TrainConfig.lookback"
        )
    keras.utils.set_random_seed(cfg.seed)
    windows = train_windows if train_windows is not None else prepared.train
    dro = (
        DROSettings(eta=cfg.fairness_eta, decay=cfg.fairness_decay, mix=cfg.fairness_mix)
        if mitigate
        else None
    )
    model = build_model(
        params,
        n_features=windows.x.shape[-1],
        n_known=windows.known.shape[-1],
        horizon=cfg.horizon,
        n_products=len(prepared.products),
        dro=dro,
    )
    data = WeightedWindowData(
        windows, lookback=params.lookback, batch_size=cfg.batch_size, seed=cfg.seed
    )
    val = prepared.val
    fval = validation_windows(prepared, cfg.val_origin_every)
    mean, std = _window_stats(prepared, fval)
    fair_cb = FairnessCallback(
        fval,
        val_actual=_actual_units(prepared, fval),
        val_mean=mean,
        val_std=std,
        scale=prepared.scale,
        products=list(prepared.products),
        lookback=params.lookback,
    )
    cbs: list[Any] = [fair_cb]
    if verbose:
        cbs.append(_EpochLogger(cfg.epochs))
    if early_stopping:
        cbs.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=cfg.patience, restore_best_weights=True
            )
        )
    cbs.extend(callbacks)
    log.info(
        "training started",
        extra={
            "windows": len(windows),
            "synthetic_windows": int(windows.synthetic.sum()),
            "epochs": cfg.epochs,
            "batches_per_epoch": len(data),
            "fairness": mitigate,
            "params": params.to_dict(),
        },
    )
    start = time.perf_counter()
    hist = model.fit(
        data,
        validation_data=(val.inputs(params.lookback), val.y),
        epochs=cfg.epochs,
        callbacks=cbs,
        verbose=0,
    )
    duration = time.perf_counter() - start
    model = plain(model)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    losses = history.get("val_loss", [])
    best_epoch = int(np.argmin(losses)) + 1 if losses else len(losses)
    val_pred = predict_split(model, prepared, "val")
    rmsse = _product_rmsse(val_pred, prepared)
    disp = disparity(rmsse, list(prepared.products))
    val_metrics = {
        "rmsse": disp["mean_rmsse"],
        "disparity_p90_over_median": disp["p90_over_median"],
        "worst_decile_rmsse": disp["worst_decile_rmsse"],
        "worst_product": disp["worst_product"],
        "val_loss": float(min(losses)) if losses else float("nan"),
    }
    log.info(
        "training finished",
        extra={"duration_s": round(duration, 2), "best_epoch": best_epoch, **val_metrics},
    )
    return Trained(
        model=model,
        params=params,
        fairness=mitigate,
        history=history,
        fairness_history=fair_cb.history.to_dict(),
        val_metrics=val_metrics,
        best_epoch=best_epoch,
        epochs_run=len(losses),
        duration_s=duration,
    )


def _product_rmsse(pred: pd.DataFrame, prepared: Prepared) -> np.ndarray:
    err2 = (pred["actual"] - pred["predicted"]) ** 2
    mse = err2.groupby(pred["product_id"]).mean().reindex(list(prepared.products))
    return np.sqrt(mse.to_numpy() / prepared.scale)


class _EpochLogger:
    """Logs one JSON line per epoch (built lazily: Keras is imported only when training)."""

    def __new__(cls, epochs: int):
        import keras

        class EpochLogger(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                fields = {k: round(float(v), 5) for k, v in (logs or {}).items()}
                log.info(
                    f"epoch {epoch + 1}/{epochs}",
                    extra={
                        "epoch": epoch + 1,
                        "epochs": epochs,
                        "epoch_s": round(time.perf_counter() - self._start, 2),
                        **fields,
                    },
                )

        return EpochLogger()


def _predict_windows(
    model: keras.Model, pipeline: FeaturePipeline, w: Windows, products: list[str]
) -> np.ndarray:
    z = model.predict(w.inputs(_model_lookback(model)), verbose=0, batch_size=1024)
    return pipeline.inverse_target(z + w.level[:, None], products)


def predict_split(
    model: keras.Model, prepared: Prepared, split: str, *, every: int | None = None
) -> pd.DataFrame:
    """Forecasts of a split's windows, one row a product and target day, in units.

    `every` (validation only): forecast origins every `every` days over the validation
    days instead of every horizon (several overlapping origins per day).
    """
    if split not in ("val", "test"):
        raise ValueError(f"predict_split: split must be 'val' or 'test', got {split!r}")
    w = prepared.windows(split)
    if every is not None and split == "val":
        from trainer.models.fairness import validation_windows

        w = validation_windows(prepared, every)
    if not len(w):
        raise DataError(f"the {split} split has no window")
    return windows_frame(
        prepared, w, _predict_windows(model, prepared.pipeline, w, _ids(prepared, w))
    )


def _ids(prepared: Prepared, w: Windows) -> list[str]:
    return [prepared.panel.product_ids[s] for s in w.series]


def windows_frame(prepared: Prepared, w: Windows, pred: np.ndarray) -> pd.DataFrame:
    """(N, H) forecasts in units of windows `w` as rows (product, origin, target, actual)."""
    H = prepared.cfg.horizon
    products = _ids(prepared, w)
    actual = _actual_units(prepared, w)
    cal = prepared.panel.calendar
    target_idx = w.origin[:, None] + np.arange(H)[None, :]
    return pd.DataFrame(
        {
            "product_id": np.repeat(np.array(products, dtype=object), H),
            "origin_date": np.repeat(cal[w.origin].to_numpy(), H),
            "target_date": cal[target_idx.reshape(-1)].to_numpy(),
            "horizon_step": np.tile(np.arange(1, H + 1), len(w)),
            "actual": actual.reshape(-1),
            "predicted": pred.reshape(-1),
        }
    )


def forecast_next(
    model: keras.Model,
    pipeline: FeaturePipeline,
    sales: pd.DataFrame,
    cfg: TrainConfig,
    params: ModelParams | None = None,
    promotions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Forecast the `cfg.horizon` days after the last sales day for every current product.

    Products still listed on the last day (see `quality`) are forecast; unknown products
    use the median group statistics and the "unknown" embedding. `promotions`
    (product_id, date) marks future promoted days; without it, no promotion is assumed.
    """
    lookback = params.lookback if params is not None else _model_lookback(model)
    w, products, dates = forecast_windows(pipeline, sales, cfg, lookback, promotions)
    pred = _predict_windows(model, pipeline, w, products)
    return future_frame(products, dates, pred)


def forecast_windows(
    pipeline: FeaturePipeline,
    sales: pd.DataFrame,
    cfg: TrainConfig,
    lookback: int,
    promotions: pd.DataFrame | None = None,
) -> tuple[Windows, list[str], pd.DatetimeIndex]:
    """The one window per current product that forecasts the `cfg.horizon` days after
    the last sales day: (windows, their product ids, the forecast dates)."""
    qres = check_quality(sales, cfg)
    clean = qres.clean
    last = clean["date"].max()
    panel = build_panel(clean, end=last + pd.Timedelta(days=cfg.horizon), promotions=promotions)
    arrays = pipeline.transform(panel)
    origin = len(panel.calendar) - cfg.horizon
    if origin < lookback:
        raise DataError(f"forecast needs {lookback} days of sales, got {origin}")
    w = make_windows(arrays, np.array([origin]), lookback, cfg.horizon, require_targets=False)
    if not len(w):
        raise DataError("no product is listed on the last sales day: nothing to forecast")
    products = [panel.product_ids[s] for s in w.series]
    return w, products, panel.calendar[origin:]


def future_frame(products: list[str], dates: pd.DatetimeIndex, pred: np.ndarray) -> pd.DataFrame:
    """(product_id, target_date, predicted_units) rows of (N, H) forecasts."""
    horizon = len(dates)
    out = pd.DataFrame(
        {
            "product_id": np.repeat(np.array(products, dtype=object), horizon),
            "target_date": np.tile(dates.to_numpy(), len(products)),
            "predicted_units": pred.reshape(-1),
        }
    )
    log.info(
        "forecast made",
        extra={"products": len(products), "start": str(dates[0].date()), "days": horizon},
    )
    return out
