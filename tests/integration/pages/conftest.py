"""Fixtures: a database with two stored health checks (reports written by the checks
themselves), a retraining and a promotion between them, and the pages server over it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from forecastguard.config import Settings
from forecastguard.db.engine import make_engine
from forecastguard.db.schema import health_checks, model_registry, retrain_requests
from forecastguard.health.check import HealthResult
from forecastguard.health.service import HealthService
from forecastguard.report.app import PagesServer, create_app
from forecastguard.storage import open_store
from tests.integration.health.synthetic import frames, synthetic_window, write

AS_OF = date(2026, 5, 30)


@dataclass
class Site:
    """The served pages and what is behind them."""

    url: str
    engine: sa.Engine
    artifacts: Path
    first: HealthResult
    second: HealthResult


def fill(engine: sa.Engine, artifacts: Path, n_products: int = 40) -> tuple[HealthResult, ...]:
    """Sales and forecasts with drift in a fifth of the products, then two checks (the
    first an hour earlier), a retrain request and a promotion between them."""
    write(engine, *frames(synthetic_window(n_products, AS_OF, seed=5, drift_share=0.2)))
    settings = Settings.from_env({}, artifact_uri=artifacts.as_uri())
    service = HealthService(settings, engine=engine)
    first = service.run(AS_OF - timedelta(days=15), 14)
    second = service.run(AS_OF, 30)
    now = datetime(2026, 5, 31, 6, 0)
    with engine.begin() as conn:
        for result, when in ((first, now - timedelta(hours=2)), (second, now)):
            conn.execute(
                health_checks.update()
                .where(health_checks.c.id == result.check_id)
                .values(checked_at=when)
            )
        conn.execute(
            retrain_requests.insert().values(
                request_id="req-1",
                status="finished",
                reason="; ".join(first.reasons),
                health_check_id=first.check_id,
                model_version="m1",
                created_at=now - timedelta(hours=1, minutes=50),
                updated_at=now - timedelta(hours=1),
                finished_at=now - timedelta(hours=1),
            )
        )
        conn.execute(
            model_registry.insert().values(
                model_version="m2",
                run_id="run-2",
                status="champion",
                kind="lstm",
                artifact_uri="file:///nowhere/runs/run-2",
                rmsse=0.8,
                decision_reason="beats the champion",
                request_id="req-1",
                created_at=now - timedelta(hours=1, minutes=10),
                promoted_at=now - timedelta(hours=1, minutes=5),
            )
        )
    return first, second


@pytest.fixture
def site(tmp_path: Path, sqlite_url: str) -> Iterator[Site]:
    """Two checks in a SQLite database, served on a free port of 127.0.0.1."""
    engine = make_engine(sqlite_url)
    artifacts = tmp_path / "artifacts"
    first, second = fill(engine, artifacts)
    app = create_app(engine, store=open_store(artifacts.as_uri()))
    with PagesServer(app, "127.0.0.1", 0) as server:
        yield Site(server.url, engine, artifacts, first, second)
    engine.dispose()
