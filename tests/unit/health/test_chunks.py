"""Issues 23/27: the check's per-product computations done a chunk of products at a time
(for its memory) give the same doubles as all products at once."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd
import pytest

from forecastguard.health import check, coverage
from forecastguard.health.check import HealthParams, compute_health
from forecastguard.health.window import WindowData
from tests.integration.health.synthetic import synthetic_window

AS_OF = date(2026, 5, 30)
Z90 = 1.2815515655446004


def _window(seed: int = 3) -> WindowData:
    """300 products with a 90-day reference and served intervals, uneven: rows missing
    at random (products with fewer window days than others, some with none before the
    window), a few products without intervals, bounds of varied width."""
    data = synthetic_window(300, AS_OF, seed=seed, drift_share=0.05, history=90)
    rng = np.random.default_rng(seed)
    keep = rng.random(len(data.day)) > 0.15
    keep &= ~((data.codes == 11) & (data.day < data.history_days))  # no reference
    keep &= ~((data.codes == 12) & (data.day >= data.history_days + 5))  # 5 window days
    data = data.subset(data.products)  # a copy
    data = replace(
        data,
        codes=data.codes[keep],
        day=data.day[keep],
        units=data.units[keep],
        predicted=data.predicted[keep],
    )
    in_window = data.day >= data.history_days
    scale = np.sqrt(data.predicted) * rng.uniform(0.5, 2.0, len(data.day))
    lower = np.where(in_window, np.maximum(0.0, data.predicted - Z90 * scale), np.nan)
    upper = np.where(in_window, data.predicted + Z90 * scale, np.nan)
    none = np.isin(data.codes, [3, 40, 41])
    lower[none] = upper[none] = np.nan
    return replace(data, lower=lower, upper=upper)


@pytest.fixture()
def one_chunk(monkeypatch: pytest.MonkeyPatch):
    """Chunks of every product at once."""

    def apply() -> None:
        monkeypatch.setattr(check, "SALES_CHUNK_CELLS", 10**9)
        monkeypatch.setattr(coverage, "_CHUNK_PRODUCTS", 10**9)

    return apply


def test_sales_tests_same_in_chunks(monkeypatch: pytest.MonkeyPatch, one_chunk) -> None:
    data = _window()
    params = HealthParams()
    monkeypatch.setattr(check, "SALES_CHUNK_CELLS", 7 * 2 * data.window_days)  # 7 products
    chunked = check._sales_tests(data, params)
    one_chunk()
    whole = check._sales_tests(data, params)
    assert np.isfinite(whole[0]).sum() > 250  # most products tested
    for a, b in zip(chunked, whole, strict=True):
        np.testing.assert_array_equal(a, b)  # bit for bit (NaN == NaN here)


def test_coverage_columns_same_in_chunks(monkeypatch: pytest.MonkeyPatch, one_chunk) -> None:
    data = _window()
    monkeypatch.setattr(coverage, "_CHUNK_PRODUCTS", 7)
    chunked = coverage.product_columns(data, 7)
    one_chunk()
    whole = coverage.product_columns(data, 7)
    assert np.isfinite(whole["coverage_scale_ratio"]).sum() > 100  # the scale test ran
    assert chunked.keys() == whole.keys()
    for name in whole:
        np.testing.assert_array_equal(chunked[name], whole[name], err_msg=name)


def test_compute_health_same_in_chunks(monkeypatch: pytest.MonkeyPatch, one_chunk) -> None:
    data = _window(seed=4)
    monkeypatch.setattr(check, "SALES_CHUNK_CELLS", 5 * 2 * data.window_days)
    monkeypatch.setattr(coverage, "_CHUNK_PRODUCTS", 5)
    chunked = compute_health(data, HealthParams())
    one_chunk()
    whole = compute_health(data, HealthParams())
    assert whole.drift_detected  # 5 % of the products drifted
    pd.testing.assert_frame_equal(chunked.products, whole.products, check_exact=True)
    assert chunked.summary() == whole.summary()
