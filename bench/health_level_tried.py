"""Issue 23, the held-out `mixture` null: level-test variants tried on the way.

Since 2026-12-06 `check` is the landed slow-component model (`stats.drift_decision` with
`slow_table`); the figures below and in `bench/results/health_level_tried*.json` were
measured before, when `check` was the AR(1) model alone. `slow_component` and
`slow_component_t` are the prototypes of what landed (exact per-product placebo
contrasts, Gaussian or Student t, the r1 likelihood ignoring omega); the landed test
tabulates the joint (r1, placebo ratio) likelihood instead.

The check's level test (`stats.drift_tests` + `stats.drift_decision`: the NPMLE prior over
an AR(1) phi, posterior mixture p-values, one empirical-null spread by central matching
on |z| <= 2, floored at 1) alarms in 0.110 of the `mixture` case's null windows at 1,000
products. This script measures, on the calibration bench's own windows and generators
(`bench/health_calibration.py`, the same seeds, 90-day reference, MIN_DRIFT_EFFECT 0.25),
what would make the variance of the window-minus-reference mean follow each product's
long-run variance, and what it costs:

- `check`: the check as it is;
- `placebo_lambda`: a per-product variance inflation lambda (grid 1.25^-6 .. 1.25^15,
  used as max(lambda, 1)), whose distribution across products is the NPMLE (EM) fitted
  on the reference's own placebo contrasts — the Helmert contrasts of window-length
  blocks (the last block of the reference against the rest of it, then the one before
  against what precedes it), each turned into a z-value by the same posterior mixture
  over phi as the real test — and each product's level p-value the posterior mixture
  over lambda as well (a batch-means long-run variance, shrunk across products);
- `window_floor`: the separate-variance level test with the window's variance at least
  the reference's (a calm window cannot shrink the standard error);
- `central_z3`: the empirical null's central matching on |z| <= 3 instead of 2;
- `slow_component` (`--variants`): the errors as an AR(1) (phi on the grid) plus a slow
  AR(1) component (phi 0.99) holding a share omega in {0, 0.1, 0.2, 0.35, 0.5} of the
  variance — its covariances enter the exact variance of the mean change through the
  same sums of phi^|i-j| (linear in the covariance) — with the distribution of (phi,
  omega) across products the NPMLE on r1 (the phi table, omega ignored) and the
  reference's placebo contrasts (Gaussian, each at its own (phi, omega) variance), and
  each product's p-value the posterior mixture over both; `slow_component_t` the same
  with a Student-t likelihood of the placebo contrasts (their standard errors are
  estimated, on the degrees of freedom of the level test's formula).

Diagnostics (`--part diag`): per third of the mixture, the root mean square of the real
test's z-values and of the placebo z-values (posterior mixture over phi), their
correlation, the placebo |z| of the products with the top 1 % real |z|, and the ratio
of the AR(p) spectral density at zero (p <= 10 by AIC, Yule-Walker on the
period-centred errors) to the AR(1) one at r1 — which statistic could tell the
long-memory third apart.

Cost (`--part cost`): CPU seconds (process time) of the check's drift statistics on one
window of 10,000 products, and each variant's extra work.

The runs of 2026-12-06 (each its own file, `bench/results/health_level_tried*.json`):

    nice -n 10 .venv/bin/python bench/health_level_tried.py --part diag,null,power \
        --cases mixture --windows 400 --power-windows 100 --json .../health_level_tried.json
    ... --part null --cases seasonal_garch,lm_half,arfima_d03 --windows 200 (_heldout)
    ... --part null --variants check --products 10000 --windows 25 (_heldout_10k)
    ... --variants slow_component --part null,power --cases mixture --windows 100
        --power-windows 40, then --part null --cases arfima_d03,lm_half (_slow)
    ... --variants slow_component_t --part power --power-windows 40, then --part null
        --cases mixture,lm_half --windows 100 (_slow_t); --power-windows 100 (_slow_t100);
        --part null on the other cases (_slow_t_rows, _slow_t_heldout)
    ... --part cost --products 10000 (_cost)

Nothing here is used by the check.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT)]

from bench import health_calibration as hc  # noqa: E402
from forecastguard.health import stats  # noqa: E402
from forecastguard.health.phi_table import PHI_GRID, likelihood  # noqa: E402

REF = 90
DAYS = 30
ALPHA = 0.05
MIN_EFFECT = 0.25
LAMBDA_GRID = 1.25 ** np.arange(-6, 16)
VARIANTS = ("check", "placebo_lambda", "window_floor", "central_z3")
ALL_VARIANTS = (*VARIANTS, "slow_component", "slow_component_t")
PHI_SLOW = 0.99
OMEGA_GRID = np.array([0.0, 0.1, 0.2, 0.35, 0.5])


def _adjusted(raw: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(the errors after removing their weekday means pooled over both periods, the
    parameters spent) — as `stats.drift_tests` does for contiguous references."""
    x = raw.copy()
    present = ~np.isnan(x)
    wd = np.arange(x.shape[1]) % 7
    filled = np.where(present, x, 0.0)
    sums = np.stack([filled[:, wd == d].sum(axis=1) for d in range(7)], axis=1)
    counts = np.stack([present[:, wd == d].sum(axis=1) for d in range(7)], axis=1).astype(float)
    overall = sums.sum(axis=1) / counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        wmean = np.where(counts > 0, sums / counts, 0.0) - overall[:, None]
    return x - wmean[:, wd], np.full(len(x), 6.0)


def placebo_contrasts(raw: np.ndarray, m: int) -> list[tuple[np.ndarray, ...]]:
    """(diff, se (groups x phi grid), dof) of each Helmert contrast of window-length blocks
    inside the reference, by the level test's own `_mean_change_grid`."""
    x, spent = _adjusted(raw, m)
    n = raw.shape[1] - m
    out = []
    for j in range(1, m // n):
        end = m - (j - 1) * n
        sub = x[:, :end]
        pattern = stats._lag_patterns(~np.isnan(sub), end - n, np.ones(len(x), bool))
        out.append(
            stats._mean_change_grid(sub, end - n, PHI_GRID, pattern, spent * end / x.shape[1])
        )
    return out


def _posterior_phi(tests: stats.DriftTests, idx: np.ndarray) -> np.ndarray:
    lik = likelihood(tests.r1[idx], tests.n_total[idx])
    prior = stats.npmle_prior(lik)
    n, k = len(idx), len(PHI_GRID)
    if n < stats.MIN_PRIOR_PRODUCTS:
        prior = (n * prior + (stats.MIN_PRIOR_PRODUCTS - n) / k) / stats.MIN_PRIOR_PRODUCTS
    post = lik * prior
    return post / np.maximum(post.sum(axis=1, keepdims=True), stats._TINY)


def _mixture_z(post: np.ndarray, diff: np.ndarray, se: np.ndarray, dof: np.ndarray) -> np.ndarray:
    """The z-value of the posterior mixture (over phi) of the point-null t p-values."""
    from scipy.special import ndtri, stdtr

    with np.errstate(invalid="ignore", divide="ignore"):
        pk = 2.0 * stdtr(np.maximum(dof, 1.0), -np.abs(diff)[:, None] / se)
    p = np.clip((post * np.nan_to_num(pk, nan=1.0)).sum(axis=1), 1e-300, 1.0)
    return -ndtri(p / 2.0)


def _npmle(lik: np.ndarray, iterations: int = 150) -> np.ndarray:
    prior = np.full(lik.shape[1], 1.0 / lik.shape[1])
    for _ in range(iterations):
        post = lik * prior
        post /= post.sum(axis=1, keepdims=True)
        prior = post.mean(axis=0)
    return prior


def placebo_lambda(tests: stats.DriftTests, contrasts: list) -> np.ndarray:
    """Level p-values with a per-product variance inflation (see the module text)."""
    from scipy.special import stdtr

    g = len(tests.level_diff)
    idx = np.flatnonzero(tests.tested & np.isfinite(tests.level_se).any(axis=1))
    n = len(idx)
    post = _posterior_phi(tests, idx)
    loglik = np.zeros((n, len(LAMBDA_GRID)))
    for diff, se, dof in contrasts:
        z = _mixture_z(post, diff[idx], se[idx], dof[idx])
        z = np.where(np.isfinite(z), z, 0.0)
        loglik += -0.5 * z[:, None] ** 2 / LAMBDA_GRID - 0.5 * np.log(LAMBDA_GRID)
    lik = np.exp(loglik - loglik.max(axis=1, keepdims=True))
    lam_post = lik * _npmle(lik)
    lam_post /= lam_post.sum(axis=1, keepdims=True)
    joint = post[:, :, None] * lam_post[:, None, :]
    row, col, lc = np.nonzero(joint > stats._NEGLIGIBLE)
    w = joint[row, col, lc]
    a = np.abs(tests.level_diff[idx][row])
    se_k = tests.level_se[idx][row, col] * np.sqrt(np.maximum(LAMBDA_GRID[lc], 1.0))
    dof_k = np.maximum(tests.level_dof[idx][row, col], 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p0_k = np.nan_to_num(2.0 * stdtr(dof_k, -a / se_k), nan=1.0)
    sd_level = stats._null_sd(np.bincount(row, weights=w * p0_k, minlength=n), n, 1.0)
    delta = MIN_EFFECT * tests.sd_ref[idx][row]
    shifted = np.nan_to_num(stats._shifted_t(a, se_k * sd_level, dof_k, delta), nan=1.0)
    p_level = np.full(g, np.nan)
    p_level[idx] = np.clip(np.bincount(row, weights=w * shifted, minlength=n), stats._TINY, 1.0)
    return p_level


def _flags(p_level: np.ndarray, base: stats.DriftDecision) -> np.ndarray:
    """The check's combination of a level p-value with its scale p-value, and BH."""
    parts = np.stack([p_level, base.p_scale], axis=1) / np.asarray(stats.DRIFT_WEIGHTS[:2])
    has = ~np.isnan(parts).all(axis=1)
    pvalue = np.full(len(p_level), np.nan)
    pvalue[has] = np.minimum(np.nanmin(np.where(np.isnan(parts), np.inf, parts), axis=1), 1.0)[has]
    return stats.benjamini_hochberg(pvalue) <= ALPHA


_separate = stats._separate_variance


def _window_floor(nr, nw, sp, sds, sums, phi):
    sd_r, sd_w = sds
    return _separate(nr, nw, sp, (sd_r, np.maximum(sd_w, sd_r)), sums, phi)


def _tests(errors: np.ndarray, floor: bool = False) -> stats.DriftTests:
    stats._separate_variance = _window_floor if floor else _separate
    try:
        return stats.drift_tests(
            errors[:, :REF],
            errors[:, REF:],
            contiguous=np.ones(len(errors), bool),
            weekday=np.arange(errors.shape[1]) % 7,
        )
    finally:
        stats._separate_variance = _separate


def _slow_grid(x: np.ndarray, m: int, spent: np.ndarray) -> tuple[np.ndarray, ...]:
    """(diff, se, dof) of the mean change over the (phi x omega) grid (flattened), the
    separate-variance formula with the covariance (1 - omega) phi^k + omega PHI_SLOW^k."""
    present = ~np.isnan(x)
    counts, inverse = stats._lag_patterns(present, m, np.ones(len(x), bool))
    width = x.shape[1]
    weight = np.full(width, 2.0)
    weight[0] = 1.0
    grid = np.concatenate([PHI_GRID, [PHI_SLOW]])
    powers = grid[:, None] ** np.arange(width)[None, :]
    k, w = len(PHI_GRID), len(OMEGA_GRID)

    def mixed(s: np.ndarray) -> np.ndarray:
        s = s[inverse]
        out = (1 - OMEGA_GRID) * s[:, :k, None] + OMEGA_GRID * s[:, k:, None]
        return out.reshape(len(x), k * w)

    s_rr = mixed(np.stack([(counts[:, 0] * (p * weight)).sum(axis=1) for p in powers], axis=1))
    s_ww = mixed(np.stack([(counts[:, 1] * (p * weight)).sum(axis=1) for p in powers], axis=1))
    s_rw = mixed(np.stack([(counts[:, 2] * p).sum(axis=1) for p in powers], axis=1))
    n_r, mean_r, sd_r = stats._nan_mean_sd(x[:, :m])
    n_w, mean_w, sd_w = stats._nan_mean_sd(x[:, m:])
    phi = np.repeat(PHI_GRID, w)[None, :]
    sds = (sd_r[:, None], sd_w[:, None])
    se, dof = stats._separate_variance(
        n_r[:, None], n_w[:, None], spent[:, None], sds, (s_rr, s_ww, s_rw), phi
    )
    return mean_w - mean_r, se, dof


def slow_component(
    errors: np.ndarray, tests: stats.DriftTests, student: bool = False
) -> np.ndarray:
    """Level p-values of the AR(1) + slow-component model (see the module text); with
    `student` the placebo contrasts' likelihood is Student t on their own degrees of
    freedom (their standard error is estimated), not Gaussian."""
    from scipy.special import gammaln, stdtr

    x, spent = _adjusted(errors, REF)
    n = errors.shape[1] - REF
    diff, se, dof = _slow_grid(x, REF, spent)
    loglik = np.log(np.repeat(likelihood(tests.r1, tests.n_total), len(OMEGA_GRID), axis=1))
    for j in range(1, REF // n):
        end = REF - (j - 1) * n
        d, s, nu = _slow_grid(x[:, :end], end - n, spent * end / x.shape[1])
        if student:
            nu = np.maximum(nu, 1.0)
            loglik += (
                gammaln((nu + 1) / 2)
                - gammaln(nu / 2)
                - 0.5 * np.log(nu)
                - (nu + 1) / 2 * np.log1p((d[:, None] / s) ** 2 / nu)
                - np.log(s)
            )
        else:
            loglik += -0.5 * (d[:, None] / s) ** 2 - np.log(s)
    lik = np.exp(loglik - loglik.max(axis=1, keepdims=True))
    post = lik * _npmle(lik, 200)
    post /= post.sum(axis=1, keepdims=True)
    row, col = np.nonzero(post > stats._NEGLIGIBLE)
    w = post[row, col]
    a = np.abs(diff[row])
    se_k, dof_k = se[row, col], np.maximum(dof[row, col], 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p0_k = np.nan_to_num(2.0 * stdtr(dof_k, -a / se_k), nan=1.0)
    g = len(errors)
    sd_level = stats._null_sd(np.bincount(row, weights=w * p0_k, minlength=g), g, 1.0)
    delta = MIN_EFFECT * tests.sd_ref[row]
    shifted = np.nan_to_num(stats._shifted_t(a, se_k * sd_level, dof_k, delta), nan=1.0)
    return np.clip(np.bincount(row, weights=w * shifted, minlength=g), stats._TINY, 1.0)


def flags_by_variant(
    errors: np.ndarray, variants: tuple[str, ...] = VARIANTS
) -> dict[str, np.ndarray]:
    """Each variant's drift flags on one window (products x (REF + DAYS) errors)."""
    tests = _tests(errors)
    base = stats.drift_decision(tests, ALPHA, MIN_EFFECT)
    out = {"check": base.drift}
    if "placebo_lambda" in variants:
        p = placebo_lambda(tests, placebo_contrasts(errors, REF))
        out["placebo_lambda"] = _flags(p, base)
    if "window_floor" in variants:
        floor = _tests(errors, floor=True)
        stats._separate_variance = _window_floor  # the decision's variances too
        try:
            out["window_floor"] = stats.drift_decision(floor, ALPHA, MIN_EFFECT).drift
        finally:
            stats._separate_variance = _separate
    if "central_z3" in variants:
        old = stats.CENTRAL_Z
        stats.CENTRAL_Z = 3.0
        try:
            out["central_z3"] = stats.drift_decision(tests, ALPHA, MIN_EFFECT).drift
        finally:
            stats.CENTRAL_Z = old
    if "slow_component" in variants:
        out["slow_component"] = _flags(slow_component(errors, tests), base)
    if "slow_component_t" in variants:
        out["slow_component_t"] = _flags(slow_component(errors, tests, student=True), base)
    return out


def null_rows(
    case: str,
    products: int,
    windows: int,
    variants: tuple[str, ...] = VARIANTS,
    seed: int = 23,
    chunk: int = 25,
) -> dict:
    """Windows that alarm per variant, on the null part's own windows (its seeds)."""
    variants = ("check", *[v for v in variants if v != "check"])
    alarms = dict.fromkeys(variants, 0)
    flagged = dict.fromkeys(variants, 0)
    start = time.perf_counter()
    for c in range(-(-windows // chunk)):
        rng = np.random.default_rng([seed, products, hc.case_seed(case), c])
        for _ in range(min(chunk, windows - c * chunk)):
            errors, _ = hc.NULL_CASES[case](rng, products, REF + DAYS)
            for v, f in flags_by_variant(errors, variants).items():
                alarms[v] += bool(f.any())
                flagged[v] += int(f.sum())
    row = {
        "case": case,
        "products": products,
        "windows": windows,
        "variants": list(variants),
        "alarms": alarms,
        "alarm_share": {v: alarms[v] / windows for v in variants},
        "upper95": {v: hc.upper95(alarms[v], windows) for v in variants},
        "flagged": flagged,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(f"null {case} {products}: {alarms} of {windows}  [{row['seconds']} s]", flush=True)
    return row


def power_rows(
    products: int, windows: int, variants: tuple[str, ...] = VARIANTS, seed: int = 23
) -> list[dict]:
    """Recall / precision per variant, the calibration bench's power windows (90 days)."""
    variants = ("check", *[v for v in variants if v != "check"])
    rows = []
    for phi, size in ((0.5, 1.5), (0.5, 2.0), (0.0, 1.5)):
        rng = np.random.default_rng(
            [seed, 7, int(size * 10), int(phi * 10), REF] + ([products] if products != 1000 else [])
        )
        tp, fp, n_true = dict.fromkeys(variants, 0), dict.fromkeys(variants, 0), 0
        for _ in range(windows):
            errors, sd = hc.suite(rng, products, REF + DAYS, phi)
            drifted = rng.random(products) < 0.05
            sign = rng.choice([-1.0, 1.0], int(drifted.sum()))
            errors[drifted, REF:] += (sign * size * sd[drifted])[:, None]
            for v, f in flags_by_variant(errors, variants).items():
                tp[v] += int((f & drifted).sum())
                fp[v] += int((f & ~drifted).sum())
            n_true += int(drifted.sum())
        row = {
            "phi": phi,
            "size_sd": size,
            "products": products,
            "windows": windows,
            "variants": list(variants),
            "recall": {v: tp[v] / n_true for v in variants},
            "precision": {v: tp[v] / max(tp[v] + fp[v], 1) for v in variants},
        }
        print(f"power phi {phi} {size} sd: {row['recall']} {row['precision']}", flush=True)
        rows.append(row)
    return rows


def _ar_lrv_ratio(errors: np.ndarray, max_order: int = 10) -> np.ndarray:
    """AR(p) spectral density at zero (p by AIC, Yule-Walker on the period-centred errors,
    pairs within periods) over the AR(1) one at r1, per product."""
    a = errors[:, :REF] - errors[:, :REF].mean(axis=1, keepdims=True)
    b = errors[:, REF:] - errors[:, REF:].mean(axis=1, keepdims=True)
    den = (a * a).sum(axis=1) + (b * b).sum(axis=1)
    r = [np.ones(len(errors))]
    for k in range(1, max_order + 1):
        r.append(((a[:, k:] * a[:, :-k]).sum(axis=1) + (b[:, k:] * b[:, :-k]).sum(axis=1)) / den)
    r = np.stack(r, axis=1)
    size = errors.shape[1]
    phi = np.zeros((len(errors), 0))
    v = np.ones(len(errors))
    best_aic = np.full(len(errors), np.inf)
    best_lrv = np.ones(len(errors))
    for p in range(1, max_order + 1):
        k = (r[:, p] - (phi * r[:, p - 1 : 0 : -1]).sum(axis=1)) / v if p > 1 else r[:, 1] / v
        phi = np.concatenate([phi - k[:, None] * phi[:, ::-1], k[:, None]], axis=1)
        v = v * (1 - k * k)
        aic = size * np.log(v) + 2 * (p + 1)
        better = aic < best_aic
        best_aic = np.where(better, aic, best_aic)
        best_lrv = np.where(better, v / (1 - phi.sum(axis=1)) ** 2, best_lrv)
    r1 = r[:, 1]
    return best_lrv / ((1 + r1) / (1 - r1))


def diagnostics(products: int = 1000, windows: int = 10, seed: int = 7) -> dict:
    """Which statistic separates the mixture's long-memory third (see the module text)."""
    rng = np.random.default_rng([seed, products])
    za, zs, part, lrv = [], [], [], []
    for _ in range(windows):
        errors, _, third = hc.mixture_with_parts(rng, products, REF + DAYS)
        tests = _tests(errors)
        idx = np.arange(products)
        post = _posterior_phi(tests, idx)
        za.append(_mixture_z(post, tests.level_diff, tests.level_se, tests.level_dof))
        zs.append(np.stack([_mixture_z(post, *c) for c in placebo_contrasts(errors, REF)], axis=1))
        part.append(third)
        lrv.append(_ar_lrv_ratio(errors))
    za, zs, part, lrv = map(np.concatenate, (za, zs, part, lrv))
    out: dict = {"products": products, "windows": windows}
    for j, name in enumerate(hc.MIXTURE_THIRDS):
        s = part == j
        top = s & (za >= np.quantile(za[s], 0.99))
        out[name] = {
            "z_rms": float(np.sqrt(np.mean(za[s] ** 2))),
            "z_q999": float(np.quantile(za[s], 0.999)),
            "placebo_z_rms": np.sqrt(np.mean(zs[s] ** 2, axis=0)).round(3).tolist(),
            "placebo_z_q999": np.quantile(zs[s], 0.999, axis=0).round(3).tolist(),
            "corr_abs_z_placebo": float(np.corrcoef(za[s], zs[s, 0])[0, 1]),
            "placebo_abs_z_mean_all": np.abs(zs[s]).mean(axis=0).round(3).tolist(),
            "placebo_abs_z_mean_top1pct": np.abs(zs[top]).mean(axis=0).round(3).tolist(),
            "ar_lrv_over_ar1_quantiles_5_50_95": np.quantile(lrv[s], [0.05, 0.5, 0.95])
            .round(3)
            .tolist(),
        }
        print(f"diag {name}: {out[name]}", flush=True)
    return out


def cost(products: int = 10_000, repeats: int = 3, seed: int = 5) -> dict:
    """CPU seconds (process time, best of `repeats`) of the check's drift statistics on one
    suite window, and of each variant's extra work on top of them."""
    rng = np.random.default_rng([seed, products])
    errors, _ = hc.suite(rng, products, REF + DAYS, 0.5)

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            start = time.process_time()
            fn()
            times.append(time.process_time() - start)
        return min(times)

    tests = _tests(errors)
    base = stats.drift_decision(tests, ALPHA, MIN_EFFECT)
    out = {
        "products": products,
        "check_tests_and_decision": best(
            lambda: stats.drift_decision(_tests(errors), ALPHA, MIN_EFFECT)
        ),
        "placebo_lambda_extra": best(
            lambda: _flags(placebo_lambda(tests, placebo_contrasts(errors, REF)), base)
        ),
        "slow_component_extra": best(lambda: _flags(slow_component(errors, tests), base)),
        "slow_component_t_extra": best(
            lambda: _flags(slow_component(errors, tests, student=True), base)
        ),
    }
    print(f"cost: {out}", flush=True)
    return out


def _key(row: dict) -> tuple:
    """A null row's identity: case, products and the variants run."""
    return row["case"], row["products"], tuple(row.get("variants", VARIANTS))


def main() -> None:
    """Run the parts and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="diag,null,power")
    parser.add_argument("--cases", default="mixture")
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--windows", type=int, default=400)
    parser.add_argument("--power-windows", type=int, default=100)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {ALL_VARIANTS}")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    variants = tuple(args.variants.split(","))
    unknown = set(variants) - set(ALL_VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variant(s) {sorted(unknown)}; known: {ALL_VARIANTS}")
    out: dict = json.loads(args.json.read_text()) if args.json and args.json.exists() else {}
    out.setdefault("runs", []).append(
        {
            "args": {k: str(v) for k, v in vars(args).items()},
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
    )

    def save() -> None:
        if args.json:
            args.json.write_text(json.dumps(out, indent=1))

    parts = set(args.part.split(","))
    if "cost" in parts:
        out["cost"] = cost(args.products)
        save()
    if "diag" in parts:
        out["diagnostics"] = diagnostics()
        save()
    if "null" in parts:
        null = out.setdefault("null", [])
        for case in args.cases.split(","):
            row = null_rows(case, args.products, args.windows, variants)
            null[:] = [r for r in null if _key(r) != _key(row)] + [row]
            save()
    if "power" in parts:
        rows = power_rows(args.products, args.power_windows, variants)
        keep = [
            r
            for r in out.get("power", [])
            if r.get("variants", list(VARIANTS)) != rows[0]["variants"]
        ]
        out["power"] = keep + rows
        save()


if __name__ == "__main__":
    main()
