"""Shared fixtures: migrated databases (SQLite and a real MariaDB), engines."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from forecastguard.db.engine import make_engine
from forecastguard.db.migrate import upgrade
from tests.support.mariadb import server_url


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection loaded (pytest, the libraries, TensorFlow and Keras: about 600,000
    objects for the whole suite) is frozen out of the garbage collector's reach
    (`gc.freeze`): it lives as long as the process, yet every full collection a test
    triggers would walk it again. The objects the tests make are collected as before."""
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[str]:
    """The URL of a MariaDB server (without database) for the whole session."""
    url, server = server_url()
    yield url
    if server is not None:
        server.stop()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A migrated SQLite database file in the test's temporary folder."""
    url = f"sqlite:///{tmp_path / 'forecastguard.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def mariadb_url(mariadb_server: str) -> Iterator[str]:
    """A fresh, migrated database on the MariaDB server; dropped afterwards."""
    name = f"fg_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(mariadb_server + "/")
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    url = f"{mariadb_server}/{name}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def db_url(request) -> str:
    """A migrated database, once on SQLite and once on MariaDB."""
    fixture = "sqlite_url" if request.param == "sqlite" else "mariadb_url"
    return request.getfixturevalue(fixture)


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    """An engine on `db_url`, disposed afterwards."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def keras_eagerly() -> Iterator[None]:
    """The module's Keras steps, its module fixtures' trainings included, run eagerly
    (`tests.support.keras_eager.eager_keras`): for modules whose subject is what a model
    computes (explanations, tuning, scoring), not how Keras traces it. Graph mode stays
    covered by the modules without it and by every trainer subprocess. A module uses it
    with `pytestmark = pytest.mark.usefixtures("keras_eagerly")`."""
    from tests.support.keras_eager import eager_keras

    with eager_keras():
        yield
