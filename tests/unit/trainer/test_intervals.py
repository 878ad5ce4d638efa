"""Forecast intervals: conformal quantiles of residuals, per product scale and horizon band."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainer.models.intervals import (
    IntervalCalibration,
    column_name,
    coverage_summary,
    fit_intervals,
    product_scales,
)


def _frame(seed: int, noise: dict[str, float], origins: int = 8, horizon: int = 28) -> pd.DataFrame:
    """Forecast windows of products with Gaussian errors of sd `noise[p]` growing with the step."""
    rng = np.random.default_rng(seed)
    rows = []
    for o in range(origins):
        origin = pd.Timestamp("2024-01-01") + pd.Timedelta(days=7 * o)
        for p, sd in noise.items():
            step = np.arange(1, horizon + 1)
            err = rng.normal(0, sd * (1 + step / horizon), horizon)
            rows.append(
                pd.DataFrame(
                    {
                        "product_id": p,
                        "origin_date": origin,
                        "target_date": origin + pd.to_timedelta(step - 1, unit="D"),
                        "horizon_step": step,
                        "predicted": 100.0,
                        "actual": 100.0 + err,
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


NOISE = {f"P{i}": s for i, s in enumerate([1.0, 2.0, 4.0, 8.0] * 5)}
NAIVE = {p: 1.5 * s for p, s in NOISE.items()}  # the naive scale tracks the noise


def test_column_names() -> None:
    assert [column_name(a) for a in (0.1, 0.5, 0.9, 0.975)] == ["p10", "p50", "p90", "p97_5"]


def test_calibrated_intervals_cover_their_level_out_of_sample_for_every_scale() -> None:
    cal = fit_intervals(_frame(0, NOISE), NAIVE)
    test = cal.apply(_frame(1, NOISE))
    summary = coverage_summary(test)
    assert 0.77 <= summary["coverage"] <= 0.83
    hit = (test["actual"] >= test["p10"]) & (test["actual"] <= test["p90"])
    per_product = hit.groupby(test["product_id"]).mean()
    assert per_product.min() > 0.7  # a noisy product gets a wide interval, a quiet one narrow
    width = (test["p90"] - test["p10"]).groupby(test["product_id"]).mean()
    assert width["P3"] > 5 * width["P0"]
    # the bands follow the error's growth with the horizon step
    by_band = (test["p90"] - test["p10"]).groupby(cal.band(test["horizon_step"])).mean()
    assert by_band.iloc[0] < by_band.iloc[1] < by_band.iloc[2]
    assert (test["p10"] <= test["p50"]).all() and (test["p50"] <= test["p90"]).all()


def test_a_doubled_spread_is_covered_far_less_than_nominal() -> None:
    cal = fit_intervals(_frame(0, NOISE), NAIVE)
    doubled = cal.apply(_frame(2, {p: 2 * s for p, s in NOISE.items()}))
    assert coverage_summary(doubled)["coverage"] < 0.55


def test_thin_products_are_shrunk_toward_their_groups_relative_scale() -> None:
    frame = _frame(0, {"A": 1.0, "B": 1.0, "C": 1.0, "thin": 1.0})
    # "thin" has three residuals, all large: alone its scale would be ~10
    thin = frame[frame["product_id"] == "thin"].head(3).assign(actual=110.0)
    frame = pd.concat([frame[frame["product_id"] != "thin"], thin])
    naive = {p: 1.0 for p in "ABC"} | {"thin": 1.0}
    scales, default = product_scales(frame, naive, shrinkage=28)
    assert 1.0 < scales["thin"] < 4.0 < 10.0
    raw, _ = product_scales(frame, naive, shrinkage=0)
    assert raw["thin"] == pytest.approx(10.0)
    assert default == pytest.approx(np.median(list(scales.values())))


def test_served_forecasts_get_quantiles_never_below_zero_and_the_json_round_trips() -> None:
    cal = fit_intervals(_frame(0, NOISE), NAIVE)
    served = pd.DataFrame(
        {
            "product_id": ["P3"] * 28 + ["new"] * 28,
            "target_date": list(pd.date_range("2025-01-01", periods=28)) * 2,
            "predicted_units": 0.5,
        }
    )
    out = cal.apply(served, column="predicted_units")
    assert (out["p10"] == 0.0).all() and (out["p90"] > 0.5).all()
    # a product the calibration never saw gets the median scale
    new = out[out["product_id"] == "new"]
    assert new["p90"].iloc[0] == pytest.approx(0.5 + cal.default_scale * cal.quantiles[0][2])
    again = IntervalCalibration.from_dict(cal.to_dict())
    pd.testing.assert_frame_equal(again.apply(served, column="predicted_units"), out)


def test_bad_input_is_refused() -> None:
    frame = _frame(0, {"A": 1.0})
    with pytest.raises(ValueError, match="levels"):
        fit_intervals(frame, {"A": 1.0}, levels=(0.1, 1.5))
    with pytest.raises(ValueError, match="lacks"):
        fit_intervals(frame.drop(columns="horizon_step"), {"A": 1.0})
