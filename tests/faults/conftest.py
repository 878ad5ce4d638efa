"""Fixtures of the fault tests: functions served over real HTTP by functions-framework,
MariaDB behind a TCP proxy that can refuse, cut or stall, and a filled database."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from functions_framework import create_app
from werkzeug.serving import make_server

from forecastguard.config import Settings
from forecastguard.db.engine import make_engine
from forecastguard.db.schema import health_check_products, health_checks
from forecastguard.health.service import HealthService, set_service
from tests.faults.proxy import TcpProxy
from tests.integration.health.synthetic import frames, synthetic_window, write

ROOT = Path(__file__).resolve().parents[2]
HEALTH = ROOT / "functions" / "health" / "main.py"
TRAIN_TRIGGER = ROOT / "functions" / "train_trigger" / "main.py"
AS_OF = date(2026, 5, 30)
TOKEN = "faults-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def fill(engine: sa.Engine, n_products: int = 20) -> None:
    """Write a synthetic window of `n_products` products ending AS_OF."""
    write(engine, *frames(synthetic_window(n_products, AS_OF, seed=5)))


def counts(engine: sa.Engine) -> tuple[int, int]:
    """(health_checks rows, health_check_products rows)."""
    with engine.connect() as conn:
        return tuple(
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
            for t in (health_checks, health_check_products)
        )


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    """Serve a function (source, target, signature type) on a local port; its base URL."""
    servers = []

    def start(source: Path, target: str, signature: str) -> str:
        server = make_server(
            "127.0.0.1", 0, create_app(target, str(source), signature), threaded=True
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
    set_service(None)


def health_service(engine: sa.Engine | None = None, **settings: object) -> HealthService:
    """Make the health function of this process use this engine and these settings."""
    settings.setdefault("health_api_token", TOKEN)
    service = HealthService(Settings.from_env({}, **settings), engine=engine)
    set_service(service)
    return service


@pytest.fixture
def proxied_mariadb(mariadb_url: str) -> Iterator[tuple[str, TcpProxy]]:
    """(URL through the proxy, the proxy) for a fresh, migrated, filled MariaDB database."""
    url = sa.make_url(mariadb_url)
    engine = make_engine(mariadb_url)
    fill(engine)
    engine.dispose()
    with TcpProxy((url.host or "127.0.0.1", url.port or 3306)) as proxy:
        yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(False), proxy
