"""Drift injected into a share of products from a given day on."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecastguard.synth import _random as rnd
from forecastguard.synth.sales import DateLike, _check_seed, as_day

DRIFT_KINDS = ("level_shift", "seasonality_change", "variance_change")
DEFAULT_MAGNITUDE = {"level_shift": 1.0, "seasonality_change": 0.8, "variance_change": 3.0}


def inject_drift(
    sales: pd.DataFrame,
    *,
    share: float,
    start: DateLike,
    kind: str,
    seed: int = 0,
    magnitude: float | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Change the sales of a random `share` of the products from `start` on.

    Kinds and what `magnitude` means (default in DEFAULT_MAGNITUDE):

    - level_shift: demand is multiplied by 1 + magnitude (> -1): sold units are
      thinned binomially, or extra Poisson demand is added.
    - seasonality_change: a new weekly pattern, 1 + magnitude x cos(weekday, random
      phase) with magnitude in (0, 1], multiplies demand; the weekly mean is unchanged.
    - variance_change: the standard deviation of units around the expected demand is
      multiplied by magnitude (>= 0), the mean unchanged: above 1 by a fresh
      negative-binomial draw (dispersion estimated before `start`), up to 1 by pulling
      units towards the expected demand.

    Only `units_sold` changes; `expected_units` stays what the model expected, so
    forecasts made from it miss the drift. Frames without `expected_units` (real data)
    use each product's weekday mean before `start` instead. Rows of other products,
    and all rows before `start`, are returned unchanged. Returns the new frame and the
    sorted ids of the drifted products.
    """
    if kind not in DRIFT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(DRIFT_KINDS)}, got {kind!r}")
    if not 0 <= share <= 1:
        raise ValueError(f"share must be between 0 and 1, got {share!r}")
    _check_seed(seed)
    m = float(DEFAULT_MAGNITUDE[kind] if magnitude is None else magnitude)
    _check_magnitude(kind, m)
    first = as_day(start, "start")

    products = sorted(sales["product_id"].unique())
    n_drift = min(len(products), max(1, round(share * len(products)))) if share > 0 else 0
    rng = np.random.default_rng([seed, 0xD21F7])
    chosen = sorted(str(p) for p in rng.choice(products, n_drift, replace=False))

    out = sales.copy()
    dates = pd.to_datetime(out["date"])
    mask = (out["product_id"].isin(chosen) & (dates >= first)).to_numpy()
    if not mask.any():
        return out, chosen
    all_units = out["units_sold"].to_numpy(float)
    if "expected_units" in out:
        all_expected = out["expected_units"].to_numpy(float)
    else:
        all_expected = _weekday_means_before(out, dates, first)
    units, expected = all_units[mask], all_expected[mask]
    codes, uniq = pd.factorize(out["product_id"][mask], sort=True)
    keys = rnd.product_keys(uniq)[codes]
    days = rnd.day_numbers(dates[mask])

    def u(stream: str, day: np.ndarray | int = days) -> np.ndarray:
        return rnd.uniforms(seed, f"drift-{kind}-{stream}", keys, day)

    if kind == "variance_change" and m <= 1:
        # Pull units towards the expected demand, rounding stochastically.
        new = np.floor(expected + m * (units - expected) + u("round"))
    elif kind == "variance_change":
        # A fresh negative-binomial draw with the same mean and m**2 times the variance
        # (the product's dispersion estimated from its rows before `start`).
        before = (dates < first).to_numpy()
        ref = before if before.any() else np.ones(len(out), dtype=bool)
        inv_shape = _inverse_shape(out["product_id"][ref], all_units[ref], all_expected[ref])
        variance = expected + expected**2 * inv_shape.reindex(uniq, fill_value=0).to_numpy()[codes]
        shape = expected**2 / np.maximum(m * m * variance - expected, 1e-9)
        shock = rnd.gamma_unit_mean(u("shock"), np.maximum(shape, 1e-3))
        new = rnd.poisson(u("count"), expected * shock)
    else:
        if kind == "level_shift":
            factor = np.full(len(units), 1.0 + m)
        else:
            phase = 2 * np.pi * u("phase", 0)
            weekday = dates[mask].dt.day_of_week.to_numpy()
            factor = 1.0 + m * np.cos(2 * np.pi * weekday / 7 - phase)
        thinned = rnd.binomial(u("thin"), units, np.minimum(factor, 1.0))
        extra = rnd.poisson(u("extra"), np.maximum(factor - 1.0, 0.0) * expected)
        new = np.where(factor <= 1.0, thinned, units + extra)
    out.loc[mask, "units_sold"] = new
    return out, chosen


def _inverse_shape(products: pd.Series, units: np.ndarray, expected: np.ndarray) -> pd.Series:
    """Moment estimate of 1 / (negative-binomial shape) per product, floored at 0."""
    frame = pd.DataFrame(
        {"excess": (units - expected) ** 2 - expected, "square": expected**2},
        index=products.to_numpy(),
    )
    sums = frame.groupby(level=0).sum()
    return (sums["excess"] / sums["square"].where(sums["square"] > 0)).fillna(0).clip(lower=0)


def _check_magnitude(kind: str, m: float) -> None:
    ok = {
        "level_shift": m > -1,
        "seasonality_change": 0 < m <= 1,
        "variance_change": m >= 0,
    }[kind]
    if not (np.isfinite(m) and ok):
        expected = {
            "level_shift": "> -1",
            "seasonality_change": "in (0, 1]",
            "variance_change": ">= 0",
        }[kind]
        raise ValueError(f"magnitude for {kind} must be {expected}, got {m!r}")


def _weekday_means_before(sales: pd.DataFrame, dates: pd.Series, start: pd.Timestamp):
    """Each row's product-and-weekday mean before `start` (else the product's mean)."""
    product, weekday = sales["product_id"].to_numpy(), dates.dt.day_of_week.to_numpy()
    key = pd.DataFrame({"p": product, "d": weekday})
    units = sales["units_sold"].astype(float).to_numpy()
    before = (dates < start).to_numpy()
    by_day = pd.Series(units[before]).groupby([product[before], weekday[before]]).mean()
    merged = key.merge(
        by_day.rename_axis(["p", "d"]).rename("e").reset_index(), on=["p", "d"], how="left"
    )["e"]
    overall = pd.Series(units).groupby(key["p"]).mean()
    return merged.fillna(key["p"].map(overall)).to_numpy(float)
