"""The level test's slow-component model (issue 23): AR(1) errors plus a slow AR(1)
component whose share of the variance is fitted across products from r1 and the
reference's placebo ratio (`slow_table`), each product's p-value the posterior mixture
over (phi, omega)."""

from __future__ import annotations

import numpy as np
import pytest

from forecastguard.health import slow_table, stats
from forecastguard.health.phi_table import PHI_GRID

REF, DAYS = 90, 30
ALPHA = 0.05


def _ar1(rng: np.random.Generator, phi: float, rows: int, days: int) -> np.ndarray:
    shocks = rng.standard_normal((rows, days))
    out = np.empty_like(shocks)
    out[:, 0] = shocks[:, 0]
    c = np.sqrt(1 - phi * phi)
    for j in range(1, days):
        out[:, j] = phi * out[:, j - 1] + c * shocks[:, j]
    return out


def _errors(rng: np.random.Generator, rows: int, omega: float, ref: int = REF) -> np.ndarray:
    """AR(1) phi 0.5 errors plus a slow AR(1) (PHI_SLOW) holding `omega` of the variance,
    each product on its own scale."""
    days = ref + DAYS
    x = np.sqrt(1 - omega) * _ar1(rng, 0.5, rows, days)
    if omega:
        x += np.sqrt(omega) * _ar1(rng, slow_table.PHI_SLOW, rows, days)
    return x * np.exp(rng.normal(1.0, 0.5, rows))[:, None]


def _decide(errors: np.ndarray, ref: int = REF) -> tuple[stats.DriftTests, stats.DriftDecision]:
    t = stats.drift_tests(
        errors[:, :ref],
        errors[:, ref:],
        contiguous=np.ones(len(errors), bool),
        weekday=np.arange(errors.shape[1]) % 7,
    )
    return t, stats.drift_decision(t, ALPHA, 0.25)


def test_placebo_ratio_by_hand() -> None:
    ref = np.array(
        [
            [1.0, 2.0, 3.0, 5.0, 7.0, 9.0, 0.0],  # blocks of 3 after the first day
            [1.0, 1.0, np.nan, 1.0, 1.0, 1.0, 1.0],  # constant: no ratio
        ]
    )
    ratio = stats.placebo_ratio(ref, 3)
    # Blocks (2, 3, 5) and (7, 9, 0): means 10/3 and 16/3, grand 13/3.
    between = 3 * ((10 / 3 - 13 / 3) ** 2 + (16 / 3 - 13 / 3) ** 2) / 1
    within = ((2 - 10 / 3) ** 2 + (3 - 10 / 3) ** 2 + (5 - 10 / 3) ** 2) + (
        (7 - 16 / 3) ** 2 + (9 - 16 / 3) ** 2 + (0 - 16 / 3) ** 2
    )
    assert ratio[0] == pytest.approx(between / (within / 4))
    assert np.isnan(ratio[1])
    assert np.isnan(stats.placebo_ratio(ref, 4)).all()  # fewer than two blocks


def test_the_table_matches_a_fresh_simulation() -> None:
    """The shipped table against 4,000 new series (another seed) in two cells of the
    check's configuration (30-day window, 90-day reference): the cells' probabilities
    of the fresh sample's bins, and the sample's log likelihood ranks (phi, omega)."""
    rng = np.random.default_rng(7)
    config = slow_table.configuration(DAYS, REF)
    prob = slow_table.table()
    w = len(slow_table.OMEGA_GRID)
    for phi_k, omega_w in ((10, 0), (10, 3)):
        r1, ratio = slow_table.simulate(
            float(PHI_GRID[phi_k]), float(slow_table.OMEGA_GRID[omega_w]), DAYS, 3, 4000, rng
        )
        cell = slow_table.cells(np.full(len(r1), config), r1, ratio)
        lik = slow_table.likelihood(cell)
        # The fresh sample's log-ratio margin against the table's (total variation).
        nr, nl = len(slow_table.R_EDGES) - 1, len(slow_table.LOG_EDGES) - 1
        fresh = np.bincount(cell % nl, minlength=nl) / len(cell)
        i, j = divmod(config, len(slow_table.BLOCKS))
        shipped = prob[i, j, phi_k, omega_w].sum(axis=0)
        assert 0.5 * np.abs(fresh - shipped).sum() < 0.04
        fresh_r1 = np.bincount(cell // nl % nr, minlength=nr) / len(cell)
        assert 0.5 * np.abs(fresh_r1 - prob[i, j, phi_k, omega_w].sum(axis=1)).sum() < 0.05
        # The true cell has the highest mean log likelihood among its neighbours.
        score = np.log(lik).mean(axis=0).reshape(len(PHI_GRID), w)
        best = np.unravel_index(score.argmax(), score.shape)
        assert abs(best[0] - phi_k) <= 1 and abs(best[1] - omega_w) <= 1, best


def test_a_slow_component_null_rarely_alarms_and_its_share_is_fitted() -> None:
    """12 windows x 1,000 products, 35 % of the variance in the slow component."""
    rng = np.random.default_rng(20261206)
    alarms = 0
    shares = []
    for _ in range(12):
        _, d = _decide(_errors(rng, 1000, 0.35))
        alarms += bool(d.drift.any())
        shares.append(float(d.slow_prior @ slow_table.OMEGA_GRID))
    assert alarms <= 1, alarms
    assert np.mean(shares) > 0.2, shares


def test_a_real_shift_is_found_and_no_slow_component_is_fitted_where_there_is_none() -> None:
    rng = np.random.default_rng(11)
    errors = _errors(rng, 1000, 0.0)
    shifted = np.zeros(1000, bool)
    shifted[::20] = True
    sd = errors[:, :REF].std(axis=1)
    errors[shifted, REF:] += 3.0 * sd[shifted, None]
    _, d = _decide(errors)
    recall = (d.drift & shifted).sum() / shifted.sum()
    assert recall >= 0.8, recall
    assert (d.drift & ~shifted).sum() <= 1
    assert d.slow_prior[0] > 0.5, d.slow_prior
    assert np.nanmean(d.slow_share) < 0.15
    assert np.all(d.kind[d.drift] == 0)  # a level change


def test_without_placebo_evidence_the_model_is_the_ar1_one() -> None:
    """A 30-day reference holds one window: no placebo, no slow component, the p-values
    those of the AR(1) model (the prior over phi alone)."""
    rng = np.random.default_rng(3)
    errors = _errors(rng, 300, 0.0, ref=DAYS)
    t, d = _decide(errors, ref=DAYS)
    assert (t.placebo_config == -1).all()
    np.testing.assert_allclose(d.slow_prior, [1.0, 0, 0, 0, 0], atol=1e-12)
    assert np.allclose(d.slow_share, 0.0)
    assert d.prior.shape == (len(PHI_GRID),)
    assert d.prior.sum() == pytest.approx(1.0)


def test_the_slow_cells_at_omega_zero_are_the_level_tests_own() -> None:
    rng = np.random.default_rng(5)
    t, _ = _decide(_errors(rng, 50, 0.2))
    w = len(slow_table.OMEGA_GRID)
    rows = np.repeat(np.arange(50), len(PHI_GRID))
    col = np.tile(np.arange(len(PHI_GRID)) * w, 50)
    se, dof = stats._slow_cells(t, rows, col)
    np.testing.assert_allclose(se.reshape(50, -1), t.level_se, rtol=1e-12)
    np.testing.assert_allclose(dof.reshape(50, -1), t.level_dof, rtol=1e-12)


def test_a_small_catalogue_keeps_the_ar1_model() -> None:
    """Fewer than MIN_PRIOR_PRODUCTS products with placebo evidence: the slow share is
    not fitted, the decision is the one without placebo evidence, bit for bit."""
    import dataclasses

    rng = np.random.default_rng(4)
    t, d = _decide(_errors(rng, 300, 0.35))
    assert (t.placebo_config >= 0).all()
    np.testing.assert_array_equal(d.slow_prior, [1.0, 0, 0, 0, 0])
    plain = dataclasses.replace(t, placebo_config=np.full(300, -1.0))
    d0 = stats.drift_decision(plain, ALPHA, 0.25)
    np.testing.assert_array_equal(d.p_level, d0.p_level)
    np.testing.assert_array_equal(d.prior, d0.prior)


def test_the_fitted_slow_share_is_published_with_the_drift_model() -> None:
    """The check's `drift_model` (and the `drift_slow_share` metric) carries the fitted
    prior over omega and its mean, where the slow component was fitted."""
    from forecastguard.health.check import _drift_model

    rng = np.random.default_rng(5)
    _, d = _decide(_errors(rng, 1000, 0.35))
    model = _drift_model(d)
    assert model["slow_prior"] == pytest.approx(d.slow_prior.tolist(), abs=1e-4)
    assert model["slow_share_mean"] == pytest.approx(
        float(d.slow_prior @ slow_table.OMEGA_GRID), abs=1e-4
    )
    assert d.slow_fitted
    _, small = _decide(_errors(rng, 200, 0.35))  # below 500 products: the AR(1) model
    assert not small.slow_fitted
    assert "slow_share_mean" not in _drift_model(small)
    assert "slow_prior" not in _drift_model(small)
