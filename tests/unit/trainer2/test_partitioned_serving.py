"""Serving a partitioned champion partition by partition (issue 26): each task forecasts
its own partitions, reading only their products' sales; members load when their
partition is forecast; a failing partition is logged, the others are written."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from forecastguard.db.schema import predictions
from forecastguard.storage import open_store
from forecastguard.synth.output import write_database
from tests.unit.trainer.helpers import make_sales
from trainer.config import TrainConfig
from trainer.run import partitioned
from trainer.run.options import JobOptions
from trainer.run.partitions import make_partitioning
from trainer.serve import forecast as fc
from trainer.serve.artifacts import ChampionPointer, RunWriter, write_champion

CFG = TrainConfig(horizon=7, lookback=14, val_days=14, test_days=14, min_observations=30)
PRODUCTS = [f"P{p:02d}" for p in range(4)]


def _run(store, run_id: str, metrics=None) -> str:
    writer = RunWriter(store, run_id)
    writer.put_json("params.json", {"model_version": run_id, "train_config": CFG.to_dict()})
    writer.put_json("metrics.json", metrics or {"baselines": {}})
    writer.seal(model_version=run_id)
    return writer.uri


def _entry(store, run_id: str, kind: str) -> dict:
    uri = store.child(f"runs/{run_id}").uri
    version = kind if kind.startswith("baseline:") else run_id
    return {"model_version": version, "run_id": run_id, "run_uri": uri, "kind": kind}


@pytest.fixture
def world(sqlite_url, tmp_path):
    """Four products in two partitions of a partitioned champion `champ`: p0000 served
    by run-a's moving average, p0001 by run-b's seasonal naive."""
    engine = sa.create_engine(sqlite_url)
    write_database(engine, make_sales(4, 120))
    store = open_store((tmp_path / "artifacts").as_uri())
    _run(store, "run-a")
    _run(store, "run-b")
    parts = make_partitioning(PRODUCTS, 2)
    assignment = parts.assign(PRODUCTS)
    products = {n: sorted(p for p in PRODUCTS if assignment[p] == n) for n in parts.names}
    entries = {
        "p0000": _entry(store, "run-a", fc.MOVING_AVERAGE),
        "p0001": _entry(store, "run-b", fc.SEASONAL_NAIVE),
    }
    writer = RunWriter(store, "champ")
    doc = {"partitioning": parts.to_dict(), "entries": entries, "products": products}
    writer.put_json(fc.PARTITIONS_FILE, doc)
    writer.seal(model_version="champ", kind=fc.PARTITIONED)
    pointer = ChampionPointer("champ", "champ", writer.uri, "2026-12-06", kind=fc.PARTITIONED)
    write_champion(store, pointer)
    yield {
        "engine": engine,
        "store": store,
        "pointer": pointer,
        "products": products,
        "partitioning": parts,
        "tmp": tmp_path,
    }
    engine.dispose()


def _predictions(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(sa.select(predictions)).mappings().all())


def _spy_loads(monkeypatch) -> list[str]:
    """The run ids whose forecasters are loaded, in order."""
    loaded: list[str] = []
    real = fc.load_forecaster

    def spy(store, pointer, workdir):
        loaded.append(pointer.run_id)
        return real(store, pointer, workdir)

    monkeypatch.setattr(fc, "load_forecaster", spy)
    return loaded


def test_forecast_mode_tasks_forecast_their_own_partitions(world, monkeypatch):
    engine, store, products = world["engine"], world["store"], world["products"]
    loaded = _spy_loads(monkeypatch)
    sales_read: list[list[str]] = []
    real_load_sales = __import__("trainer.data.load", fromlist=["load_sales"]).load_sales

    def load_sales(conn, **kw):
        sales_read.append(sorted(kw.get("products") or ["*all*"]))
        return real_load_sales(conn, **kw)

    monkeypatch.setattr("trainer.data.load.load_sales", load_sales)
    work = world["tmp"] / "w"
    first = fc.run_forecast(engine, store, workdir=work / "0", task_index=0, task_count=2)
    assert first.partitions is not None and list(first.partitions) == ["p0000"]
    assert loaded == ["champ", "run-a"]  # only this task's partition's model
    assert sales_read == [products["p0000"]]  # only its products' sales
    preds = _predictions(engine)
    assert sorted(preds["product_id"].unique()) == products["p0000"]
    second = fc.run_forecast(engine, store, workdir=work / "1", task_index=1, task_count=2)
    assert list(second.partitions) == ["p0001"] and loaded[-1] == "run-b"
    preds = _predictions(engine)
    assert sorted(preds["product_id"].unique()) == PRODUCTS  # complete after both tasks
    assert len(preds) == len(PRODUCTS) * CFG.horizon
    assert set(preds["model_version"]) == {"champ"}
    assert first.to_dict()["written"] == len(products["p0000"]) * CFG.horizon
    # one task: every partition, one after the other, the same rows (unchanged)
    again = fc.run_forecast(engine, store, workdir=work / "all")
    assert list(again.partitions) == ["p0000", "p0001"]
    assert (again.written, again.unchanged) == (0, len(PRODUCTS) * CFG.horizon)


def test_a_failing_partition_is_logged_and_the_others_are_written(world, monkeypatch, caplog):
    engine, store, products = world["engine"], world["store"], world["products"]
    forecaster = fc.load_forecaster(store, world["pointer"], world["tmp"] / "w")
    real_member = fc.PartitionedForecaster.member

    def member(self, name):
        if name == "p0001":
            raise RuntimeError("model file truncated")
        return real_member(self, name)

    monkeypatch.setattr(fc.PartitionedForecaster, "member", member)
    with caplog.at_level(logging.ERROR):
        result = fc.forecast_partitions(engine, forecaster, forecaster.groups(PRODUCTS))
    assert result.failed == ["p0001"]
    assert "model file truncated" in result.partitions["p0001"]["error"]
    assert result.products == len(products["p0000"])
    assert any("partition's forecast failed" in r.getMessage() for r in caplog.records)
    assert sorted(_predictions(engine)["product_id"].unique()) == products["p0000"]


def test_forecast_mode_fails_the_task_after_writing_the_other_partitions(world, monkeypatch):
    engine, store = world["engine"], world["store"]

    def broken(self, sales, promotions=None):
        raise ValueError("boom")

    monkeypatch.setattr(fc.BaselineForecaster, "forecast", broken)
    with pytest.raises(fc.ForecastFailed, match=r"p0000, p0001 not forecast.*boom"):
        fc.run_forecast(engine, store, workdir=world["tmp"] / "w")


def test_an_unloadable_member_is_served_by_its_runs_baseline(world):
    engine, store = world["engine"], world["store"]
    metrics = {"baselines": {"seasonal_naive": {"rmsse": 0.9}, "moving_average": {"rmsse": 1.2}}}
    _run(store, "run-c", metrics)  # sealed, but no model in it
    doc = store.read_json("runs/champ/partitions.json")
    doc["entries"]["p0000"] = _entry(store, "run-c", fc.LIGHTGBM)
    writer = RunWriter(store, "champ2")
    writer.put_json(fc.PARTITIONS_FILE, doc)
    writer.seal(model_version="champ2", kind=fc.PARTITIONED)
    pointer = ChampionPointer("champ2", "champ2", writer.uri, "x", kind=fc.PARTITIONED)
    forecaster = fc.load_forecaster(store, pointer, world["tmp"] / "w")
    assert forecaster.member("p0000").kind == fc.SEASONAL_NAIVE  # run-c's best baseline
    result = fc.forecast_partitions(engine, forecaster, forecaster.groups(PRODUCTS))
    assert result.failed == [] and result.products == len(PRODUCTS)


def _opts(index: int, count: int, **kw) -> JobOptions:
    return JobOptions(
        mode="train",
        run_id="run-9",
        study_id="run-9",
        train_config=CFG,
        task_index=index,
        task_count=count,
        gather_timeout_s=kw.pop("timeout", 5.0),
        **kw,
    )


def _plan(world) -> partitioned.Plan:
    return partitioned.Plan(
        world["partitioning"], world["products"], {n: None for n in world["products"]}
    )


def test_after_the_decision_each_task_forecasts_its_partitions(world, monkeypatch):
    monkeypatch.setattr(partitioned, "POLL_S", 0.01)
    engine, store, products = world["engine"], world["store"], world["products"]
    p, work = _plan(world), Path(world["tmp"])
    partitioned.write_serving(store, _opts(0, 2), world["pointer"])
    one = partitioned.forecast_task(engine, store, p, _opts(1, 2), work / "t1")
    assert one["partitions_of_task"] == ["p0001"] and list(one["partitions"]) == ["p0001"]
    assert sorted(_predictions(engine)["product_id"].unique()) == products["p0001"]
    zero = partitioned.forecast_task(engine, store, p, _opts(0, 2), work / "t0")
    total = partitioned.gathered_forecasts(store, p, _opts(0, 2), zero, wait_s=1)
    assert total["products"] == len(PRODUCTS) and total["not_reported"] == []
    assert total["written"] == len(PRODUCTS) * CFG.horizon
    assert set(total["tasks"]) == {"0", "1"} and total["failed_partitions"] == []
    assert len(_predictions(engine)) == len(PRODUCTS) * CFG.horizon


def test_a_task_without_partitions_does_not_wait_for_the_decision(world):
    p = _plan(world)  # two partitions, three tasks: task 2 has none
    out = partitioned.forecast_task(world["engine"], world["store"], p, _opts(2, 3), Path("x"))
    assert out == {"skipped": "no partition in this task", "task": 2}


def test_a_failed_gather_stops_the_tasks_waiting_and_they_forecast_nothing(world, monkeypatch):
    monkeypatch.setattr(partitioned, "POLL_S", 0.01)
    engine, store = world["engine"], world["store"]
    p = _plan(world)
    partitioned.serving_failed(store, _opts(0, 2), RuntimeError("p0001: boom"))
    out = partitioned.forecast_task(engine, store, p, _opts(1, 2), Path(world["tmp"]) / "t1")
    assert "the gather failed" in out["skipped"] and "boom" in out["skipped"]
    assert _predictions(engine).empty
    # no decision at all: the wait ends at the timeout, logged and returned, not raised
    store.delete(partitioned.coordination_key(_opts(0, 2), partitioned.SERVING))
    work = Path(world["tmp"]) / "t2"
    out = partitioned.forecast_task(engine, store, p, _opts(1, 2, timeout=0.05), work)
    assert "not written after" in out["error"]
    total = partitioned.gathered_forecasts(store, p, _opts(0, 2), out | {"task": 0}, wait_s=0.05)
    assert "written" not in total and "not written after" in total["error"]


def test_a_retried_gather_is_waited_for(world, monkeypatch):
    import threading

    monkeypatch.setattr(partitioned, "POLL_S", 0.01)
    store = world["store"]
    partitioned.serving_failed(store, _opts(0, 2, max_retries=1), RuntimeError("oom"))
    timer = threading.Timer(0.2, partitioned.write_serving, (store, _opts(0, 2), world["pointer"]))
    timer.start()
    doc = partitioned.wait_serving(store, _opts(1, 2))
    timer.join()
    assert doc["champion"]["model_version"] == "champ"
