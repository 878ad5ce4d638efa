"""The retrain back-off through the database (issue 23): the first check asks for a retrain,
its challenger is rejected, the second check — the shift persisting — stays UNHEALTHY
with the products persisting but holds the retrain back and says why; once the back-off
is over it asks again, and after a second rejection the back-off doubles."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import sqlalchemy as sa

from forecastguard import retrain
from forecastguard.config import Settings
from forecastguard.db.engine import make_engine
from forecastguard.db.schema import health_checks, model_registry
from forecastguard.health.service import HealthService
from forecastguard.messages import RetrainMessage
from tests.integration.health.synthetic import frames, synthetic_window, write

FIRST = date(2026, 5, 16)
SECOND = FIRST + timedelta(days=14)
SHIFTED = [f"P{i:03d}" for i in range(8)]


class Publisher:
    """Records the retrain requests (the ledger row train_trigger would write too)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.sent: list[RetrainMessage] = []

    def publish(self, message: RetrainMessage) -> str:
        self.sent.append(message)
        retrain.record(self.engine, message, message_id=str(len(self.sent)), payload=None)
        return str(len(self.sent))


def _reject(engine: sa.Engine, message: RetrainMessage, challenger: str, days_ago: int) -> None:
    """The trainer's decision for that request: its challenger rejected `days_ago`."""
    when = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=days_ago)
    with engine.begin() as conn:
        conn.execute(
            model_registry.insert(),
            {
                "model_version": challenger,
                "run_id": "run-" + challenger,
                "status": "rejected",
                "artifact_uri": "file:///nowhere",
                "decision_reason": "challenger 0.813 vs champion 0.775",
                "request_id": message.request_id,
                "created_at": when,
            },
        )


def test_a_rejected_challenger_holds_the_next_retrain_back(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    data = synthetic_window(300, SECOND, 30, seed=11, noise=0.05, history=74)
    sales, predictions = frames(data)
    start = FIRST - timedelta(days=29)  # the first check's window: the shift begins
    shifted = sales["product_id"].isin(SHIFTED) & (sales["sale_date"] >= start)
    sales.loc[shifted, "units_sold"] = np.round(sales.loc[shifted, "units_sold"] * 2.2 + 5)
    write(engine, sales, predictions)
    publisher = Publisher(engine)
    service = HealthService(Settings.from_env({}), engine=engine, publisher=publisher)

    first = service.run(FIRST, 30)
    assert not first.healthy and first.outputs["retrain"]["published"]
    assert "retrain_backoff" not in first.outputs  # nothing rejected yet
    _reject(engine, publisher.sent[0], "m2", days_ago=0)

    second = service.run(SECOND, 30)
    assert not second.healthy and "drift" in second.reason_kinds  # the alarm stays
    persisting = second.products[second.products["persisting"]]
    assert set(SHIFTED) & set(persisting["product_id"])
    today = datetime.now(UTC).date()
    held = second.outputs["retrain"]
    assert held["published"] is False and len(publisher.sent) == 1
    assert held["skipped"].startswith(
        f"retrain held back: challenger m2 rejected on {today}, "
        f"next request after {today + timedelta(days=7)}"
    )
    # The stored summary says so too (a redelivered event decides the same).
    with engine.connect() as conn:
        stored = json.loads(
            conn.execute(
                sa.select(health_checks.c.result_json).where(health_checks.c.id == second.check_id)
            ).scalar()
        )
    assert stored["retrain_backoff"]["held"] is True
    assert stored["retrain_backoff"]["asked_by_check"] == first.check_id

    # A week and a day later the back-off is over: the check asks again.
    with engine.begin() as conn:
        conn.execute(
            model_registry.update().values(
                created_at=datetime.now(UTC).replace(tzinfo=None) - timedelta(days=8)
            )
        )
    again = service.run(SECOND, 30)
    assert again.outputs["retrain"]["published"] and len(publisher.sent) == 2
    assert "back-off of 7 days" in again.outputs["retrain_backoff"]["reason"]
    # That challenger is rejected too: 14 days now.
    _reject(engine, publisher.sent[1], "m3", days_ago=0)
    third = service.run(SECOND, 30)
    assert third.outputs["retrain"]["published"] is False and len(publisher.sent) == 2
    assert third.outputs["retrain_backoff"]["backoff_days"] == 14

    # RETRAIN_BACKOFF_DAYS=0: every check asks, as before issue 23's back-off.
    off = HealthService(
        Settings.from_env({"RETRAIN_BACKOFF_DAYS": "0"}), engine=engine, publisher=publisher
    ).run(SECOND, 30)
    assert off.outputs["retrain"]["published"] and "retrain_backoff" not in off.outputs
    engine.dispose()
