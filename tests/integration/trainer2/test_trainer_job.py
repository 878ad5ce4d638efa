"""The trainer job end to end on SQLite with real TensorFlow, Optuna, SHAP and SMTP.

One module-scoped world (a database with 4 products' sales, a file:// artifact store,
an in-test SMTP server) is shared by the tests in order:

- run A (2 trials × 2 epochs) against a planted, deliberately bad champion: every
  artifact is written, the challenger is promoted, residuals and forecasts are written,
  the email carries the report and its attachments, the request is finished;
- forecast mode twice: H × products rows, the second run changes nothing;
- run B on gs:// (gcp-storage-emulator) with run A as champion and a promotion margin
  it cannot meet: every artifact uploaded, the champion is kept;
- run C crashes while writing its artifacts: no manifest, no champion change, the
  request is failed, exit code 1;
- `python -m trainer` as a subprocess: forecast mode exits 0; a failing run exits 1.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from forecastguard.config import Settings
from forecastguard.db.engine import make_engine
from forecastguard.db.migrate import upgrade
from forecastguard.db.schema import model_registry, model_residuals, predictions, retrain_requests
from forecastguard.storage import open_store
from tests.integration.trainer2.smtp_server import start_trainer_smtp
from tests.unit.trainer.helpers import make_sales
from trainer.config import TrainConfig
from trainer.judge.promotion import Tolerances
from trainer.models.gbm import TAIL_FILE, TAIL_PIPELINE_FILE
from trainer.report.emailer import SmtpConfig
from trainer.run.main import JobOptions, RequestInfo, run_job
from trainer.serve.artifacts import read_champion, read_manifest, verify_run

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
CFG = TrainConfig(
    horizon=7,
    lookback=14,
    val_days=14,
    test_days=14,
    epochs=2,
    batch_size=64,
    min_observations=30,
    augment_copies=1,
)
N_PRODUCTS = 4


def _options(run_id: str, **changes) -> JobOptions:
    base = JobOptions(
        mode="train",
        run_id=run_id,
        study_id=run_id,
        train_config=CFG,
        trials=2,
        search_units=(8,),
        shap_products=2,
    )
    return replace(base, **changes)


def _request(engine: sa.Engine, request_id: str) -> RequestInfo:
    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(retrain_requests).values(
                request_id=request_id,
                status="started",
                reason="avg_rmse 21.4 > 18.0",
                created_at=now,
                updated_at=now,
                started_at=now,
            )
        )
    return RequestInfo(request_id=request_id, reason="avg_rmse 21.4 > 18.0")


def _request_row(engine: sa.Engine, request_id: str):
    with engine.connect() as conn:
        return conn.execute(
            sa.select(retrain_requests).where(retrain_requests.c.request_id == request_id)
        ).one()


def _plant_bad_champion(engine, store, tmp: Path) -> None:
    """An untrained model whose bias correction adds 1000 units: any trained model beats it."""
    from trainer.config import ModelParams
    from trainer.data.load import load_sales
    from trainer.data.prepare import prepare
    from trainer.judge.promotion import Decision, Scores, publish, record
    from trainer.models.bias import BiasCorrection
    from trainer.models.network import build_model
    from trainer.serve.artifacts import ModelBundle, RunWriter, save_model_bundle

    prepared = prepare(load_sales(engine), CFG)
    params = ModelParams(units=4, lookback=7)
    model = build_model(
        params,
        n_features=prepared.train.x.shape[-1],
        n_known=prepared.train.known.shape[-1],
        horizon=CFG.horizon,
        n_products=len(prepared.products),
    )
    bundle = ModelBundle(
        model=model,
        pipeline=prepared.pipeline,
        cfg=CFG,
        params=params,
        correction=BiasCorrection({p: 1000.0 for p in prepared.products}, 0.0),
        model_version="planted",
        run_id="planted",
    )
    writer = RunWriter(store, "planted")
    save_model_bundle(writer, bundle, tmp)
    writer.seal(model_version="planted")
    empty = pd.DataFrame(columns=["product_id", "target_date", "actual", "predicted"])
    record(
        engine,
        model_version="planted",
        run_id="planted",
        run_uri=writer.uri,
        metrics={},
        decision=Decision(True, "planted by the test", "seasonal_naive"),
        holdout=empty,
    )
    publish(
        store, model_version="planted", run_id="planted", run_uri=writer.uri, scores=Scores(1e3)
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trainer-job")
    url = f"sqlite:///{tmp / 'fg.db'}"
    engine = make_engine(url)
    upgrade(engine)
    from forecastguard.synth.output import write_database

    write_database(engine, make_sales(N_PRODUCTS, 200))
    uri = (tmp / "artifacts").as_uri()
    store = open_store(uri)
    _plant_bad_champion(engine, store, tmp / "planted")
    controller, inbox, smtp = start_trainer_smtp(tmp)
    settings = Settings.from_env({}, database_url=url, artifact_uri=uri)
    request = _request(engine, "req-a")
    code = run_job(
        settings,
        # the interval guard off: how well 4 products' 80 % interval covers a short test
        # window after a brief training is not what run A tests (test_promotion_rule does)
        _options("run-a", request=request, tolerances=Tolerances(coverage=(0.0, 1.0))),
        engine=engine,
        store=store,
        smtp=smtp,
    )
    yield {
        "tmp": tmp,
        "url": url,
        "uri": uri,
        "engine": engine,
        "store": store,
        "settings": settings,
        "smtp": smtp,
        "inbox": inbox,
        "code_a": code,
    }
    controller.stop()
    engine.dispose()


def _members(files) -> set[str]:
    """`files` less the LightGBM ensemble's member files, which must be lightgbm_0.txt …
    lightgbm_{n-1}.txt with n >= 1 (n depends on the data's length)."""
    members = sorted(f for f in files if re.fullmatch(r"model/lightgbm_\d+\.txt", f))
    assert members == [f"model/lightgbm_{i}.txt" for i in range(len(members))] and members
    return set(files) - set(members)


EXPECTED_FILES = (
    {
        "model/model.keras",
        "model/feature_pipeline.joblib",
        "model/feature_pipeline.json",
        "model/bias_correction.json",
        "model/lightgbm.json",  # + model/lightgbm_{i}.txt, one per ensemble member: `_members`
        "model/blend.json",
        "model/intervals.json",
        "params.json",
        "metrics.json",
        "per_product.csv",
        "holdout.csv",
        "quality.json",
        "history.json",
        "tuning/trials.csv",
        "tuning/summary.json",
        "shap/summary.csv",
        "shap/per_product.csv",
        "shap/values.npz",
        "report.md",
        "report.html",
        "fairness.png",
        "bias.png",
        "shap_summary.png",
        "training.png",
    }
    | {  # issue 27: the quantile model's boosters (one per interval level) and pipeline
        f"model/{TAIL_FILE.format(i)}" for i in range(len(TrainConfig().interval_levels))
    }
    | {f"model/{TAIL_PIPELINE_FILE}"}
)


def test_run_a_writes_every_artifact_sealed_by_the_manifest(world):
    assert world["code_a"] == 0
    store = world["store"]
    manifest = verify_run(store, "run-a")
    assert _members(manifest["files"]) == EXPECTED_FILES
    assert _members(store.child("runs/run-a").list()) == EXPECTED_FILES | {"manifest.json"}
    metrics = store.read_json("runs/run-a/metrics.json")
    assert set(metrics["model"]) >= {"rmse", "mae", "rmsse", "bias"}
    assert set(metrics["baselines"]) == {"seasonal_naive", "moving_average"}
    assert set(metrics["fairness"]) >= {"disparity_p90_over_median", "worst_decile_rmsse"}
    assert metrics["n_products"] == N_PRODUCTS and metrics["horizon"] == CFG.horizon
    assert metrics["champion"]["model_version"] == "planted"
    trials = pd.read_csv(store.key_uri("runs/run-a/tuning/trials.csv"))
    assert len(trials) == 2
    report = store.read_text("runs/run-a/report.md")
    for section in (
        "## Promotion decision",
        "## Comparison with the champion and the baselines",
        "## Data quality",
        "## Tuning (Optuna)",
        "## Per-product fairness",
        "## Bias before and after correction",
        "## What drives the forecasts (SHAP)",
        "champion planted",
        "seasonal naive",
        "Forecast intervals: P10/P50/P90 served",
    ):
        assert section in report, section
    assert store.read_bytes("runs/run-a/fairness.png").startswith(b"\x89PNG")
    per = pd.read_csv(store.key_uri("runs/run-a/per_product.csv"))
    assert {"rmsse", "rmsse_lstm_plain", "rmsse_lstm_dro", "champion_rmsse"} <= set(per.columns)
    assert len(per) == N_PRODUCTS


def test_better_challenger_is_promoted_with_its_residuals(world):
    engine, store = world["engine"], world["store"]
    pointer = read_champion(store)
    assert pointer.run_id == "run-a" and pointer.model_version == "run-a"
    with engine.connect() as conn:
        status = dict(
            conn.execute(sa.select(model_registry.c.model_version, model_registry.c.status)).all()
        )
        residuals = conn.execute(
            sa.select(sa.func.count()).where(model_residuals.c.model_version == "run-a")
        ).scalar()
    assert status == {"planted": "retired", "run-a": "champion"}
    holdout = pd.read_csv(store.key_uri("runs/run-a/holdout.csv"))
    assert residuals == len(holdout) > 0
    assert _request_row(engine, "req-a").status == "finished"


def test_promotion_ends_with_forecasts_for_every_product(world):
    with world["engine"].connect() as conn:
        rows = conn.execute(sa.select(predictions)).mappings().all()
    assert len(rows) == CFG.horizon * N_PRODUCTS
    assert {r["model_version"] for r in rows} == {"run-a"}
    # with the served interval (issue 27): P10 <= P50 <= P90, never below 0
    for r in rows:
        assert 0 <= r["predicted_p10"] <= r["predicted_p50"] <= r["predicted_p90"]
    metrics = world["store"].read_json("runs/run-a/metrics.json")
    served = metrics["intervals"]["served"]
    assert metrics["intervals"]["levels"] == [0.1, 0.5, 0.9]
    assert 0.0 <= served["coverage"] <= 1.0 and served["interval_score"] > 0
    kind = metrics["validation"]["kind"]  # the challenger's kind
    method = "conformal residuals" if kind == "lstm" else "quantile model (CQR)"
    assert metrics["intervals"]["served_method"] == method  # issue 27's ninth pass
    last_sale = pd.Timestamp("2023-01-02") + pd.Timedelta(days=199)
    assert min(r["target_date"] for r in rows) == (last_sale + pd.Timedelta(days=1)).date()


def test_email_carries_report_plots_and_csv(world):
    [got] = world["inbox"].messages
    assert got["tls"] and got["rcpt_tos"] == ["ops@example.com"]
    msg = email.message_from_bytes(got["content"], policy=email.policy.default)
    assert msg["Subject"] == "forecastguard: model run-a promoted"
    text = msg.get_body(("plain",)).get_content()
    assert "Promotion decision" in text and "champion planted" in text
    assert "<table>" in msg.get_body(("html",)).get_content()
    names = {p.get_filename() for p in msg.iter_attachments()}
    assert {"per_product.csv", "fairness.png", "shap_summary.png", "bias.png"} <= names
    recorded = world["store"].read_json("notifications/run-a/email.json")
    assert recorded["sent"] is True and recorded["error"] is None


def _prediction_rows(engine):
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(sa.select(predictions)).all())


def test_forecast_mode_is_idempotent(world):
    engine = world["engine"]
    before = _prediction_rows(engine)
    opts = _options("fc-1", mode="forecast")
    assert run_job(world["settings"], opts, engine=engine, store=world["store"]) == 0
    after_first = _prediction_rows(engine)
    assert run_job(world["settings"], opts, engine=engine, store=world["store"]) == 0
    assert _prediction_rows(engine) == after_first == before  # same champion, same data
    assert len(after_first) == CFG.horizon * N_PRODUCTS


def test_run_b_on_gcs_uploads_everything_and_keeps_the_champion(world, gcs_client):
    engine, local = world["engine"], world["store"]
    gcs = open_store("gs://fg-artifacts/forecastguard", client=gcs_client)
    for name in [*read_manifest(local, "run-a")["files"], "manifest.json"]:
        gcs.write_bytes(f"runs/run-a/{name}", local.read_bytes(f"runs/run-a/{name}"))
    gcs.write_bytes("champion.json", local.read_bytes("champion.json"))
    before = _prediction_rows(engine)
    opts = _options(
        "run-b", trials=1, train_config=replace(CFG, epochs=1), tolerances=Tolerances(rmsse=0.95)
    )
    assert run_job(world["settings"], opts, engine=engine, store=gcs, smtp=SmtpConfig(None)) == 0
    manifest = verify_run(gcs, "run-b")
    assert _members(manifest["files"]) == EXPECTED_FILES
    assert manifest["decision"]["promote"] is False
    assert "by more than 95.0%" in manifest["decision"]["reason"]
    assert read_champion(gcs).run_id == "run-a"
    blob = gcs_client.bucket("fg-artifacts").get_blob("forecastguard/runs/run-b/manifest.json")
    assert blob is not None and blob.size > 0
    with engine.connect() as conn:
        status = dict(
            conn.execute(sa.select(model_registry.c.model_version, model_registry.c.status)).all()
        )
        versions = set(
            conn.execute(sa.select(model_residuals.c.model_version).distinct()).scalars()
        )
    assert status["run-b"] == "rejected" and status["run-a"] == "champion"
    assert "run-b" not in versions
    assert _prediction_rows(engine) == before
    assert gcs.read_json("notifications/run-b/email.json")["skipped"] is True


def test_run_c_crashing_midway_changes_no_champion(world, monkeypatch):
    engine, store = world["engine"], world["store"]
    from trainer.serve.artifacts import RunWriter

    original = RunWriter.put_text

    def crash_on_report(self, name, text):
        if name == "report.md":
            raise OSError("disk full (simulated)")
        return original(self, name, text)

    monkeypatch.setattr(RunWriter, "put_text", crash_on_report)
    request = _request(engine, "req-c")
    champion_before = store.read_bytes("champion.json")
    opts = _options("run-c", trials=1, train_config=replace(CFG, epochs=1), request=request)
    assert run_job(world["settings"], opts, engine=engine, store=store) == 1
    assert store.exists("runs/run-c/metrics.json")  # partly written ...
    assert read_manifest(store, "run-c") is None  # ... but never sealed
    assert store.read_bytes("champion.json") == champion_before
    with engine.connect() as conn:
        versions = set(conn.execute(sa.select(model_registry.c.model_version)).scalars())
    assert "run-c" not in versions
    row = _request_row(engine, "req-c")
    assert row.status == "failed" and "disk full (simulated)" in row.error


def _subprocess_env(world, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUD_RUN_", "REQUEST_"))}
    pythonpath = [str(ROOT / "shared"), str(ROOT / "jobs" / "trainer"), str(ROOT)]
    env.update(
        PYTHONPATH=os.pathsep.join(pythonpath),
        DATABASE_URL=world["url"],
        ARTIFACT_URI=world["uri"],
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    env.update(extra)
    return env


def test_entry_point_forecast_mode_exits_zero(world):
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "--mode", "forecast"],
        env=_subprocess_env(world),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    finished = [
        json.loads(line) for line in proc.stderr.splitlines() if '"trainer finished"' in line
    ]
    assert finished and finished[0]["written"] == 0
    assert finished[0]["unchanged"] == CFG.horizon * N_PRODUCTS


def test_entry_point_failure_exits_nonzero_and_fails_the_request(world, tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    engine = make_engine(url)
    upgrade(engine)  # no sales: the run fails at loading
    _request(engine, "req-empty")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer",
            "--mode",
            "train",
            "--database-url",
            url,
            "--trials",
            "1",
        ],
        env=_subprocess_env(world, REQUEST_ID="req-empty", RUN_ID="run-empty"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]  # bad input data: a retry cannot fix it
    row = _request_row(engine, "req-empty")
    assert row.status == "failed" and "no rows" in row.error
    engine.dispose()


def test_entry_point_bad_configuration_exits_two(world):
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "--mode", "train"],
        env=_subprocess_env(world, ARTIFACT_URI="", RUN_ID="../escape"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "ARTIFACT_URI" in proc.stderr


@pytest.fixture
def optuna_db(mariadb_server):
    """An empty MariaDB database for Optuna (a database of its own); dropped afterwards."""
    import uuid

    name = f"fg_optuna_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(mariadb_server + "/")
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    try:
        yield f"{mariadb_server}/{name}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@pytest.mark.mariadb
def test_two_cloud_run_tasks_tune_one_study_in_parallel(world, tmp_path, optuna_db):
    """Two `python -m trainer` processes (task 0 and 1 of 2) share an Optuna study in MariaDB."""
    import optuna

    mariadb_url = optuna_db

    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    engine = make_engine(url)
    upgrade(engine)
    from forecastguard.synth.output import write_database

    write_database(engine, make_sales(N_PRODUCTS, 200))
    engine.dispose()
    uri = (tmp_path / "artifacts").as_uri()
    common = {
        "DATABASE_URL": url,
        "ARTIFACT_URI": uri,
        "OPTUNA_STORAGE": mariadb_url,
        "CLOUD_RUN_EXECUTION": "exec-par",
        "CLOUD_RUN_TASK_COUNT": "2",
        "TRIALS": "4",
        "TRAIN_CONFIG": json.dumps(replace(CFG, epochs=1).to_dict()),
        "SEARCH_UNITS": "4",
        "SHAP_PRODUCTS": "1",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "trainer", "--mode", "train"],
            env=_subprocess_env(world, **common, CLOUD_RUN_TASK_INDEX=str(i)),
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs[0][-2000:] + errs[1][-2000:]
    study = optuna.load_study(study_name="forecastguard-exec-par", storage=mariadb_url)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) >= 4
    # Both tasks ran trials: every task logs its own "trial N complete/pruned" lines.
    for err in errs:
        assert '"finished":' in err and "trial " in err
    store = open_store(uri)
    manifest = verify_run(store, "exec-par")  # only task 0 wrote the run
    assert manifest["files"]["tuning/trials.csv"]
    assert len(pd.read_csv(store.key_uri("runs/exec-par/tuning/trials.csv"))) == len(study.trials)
    assert '"tuning_only": true' in errs[1]
