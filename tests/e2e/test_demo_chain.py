"""The whole local chain with tiny settings: every hop must have happened."""

from __future__ import annotations

import email
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from forecastguard.db import schema
from forecastguard.db.engine import make_engine
from forecastguard.demo import DemoOptions, run_demo, timeline
from trainer.serve.forecast import KINDS

pytestmark = pytest.mark.slow


# None: the trainers' own promotion rule (a one-epoch model may win or lose on this CPU);
# 0.95: a margin no trained model meets, so the whole chain runs on the baseline champion.
TOLERANCES = [None, 0.95]


@pytest.fixture(scope="module", params=TOLERANCES, ids=["as-trained", "baseline-forced"])
def demo(request, tmp_path_factory) -> tuple[dict, Path]:
    work = tmp_path_factory.mktemp("demo") / "run"
    lines: list[str] = []
    opts = DemoOptions(
        workdir=work,
        products=5,
        years=0.75,
        seed=3,
        trials=1,
        epochs=1,
        promotion_rmsse_tolerance=request.param,
    )
    summary = run_demo(opts, echo=lines.append)
    (work / "story.txt").write_text("\n".join(lines))
    summary["tolerance"] = request.param
    return summary, work


def test_each_hop_happened(demo):
    """Every hop, whichever way each promotion goes on this CPU: a model trained for one
    epoch may or may not beat the baseline, and with the fallback something serves."""
    summary, work = demo
    engine = make_engine(summary["database_url"])
    reg = schema.model_registry
    with engine.connect() as conn:
        checks = conn.execute(sa.select(schema.health_checks).order_by("checked_at")).all()
        requests = conn.execute(sa.select(schema.retrain_requests)).mappings().all()
        registry = conn.execute(sa.select(reg)).mappings().all()
        newest = conn.execute(sa.select(sa.func.max(schema.predictions.c.target_date))).scalar()
        per_product = conn.execute(
            sa.select(sa.func.count(sa.distinct(schema.predictions.c.product_id)))
        ).scalar()
        newest_versions = set(
            conn.execute(
                sa.select(schema.predictions.c.model_version)
                .where(schema.predictions.c.target_date == newest)
                .distinct()
            ).scalars()
        )
        champions = [r for r in registry if r["status"] == "champion"]
        residuals = conn.execute(
            sa.select(sa.func.count()).where(
                schema.model_residuals.c.model_version == champions[0]["model_version"]
            )
        ).scalar()
    trained = [r for r in registry if not r["kind"].startswith("baseline:")]
    baselines = [r for r in registry if r["kind"].startswith("baseline:")]

    # 1. two health checks stored; the first (drift injected) is unhealthy
    assert len(checks) == 2
    assert summary["first_check"]["healthy"] is False
    # 2. a retrain request, finished by the trainer (a second one if the second check
    #    was unhealthy too: the demo follows it to its end)
    assert 1 <= len(requests) <= 2 and all(r["status"] == "finished" for r in requests)
    # 3. the first model and one per retraining are registered, promoted or not; a
    #    baseline is registered only as the fallback champion; exactly one champion,
    #    with its holdout errors as the health check's reference
    assert len(trained) == 1 + len(requests)
    assert all(r["status"] in {"champion", "retired", "rejected"} for r in trained)
    assert all(r["status"] in {"champion", "retired"} for r in baselines)
    assert len(champions) == 1 and residuals > 0
    champion = champions[0]
    if champion["kind"].startswith("baseline:"):
        assert not any(r["status"] == "champion" for r in trained)
        assert "becomes the champion and serves" in champion["decision_reason"]
    if summary["tolerance"] == 0.95:  # no trained model could be promoted
        assert all(r["status"] == "rejected" for r in trained)
        assert champion["kind"].startswith("baseline:") and len(baselines) == 1
    assert summary["serving"]["model_version"] == champion["model_version"]
    # the first training always leaves a champion: the model, or the best baseline
    initial = summary["serving_initial"]
    assert initial is not None and initial["kind"] in KINDS
    # 4. fresh forecasts reach past the second wave, for every product, by the champion
    assert newest > timeline(DemoOptions(workdir=work).today)["wave2_end"]
    assert per_product == 5
    assert newest_versions == {champion["model_version"]}
    # 5. a report per training run, and an email per training run with the report
    reports = summary["files"]["reports"]
    assert len(reports) == len(trained) and all(
        Path(r).read_text().startswith("#") for r in reports
    )
    assert all("Serving: " in Path(r).read_text() for r in reports)
    emails = [email.message_from_bytes(Path(p).read_bytes()) for p in summary["files"]["emails"]]
    assert len(emails) == len(trained) and all(m["To"] for m in emails)
    # 6. metrics were written for both checks; the second check came over HTTP
    metric_lines = Path(summary["files"]["metrics"]).read_text().splitlines()
    assert len(metric_lines) >= 2 and json.loads(metric_lines[0])
    assert "window_start" in summary["second_check"]


def test_the_story_is_told(demo):
    _, work = demo
    story = (work / "story.txt").read_text()
    for words in ("Sales history", "Scheduler tick", "train_trigger", "Where to look", "report"):
        assert words in story
    assert "UNHEALTHY" in story
    # which forecaster serves, and why, after the first training and at the end
    assert story.count("serving now: the ") >= 3 and "Which forecaster serves" in story
