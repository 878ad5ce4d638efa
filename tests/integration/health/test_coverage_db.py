"""The served interval in the health check, read from SQLite and MariaDB (issue 27)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from forecastguard.health.check import (
    COVERAGE_TEST,
    HealthParams,
    combine_phases,
    compute_health,
    global_phase,
    interval_coverage,
    product_phase,
)
from forecastguard.health.window import load_window, window_from_frames
from tests.integration.health.synthetic import frames, synthetic_window, write

AS_OF = date(2026, 5, 30)
NARROW = ("P00", "P01", "P02", "P03")  # intervals far too narrow for their errors


def _with_intervals(data, predictions_frame: pd.DataFrame) -> pd.DataFrame:
    """P10/P90 on the window's days: wide enough for most products, a sliver for NARROW,
    none for the last product (a forecaster without a calibration)."""
    out = predictions_frame.copy()
    window = pd.to_datetime(out["target_date"]) >= pd.Timestamp(data.window_start)
    err = data.units - data.predicted
    sd = pd.Series(err).groupby(data.products[data.codes]).std()
    half = out["product_id"].map(1.6 * sd).where(~out["product_id"].isin(NARROW), 1e-3)
    out["predicted_p10"] = (out["predicted_units"] - half).where(window)
    out["predicted_p90"] = (out["predicted_units"] + half).where(window)
    last = out["product_id"] == data.products[-1]
    out.loc[last, ["predicted_p10", "predicted_p90"]] = np.nan
    return out


def test_the_served_interval_is_read_and_its_coverage_judged(engine: sa.Engine) -> None:
    data = synthetic_window(40, AS_OF, seed=4)
    sales_frame, predictions_frame = frames(data)
    predictions_frame = _with_intervals(data, predictions_frame)
    stored = predictions_frame.astype(object).where(predictions_frame.notna(), None)
    write(engine, sales_frame, stored)
    window = load_window(engine, AS_OF, 30)
    direct = window_from_frames(AS_OF, 30, sales_frame, predictions_frame)
    # SQLite gives the bounds to 1e-4 units (read as integers: faster), MariaDB in full
    np.testing.assert_allclose(window.lower, direct.lower, atol=0.5e-4, equal_nan=True)
    np.testing.assert_allclose(window.upper, direct.upper, atol=0.5e-4, equal_nan=True)
    in_window = window.day >= window.history_days
    assert np.isnan(window.lower[~in_window]).all()  # window days only

    result = compute_health(window, HealthParams())
    rows = result.products.set_index("product_id")
    assert np.isnan(rows.loc[data.products[-1], "coverage"])  # no interval: not tested
    assert (rows.loc[list(NARROW), "coverage"] < 0.2).all()
    assert rows.loc[list(NARROW), "drift"].all()
    assert (rows.loc[list(NARROW), "drift_test"] == COVERAGE_TEST).all()
    assert (rows.loc[list(NARROW), "drift_kind"] == "scale").all()
    assert any("80 % interval covered" in r for r in result.reasons)
    others = rows.drop(index=[*NARROW, data.products[-1]])
    assert others["coverage"].median() > 0.8
    aggregate = interval_coverage(result.products)
    assert 0.0 < aggregate < 1.0
    assert result.summary()["interval_coverage"] == pytest.approx(aggregate)
    from forecastguard.health.service import health_points

    [point] = [p for p in health_points(result) if p.name == "interval_coverage"]
    assert point.value == pytest.approx(aggregate)  # the metric carries it
    # the coverage columns are per product: batches give the same rows (partition contract)
    halves = np.array_split(window.products, 2)
    parts = [product_phase(window.subset(h), HealthParams()) for h in halves]
    whole = product_phase(window, HealthParams())
    cols = ["coverage", "coverage_n", "coverage_pvalue", "interval_score"]
    pd.testing.assert_frame_equal(
        combine_phases(parts).products[cols], whole.products[cols], check_dtype=False
    )
    again = global_phase(combine_phases(parts), HealthParams())
    assert again.products["drift"].tolist() == result.products["drift"].tolist()


def test_without_intervals_the_check_is_unchanged(engine: sa.Engine) -> None:
    data = synthetic_window(20, AS_OF, seed=5)
    sales_frame, predictions_frame = frames(data)
    write(engine, sales_frame, predictions_frame)
    window = load_window(engine, AS_OF, 30)
    assert window.lower is None and window.upper is None
    result = compute_health(window, HealthParams())
    assert result.products["coverage"].isna().all()
    assert interval_coverage(result.products) is None
    assert result.summary()["interval_coverage"] is None
