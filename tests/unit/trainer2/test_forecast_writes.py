"""Forecast rows into `predictions`: upserted, and idempotent down to created_at."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from forecastguard.db.schema import predictions
from forecastguard.storage import open_store
from trainer.serve.forecast import NoChampion, run_forecast, write_forecasts

T0 = dt.datetime(2026, 1, 1, 12, 0)


def _frame(value: float = 3.5) -> pd.DataFrame:
    dates = pd.date_range("2026-02-01", periods=3)
    return pd.DataFrame(
        [
            {"product_id": p, "target_date": d, "predicted_units": value}
            for p in ("A", "B")
            for d in dates
        ]
    )


def _rows(engine):
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(sa.select(predictions)).all())


def test_second_identical_write_changes_nothing(engine):
    assert write_forecasts(engine, _frame(), "v1", now=T0) == (6, 0)
    first = _rows(engine)
    assert write_forecasts(engine, _frame(), "v1", now=T0 + dt.timedelta(days=1)) == (0, 6)
    assert _rows(engine) == first
    assert {r[4] for r in first} == {T0}


def test_new_values_or_version_are_rewritten(engine):
    write_forecasts(engine, _frame(), "v1", now=T0)
    assert write_forecasts(engine, _frame(4.0), "v1", now=T0) == (6, 0)
    assert write_forecasts(engine, _frame(4.0), "v2", now=T0) == (6, 0)
    assert {(r[2], r[3]) for r in _rows(engine)} == {(4.0, "v2")}


def test_the_served_interval_is_stored_and_a_changed_band_rewrites(engine):
    frame = _frame().assign(p10=1.0, p50=3.0, p90=6.5)
    assert write_forecasts(engine, frame, "v1", now=T0) == (6, 0)
    p = predictions.c

    def bands():
        with engine.connect() as conn:
            rows = conn.execute(sa.select(p.predicted_p10, p.predicted_p50, p.predicted_p90))
            return {tuple(r) for r in rows}

    assert bands() == {(1.0, 3.0, 6.5)}
    assert write_forecasts(engine, frame, "v1", now=T0) == (0, 6)  # idempotent
    assert write_forecasts(engine, frame.assign(p90=7.0), "v1", now=T0) == (6, 0)
    assert bands() == {(1.0, 3.0, 7.0)}
    # a forecaster without intervals (a run from before them) clears the band
    assert write_forecasts(engine, _frame(), "v1", now=T0) == (6, 0)
    assert bands() == {(None, None, None)}


def test_bad_frames_write_nothing(sqlite_url):
    engine = sa.create_engine(sqlite_url)
    bad = _frame()
    bad.loc[2, "predicted_units"] = float("nan")
    with pytest.raises(ValueError, match="non-finite forecasts for product"):
        write_forecasts(engine, bad, "v1")
    with pytest.raises(ValueError, match="lacks column"):
        write_forecasts(engine, _frame().drop(columns="target_date"), "v1")
    assert _rows(engine) == []


def test_forecast_mode_without_champion_says_so(sqlite_url, tmp_path):
    engine = sa.create_engine(sqlite_url)
    with pytest.raises(NoChampion, match="run --mode train first"):
        run_forecast(engine, open_store(tmp_path.as_uri()))


def test_float_noise_between_processes_is_not_a_change(sqlite_url):
    engine = sa.create_engine(sqlite_url)
    write_forecasts(engine, _frame(3.5), "v1", now=T0)
    assert write_forecasts(engine, _frame(3.5 + 1e-7), "v1", now=T0) == (0, 6)
    assert write_forecasts(engine, _frame(3.51), "v1", now=T0) == (6, 0)
