"""Issues 23/27: the check's compute made faster gives the same doubles as before.

Each fast path is compared, bit for bit, with the computation it replaced, on random
data with the cases that take other branches: missing days (NaN cells), zeros,
constant periods, intermittent products, rows without any value.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from forecastguard.health import stats
from tests.unit.health._before import drift_tests_before, lag_counts_rows_before


def _errors(rng: np.random.Generator, rows: int, m: int, n: int) -> np.ndarray:
    """Errors (rows x m + n): AR(1)-like and Gaussian, a fifth intermittent counts, some
    constant periods (both or one), some all zero, days missing at random, a few rows
    with one period empty, one row empty."""
    x = rng.normal(0.0, rng.uniform(0.5, 5.0, rows)[:, None], (rows, m + n))
    x[:, 1:] += 0.5 * x[:, :-1]
    inter = rng.random(rows) < 0.2
    x[inter] = rng.poisson(0.3, (int(inter.sum()), m + n)) - 0.3
    x[rng.random(rows) < 0.05] = 2.5  # constant in both periods
    one = rng.random(rows) < 0.05
    x[one, :m] = -1.0  # a constant reference
    x[rng.random(rows) < 0.03] = 0.0
    x = np.round(x, rng.integers(0, 3))  # ties (discrete errors)
    x[rng.random((rows, m + n)) < 0.15] = np.nan
    x[rng.random(rows) < 0.02, m:] = np.nan  # no window
    x[0] = np.nan
    return x


@pytest.mark.parametrize("width", [1, 2, 7, 30, 90])
def test_row_nanmedian_is_numpys(width: int) -> None:
    rng = np.random.default_rng(width)
    x = np.round(rng.normal(0.0, 3.0, (500, width)), 1)
    x[rng.random(x.shape) < 0.3] = np.nan
    x[:5] = np.nan  # rows without any value
    x[5:10] = 0.0
    x[10, : width // 2] = -0.0
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        expected = np.nanmedian(x, axis=1)
    got = stats.row_nanmedian(x)
    np.testing.assert_array_equal(got, expected)
    assert np.isnan(got[:5]).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("m", "n"), [(30, 30), (90, 30), (14, 30)])
def test_drift_tests_same_as_before(seed: int, m: int, n: int) -> None:
    """The drift tests hand each array's period means and sds, and lag-1 r, to the
    functions that need them instead of each computing its own, and take row medians
    by a sort instead of np.nanmedian: every field equals the old code's."""
    rng = np.random.default_rng(seed)
    rows = 400
    x = _errors(rng, rows, m, n)
    contiguous = rng.random(rows) < 0.8
    weekday = (np.arange(m + n) + seed) % 7
    fast = stats.drift_tests(x[:, :m], x[:, m:], contiguous=contiguous, weekday=weekday)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        old = drift_tests_before(x[:, :m], x[:, m:], contiguous=contiguous, weekday=weekday)
    assert np.isfinite(fast.level_diff).sum() > rows / 2  # most rows tested
    assert (fast.sd_ref == np.sqrt(stats.CONSTANT_VARIANCE)).any()  # constant periods
    for name in stats.DriftTests.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(fast, name), getattr(old, name), err_msg=name)


@pytest.mark.parametrize(("m", "n"), [(1, 1), (1, 30), (30, 30), (90, 30), (180, 30), (47, 13)])
def test_lag_counts_by_fft_are_the_counts(m: int, n: int) -> None:
    """The pair counts by lag from FFTs, rounded, are the counts pair by pair."""
    rng = np.random.default_rng(m * 1000 + n)
    present = rng.random((300, m + n)) < rng.uniform(0.0, 1.0, 300)[:, None]
    present[0] = True
    present[1] = False
    contiguous = rng.random(300) < 0.7
    fast = stats._lag_counts_rows(present, m, contiguous)
    old = lag_counts_rows_before(present, m, contiguous)
    np.testing.assert_array_equal(fast, old)
    assert not np.signbit(fast).any()  # no -0.0 from the rounding


@pytest.mark.parametrize("nominal", [0.5, 0.8, 0.9])
def test_hit_autocorrelation_skips_only_zero_terms(nominal: float) -> None:
    """The hits' correlation leaves out the powers whose Hermite weight is exactly 0:
    the same doubles as the full sum."""
    from forecastguard.health import coverage

    k, a2 = coverage._hermite_weights(nominal)
    assert (a2 == 0).sum() >= len(a2) // 2  # the odd terms
    lags = np.arange(1, 30)
    r = (coverage._PHI_GRID[:, None] ** lags[None, :]).ravel()
    r = np.concatenate([r, [0.999, 0.0, 1e-300]])
    full = (a2 * r[..., None] ** k).sum(axis=-1) / (nominal * (1.0 - nominal))
    np.testing.assert_array_equal(coverage.hit_autocorrelation(r, nominal), full)


@pytest.mark.parametrize("block", [1, 7, 1 << 16])
def test_scatter_cells_is_one_assignment(monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    """Filling a matrix a block of entries at a time: the same cells, the later of two
    entries for one cell kept, as one masked assignment."""
    rng = np.random.default_rng(block)
    monkeypatch.setattr(stats, "SCATTER_BLOCK_ROWS", block)
    rows, cols = rng.integers(0, 20, 500), rng.integers(3, 13, 500)
    values, mask = rng.normal(size=500), rng.random(500) < 0.7
    expected = np.full((20, 10), np.nan)
    expected[rows[mask], cols[mask] - 3] = values[mask]
    got = stats.scatter_cells(np.full((20, 10), np.nan), rows, cols, values, mask, 3)
    np.testing.assert_array_equal(got, expected)
    expected[rows, cols - 3] = values
    got = stats.scatter_cells(np.full((20, 10), np.nan), rows, cols, values, None, 3)
    np.testing.assert_array_equal(got, expected)
    a, b = rng.normal(size=500), rng.normal(size=500)  # a - b, subtracted a block at a time
    expected[rows[mask], cols[mask] - 3] = (a - b)[mask]
    got = stats.scatter_cells(got, rows, cols, (a, b), mask, 3)
    np.testing.assert_array_equal(got, expected)


def test_drift_decision_same_in_cell_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The level p-values' variance a block of (product, grid cell) pairs at a time: the
    same decision as all at once."""
    rng = np.random.default_rng(11)
    rows, m, n = 700, 90, 30
    x = _errors(rng, rows, m, n)
    x[rng.random(rows) < 0.1, m:] += 3.0  # some drift
    tests = stats.drift_tests(
        x[:, :m], x[:, m:], contiguous=np.ones(rows, bool), weekday=np.arange(m + n) % 7
    )
    monkeypatch.setattr(stats, "_CELL_BLOCK", 10**9)
    whole = stats.drift_decision(tests, 0.05, 0.25)
    monkeypatch.setattr(stats, "_CELL_BLOCK", 5)
    blocks = stats.drift_decision(tests, 0.05, 0.25)
    assert whole.drift.sum() > 10
    for name in ("p_level", "p_scale", "pvalue", "qvalue", "drift", "kind", "phi_mean"):
        np.testing.assert_array_equal(getattr(blocks, name), getattr(whole, name), err_msg=name)
    assert blocks.null_sd_level == whole.null_sd_level


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_two_sample_rows_is_two_sample(seed: int) -> None:
    """The sales comparison on rows (one sort along each short row) gives two_sample's
    doubles: KS numerators, Wasserstein distances, pooled sds, the sorted samples."""
    rng = np.random.default_rng(seed)
    groups, wa, wb = 300, 30, 45
    a = np.round(rng.gamma(1.0, rng.uniform(0.1, 20.0, groups)[:, None], (groups, wa)))
    b = np.round(rng.gamma(1.0, rng.uniform(0.1, 20.0, groups)[:, None], (groups, wb)), 1)
    a[rng.random(groups) < 0.2] = 0.0  # zero sales
    b[rng.random(groups) < 0.05] = 3.0  # constant
    a[rng.random((groups, wa)) < 0.2] = np.nan  # fewer values
    b[rng.random((groups, wb)) < 0.3] = np.nan
    a[:3] = np.nan  # no sample a
    b[3:5] = np.nan  # no sample b
    a[5:7], b[5:7] = np.nan, np.nan  # none at all
    # two_sample on the same observations, flat (in each row's order)
    ra, ca = np.nonzero(~np.isnan(a))
    rb, cb = np.nonzero(~np.isnan(b))
    flat = stats.two_sample(ra, a[ra, ca], rb, b[rb, cb], groups)
    # the rows with their values first (as the sales tests build them) and scattered
    packed_a = np.sort(a, axis=1)  # any order within a row: the result is the same
    for rows_a in (a, packed_a):
        got = stats.two_sample_rows(rows_a, b)
        for name in ("n_a", "n_b", "d_num", "wasserstein", "pooled_std", "_starts", "_codes"):
            np.testing.assert_array_equal(getattr(got, name), getattr(flat, name), err_msg=name)
        np.testing.assert_array_equal(got._values, flat._values)
        np.testing.assert_array_equal(got._is_b, flat._is_b)
        for g in (0, 4, 10, 99):
            for x, y in zip(got.samples(g), flat.samples(g), strict=True):
                np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(
        stats.ks_pvalues(stats.two_sample_rows(a, b), 7), stats.ks_pvalues(flat, 7)
    )


def test_two_sample_rows_without_values() -> None:
    got = stats.two_sample_rows(np.full((3, 0), np.nan), np.full((3, 2), np.nan))
    assert got.d_num.tolist() == [0, 0, 0]
    assert np.isnan(got.wasserstein).all() and np.isnan(got.pooled_std).all()
    with pytest.raises(ValueError, match="groups x values"):
        stats.two_sample_rows(np.zeros(3), np.zeros((3, 1)))


def test_squares_variance_factor_once_per_phi() -> None:
    """Computed once per distinct phi, the factors are each product's own computation."""
    from forecastguard.health import coverage

    rng = np.random.default_rng(4)
    phi = np.where(rng.random(400) < 0.5, 0.0, rng.uniform(0.0, 0.95, 400))
    phi[:3] = [0.95, np.nan, 0.95]
    for n in (1, 2, 30, 90):
        lags = np.arange(1, max(n, 2))
        weights = 1.0 - lags / max(n, 1)
        each = 1.0 + 2.0 * (weights * np.power(phi[:, None], 2 * lags)).sum(axis=-1)
        np.testing.assert_array_equal(coverage.squares_variance_factor(phi, n), each)
    assert coverage.squares_variance_factor(np.array(0.5), 30).shape == ()


def test_product_records_as_pandas_gives_them() -> None:
    """The result's product records, built column by column, equal pandas' records of
    the object frame with NaN as None — values and Python types — for every kind of
    column (numbers, flags, text, dates, timestamps, missing values)."""
    from datetime import date

    import pandas as pd

    from forecastguard.health.check import HealthResult

    products = pd.DataFrame(
        {
            "product_id": ["P1", "P2", "P3"],
            "n": np.array([3, 0, 7], np.int64),
            "rmse": [1.5, np.nan, 2.0],
            "drift": [True, False, True],
            "drift_kind": ["level", None, "scale"],
            "drift_since": [date(2026, 5, 1), None, date(2026, 4, 2)],
            "stamp": pd.to_datetime(["2026-05-01", None, "2026-05-03"]),
            "coverage_n": [np.nan, np.nan, np.nan],
        }
    )
    result = HealthResult.__new__(HealthResult)
    result.products = products
    expected = products.astype(object).where(products.notna(), None).to_dict("records")
    got = result.product_records()
    assert got == expected
    for a, b in zip(got, expected, strict=True):
        assert [type(v) for v in a.values()] == [type(v) for v in b.values()]
