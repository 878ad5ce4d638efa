"""Fixtures for the trainer's unit tests."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.unit.trainer.helpers import make_sales


@pytest.fixture
def sales() -> pd.DataFrame:
    """Four products, 260 days."""
    return make_sales()
