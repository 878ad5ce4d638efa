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

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[dict, Path]:
    work = tmp_path_factory.mktemp("demo") / "run"
    lines: list[str] = []
    opts = DemoOptions(workdir=work, products=5, years=0.75, seed=3, trials=1, epochs=1)
    summary = run_demo(opts, echo=lines.append)
    (work / "story.txt").write_text("\n".join(lines))
    return summary, work


def test_each_hop_happened(demo):
    summary, work = demo
    engine = make_engine(summary["database_url"])
    with engine.connect() as conn:
        checks = conn.execute(sa.select(schema.health_checks).order_by("checked_at")).all()
        requests = conn.execute(sa.select(schema.retrain_requests)).mappings().all()
        registry = conn.execute(sa.select(schema.model_registry)).mappings().all()
        newest = conn.execute(sa.select(sa.func.max(schema.predictions.c.target_date))).scalar()
        per_product = conn.execute(
            sa.select(sa.func.count(sa.distinct(schema.predictions.c.product_id)))
        ).scalar()

    # 1. two health checks stored; the first (drift injected) is unhealthy
    assert len(checks) == 2
    assert summary["first_check"]["healthy"] is False
    # 2. a retrain request, finished by the trainer (a second one if the second check
    #    was unhealthy too: the demo follows it to its end)
    assert 1 <= len(requests) <= 2 and all(r["status"] == "finished" for r in requests)
    # 3. the first model and one per retraining are registered; one champion
    assert len(registry) == 1 + len(requests)
    assert sum(r["status"] == "champion" for r in registry) == 1
    # 4. fresh forecasts reach past the second wave, for every product
    assert newest > timeline(DemoOptions(workdir=work).today)["wave2_end"]
    assert per_product == 5
    # 5. a report per run, and two emails with the report attached or inline
    reports = summary["files"]["reports"]
    assert len(reports) == len(registry) and all(
        Path(r).read_text().startswith("#") for r in reports
    )
    emails = [email.message_from_bytes(Path(p).read_bytes()) for p in summary["files"]["emails"]]
    assert len(emails) == len(registry) and all(m["To"] for m in emails)
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
