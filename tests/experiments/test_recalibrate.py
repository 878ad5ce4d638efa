"""experiments.recalibrate: a kept run's trainer quantiles re-derived from its dumps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.recalibrate import requantile, served_quantiles
from trainer.models.intervals import fit_intervals

PRODUCTS = ["A", "B"]
CUTOFF = pd.Timestamp("2024-03-31")
DAYS = pd.date_range(CUTOFF + pd.Timedelta(days=1), periods=28)


def _calibration(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for o in range(4):
        origin = pd.Timestamp("2024-01-01") + pd.Timedelta(days=7 * o)
        for p, mean in zip(PRODUCTS, (10.0, 2.0), strict=True):
            step = np.arange(1, 29)
            rows.append(
                pd.DataFrame(
                    {
                        "product_id": p,
                        "target_date": origin + pd.to_timedelta(step - 1, unit="D"),
                        "horizon_step": step,
                        "origin_date": origin,
                        "actual": rng.poisson(mean, 28).astype(float),
                        "predicted": mean,
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def _dump() -> dict:
    served = pd.DataFrame(
        {
            "product_id": np.repeat(PRODUCTS, 28),
            "target_date": np.tile(DAYS, 2),
            "predicted_units": np.repeat([12.0, 1.5], 28),
        }
    )
    kinds = ("lstm", "lightgbm", "blend")
    return {
        "cutoff": str(CUTOFF.date()),
        "chosen": "lightgbm",
        "calibration": {k: _calibration(i) for i, k in enumerate(kinds)},
        "test": {k: _calibration(10 + i) for i, k in enumerate(kinds)},
        "served": {k: served for k in (*kinds, "lightgbm_heldout")},
        "naive": {"A": 3.0, "B": 1.5},
    }


def _forecasts() -> pd.DataFrame:
    rows = []
    for model in ("trainer", "trainer_lightgbm", "seasonal_naive"):
        rows.append(
            pd.DataFrame(
                {
                    "model": model,
                    "cutoff": CUTOFF,
                    "product_id": np.tile(PRODUCTS, 28),
                    "date": np.repeat(DAYS, 2),
                    "actual": 5.0,
                    "forecast": np.tile([12.0, 1.5], 28),
                    "q10": 1.0,
                    "q50": 2.0,
                    "q90": 3.0,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def test_the_trainer_rows_get_the_methods_quantiles_and_the_others_stay() -> None:
    dump = _dump()
    options = {"level_power": 0.0, "zero_mass": False}
    new = requantile(_forecasts(), {dump["cutoff"]: dump}, **options)
    cal = fit_intervals(dump["calibration"]["lightgbm"], dump["naive"], **options)
    expected = cal.apply(dump["served"]["lightgbm"], column="predicted_units")
    for model in ("trainer", "trainer_lightgbm"):  # the chosen kind is LightGBM
        mine = new[new["model"] == model].sort_values(["product_id", "date"])
        want = expected.sort_values(["product_id", "target_date"])
        np.testing.assert_allclose(mine["q10"], want["p10"])
        np.testing.assert_allclose(mine["q90"], want["p90"])
    other = new[new["model"] == "seasonal_naive"]
    assert (other["q10"] == 1.0).all() and (other["q90"] == 3.0).all()
    # with the test split the calibration differs
    wider = served_quantiles(dump, with_test=True, **options)["trainer"]
    assert not np.allclose(wider["p90"], expected["p90"])


def test_a_cutoff_without_its_dump_is_refused() -> None:
    with pytest.raises(ValueError, match="no interval dump"):
        requantile(_forecasts(), {})
