"""Fixtures shared by the integration tests of several components."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def beam_bigquery_emulator() -> Iterator[object]:
    """One bqemulator server for the main venv's issue-24 tests (`load-sales` into
    BigQuery, the trainer's forecasts), started with .venv-beam's interpreter where
    bqemulator lives: one start (a few seconds) instead of one per test. Each test uses a
    dataset of its own. Skips without .venv-beam."""
    from forecastguard.health.engine import beam_python
    from tests.support.bigquery_emulator import BigQueryEmulator

    python = beam_python()
    if not (Path(python).exists() and ".venv-beam" in python):
        pytest.skip("needs .venv-beam's bqemulator (make beam-setup; make test builds it)")
    emulator = BigQueryEmulator(python)
    yield emulator
    emulator.stop()
