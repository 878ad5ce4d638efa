"""The Beam tests run in .venv-beam (apache-beam pins protobuf < 7; `make test` runs them
there after the main suite). In the main .venv their modules skip, saying so."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.support.bigquery_emulator import BigQueryEmulator


@pytest.fixture(scope="session")
def bigquery_emulator() -> Iterator[BigQueryEmulator]:
    """A bqemulator server for the session (started as a subprocess, stopped after)."""
    emulator = BigQueryEmulator(sys.executable)
    yield emulator
    emulator.stop()
