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


# --- The sales and frequency tests take a chunk of products as a slice of the rows grouped
# by product (a stable sort once), no longer as a mask over every row: the same doubles.


def _masked_sales_tests(data: WindowData, params: HealthParams) -> tuple[np.ndarray, np.ndarray]:
    """The sales tests as they were: a mask over every row for each chunk of products."""
    from forecastguard.health import stats

    in_window = data.day >= data.history_days
    in_ref = (data.day >= data.history_days - data.window_days) & ~in_window
    codes_a, values_a = data.codes[in_window], data.units[in_window]
    codes_b, values_b = data.codes[in_ref], data.units[in_ref]
    n = len(data.products)
    pvalues, w_norm = np.full(n, np.nan), np.full(n, np.nan)
    step = max(1, check.SALES_CHUNK_CELLS // (2 * data.window_days))
    for lo in range(0, max(n, 1), step):
        hi = min(lo + step, n)
        a = (codes_a >= lo) & (codes_a < hi)
        b = (codes_b >= lo) & (codes_b < hi)
        cmp = stats.two_sample(codes_a[a] - lo, values_a[a], codes_b[b] - lo, values_b[b], hi - lo)
        pvalues[lo:hi] = stats.ks_pvalues(cmp, params.min_samples)
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(cmp.wasserstein > 0, cmp.wasserstein / cmp.pooled_std, 0.0)
        w[np.isnan(cmp.wasserstein)] = np.nan
        w_norm[lo:hi] = w
    return pvalues, w_norm


def _masked_frequency(data: WindowData) -> tuple[np.ndarray, np.ndarray]:
    """`check._product_frequency` as it was (a mask over every row a group)."""
    from forecastguard.frequency import product_frequencies

    n = len(data.products)
    kind, step = np.full(n, "unknown", dtype=object), np.zeros(n, np.int64)
    group = max(1, check.FREQUENCY_CHUNK_ROWS * n // data.codes.size)
    for first in range(0, n, group):
        rows = (data.codes >= first) & (data.codes < first + group)
        size = min(group, n - first)
        k, s = product_frequencies(data.codes[rows] - first, data.day[rows], size)
        kind[first : first + size], step[first : first + size] = k, s
    return kind, step


def _varied(data: WindowData, seed: int, shuffle: bool) -> WindowData:
    """The window with an intermittent product (mostly zero sales), a constant one and a
    weekly one among them, its rows in a random order if `shuffle`."""
    units = data.units.copy()
    rng = np.random.default_rng(seed)
    units[data.codes == 20] *= rng.random((data.codes == 20).sum()) < 0.2  # intermittent
    units[data.codes == 21] = 4.0  # constant
    keep = (data.codes != 22) | (data.day % 7 == 0)  # weekly
    order = np.flatnonzero(keep)
    order = rng.permutation(order) if shuffle else order
    return replace(
        data,
        codes=data.codes[order],
        day=data.day[order],
        units=units[order],
        predicted=data.predicted[order],
        lower=data.lower[order],
        upper=data.upper[order],
    )


@pytest.mark.parametrize("chunk_products", [1, 7, 10**6])
@pytest.mark.parametrize("shuffle", [False, True])
def test_sales_tests_sliced_as_masked(
    monkeypatch: pytest.MonkeyPatch, chunk_products: int, shuffle: bool
) -> None:
    data = _window(seed=5)
    data = _varied(data, 5, shuffle)
    monkeypatch.setattr(check, "SALES_CHUNK_CELLS", chunk_products * 2 * data.window_days)
    params = HealthParams()
    sliced, masked = check._sales_tests(data, params), _masked_sales_tests(data, params)
    assert np.isfinite(masked[0]).sum() > 250
    for a, b in zip(sliced, masked, strict=True):
        np.testing.assert_array_equal(a, b)  # bit for bit


@pytest.mark.parametrize("rows", [50, 3_000, 10**9])
@pytest.mark.parametrize("shuffle", [False, True])
def test_frequency_sliced_as_masked(
    monkeypatch: pytest.MonkeyPatch, rows: int, shuffle: bool
) -> None:
    data = _window(seed=6)
    data = _varied(data, 6, shuffle)
    monkeypatch.setattr(check, "FREQUENCY_CHUNK_ROWS", rows)
    kind, step = check._product_frequency(data)
    old_kind, old_step = _masked_frequency(data)
    assert (kind == old_kind).all() and (step == old_step).all()
    assert set(kind) >= {"daily", "weekly"}


@pytest.mark.parametrize("n", [2, 300, 70_000, 5_000_000_000])
def test_product_order_is_a_stable_argsort(n: int) -> None:
    rng = np.random.default_rng(n % 1000)
    codes = rng.integers(0, n, 20_000)
    np.testing.assert_array_equal(check.product_order(codes), np.argsort(codes, kind="stable"))
    assert check.product_order(np.sort(codes)) is None  # grouped already


def test_grouped_slices_of_products() -> None:
    codes = np.array([2, 0, 2, 1, 0, 2])
    values = np.arange(6.0)
    order = check.product_order(codes)
    assert order.tolist() == [1, 4, 3, 0, 2, 5]  # each product's rows in their order
    got, vals, bounds = check._grouped(None, codes, values, 4, order)
    assert got.tolist() == [0, 0, 1, 2, 2, 2] and vals.tolist() == [1, 4, 3, 0, 2, 5]
    assert bounds.tolist() == [0, 2, 3, 6, 6]
    got, vals, bounds = check._grouped(values != 4, codes, values, 4, order)
    assert vals.tolist() == [1, 3, 0, 2, 5] and bounds.tolist() == [0, 1, 2, 5, 5]


def test_product_phase_columns_in_order() -> None:
    """The accuracy columns first, then the reference, whatever ran first."""
    got = check.product_phase(_window(seed=8), HealthParams()).products
    first = ["product_id", "listed", "n", "rmse", "mae", "bias", "rmsse", "reference"]
    assert list(got.columns[:8]) == first
