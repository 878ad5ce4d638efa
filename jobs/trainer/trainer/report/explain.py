"""SHAP attributions of the served forecast, whichever kind serves.

`explain_forecaster(kind, ...)` explains the forecaster of that kind; every kind's
explained output is the same quantity, **the H-day total of the forecast in units, less
the product's mean** (`std_p * sum_h z_h`, with `z` the standardised forecast), over a
sample of test windows of up to `max_products` products (the `n_worst` by the served
forecaster's test error always among them):

- `lstm` (the debiased LSTM): `shap.GradientExplainer` (expected gradients). The
  model's `product` input is an embedding index, which has no gradient; so each
  explained product gets a wrapper model with that product fixed, whose inputs are the
  float `sequence` (history: lookback days × features) and `known` (the horizon days'
  known-in-advance features), and whose single output is `std_p * sum_h (network_h +
  level)`, where the level (the mean standardised units of the last 28 days, which the
  pipeline adds to the network's output) is computed from the `units` input inside the
  wrapper, so its attribution goes to the history's `units` feature: the *forecast* is
  explained, not its change from the level. The wrapper's level equals the pipeline's
  when every day of the window is listed and the lookback is at least 28 days (the
  default); otherwise it is the mean over the window's days. Background windows are
  that product's training windows.
- `lightgbm`: `shap.TreeExplainer`'s values (path-dependent TreeSHAP, exact, no
  background: for a LightGBM booster, LightGBM's own `pred_contrib`, called directly) on
  each member booster of the ensemble (its validated rounds), averaged as the forecast
  is, over its feature rows (`trainer.models.gbm.rows`: one row
  per window and step). A window's H rows are the inputs of its H-day total, so the
  total's SHAP value of column `c` at step `h` is `std_p * phi_h(c)`; the values of a
  window sum to its total less the booster's expected total (local accuracy). Columns
  read from the history (`last_*`, `same_weekday_last_week`, `level`, product
  statistics, `product`) are `history` inputs, `known_*` ones `future` inputs.
- `blend` (`w * lstm + (1 - w) * lightgbm`): both are explained on the same windows
  and combined with the blend weight. SHAP values are linear in the model: for `F = w f
  + (1 - w) g` every player's value is `w phi_f + (1 - w) phi_g`; the two models read
  disjoint inputs (the LSTM's days, LightGBM's rows), so the blend's values are the
  LSTM's scaled by `w` followed by LightGBM's scaled by `1 - w`, and they still sum to
  the blend's total less its expected total.
- a baseline (seasonal naive, moving average): nothing to explain — a fixed rule of
  the last days' sales, no learned attribution — `no_explanation` says so.

The bias correction adds a constant per product to the LSTM's forecasts: it moves the
expected value, not the SHAP values. The clip at 0 units is ignored.

Attributions are aggregated per feature over time steps and samples (mean |SHAP|),
into a global table (the summary bar plot) and a per-product table for the worst
products; the table's `model` column says whose feature it is.
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
    import lightgbm as lgb

    from trainer.data.windowing import Windows
    from trainer.models.gbm import GBMForecaster
    from trainer.types import Prepared

log = get_logger(__name__)

LSTM, LIGHTGBM, BLEND = "lstm", "lightgbm", "blend"
KINDS = (LSTM, LIGHTGBM, BLEND)
OUTPUT = "H-day total of the forecast in units, less the product's mean"
SUMMARY_COLUMNS = [
    "feature",
    "input",
    "model",
    "mean_abs_shap",
    "mean_shap",
    "sum_abs_shap_over_steps",
]
PER_PRODUCT_COLUMNS = ["product_id", "feature", "input", "model", "mean_abs_shap"]


@dataclass(frozen=True)
class Explanation:
    """SHAP results: a global table, per-product tables, and the raw values.

    `values` holds, per explained window (`product_id`), the blocks of the explained
    kind: `sequence` (n, L, F) and `known` (n, H, K) for the LSTM, `lightgbm` (n, H, R)
    for LightGBM, all three for the blend (already weighted). `settings["explained"]`
    is False when nothing was explained (`settings["reason"]` says why).
    """

    summary: pd.DataFrame  # feature, input, model, mean_abs_shap, mean_shap, ... (sorted)
    per_product: pd.DataFrame  # product_id, feature, input, model, mean_abs_shap
    worst_products: list[str]
    values: dict[str, np.ndarray]
    settings: dict[str, Any]

    @property
    def explained(self) -> bool:
        """Whether anything was explained."""
        return bool(self.settings.get("explained", True))

    def npz_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for `numpy.savez_compressed` (the SHAP values artifact)."""
        out = {"kind": np.asarray(str(self.settings.get("kind", "")))}
        if not self.explained:
            return out | {"reason": np.asarray(str(self.settings.get("reason", "")))}
        names = {"sequence": "sequence_shap", "known": "known_shap", "lightgbm": "lightgbm_shap"}
        for key, value in self.values.items():
            if key in names:
                out[names[key]] = np.asarray(value, dtype=np.float32)
            else:
                out[key] = np.asarray(value, dtype=str)
        if "blend_weight" in self.settings:
            out["blend_weight"] = np.asarray(float(self.settings["blend_weight"]))
        return out


def no_explanation(kind: str, reason: str) -> Explanation:
    """The explanation of a forecaster that has none (a baseline): empty, with the reason."""
    return Explanation(
        summary=pd.DataFrame(columns=SUMMARY_COLUMNS),
        per_product=pd.DataFrame(columns=PER_PRODUCT_COLUMNS),
        worst_products=[],
        values={},
        settings={"kind": kind, "explained": False, "reason": reason},
    )


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

    from trainer.data.windowing import LEVEL_DAYS

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


@dataclass(frozen=True)
class WindowSample:
    """The windows every kind explains: per chosen product, its explained test windows
    and (for the LSTM) its background training windows."""

    products: list[str]  # explained products (the worst first)
    worst: list[str]
    test: Windows
    train: Windows  # every training window; `background` indexes real series' only
    explained: list[np.ndarray]  # per product: indices into `test`
    background: list[np.ndarray]  # per product: indices into `train` (real series)

    @property
    def owners(self) -> np.ndarray:
        """(n,) the product of each explained window, in explanation order."""
        return np.concatenate(
            [
                np.full(len(ex), p, dtype=object)
                for p, ex in zip(self.products, self.explained, strict=True)
            ]
        )

    @property
    def index(self) -> np.ndarray:
        """(n,) indices into `test` of the explained windows, in explanation order."""
        return np.concatenate(self.explained)


def _products_of(series: np.ndarray, ids: Any) -> np.ndarray:
    """(n,) object array: the product id of each window's series (one lookup a series)."""
    uniq, inverse = np.unique(np.asarray(series), return_inverse=True)
    return np.array([ids[s] for s in uniq], dtype=object)[inverse.reshape(-1)]


def sample_windows(
    prepared: Prepared,
    *,
    per_product_error: pd.Series,
    test: Windows | None = None,
    n_worst: int = 3,
    max_products: int = 8,
    n_background: int = 32,
    n_explain: int = 8,
    seed: int = 0,
) -> WindowSample:
    """Choose the products (the `n_worst` by `per_product_error`, indexed by product id,
    then a seeded random sample of the others) and their windows."""
    rng = np.random.default_rng(seed)
    test = test if test is not None else prepared.test
    # The training windows are indexed, not copied (a copy of the real series' windows
    # would add the partition's largest array to the task's peak memory for a sample).
    train = prepared.train
    ids = prepared.panel.product_ids
    test_products = _products_of(test.series, ids)
    train_products = _products_of(train.series, ids)
    train_products[np.asarray(train.synthetic, dtype=bool)] = None  # real series only
    available = sorted(set(test_products) & (set(train_products) - {None}))
    if not available:
        raise ValueError("no product has both training and test windows to explain")
    errors = per_product_error.reindex(available).dropna().sort_values(ascending=False)
    worst = list(errors.index[:n_worst])
    others = [p for p in available if p not in worst]
    extra = list(rng.permutation(others)[: max(0, max_products - len(worst))])
    chosen = worst + sorted(extra)
    explained, background = [], []
    for product in chosen:
        bg = np.flatnonzero(train_products == product)
        ex = np.flatnonzero(test_products == product)
        background.append(bg[_sample(bg.size, n_background, rng)])
        explained.append(ex[_sample(ex.size, n_explain, rng)])
    return WindowSample(chosen, worst, test, train, explained, background)


def lstm_values(
    model: keras.Model,
    prepared: Prepared,
    sample: WindowSample,
    *,
    lookback: int,
    nsamples: int = 64,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """GradientExplainer values of the LSTM's forecast total: sequence (n, L, F) and
    known (n, H, K), windows in `sample` order."""
    import shap

    test, train = sample.test, sample.train
    scaler = prepared.pipeline.scaler
    units_scale = (float(scaler.scale_[0]), float(scaler.mean_[0]))
    seq_parts, known_parts = [], []
    with timed(log, "stage shap lstm", stage="shap", products=len(sample.products)) as out:
        for i, (product, bg, ex) in enumerate(
            zip(sample.products, sample.background, sample.explained, strict=True)
        ):
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
            log.info(
                f"shap product {i + 1}/{len(sample.products)}",
                extra={"product_id": product, "windows": len(ex), "background": len(bg)},
            )
        out["windows"] = int(sum(len(ex) for ex in sample.explained))
    return np.concatenate(seq_parts), np.concatenate(known_parts)


def tree_shap(booster: lgb.Booster, rounds: int, x: np.ndarray) -> tuple[np.ndarray, float]:
    """SHAP values (rows, features) of `booster`'s first `rounds` trees (0: all of them) on
    rows `x`, and their expected value.

    `shap.TreeExplainer` without background data hands a LightGBM booster to LightGBM's
    own path-dependent TreeSHAP (`predict(pred_contrib=True)`: the values, then the
    expected value in the last column); called here directly, without the explainer's
    parse of every tree and a booster copy (the same values: test_gbm_shap)."""
    phi = booster.predict(x, num_iteration=rounds or -1, pred_contrib=True)
    return np.asarray(phi[:, :-1], dtype=float), float(phi[0, -1])


def gbm_values(
    gbm: GBMForecaster, prepared: Prepared, sample: WindowSample
) -> tuple[np.ndarray, float]:
    """TreeExplainer values of LightGBM's forecast total, (n, H, R) in units (windows in
    `sample` order), and the ensemble's expected value (standardised units per step).

    The ensemble forecasts its members' mean, so its SHAP values are the members' mean
    (Shapley values are linear in the model): exact, not an approximation."""
    from trainer.models.gbm import rows

    w = sample.test.subset(sample.index)
    products = [prepared.panel.product_ids[s] for s in w.series]
    mean, std = prepared.pipeline.series_stats(products)
    phis, expected = [], []
    with timed(log, "stage shap lightgbm", stage="shap", windows=len(w), members=len(gbm.members)):
        x = rows(w, mean, std)
        for member in gbm.members:  # the trees that predict (`GBMMember.predict_z`)
            phi, base = tree_shap(member.booster, member.rounds, x)
            phis.append(phi)
            expected.append(base)
    n, horizon = len(w), w.known.shape[1]
    values = np.mean(phis, axis=0).reshape(n, horizon, -1) * std[:, None, None]
    return values, float(np.mean(expected))


def _gbm_blocks(
    values: np.ndarray, names: list[str]
) -> list[tuple[np.ndarray, list[str], str, str]]:
    """LightGBM's row columns split into `history` and `future` (`known_*`) blocks."""
    future = np.array([n.startswith("known_") for n in names])
    hist_names = [n for n, f in zip(names, future, strict=True) if not f]
    fut_names = [n for n, f in zip(names, future, strict=True) if f]
    return [
        (values[..., ~future], hist_names, "history", LIGHTGBM),
        (values[..., future], fut_names, "future", LIGHTGBM),
    ]


def explain_forecaster(
    kind: str,
    prepared: Prepared,
    *,
    per_product_error: pd.Series,
    model: keras.Model | None = None,
    lookback: int | None = None,
    gbm: GBMForecaster | None = None,
    blend_weight: float = 0.5,
    test: Windows | None = None,
    n_worst: int = 3,
    max_products: int = 8,
    n_background: int = 32,
    n_explain: int = 8,
    nsamples: int = 64,
    seed: int = 0,
) -> Explanation:
    """SHAP values of the `kind` forecaster's forecasts ("lstm" needs `model` and
    `lookback`, "lightgbm" `gbm`, "blend" all three and `blend_weight`)."""
    if kind not in KINDS:
        raise ValueError(f"explain: unknown kind {kind!r} (known: {KINDS})")
    if kind != LIGHTGBM and (model is None or lookback is None):
        raise ValueError(f"explain: kind {kind!r} needs the LSTM model and its lookback")
    if kind != LSTM and gbm is None:
        raise ValueError(f"explain: kind {kind!r} needs the LightGBM model")
    sample = sample_windows(
        prepared,
        per_product_error=per_product_error,
        test=test,
        n_worst=n_worst,
        max_products=max_products,
        n_background=n_background,
        n_explain=n_explain,
        seed=seed,
    )
    seq_names, known_names = list(prepared.feature_names), list(prepared.known_names)
    w_lstm = {LSTM: 1.0, BLEND: float(blend_weight), LIGHTGBM: 0.0}[kind]
    blocks: list[tuple[np.ndarray, list[str], str, str]] = []
    values: dict[str, np.ndarray] = {"product_id": sample.owners}
    settings: dict[str, Any] = {"kind": kind, "explained": True, "output": OUTPUT}
    explainers = []
    if kind in (LSTM, BLEND):
        assert model is not None and lookback is not None
        seq, known = lstm_values(
            model, prepared, sample, lookback=lookback, nsamples=nsamples, seed=seed
        )
        seq, known = w_lstm * seq, w_lstm * known
        blocks += [(seq, seq_names, "history", LSTM), (known, known_names, "future", LSTM)]
        values |= {
            "sequence": seq.astype(np.float32),
            "known": known.astype(np.float32),
            "sequence_features": np.array(seq_names),
            "known_features": np.array(known_names),
        }
        explainers.append("shap.GradientExplainer (LSTM)")
        settings |= {"n_background": n_background, "nsamples": nsamples}
    if kind in (LIGHTGBM, BLEND):
        assert gbm is not None
        gv, expected = gbm_values(gbm, prepared, sample)
        gv = (1.0 - w_lstm) * gv
        blocks += _gbm_blocks(gv, gbm.names)
        values |= {"lightgbm": gv.astype(np.float32), "lightgbm_features": np.array(gbm.names)}
        explainers.append("shap.TreeExplainer (LightGBM)")
        settings["lightgbm_expected_value"] = expected
    if kind == BLEND:
        settings["blend_weight"] = float(blend_weight)
        settings["combination"] = (
            f"SHAP is linear in the model: blend = {w_lstm:g} × LSTM + {1 - w_lstm:g} × "
            "LightGBM, each explained on the same windows"
        )
    summary = _table(blocks)
    owners = sample.owners
    parts = []
    for product in sample.worst:
        mask = owners == product
        table = _table([(v[mask], n, i, m) for v, n, i, m in blocks])
        parts.append(table.assign(product_id=product))
    per_product = (
        pd.concat(parts, ignore_index=True)[PER_PRODUCT_COLUMNS]
        if parts
        else pd.DataFrame(columns=PER_PRODUCT_COLUMNS)
    )
    settings |= {
        "explainer": " + ".join(explainers),
        "products": sample.products,
        "n_explain": n_explain,
        "seed": seed,
    }
    return Explanation(summary, per_product, sample.worst, values, settings)


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
    """SHAP values of the LSTM's forecasts (`explain_forecaster("lstm", ...)`)."""
    return explain_forecaster(
        LSTM,
        prepared,
        per_product_error=per_product_error,
        model=model,
        lookback=lookback,
        test=test,
        n_worst=n_worst,
        max_products=max_products,
        n_background=n_background,
        n_explain=n_explain,
        nsamples=nsamples,
        seed=seed,
    )


def _table(blocks: list[tuple[np.ndarray, list[str], str, str]]) -> pd.DataFrame:
    """Mean |SHAP| and mean SHAP per feature, over samples and steps, of every block
    (values (n, steps, features), names, input, model)."""
    frames = []
    for values, names, kind, model in blocks:
        if values.shape[-1] != len(names):
            raise ValueError("SHAP arrays and feature names disagree")
        frames.append(
            pd.DataFrame(
                {
                    "feature": names,
                    "input": kind,
                    "model": model,
                    "mean_abs_shap": np.abs(values).mean(axis=(0, 1)),
                    "mean_shap": values.mean(axis=(0, 1)),
                    # Summed over steps: a feature's total share of the forecast.
                    "sum_abs_shap_over_steps": np.abs(values).sum(axis=1).mean(axis=0),
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values("sum_abs_shap_over_steps", ascending=False, ignore_index=True)


def _aggregate(
    seq: np.ndarray, known: np.ndarray, seq_names: list[str], known_names: list[str]
) -> pd.DataFrame:
    """The LSTM's table: mean |SHAP| and mean SHAP per feature, over samples and steps."""
    return _table([(seq, seq_names, "history", LSTM), (known, known_names, "future", LSTM)])
