"""Issue 18: the health check warns when the sales it judges are not daily."""

from __future__ import annotations

from datetime import date

import pandas as pd

from forecastguard.health.check import HealthParams, compute_health
from forecastguard.health.render import to_text
from forecastguard.health.window import window_from_frames
from tests.integration.health.synthetic import frames, synthetic_window

AS_OF = date(2026, 5, 30)


def test_daily_sales_have_no_warning() -> None:
    result = compute_health(synthetic_window(20, AS_OF, seed=2), HealthParams())
    assert result.warnings == [] and result.summary()["warnings"] == []


def test_weekly_sales_are_named_in_a_warning() -> None:
    sales, preds = frames(synthetic_window(20, AS_OF, seed=2))
    fridays = pd.to_datetime(sales["sale_date"]).dt.day_of_week == 4
    weekly = window_from_frames(AS_OF, 30, sales[fridays], preds)
    result = compute_health(weekly, HealthParams())
    assert len(result.warnings) == 1
    warning = result.warnings[0]
    assert warning.startswith("these sales are weekly: one row per product every 7 days")
    assert "the health figures assume daily sales" in warning
    assert result.summary()["warnings"] == [warning]
    assert f"warning: {warning}" in to_text(result)
