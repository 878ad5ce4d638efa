"""The check's report draws the served interval (issue 27) and says how much it covered."""

from __future__ import annotations

from datetime import date

import numpy as np

from forecastguard.health.check import HealthParams, compute_health
from forecastguard.health.window import window_from_frames
from forecastguard.report import svg
from forecastguard.report.check_page import render_check_report
from tests.integration.health.synthetic import frames, synthetic_window

AS_OF = date(2026, 5, 30)


def test_a_band_is_a_polygon_per_run_of_days_and_sits_in_the_legend() -> None:
    lower = np.array([1.0, 1.0, np.nan, 2.0, 2.0])
    chart = svg.line_chart(
        title="t",
        x=np.arange(5),
        series=[svg.Series("actual", np.arange(5.0), svg.ACTUAL)],
        x_label="x",
        y_label="y",
        x_ticks=[(0, "0")],
        bands=[svg.Band("P10–P90 <served>", lower, lower + 3, svg.FORECAST)],
    )
    assert chart.count("<polygon") == 2  # the missing day splits it
    assert "P10–P90 &lt;served&gt;" in chart


def test_the_report_draws_the_served_interval_of_each_product() -> None:
    data = synthetic_window(12, AS_OF, seed=3)
    sales, preds = frames(data)
    in_window = preds["target_date"] >= data.window_start
    preds["predicted_p10"] = (preds["predicted_units"] * 0.7).where(in_window)
    preds["predicted_p90"] = (preds["predicted_units"] * 1.3).where(in_window)
    window = window_from_frames(AS_OF, 30, sales, preds)
    result = compute_health(window, HealthParams())
    result.check_id = "bands"
    html = render_check_report(result, window)
    panels = html.count('<section class="panel"')
    assert panels > 0 and html.count("served 80 % interval (P10–P90)") >= panels
    assert "<polygon" in html
    assert "80 % interval covered" in html
    without = render_check_report(compute_health(data, HealthParams()), data)
    assert "<polygon" not in without  # no interval served: no band
