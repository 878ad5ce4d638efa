"""The baseline fallback champion, end to end through `run_job` (SQLite, file://, SMTP).

The trained model is made to lose by a promotion margin no model can meet
(`Tolerances(rmsse=0.95)`: 95 % below the baseline's mean RMSSE), so these tests do not
depend on how well one epoch trains on this CPU:

- run 1, first training, loses: the best baseline becomes champion (registry row of its
  kind, holdout residuals, champion.json), forecasts for every product, a report and
  an email that say which forecaster serves and why;
- forecast mode serves the baseline champion;
- run 2 with the default rule against the baseline champion: whichever way it goes,
  one champion, and it is the one whose forecasts are stored;
- run 3 after a trained champion that cannot be loaded: the baseline takes over.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import replace

import pandas as pd
import pytest
import sqlalchemy as sa

from forecastguard.config import Settings
from forecastguard.db.engine import make_engine
from forecastguard.db.migrate import upgrade
from forecastguard.db.schema import model_registry, model_residuals, predictions
from forecastguard.storage import open_store
from tests.integration.trainer2.smtp_server import start_trainer_smtp
from tests.support.keras_eager import eager_keras
from tests.unit.trainer.helpers import make_sales
from trainer.config import TrainConfig
from trainer.judge.promotion import Decision, Scores, Tolerances, publish, record
from trainer.report.emailer import SmtpConfig
from trainer.run.main import JobOptions, run_job
from trainer.serve.artifacts import RunWriter, read_champion
from trainer.serve.forecast import TRAINED_KINDS

pytestmark = pytest.mark.slow

CFG = TrainConfig(
    horizon=7,
    lookback=14,
    val_days=14,
    test_days=14,
    epochs=1,
    batch_size=64,
    min_observations=30,
    augment_copies=1,
)
N_PRODUCTS = 3
UNBEATABLE = Tolerances(rmsse=0.95)


def _options(run_id: str, **changes) -> JobOptions:
    base = JobOptions(
        mode="train",
        run_id=run_id,
        study_id=run_id,
        train_config=CFG,
        trials=1,
        search_units=(8,),
        shap_products=1,
    )
    return replace(base, **changes)


def _registry(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(model_registry)).mappings().all()
    return {r["model_version"]: dict(r) for r in rows}


def _champion_row(engine) -> dict:
    [row] = [r for r in _registry(engine).values() if r["status"] == "champion"]
    return row


def _predictions(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(sa.select(predictions), conn)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fallback")
    url = f"sqlite:///{tmp / 'fg.db'}"
    engine = make_engine(url)
    upgrade(engine)
    from forecastguard.synth.output import write_database

    write_database(engine, make_sales(N_PRODUCTS, 200, seed=5))
    uri = (tmp / "artifacts").as_uri()
    store = open_store(uri)
    controller, inbox, smtp = start_trainer_smtp(tmp)
    settings = Settings.from_env({}, database_url=url, artifact_uri=uri)
    with eager_keras():  # a test of the fallback, not of graph mode
        code = run_job(
            settings,
            _options("run-1", tolerances=UNBEATABLE),
            engine=engine,
            store=store,
            smtp=smtp,
        )
    yield {
        "tmp": tmp,
        "engine": engine,
        "store": store,
        "settings": settings,
        "inbox": inbox,
        "code_1": code,
    }
    controller.stop()
    engine.dispose()


def test_a_losing_first_model_leaves_the_best_baseline_as_champion(world):
    assert world["code_1"] == 0
    engine, store = world["engine"], world["store"]
    metrics = store.read_json("runs/run-1/metrics.json")
    base = metrics["baselines"]
    best = min(("seasonal_naive", "moving_average"), key=lambda n: base[n]["rmsse"])
    kind = f"baseline:{best}"
    assert metrics["promotion_metric"] == "mean_rmsse"
    assert metrics["decision"]["promote"] is False and metrics["decision"]["fallback"] == kind
    assert metrics["serving"]["kind"] == kind and metrics["best_baseline"]["kind"] == kind

    registry = _registry(engine)
    assert registry["run-1"]["status"] == "rejected"
    assert registry["run-1"]["kind"] == metrics["served_kind_chosen_on_validation"]
    assert registry["run-1"]["kind"] in TRAINED_KINDS
    assert registry["run-1"]["rmsse"] == pytest.approx(metrics["model"]["rmsse"])
    row = registry[kind]
    assert (row["status"], row["kind"], row["run_id"]) == ("champion", kind, "run-1")
    assert row["rmsse"] == pytest.approx(base[best]["rmsse"])
    assert "becomes the champion and serves" in row["decision_reason"]

    with engine.connect() as conn:
        residuals = pd.read_sql(
            sa.select(model_residuals).where(model_residuals.c.model_version == kind), conn
        )
    holdout = pd.read_csv(store.key_uri("runs/run-1/holdout.csv"))
    assert len(residuals) == len(holdout) > 0
    assert residuals["product_id"].nunique() == N_PRODUCTS

    pointer = read_champion(store)
    assert (pointer.model_version, pointer.kind, pointer.run_id) == (kind, kind, "run-1")
    assert pointer.rmsse == pytest.approx(base[best]["rmsse"])


def test_the_baseline_forecasts_every_product(world):
    preds = _predictions(world["engine"])
    kind = read_champion(world["store"]).kind
    assert len(preds) == CFG.horizon * N_PRODUCTS
    assert set(preds["model_version"]) == {kind}
    assert preds["product_id"].nunique() == N_PRODUCTS
    # the baseline serves an interval too, calibrated on its own validation forecasts
    assert preds[["predicted_p10", "predicted_p50", "predicted_p90"]].notna().all().all()
    assert (preds["predicted_p10"] <= preds["predicted_p90"]).all()


def test_report_and_email_say_the_baseline_serves_and_why(world):
    kind = read_champion(world["store"]).kind
    name = kind.removeprefix("baseline:").replace("_", " ")
    report = world["store"].read_text("runs/run-1/report.md")
    assert "Decision: **not promoted**" in report
    assert f"Serving: the {name} baseline (`{kind}`)." in report
    assert f"**Serving now: the {name} baseline (`{kind}`" in report
    assert "no trained model has been promoted yet" in report
    assert "is not lower than the" in report and "by more than 95.0%" in report
    assert "Promotion metric: **mean per-product RMSSE**" in report
    [got] = world["inbox"].messages
    msg = email.message_from_bytes(got["content"], policy=email.policy.default)
    subject = " ".join(str(msg["Subject"]).split())  # a long subject is folded
    assert subject == f"forecastguard: model run-1 not promoted; {kind} serves"
    text = msg.get_body(("plain",)).get_content()
    assert f"Serving now: the {name} baseline" in text
    assert f"Forecasts by {kind} ({kind}): {CFG.horizon * N_PRODUCTS} rows written" in text


def test_forecast_mode_serves_the_baseline_champion(world):
    engine, store = world["engine"], world["store"]
    before = _predictions(engine)
    opts = _options("fc-1", mode="forecast")
    assert run_job(world["settings"], opts, engine=engine, store=store) == 0
    after = _predictions(engine)
    pd.testing.assert_frame_equal(before, after)  # same data, same baseline: unchanged


def test_a_trained_model_must_beat_the_baseline_champion(world):
    """Whichever way the rule goes on this CPU, one champion serves and its forecasts are stored."""
    engine, store = world["engine"], world["store"]
    kind = read_champion(store).kind
    opts = _options("run-2")
    with eager_keras():
        code = run_job(world["settings"], opts, engine=engine, store=store, smtp=SmtpConfig(None))
    assert code == 0
    metrics = store.read_json("runs/run-2/metrics.json")
    assert metrics["champion"]["model_version"] == kind
    assert metrics["decision"]["against"] == "champion" and metrics["decision"]["fallback"] is None
    champion = _champion_row(engine)
    if metrics["decision"]["promote"]:
        assert champion["model_version"] == "run-2" and champion["kind"] in TRAINED_KINDS
        assert metrics["model"]["rmsse"] < metrics["champion"]["model"]["rmsse"]
    else:
        assert champion["model_version"] == kind
        assert _registry(engine)["run-2"]["status"] == "rejected"
        assert "keeps serving" in metrics["decision"]["reason"]
    assert read_champion(store).model_version == champion["model_version"]
    preds = _predictions(engine)
    assert preds["product_id"].nunique() == N_PRODUCTS
    newest = preds[preds["target_date"] == preds["target_date"].max()]
    assert set(newest["model_version"]) == {champion["model_version"]}


def test_a_champion_that_cannot_be_loaded_hands_over_to_the_baseline(world):
    engine, store = world["engine"], world["store"]
    # A trained champion whose run is sealed but holds no model (it cannot be loaded).
    writer = RunWriter(store, "broken")
    writer.put_text("report.md", "# broken")
    writer.seal(model_version="broken")
    empty = pd.DataFrame(columns=["product_id", "target_date", "actual", "predicted"])
    record(
        engine,
        model_version="broken",
        run_id="broken",
        run_uri=writer.uri,
        metrics={},
        decision=Decision(True, "planted by the test", "champion"),
        holdout=empty,
    )
    publish(store, model_version="broken", run_id="broken", run_uri=writer.uri, scores=Scores(0.1))
    opts = _options("run-3", tolerances=UNBEATABLE)
    with eager_keras():
        code = run_job(world["settings"], opts, engine=engine, store=store, smtp=SmtpConfig(None))
    assert code == 0
    metrics = store.read_json("runs/run-3/metrics.json")
    assert "could not be evaluated" in metrics["champion"]["note"]
    kind = metrics["best_baseline"]["kind"]
    registry = _registry(engine)
    assert registry["broken"]["status"] == "retired"
    assert registry[kind]["status"] == "champion" and registry[kind]["run_id"] == "run-3"
    assert read_champion(store).model_version == kind
    report = store.read_text("runs/run-3/report.md")
    assert "could not be evaluated" in report and f"(`{kind}`" in report
