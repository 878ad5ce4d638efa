"""Partitions across tasks (issue 26), end to end on SQLite and file://.

Four synthetic products, TRAIN_PARTITION_SIZE 2: two partitions. The outcomes do not
depend on how well one epoch trains on this CPU: promotion is made impossible
(PROMOTION_RMSSE_TOLERANCE 0.95) where the test needs a fixed decision.

World A (a champion from before partitions):
- run-1, the usual single-model run; its trained model is made champion;
- run-2, partitioned, two tasks as two local subprocesses (the launcher, as
  train_trigger starts them): each partition judged against run-1 scored on its own
  products; nothing beats it, run-1 keeps serving every product;
- a partitioned champion that keeps run-1's model for one partition and a baseline for
  the other serves every product, each by its partition's forecaster.

World B (no champion): run-3, partitioned, one task for both partitions: every partition
falls back to its best baseline, the gather registers a partitioned champion with every
product's residuals and forecasts, and forecast mode serves it.

run-1's and run-3's Keras steps run eagerly in this process (`tests.support.keras_eager`:
the same training without tracing `tf.function`s); run-2's tasks train in graph mode.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from forecastguard.config import Settings
from forecastguard.db.engine import make_engine
from forecastguard.db.migrate import upgrade
from forecastguard.db.schema import model_residuals, predictions
from forecastguard.launcher import LocalLauncher, local_liveness
from forecastguard.storage import open_store
from tests.integration.trainer2.test_baseline_fallback import (
    CFG,
    UNBEATABLE,
    _options,
    _predictions,
    _registry,
)
from tests.support.keras_eager import eager_keras
from tests.unit.trainer.helpers import make_sales
from trainer.judge.promotion import (
    Decision,
    Scores,
    publish,
    record,
    record_partitioned,
)
from trainer.run.main import run_job
from trainer.serve.artifacts import RunWriter, read_champion
from trainer.serve.forecast import PARTITIONED, PARTITIONS_FILE, TRAINED_KINDS

pytestmark = pytest.mark.slow

N_PRODUCTS = 4
PRODUCTS = [f"P{p:02d}" for p in range(N_PRODUCTS)]


def _database(path: Path) -> str:
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    upgrade(engine)
    from forecastguard.synth.output import write_database

    write_database(engine, make_sales(N_PRODUCTS, 200, seed=7))
    engine.dispose()
    return url


def _crown_run_1(engine, store) -> str:
    """Make run-1's trained model the champion, whatever its own decision was."""
    metrics = store.read_json("runs/run-1/metrics.json")
    kind = metrics["served_kind_chosen_on_validation"]
    assert kind in TRAINED_KINDS
    if read_champion(store).model_version != "run-1":
        holdout = pd.read_csv(store.key_uri("runs/run-1/holdout.csv"))
        uri = store.child("runs/run-1").uri
        record(
            engine,
            model_version="run-1",
            run_id="run-1",
            run_uri=uri,
            metrics=metrics,
            decision=Decision(True, "planted by the test", "champion"),
            holdout=holdout,
            kind=kind,
        )
        publish(
            store,
            model_version="run-1",
            run_id="run-1",
            run_uri=uri,
            scores=Scores(metrics["model"]["rmsse"]),
            kind=kind,
        )
    return kind


def _run_tasks(url: str, uri: str, tmp: Path, run_id: str, tasks: int) -> LocalLauncher:
    env = {
        "DATABASE_URL": url,
        "ARTIFACT_URI": uri,
        "RUN_ID": run_id,
        "TRAIN_CONFIG": json.dumps(CFG.to_dict()),
        "TRIALS": "1",
        "SEARCH_UNITS": "8",
        "SHAP_PRODUCTS": "1",
        "TRAIN_PARTITION_SIZE": "2",
        "TRAIN_GATHER_TIMEOUT_S": "600",
        "PROMOTION_RMSSE_TOLERANCE": "0.95",
        "TF_ENABLE_ONEDNN_OPTS": "0",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp),
    }
    launcher = LocalLauncher(
        (sys.executable, "-m", "trainer", "--mode", "train"),
        log_dir=tmp / "logs",
        base_env=env,
        task_count=tasks,
    )
    launched = launcher.launch("req-partitions", {})
    deadline = time.monotonic() + 900
    while any(local_liveness(f"local:pid={p}").alive for p in launched.task_pids):
        assert time.monotonic() < deadline, "the tasks did not finish in 15 minutes"
        time.sleep(1)
    return launcher


@pytest.fixture(scope="module")
def world_a(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("partitions-a")
    url = _database(tmp / "fg.db")
    uri = (tmp / "artifacts").as_uri()
    engine, store = make_engine(url), open_store(uri)
    settings = Settings.from_env({}, database_url=url, artifact_uri=uri)
    with eager_keras():  # in this process only: run-2's tasks as they are
        assert run_job(settings, _options("run-1"), engine=engine, store=store) == 0
    kind = _crown_run_1(engine, store)
    _run_tasks(url, uri, tmp, "run-2", tasks=2)
    yield {"tmp": tmp, "engine": engine, "store": store, "settings": settings, "kind": kind}
    engine.dispose()


@pytest.fixture(scope="module")
def world_b(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("partitions-b")
    url = _database(tmp / "fg.db")
    uri = (tmp / "artifacts").as_uri()
    engine, store = make_engine(url), open_store(uri)
    settings = Settings.from_env({}, database_url=url, artifact_uri=uri)
    opts = _options("run-3", partition_size=2, tolerances=UNBEATABLE)
    with eager_keras():
        code = run_job(settings, opts, engine=engine, store=store)
    yield {"engine": engine, "store": store, "settings": settings, "code": code}
    engine.dispose()


def test_each_task_trains_its_partition_against_the_old_single_champion(world_a):
    store, tmp = world_a["store"], world_a["tmp"]
    tuning = store.read_json("partitioned/run-2/tuning.json")
    assert tuning["sample_products"] == 2  # one partition's budget, from both partitions
    for task, name in enumerate(("p0000", "p0001")):
        marker = store.read_json(f"partitioned/run-2/done/{name}.json")
        assert marker["run_id"] == f"run-2-{name}" and len(marker["products"]) == 2
        metrics = store.read_json(f"runs/run-2-{name}/metrics.json")
        # the champion from before partitions, scored on this partition's products
        assert metrics["champion"]["model_version"] == "run-1"
        assert metrics["champion"]["note"] is None and "model" in metrics["champion"]
        assert metrics["decision"]["promote"] is False
        assert metrics["serving"]["run_id"] == "run-1"
        assert store.exists(f"runs/run-2-{name}/manifest.json")
        logs = sorted((tmp / "logs").glob("*.log"))  # task 0's, then *.task1.log
        assert f'"partition": "{name}"' in logs[task].read_text()
        other = logs[1 - task].read_text()
        assert f'"partition": "{name}"' not in other  # partition i runs in task i mod 2
        # after the gather's decision, each task forecast its own partition's products
        assert '"message": "stage forecast partition"' in logs[task].read_text()
        forecast = store.read_json(f"partitioned/run-2/forecast/task{task:05d}.json")
        assert forecast["partitions_of_task"] == [name] and list(forecast["partitions"]) == [name]
        assert forecast["model_version"] == "run-1" and forecast["failed"] == []
        assert forecast["products"] == 2
    doc = store.read_json("runs/run-2/partitions.json")
    assert sorted(p for ids in doc["products"].values() for p in ids) == PRODUCTS


def test_nothing_changed_so_the_old_champion_keeps_serving_every_product(world_a):
    engine, store = world_a["engine"], world_a["store"]
    metrics = store.read_json("runs/run-2/metrics.json")
    assert metrics["changed_partitions"] == []
    assert metrics["decision"]["promote"] is False
    assert set(metrics["promotion_modes"]) >= {"per_partition", "whole", "whole_promotes"}
    registry = _registry(engine)
    assert (registry["run-2"]["status"], registry["run-2"]["kind"]) == ("rejected", PARTITIONED)
    assert registry["run-1"]["status"] == "champion"
    assert read_champion(store).model_version == "run-1"
    preds = _predictions(engine)
    assert sorted(preds["product_id"].unique()) == PRODUCTS
    assert set(preds["model_version"]) == {"run-1"}
    report = store.read_text("runs/run-2/report.md")
    assert "| p0000 | 2 |" in report and "| p0001 | 2 |" in report


def test_a_partitioned_champion_serves_each_product_by_its_partitions_model(world_a):
    """Backward compatibility: a partition may keep the single model from before."""
    engine, store, settings = world_a["engine"], world_a["store"], world_a["settings"]
    kind = world_a["kind"]
    before = _predictions(engine).set_index(["product_id", "target_date"])["predicted_units"]
    doc = store.read_json("runs/run-2/partitions.json")
    assert {e["run_id"] for e in doc["entries"].values()} == {"run-1"}
    assert {e["kind"] for e in doc["entries"].values()} == {kind}
    doc["entries"]["p0001"] = {
        "model_version": "baseline:seasonal_naive",
        "run_id": "run-1",
        "run_uri": store.child("runs/run-1").uri,
        "kind": "baseline:seasonal_naive",
        "promoted_at": "2026-12-06T00:00:00+00:00",
    }
    writer = RunWriter(store, "mixed")
    writer.put_json(PARTITIONS_FILE, doc)
    writer.seal(model_version="mixed", kind=PARTITIONED)
    record_partitioned(
        engine,
        model_version="mixed",
        run_id="mixed",
        run_uri=writer.uri,
        metrics={"model": {"rmsse": 1.0}},
        reason="planted by the test",
        residuals=[],
    )
    publish(
        store,
        model_version="mixed",
        run_id="mixed",
        run_uri=writer.uri,
        scores=Scores(1.0),
        kind=PARTITIONED,
    )
    opts = _options("fc-mixed", mode="forecast")
    assert run_job(settings, opts, engine=engine, store=store) == 0
    preds = _predictions(engine)
    assert set(preds["model_version"]) == {"mixed"}
    assert len(preds) == N_PRODUCTS * CFG.horizon
    after = preds.set_index(["product_id", "target_date"])["predicted_units"]
    kept, naive = doc["products"]["p0000"], doc["products"]["p0001"]
    for pid in kept:  # the old single model, unchanged
        np.testing.assert_allclose(after.loc[pid], before.loc[pid], rtol=1e-4, atol=1e-4)
    sales = make_sales(N_PRODUCTS, 200, seed=7)
    for pid in naive:  # seasonal naive: the last week repeated
        last = sales[sales["product_id"] == pid].sort_values("date")["units_sold"].to_numpy()[-7:]
        np.testing.assert_allclose(after.loc[pid].sort_index().to_numpy(), last)


def test_without_a_champion_every_partition_falls_back_and_is_gathered(world_b):
    assert world_b["code"] == 0
    engine, store = world_b["engine"], world_b["store"]
    metrics = store.read_json("runs/run-3/metrics.json")
    assert metrics["changed_partitions"] == ["p0000", "p0001"]
    assert metrics["kind"] == PARTITIONED and metrics["decision"]["promote"] is True
    for name, part in metrics["partitions"].items():
        assert part["serving"]["kind"].startswith("baseline:")
        assert part["serving"]["run_id"] == f"run-3-{name}"
    pointer = read_champion(store)
    assert (pointer.model_version, pointer.kind) == ("run-3", PARTITIONED)
    row = _registry(engine)["run-3"]
    assert (row["status"], row["kind"]) == ("champion", PARTITIONED)
    assert row["rmsse"] == pytest.approx(metrics["model"]["rmsse"])
    with engine.connect() as conn:
        residuals = pd.read_sql(
            sa.select(model_residuals).where(model_residuals.c.model_version == "run-3"), conn
        )
    holdouts = sum(
        len(pd.read_csv(store.key_uri(f"runs/run-3-{n}/holdout.csv"))) for n in ("p0000", "p0001")
    )
    assert len(residuals) == holdouts > 0
    assert sorted(residuals["product_id"].unique()) == PRODUCTS
    preds = _predictions(engine)
    assert len(preds) == N_PRODUCTS * CFG.horizon
    assert set(preds["model_version"]) == {"run-3"}
    assert preds[["predicted_p10", "predicted_p90"]].notna().all().all()
    # one task: it forecast both partitions, one after the other
    forecast = store.read_json("partitioned/run-3/forecast/task00000.json")
    assert list(forecast["partitions"]) == ["p0000", "p0001"] and forecast["failed"] == []
    report = store.read_text("runs/run-3/report.md")
    assert "**2 changed**: 0 promoted their challenger, 2 fell back" in report
    assert store.exists("runs/run-3/report.html")


def test_forecast_mode_serves_the_partitioned_champion(world_b):
    engine, store, settings = world_b["engine"], world_b["store"], world_b["settings"]
    before = _predictions(engine)
    assert run_job(settings, _options("fc-3", mode="forecast"), engine=engine, store=store) == 0
    pd.testing.assert_frame_equal(before, _predictions(engine))  # same data: unchanged


def test_forecast_mode_task_1_of_2_forecasts_its_partition_only(world_b):
    engine, store, settings = world_b["engine"], world_b["store"], world_b["settings"]
    doc = store.read_json("runs/run-3/partitions.json")
    mine, theirs = doc["products"]["p0001"], doc["products"]["p0000"]
    with engine.begin() as conn:
        conn.execute(sa.delete(predictions))
    opts = _options("fc-4", mode="forecast", task_index=1, task_count=2)
    assert run_job(settings, opts, engine=engine, store=store) == 0
    preds = _predictions(engine)
    assert sorted(preds["product_id"].unique()) == sorted(mine)  # not p0000's: task 0's
    assert not set(theirs) & set(preds["product_id"])
    assert len(preds) == len(mine) * CFG.horizon and set(preds["model_version"]) == {"run-3"}
