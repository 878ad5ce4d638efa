"""SHAP attributions of the forecasts (shap.GradientExplainer, i.e. expected gradients).

The model's `product` input is an embedding index, which has no gradient; so each
explained product gets a wrapper model with that product fixed, whose inputs are the
float `sequence` (history: lookback days × features) and `known` (the horizon days'
known-in-advance features), and whose single output is the H-day total of the
*forecast* in units, less its constant part: `std_p * sum_h (network_h + level)`, where
the level (the mean standardised units of the last 28 days, which the pipeline adds to
the network's output) is computed from the `units` input inside the wrapper, so its
attribution goes to the history's `units` feature. The wrapper's level equals the
pipeline's when every day of the window is listed and the lookback is at least 28 days
(the default); otherwise it is the mean over the window's days. Background windows are
that product's training windows, explained windows a sample of its test windows.

Attributions are aggregated per feature over time steps and samples (mean |SHAP|),
into a global table (the summary bar plot) and a per-product table for the worst
products.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from forecastguard.logs import get_logger, timed

if TYPE_CHECKING:
    import keras

    from trainer.types import Prepared
    from trainer.windowing import Windows

log = get_logger(__name__)


@dataclass(frozen=True)
class Explanation:
    """SHAP results: a global table, per-product tables, and the raw values."""

    summary: pd.DataFrame  # feature, input, mean_abs_shap, mean_shap (sorted)
    per_product: pd.DataFrame  # product_id, feature, input, mean_abs_shap (worst products)
    worst_products: list[str]
    values: dict[str, np.ndarray]  # sequence (n, L, F), known (n, H, K), product_id (n,)
    settings: dict[str, Any]

    def npz_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for `numpy.savez_compressed` (the SHAP values artifact)."""
        return {
            "sequence_shap": self.values["sequence"],
            "known_shap": self.values["known"],
            "product_id": np.asarray(self.values["product_id"], dtype=str),
            "sequence_features": np.asarray(self.values["sequence_features"], dtype=str),
            "known_features": np.asarray(self.values["known_features"], dtype=str),
        }


def fixed_product_model(
    model: keras.Model,
    product_index: int,
    lookback: int,
    *,
    units_scale: tuple[float, float] = (1.0, 0.0),
    product_std: float = 1.0,
) -> keras.Model:
    """A model of (sequence, known) with the product fixed; output: the H-day forecast total.

    The output is `product_std * sum_h (network_h + level)`: the forecast in units less
    the product's mean. `units_scale` = (scale, mean) of the feature pipeline's scaler
    for the `units` feature (feature 0), which turns it back into standardised units.
    """
    import keras
    from keras import ops

    from trainer.windowing import LEVEL_DAYS

    seq_shape = model.get_layer("sequence").batch_shape
    known_shape = model.get_layer("known").batch_shape
    if seq_shape[1] != lookback:
        raise ValueError(f"model lookback {seq_shape[1]} != {lookback}")
    seq = keras.Input(seq_shape[1:], name="sequence")
    known = keras.Input(known_shape[1:], name="known")
    product = keras.layers.Lambda(
        lambda t: ops.full((ops.shape(t)[0],), product_index, dtype="int32"), name="fixed_product"
    )(seq)
    out = model({"sequence": seq, "known": known, "product": product})
    days = min(LEVEL_DAYS, lookback)
    scale, mean = float(units_scale[0]), float(units_scale[1])
    level = keras.layers.Lambda(
        lambda t: ops.mean(t[:, -days:, 0] * scale + mean, axis=1, keepdims=True), name="level"
    )(seq)
    horizon = known_shape[1]
    net_total = keras.layers.Lambda(lambda t: ops.sum(t, axis=1, keepdims=True), name="total")(out)
    level_total = keras.layers.Lambda(lambda t: horizon * t, name="level_total")(level)
    summed = keras.layers.Add(name="standardised_total")([net_total, level_total])
    total = keras.layers.Lambda(lambda t: product_std * t, name="forecast_total")(summed)
    return keras.Model([seq, known], total)


def _sample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, size=min(n, k), replace=False)) if n else np.empty(0, int)


def explain(
    model: keras.Model,
    prepared: Prepared,
    *,
    lookback: int,
    per_product_error: pd.Series,
    test: Windows | None = None,
    n_worst: int = 3,
    max_products: int = 8,
    n_background: int = 32,
    n_explain: int = 8,
    nsamples: int = 64,
    seed: int = 0,
) -> Explanation:
    """SHAP values for a sample of test windows of up to `max_products` products.

    The `n_worst` products by `per_product_error` (indexed by product id) are always
    explained; the rest of the budget is a seeded random sample of the others.
    """
    import shap

    rng = np.random.default_rng(seed)
    test = test if test is not None else prepared.test
    train = prepared.train.subset(~prepared.train.synthetic)
    ids = prepared.panel.product_ids
    test_products = np.array([ids[s] for s in test.series], dtype=object)
    train_products = np.array([ids[s] for s in train.series], dtype=object)
    available = sorted(set(test_products) & set(train_products))
    if not available:
        raise ValueError("no product has both training and test windows to explain")
    errors = per_product_error.reindex(available).dropna().sort_values(ascending=False)
    worst = list(errors.index[:n_worst])
    others = [p for p in available if p not in worst]
    extra = list(rng.permutation(others)[: max(0, max_products - len(worst))])
    chosen = worst + sorted(extra)

    scaler = prepared.pipeline.scaler
    units_scale = (float(scaler.scale_[0]), float(scaler.mean_[0]))
    seq_parts, known_parts, owners = [], [], []
    with timed(log, "stage shap", stage="shap", products=len(chosen)) as out:
        for i, product in enumerate(chosen):
            bg = np.flatnonzero(train_products == product)
            ex = np.flatnonzero(test_products == product)
            bg, ex = bg[_sample(bg.size, n_background, rng)], ex[_sample(ex.size, n_explain, rng)]
            index = int(test.product[ex[0]])
            _, std = prepared.pipeline.series_stats([product])
            wrapped = fixed_product_model(
                model, index, lookback, units_scale=units_scale, product_std=float(std[0])
            )
            background = [train.inputs(lookback)["sequence"][bg], train.known[bg]]
            explained = [test.inputs(lookback)["sequence"][ex], test.known[ex]]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # keras input-structure notices
                explainer = shap.GradientExplainer(wrapped, background, batch_size=64)
                values = explainer.shap_values(explained, nsamples=nsamples, rseed=seed + i)
            seq_v, known_v = (np.asarray(v)[..., 0] for v in values)
            seq_parts.append(seq_v)
            known_parts.append(known_v)
            owners += [product] * len(ex)
            log.info(
                f"shap product {i + 1}/{len(chosen)}",
                extra={"product_id": product, "windows": len(ex), "background": len(bg)},
            )
        out["windows"] = len(owners)
    seq_all = np.concatenate(seq_parts)
    known_all = np.concatenate(known_parts)
    seq_names = list(prepared.feature_names)
    known_names = list(prepared.known_names)
    summary = _aggregate(seq_all, known_all, seq_names, known_names)
    owners_arr = np.array(owners, dtype=object)
    rows = []
    for product in worst:
        mask = owners_arr == product
        table = _aggregate(seq_all[mask], known_all[mask], seq_names, known_names)
        rows.append(table.assign(product_id=product))
    per_product = (
        pd.concat(rows, ignore_index=True)[["product_id", "feature", "input", "mean_abs_shap"]]
        if rows
        else pd.DataFrame(columns=["product_id", "feature", "input", "mean_abs_shap"])
    )
    return Explanation(
        summary=summary,
        per_product=per_product,
        worst_products=worst,
        values={
            "sequence": seq_all.astype(np.float32),
            "known": known_all.astype(np.float32),
            "product_id": owners_arr,
            "sequence_features": np.array(seq_names),
            "known_features": np.array(known_names),
        },
        settings={
            "explainer": "shap.GradientExplainer",
            "output": "H-day total of the forecast in units, less the product's mean",
            "products": chosen,
            "n_background": n_background,
            "n_explain": n_explain,
            "nsamples": nsamples,
            "seed": seed,
        },
    )


def _aggregate(
    seq: np.ndarray, known: np.ndarray, seq_names: list[str], known_names: list[str]
) -> pd.DataFrame:
    """Mean |SHAP| and mean SHAP per feature, over samples and time steps."""
    if seq.shape[-1] != len(seq_names) or known.shape[-1] != len(known_names):
        raise ValueError("SHAP arrays and feature names disagree")
    frames = [
        pd.DataFrame(
            {
                "feature": names,
                "input": kind,
                "mean_abs_shap": np.abs(values).mean(axis=(0, 1)),
                "mean_shap": values.mean(axis=(0, 1)),
                # Summed over time steps: a feature's total share of the forecast.
                "sum_abs_shap_over_steps": np.abs(values).sum(axis=1).mean(axis=0),
            }
        )
        for values, names, kind in ((seq, seq_names, "history"), (known, known_names, "future"))
    ]
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values("sum_abs_shap_over_steps", ascending=False, ignore_index=True)
