"""Serving a forecaster by kind: baselines from the sales history, champion pointers of
any kind, the forecast-mode fallback when a trained champion cannot be loaded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from forecastguard.db.schema import predictions
from forecastguard.storage import open_store
from forecastguard.synth.output import write_database
from tests.unit.trainer.helpers import make_sales
from trainer.config import TrainConfig
from trainer.judge.evaluate import Evaluation, baseline_evaluation, best_baseline
from trainer.serve.artifacts import ChampionPointer, RunWriter, write_champion
from trainer.serve.forecast import (
    KINDS,
    MOVING_AVERAGE,
    SEASONAL_NAIVE,
    BaselineForecaster,
    baseline_kind,
    describe_kind,
    load_forecaster,
    run_forecast,
)

CFG = TrainConfig(horizon=7, lookback=14, val_days=14, test_days=14, min_observations=30)


def _sales() -> pd.DataFrame:
    sales = make_sales(3, 120)
    # P02 stops selling 30 days before the end: not listed on the last day, not forecast.
    last = sales["date"].max()
    return sales[~((sales["product_id"] == "P02") & (sales["date"] > last - pd.Timedelta(30, "D")))]


def test_seasonal_naive_repeats_the_last_week():
    sales = _sales()
    out = BaselineForecaster(SEASONAL_NAIVE, SEASONAL_NAIVE, CFG).forecast(sales)
    last = sales["date"].max()
    assert set(out["product_id"]) == {"P00", "P01"}
    assert len(out) == 2 * CFG.horizon
    assert out["target_date"].min() == last + pd.Timedelta(1, "D")
    for pid, got in out.groupby("product_id"):
        week = sales[(sales["product_id"] == pid) & (sales["date"] > last - pd.Timedelta(7, "D"))]
        assert got["predicted_units"].tolist() == week["units_sold"].tolist()


def test_moving_average_is_the_mean_of_the_last_days():
    sales = _sales()
    cfg = TrainConfig(**{**CFG.to_dict(), "moving_average_days": 10})
    out = BaselineForecaster(MOVING_AVERAGE, MOVING_AVERAGE, cfg).forecast(sales)
    last = sales["date"].max()
    for pid, got in out.groupby("product_id"):
        recent = sales[
            (sales["product_id"] == pid) & (sales["date"] > last - pd.Timedelta(10, "D"))
        ]
        np.testing.assert_allclose(got["predicted_units"], recent["units_sold"].mean())


def test_kinds_are_named_and_checked():
    assert baseline_kind("moving_average") == MOVING_AVERAGE and MOVING_AVERAGE in KINDS
    assert describe_kind(MOVING_AVERAGE) == "the moving average baseline"
    with pytest.raises(ValueError, match="not a servable baseline"):
        baseline_kind("auto_ets")
    with pytest.raises(ValueError, match="not a baseline kind"):
        BaselineForecaster("lstm", "v", CFG)


def _sealed_run(store, run_id: str, *, with_params: bool = True, metrics=None) -> str:
    writer = RunWriter(store, run_id)
    if with_params:
        writer.put_json("params.json", {"model_version": run_id, "train_config": CFG.to_dict()})
    writer.put_json("metrics.json", metrics or {"baselines": {}})
    writer.seal(model_version=run_id)
    return writer.uri


def _pointer(version: str, run_id: str, uri: str, kind: str) -> ChampionPointer:
    return ChampionPointer(version, run_id, uri, "2026-01-01T00:00:00", kind=kind)


def _predictions(engine):
    with engine.connect() as conn:
        return conn.execute(sa.select(predictions)).mappings().all()


def test_forecast_mode_serves_a_baseline_champion(sqlite_url, tmp_path):
    engine = sa.create_engine(sqlite_url)
    write_database(engine, make_sales(3, 120))
    store = open_store(tmp_path.as_uri())
    uri = _sealed_run(store, "run-1")
    write_champion(store, _pointer(MOVING_AVERAGE, "run-1", uri, MOVING_AVERAGE))
    result = run_forecast(engine, store, workdir=tmp_path / "w")
    assert (result.model_version, result.kind, result.products) == (
        MOVING_AVERAGE,
        MOVING_AVERAGE,
        3,
    )
    rows = _predictions(engine)
    assert len(rows) == 3 * CFG.horizon and {r["model_version"] for r in rows} == {MOVING_AVERAGE}
    again = run_forecast(engine, store, workdir=tmp_path / "w2")
    assert (again.written, again.unchanged) == (0, 3 * CFG.horizon)


def test_forecast_mode_falls_back_to_the_best_baseline_of_an_unloadable_champion(
    sqlite_url, tmp_path
):
    engine = sa.create_engine(sqlite_url)
    write_database(engine, make_sales(2, 120))
    store = open_store(tmp_path.as_uri())
    metrics = {"baselines": {"seasonal_naive": {"rmsse": 0.9}, "moving_average": {"rmsse": 1.1}}}
    uri = _sealed_run(store, "run-1", metrics=metrics)  # sealed, but no model/ in it
    write_champion(store, _pointer("run-1", "run-1", uri, "lstm"))
    result = run_forecast(engine, store, workdir=tmp_path / "w")
    assert (result.model_version, result.kind) == (SEASONAL_NAIVE, SEASONAL_NAIVE)
    assert len(_predictions(engine)) == 2 * CFG.horizon


def test_unknown_kind_is_refused_by_name(tmp_path):
    store = open_store(tmp_path.as_uri())
    with pytest.raises(ValueError, match="unknown kind 'prophet'"):
        load_forecaster(store, _pointer("v", "v", "u", "prophet"), tmp_path)


def _evaluation(sn: float, ma: float) -> Evaluation:
    metrics = {
        "model": {"rmse": 1.0, "rmsse": 0.5},
        "baselines": {
            "seasonal_naive": {"rmse": 2.0, "rmsse": sn},
            "moving_average": {"rmse": 1.5, "rmsse": ma},
            "auto_ets": {"rmse": 0.1, "rmsse": 0.01},  # scored, but not a servable kind
        },
        "n_products": 2,
        "n_points": 4,
        "horizon": 2,
    }
    per = pd.DataFrame(
        {
            "product_id": ["A", "B"],
            "n": [2, 2],
            "rmsse": [0.4, 0.6],
            "seasonal_naive_rmsse": [0.8, 1.2],
            "moving_average_rmsse": [1.0, 3.0],
        }
    )
    points = pd.DataFrame(
        {
            "product_id": ["A", "A", "B", "B"],
            "origin_date": pd.to_datetime(["2026-01-01"] * 4),
            "target_date": pd.to_datetime(["2026-01-01", "2026-01-02"] * 2),
            "actual": [1.0, 2.0, 3.0, 4.0],
            "seasonal_naive": [1.5, 1.5, 2.0, 2.0],
            "moving_average": [1.0, 1.0, 1.0, 1.0],
        }
    )
    return Evaluation(metrics, per, points)


def test_best_baseline_is_the_lower_mean_rmsse_and_reads_as_a_model():
    assert best_baseline(_evaluation(1.0, 2.0)) == "seasonal_naive"
    assert best_baseline(_evaluation(2.0, 1.0)) == "moving_average"
    assert best_baseline(_evaluation(1.0, 1.0)) == "seasonal_naive"  # tie
    ev = baseline_evaluation(_evaluation(2.0, 1.0), "moving_average")
    assert ev.metrics["model"]["rmsse"] == 1.0
    assert ev.per_product["rmsse"].tolist() == [1.0, 3.0]
    assert ev.metrics["fairness"]["worst_product"] == "B"
    assert ev.baseline_predictions["predicted"].tolist() == [1.0] * 4
    with pytest.raises(ValueError, match="no baseline 'naive'"):
        baseline_evaluation(_evaluation(1.0, 1.0), "naive")
