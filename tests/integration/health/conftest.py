"""Fixtures: the health function built by functions-framework around an injected service."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from functions_framework import create_app

from forecastguard.config import Settings
from forecastguard.db.engine import make_engine
from forecastguard.health.service import HealthService, set_service
from tests.integration.health.synthetic import frames, synthetic_window, write

SOURCE = Path(__file__).resolve().parents[3] / "functions" / "health" / "main.py"
EVENTS = Path(__file__).with_name("events")
AS_OF = date(2026, 5, 30)
TOKEN = "health-token-for-tests"


@pytest.fixture
def filled_engine(sqlite_url: str) -> Iterator[sa.Engine]:
    """A SQLite database with 20 products over the window ending 2026-05-30."""
    engine = make_engine(sqlite_url)
    write(engine, *frames(synthetic_window(20, AS_OF, seed=11)))
    yield engine
    engine.dispose()


def use_service(engine: sa.Engine, **settings: object) -> HealthService:
    """Make the function use this engine and these settings (token auth by default)."""
    settings.setdefault("health_api_token", TOKEN)
    service = HealthService(Settings.from_env({}, **settings), engine=engine)
    set_service(service)
    return service


@pytest.fixture(autouse=True)
def _reset_service() -> Iterator[None]:
    yield
    set_service(None)


def app(target: str, signature_type: str):
    """A fresh functions-framework app around functions/health/main.py."""
    return create_app(target, str(SOURCE), signature_type=signature_type)
