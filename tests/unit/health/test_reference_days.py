"""The longer reference (issue 23, REFERENCE_DAYS, default 90): a product with less
history than the reference is judged on the served errors it has; one with fewer than
MIN_SAMPLES of them has no previous-window reference."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from forecastguard.config import Settings
from forecastguard.health.check import HealthParams, compute_health, product_phase
from forecastguard.health.window import window_from_frames

AS_OF = date(2026, 5, 30)
DAYS = 30


def _frames(history: dict[str, int], shift: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sales and forecasts (forecast 100, errors N(0, 4)) of each product over its last
    `history` days before the window and the window itself; `shift` adds to the window's
    sales (the forecasts fall short)."""
    rng = np.random.default_rng(5)
    sales, preds = [], []
    for pid, days in history.items():
        dates = [AS_OF - timedelta(days=k) for k in range(DAYS + days - 1, -1, -1)]
        units = 100.0 + 4.0 * rng.standard_normal(len(dates))
        units[-DAYS:] += shift.get(pid, 0.0)
        sales.append(pd.DataFrame({"product_id": pid, "sale_date": dates, "units_sold": units}))
        preds.append(
            pd.DataFrame(
                {
                    "product_id": pid,
                    "target_date": dates,
                    "predicted_units": 100.0,
                    "model_version": "m1",
                }
            )
        )
    return pd.concat(sales), pd.concat(preds)


def test_the_default_reference_is_90_days() -> None:
    assert Settings.from_env({}).reference_days == 90
    assert HealthParams.from_settings(Settings.from_env({})).min_drift_effect == 0.25


def test_a_product_with_less_history_uses_what_it_has() -> None:
    history = {"LONG": 90, "SHORT": 40, "SHIFTED": 40, "NEW": 5}
    sales, preds = _frames(history, {"SHIFTED": 12.0})
    data = window_from_frames(AS_OF, DAYS, sales, preds, reference_days=90)
    rows = product_phase(data, HealthParams(rmse_threshold=1e9)).products.set_index("product_id")
    assert rows.loc["LONG", "t_n_ref"] == 90
    assert rows.loc["SHORT", "t_n_ref"] == 40 and rows.loc["SHIFTED", "t_n_ref"] == 40
    assert (rows.loc[["LONG", "SHORT", "SHIFTED"], "reference"] == "previous_window").all()
    assert rows.loc["NEW", "reference"] == "none"  # 5 errors < MIN_SAMPLES, no holdout
    assert rows.loc["SHIFTED", "t_bias_shift"] > 9.0
    # The 40 days it has are evidence enough for a 3-sd shift, and none for no shift.
    result = compute_health(data, HealthParams(rmse_threshold=1e9))
    drift = result.products.set_index("product_id")["drift"]
    assert drift["SHIFTED"] and not drift[["LONG", "SHORT", "NEW"]].any()
