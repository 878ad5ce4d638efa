"""Calibration and power of the health check's drift test, out of sample (issue 23).

Every "window" is a batch of products (1,000 or 10,000) with a reference (30 days, the
previous window; 90 or 180 for the longer-reference rows) and 30 window days of forecast
errors, judged by exactly the check's code: `stats.drift_tests` (per product) and
`stats.drift_decision` (the prior over phi, the empirical null, the interval null of
MIN_DRIFT_EFFECT, BH), as `check.product_phase` / `check.global_phase` call them.

Nothing in the test was tuned on these generators (its tables, the r1 likelihood and the
joint (r1, placebo ratio) likelihood of the slow-component model, are simulated from
Gaussian AR(1) errors and Gaussian AR(1) plus a slow AR(1) component). Null cases, the share of windows that alarm
(target <= FDR_ALPHA 0.05; bound alpha + 2 se):

- suite phi 0.5 / 0.7: the earlier calibration suite (80 % AR(1) Gaussian or t(5)
  errors with a weekly pattern, 20 % intermittent Poisson around an AR(1) intensity);
- ar2: AR(2) errors, phi1 0.5, phi2 0.2 (the AR(1) model is wrong);
- phi_uniform_t5: phi drawn per product from U(0, 0.8), half of them t(5) shocks;
- zip: zero-inflated Poisson counts (40 % structural zeros) minus their mean;
- level_sd: error sd proportional to a slowly varying level (log-level AR(1) phi 0.97,
  sd 0.4), AR(1) 0.3 errors;
- t3_common: t(3) shocks, phi 0.5, and a daily shock common to all products (30 % of
  the variance);
- arma11_weekday (held out: added after the monthly retrain level FDR_ALPHA / 10 was
  chosen, to confirm it; pass it in --cases / --monthly-cases): ARMA(1,1) errors (phi
  0.6, theta 0.4), half with t(4) shocks, and a weekday pattern whose amplitude drifts;
  mixture (held out too): a third each AR(2) (0.7, 0.2), ARMA(1,1) (0.8, 0.3) with t(3)
  shocks, and a sum of AR(1) series (phi 0.3, 0.9, 0.99: long memory);
- held out, written before their results by the long-run-variance attempt: arfima_d03
  (ARFIMA(0, 0.3, 0) fractional noise), seasonal_garch (AR terms at lags 1 and 7, 0.3 and
  0.4, GARCH(1,1) shocks 0.05 / 0.10 / 0.85), lm_half (half ARFIMA d 0.25, half AR(1) 0.5).

`--reference-days` sets the reference of the null and monthly parts (30: the previous
window; 90: the default REFERENCE_DAYS), `--min-effect` MIN_DRIFT_EFFECT (default 0.5 here
for the earlier tables; the check's default is 0.25).

Power: 5 % of the products get a level shift of k error sd (sign at random) in the
window; recall and precision at phi 0.5 (suite) and on independent errors, with a 30-,
90- and 180-day reference.

Monthly: 30 consecutive daily checks (window and reference sliding by a day) over a
null period: the share of periods with at least one retrain request, under each rule
(every check at alpha; alpha spent over the month). Detection delay: a 1.5 or 2.0-sd
shift begins in 5 % of the products the day after the first check; the days until a
retrain request, and until each shifted product is flagged.

Long runs (issue 23, the 10,000-product re-run): `--json` is a checkpoint as well as the
output. The null part runs in chunks of `--chunk` windows, round by round over the cases
(every case gets k chunks before any gets k + 1), each chunk with its own seed (the case
name's CRC, the product count, the chunk's index), and saves after each chunk; `--resume`
loads the file and continues from there (refused if the settings differ); `--stop-at
HH:MM` (UTC) starts no chunk after that time, so a run that meets its deadline leaves
every case with the same number of windows. Each null row gives the alarm count, the
share, alpha + 2 se (the issue's bound) and the one-sided 95 % Clopper-Pearson upper
bound on the true alarm probability.

Pasta part: the real pasta data (118 products, 2015-2018), a same-weekday-mean
forecaster refreshed every 28 days, weekly checks with a 30-day window.

    nice -n 10 .venv/bin/python bench/health_calibration.py [--windows 200]
        [--windows-10k 40] [--part null,power,monthly,pasta] [--json out.json]
        [--resume] [--stop-at 17:55] [--power-products 1000,10000]
        [--monthly-products 1000] [--part mixture: the held-out mixture's alarms by third]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT / "jobs" / "trainer"), str(ROOT)]

from forecastguard.health import stats  # noqa: E402

DAYS = 30
ALPHA = 0.05
MIN_EFFECT = 0.5
REF_DAYS = 30  # the reference of the null and monthly parts (--reference-days)
INTERMITTENT = 0.2


def _ar(rng: np.random.Generator, phis: np.ndarray, shocks: np.ndarray, phi2: float = 0.0):
    """AR(1) (or AR(2) with phi2) series driven by `shocks`, after a burn-in of 100."""
    n = shocks.shape[0]
    burn = rng.standard_normal((n, 100)) * shocks.std()
    full = np.concatenate([burn, shocks], axis=1)
    out = np.zeros_like(full)
    phis = np.broadcast_to(np.asarray(phis, dtype=float), (n,))
    for j in range(1, full.shape[1]):
        out[:, j] = phis * out[:, j - 1] + full[:, j]
        if phi2 and j > 1:
            out[:, j] += phi2 * out[:, j - 2]
    out = out[:, 100:]
    return out / out.std(axis=1, keepdims=True).clip(1e-12)


def _t_shocks(rng: np.random.Generator, df: float, shape: tuple[int, int]) -> np.ndarray:
    return rng.standard_t(df, shape) / math.sqrt(df / (df - 2))


def ar1(rng: np.random.Generator, phi: float, shape: tuple[int, int], heavy: np.ndarray):
    """Stationary AR(1) series with unit marginal variance (rows with `heavy`: t5 shocks)."""
    _, t = shape
    shocks = rng.standard_normal(shape)
    if heavy.any():
        k = int(heavy.sum())
        shocks[heavy] = rng.standard_t(5, (k, t)) / math.sqrt(5 / 3)
    out = np.empty(shape)
    out[:, 0] = shocks[:, 0]
    c = math.sqrt(1 - phi * phi)
    for j in range(1, t):
        out[:, j] = phi * out[:, j - 1] + c * shocks[:, j]
    return out


def suite(rng: np.random.Generator, n: int, t: int, phi: float, weekly: bool = True):
    """(errors (n x t), marginal sd) of the earlier calibration suite."""
    inter = rng.random(n) < INTERMITTENT
    heavy = rng.random(n) < 0.5
    sd = np.exp(rng.normal(np.log(5.0), 1.0, n))
    base = ar1(rng, phi, (n, t), heavy)
    wd = np.arange(t) % 7
    pattern = rng.standard_normal((n, 7))
    pattern -= pattern.mean(axis=1, keepdims=True)
    pattern /= pattern.std(axis=1, keepdims=True)
    errors = base * sd[:, None]
    if weekly:
        errors += 0.5 * sd[:, None] * pattern[:, wd]
    k = int(inter.sum())
    if k:
        lam0 = rng.uniform(0.1, 1.5, k)
        latent = ar1(rng, phi, (k, t), np.zeros(k, bool)) * 0.5
        lam = lam0[:, None] * np.exp(latent - 0.125)
        if weekly:
            lam *= 1 + 0.3 * np.clip(pattern[inter][:, wd], -2, 2) / 2
        errors[inter] = rng.poisson(lam) - lam0[:, None]
        sd[inter] = errors[inter].std(axis=1)
    return errors, sd


def _scaled(rng: np.random.Generator, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sd = np.exp(rng.normal(np.log(5.0), 1.0, len(x)))
    return x * sd[:, None], sd


def gen_ar2(rng, n, t):
    return _scaled(rng, _ar(rng, 0.5, rng.standard_normal((n, t)), phi2=0.2))


def gen_phi_uniform_t5(rng, n, t):
    shocks = rng.standard_normal((n, t))
    heavy = rng.random(n) < 0.5
    shocks[heavy] = _t_shocks(rng, 5, (int(heavy.sum()), t))
    return _scaled(rng, _ar(rng, rng.uniform(0, 0.8, n), shocks))


def gen_zip(rng, n, t):
    lam = np.exp(rng.normal(np.log(3.0), 0.8, n))[:, None]
    y = rng.poisson(lam, (n, t)) * (rng.random((n, t)) >= 0.4)
    errors = y - 0.6 * lam
    return errors, errors.std(axis=1)


def gen_level_sd(rng, n, t):
    log_level = 0.4 * _ar(rng, 0.97, rng.standard_normal((n, t)))
    x = _ar(rng, 0.3, rng.standard_normal((n, t))) * np.exp(log_level)
    return _scaled(rng, x)


def gen_t3_common(rng, n, t):
    own = _ar(rng, 0.5, _t_shocks(rng, 3, (n, t)))
    common = _ar(rng, 0.5, rng.standard_normal((1, t)))
    x = math.sqrt(0.7) * own + math.sqrt(0.3) * common
    return _scaled(rng, x)


def gen_arma11_weekday(rng, n, t):
    """Held out (chosen after the retrain rule, never used to choose anything): ARMA(1,1)
    errors (phi 0.6, theta 0.4; the AR(1) model is wrong), half of them t(4) shocks, and a
    weekday pattern whose amplitude drifts slowly (log-amplitude AR(1), phi 0.98)."""
    shocks = rng.standard_normal((n, t + 1))
    heavy = rng.random(n) < 0.5
    shocks[heavy] = _t_shocks(rng, 4, (int(heavy.sum()), t + 1))
    x = _ar(rng, 0.6, shocks[:, 1:] + 0.4 * shocks[:, :-1])
    pattern = rng.standard_normal((n, 7))
    pattern -= pattern.mean(axis=1, keepdims=True)
    amplitude = 0.5 * np.exp(0.3 * _ar(rng, 0.98, rng.standard_normal((n, t))))
    x = x + amplitude * pattern[:, np.arange(t) % 7]
    return _scaled(rng, x)


MIXTURE_THIRDS = ("ar2_0.7_0.2", "arma11_0.8_0.3_t3", "long_memory_sum")


def _mixture_third(rng: np.random.Generator, j: int, k: int, t: int) -> np.ndarray:
    """k series of the mixture's third j (MIXTURE_THIRDS), unscaled."""
    if j == 0:
        return _ar(rng, 0.7, rng.standard_normal((k, t)), phi2=0.2)
    if j == 1:
        shocks = _t_shocks(rng, 3, (k, t + 1))
        return _ar(rng, 0.8, shocks[:, 1:] + 0.3 * shocks[:, :-1])
    return sum(_ar(rng, f, rng.standard_normal((k, t))) for f in (0.3, 0.9, 0.99))


def mixture_with_parts(rng: np.random.Generator, n: int, t: int):
    """(errors, sd, the third of each product) of the `mixture` case."""
    part = rng.integers(0, 3, n)
    x = np.empty((n, t))
    for j in range(3):
        x[part == j] = _mixture_third(rng, j, int((part == j).sum()), t)
    errors, sd = _scaled(rng, x / x.std(axis=1, keepdims=True).clip(1e-12))
    return errors, sd, part


def gen_mixture(rng, n, t):
    """Held out as arma11_weekday: a mixture of dependence structures, a third each —
    AR(2) (phi1 0.7, phi2 0.2: near the unit root), ARMA(1,1) (phi 0.8, theta 0.3) with
    t(3) shocks, and a long-memory sum of AR(1) components (phi 0.3, 0.9, 0.99)."""
    errors, sd, _ = mixture_with_parts(rng, n, t)
    return errors, sd


def mixture_part(products: int, windows: int, seed: int, chunk: int = 25) -> dict:
    """Where the `mixture` null case's alarms come from: its windows (the null part's
    seeds, chunks of `chunk`) with the flags counted by third, and each third alone as a
    whole catalogue."""
    by_part = np.zeros(3, int)
    alarms = 0
    for c in range(math.ceil(windows / chunk)):
        rng = np.random.default_rng([seed, products, case_seed("mixture"), c])
        for _ in range(min(chunk, windows - c * chunk)):
            errors, _, part = mixture_with_parts(rng, products, REF_DAYS + DAYS)
            d = decide(errors, REF_DAYS)
            alarms += bool(d.drift.any())
            by_part += [int((d.drift & (part == j)).sum()) for j in range(3)]
    out: dict = {
        "products": products,
        "windows": windows,
        "mixture_alarms": alarms,
        "flags_by_third": dict(zip(MIXTURE_THIRDS, by_part.tolist(), strict=True)),
    }
    print(f"mixture: {alarms} of {windows} windows alarm; flags {out['flags_by_third']}")
    for j, name in enumerate(MIXTURE_THIRDS):
        rng = np.random.default_rng([seed, products, zlib.crc32(name.encode())])
        hits = flagged = 0
        sds = []
        for _ in range(windows):
            x = _mixture_third(rng, j, products, REF_DAYS + DAYS)
            errors, _ = _scaled(rng, x / x.std(axis=1, keepdims=True).clip(1e-12))
            d = decide(errors, REF_DAYS)
            hits += bool(d.drift.any())
            flagged += int(d.drift.sum())
            sds.append(float(d.null_sd_level))
        out[name] = {
            "alarms": hits,
            "flagged": flagged,
            "null_sd_level_mean": float(np.mean(sds)),
            "upper95": upper95(hits, windows),
        }
        print(f"  {name} alone: {out[name]}", flush=True)
    return out


def _fractional(rng: np.random.Generator, d: float, n: int, t: int, lags: int = 1000):
    """ARFIMA(0, d, 0) Gaussian fractional noise: x_t = sum_k psi_k e_(t-k), psi_0 = 1,
    psi_k = psi_(k-1) (k - 1 + d) / k, truncated at `lags` (acf ~ k^(2d - 1))."""
    k = np.arange(1, lags + 1)
    psi = np.concatenate([[1.0], np.cumprod((k - 1 + d) / k)])
    shocks = rng.standard_normal((n, lags + t))
    # A circular convolution of this size wraps only outputs beyond lags + t onto the
    # first ones, not onto the t kept.
    size = 1 << int(np.ceil(np.log2(lags + t)))
    full = np.fft.irfft(np.fft.rfft(shocks, size) * np.fft.rfft(psi, size), size)
    return full[:, lags : lags + t]


def gen_arfima_d03(rng, n, t):
    """Held out (brief C, written before its result): ARFIMA(0, 0.3, 0) fractional noise,
    true long memory rather than a sum of AR(1) components."""
    x = _fractional(rng, 0.3, n, t)
    return _scaled(rng, x / x.std(axis=1, keepdims=True).clip(1e-12))


def gen_seasonal_garch(rng, n, t):
    """Held out (brief C): x_t = 0.3 x_(t-1) + 0.4 x_(t-7) + e_t, e_t GARCH(1,1)
    (h_t = 0.05 + 0.10 e_(t-1)^2 + 0.85 h_(t-1)), burn-in 200."""
    burn = 200
    z = rng.standard_normal((n, burn + t))
    e = np.zeros_like(z)
    x = np.zeros_like(z)
    h = np.full(n, 0.05 / (1 - 0.10 - 0.85))
    for j in range(burn + t):
        if j:
            h = 0.05 + 0.10 * e[:, j - 1] ** 2 + 0.85 * h
        e[:, j] = np.sqrt(h) * z[:, j]
        x[:, j] = e[:, j]
        if j >= 1:
            x[:, j] += 0.3 * x[:, j - 1]
        if j >= 7:
            x[:, j] += 0.4 * x[:, j - 7]
    x = x[:, burn:]
    return _scaled(rng, x / x.std(axis=1, keepdims=True).clip(1e-12))


def gen_lm_half(rng, n, t):
    """Held out (brief C): half the products ARFIMA(0, 0.25, 0), half AR(1) phi 0.5 Gaussian
    (long memory in half the catalogue)."""
    half = rng.random(n) < 0.5
    x = np.empty((n, t))
    x[half] = _fractional(rng, 0.25, int(half.sum()), t)
    x[~half] = _ar(rng, 0.5, rng.standard_normal((int((~half).sum()), t)))
    return _scaled(rng, x / x.std(axis=1, keepdims=True).clip(1e-12))


NULL_CASES = {
    "suite_phi0.5": lambda rng, n, t: suite(rng, n, t, 0.5),
    "suite_phi0.7": lambda rng, n, t: suite(rng, n, t, 0.7),
    "ar2": gen_ar2,
    "phi_uniform_t5": gen_phi_uniform_t5,
    "zip": gen_zip,
    "level_sd": gen_level_sd,
    "t3_common": gen_t3_common,
    "arma11_weekday": gen_arma11_weekday,
    "mixture": gen_mixture,
    "arfima_d03": gen_arfima_d03,
    "seasonal_garch": gen_seasonal_garch,
    "lm_half": gen_lm_half,
}
# Cases written after the choices they judge (all are in the default --cases): the first
# two after the monthly retrain rule; the last three by issue 23's long-run-variance
# attempt (docs/health.md), before any result of them was seen — they chose nothing.
HELD_OUT = ("arma11_weekday", "mixture", "arfima_d03", "seasonal_garch", "lm_half")


def decide(errors: np.ndarray, ref_days: int, min_effect: float | None = None):
    """The check's drift decision on (products x (ref_days + DAYS)) errors."""
    t = stats.drift_tests(
        errors[:, :ref_days],
        errors[:, ref_days:],
        contiguous=np.ones(len(errors), bool),
        weekday=np.arange(errors.shape[1]) % 7,
    )
    return stats.drift_decision(t, ALPHA, MIN_EFFECT if min_effect is None else min_effect)


def case_seed(name: str) -> int:
    """A stable seed per case name (the earlier len(name) gave suite φ 0.5 and 0.7 one
    stream)."""
    return zlib.crc32(name.encode())


def upper95(alarms: int, windows: int) -> float:
    """One-sided 95 % Clopper-Pearson upper bound on an alarm probability seen as
    `alarms` of `windows` (0 of n: 1 - 0.05 ** (1 / n))."""
    from scipy.stats import beta

    if windows <= 0:
        raise ValueError(f"upper95 needs at least one window, got {windows}")
    if not 0 <= alarms <= windows:
        raise ValueError(f"alarms must be within 0..{windows}, got {alarms}")
    if alarms == windows:
        return 1.0
    return float(beta.ppf(0.95, alarms + 1, windows - alarms))


def _null_row(name: str, products: int, acc: dict) -> dict:
    """The null row of one case from its accumulated counts."""
    windows = acc["windows"]
    se = math.sqrt(ALPHA * (1 - ALPHA) / windows)
    return {
        "case": name,
        "products": products,
        "ref_days": REF_DAYS,
        "min_effect": MIN_EFFECT,
        "level_variance": stats.LEVEL_VARIANCE,
        "windows": windows,
        "alarms": acc["alarms"],
        "alarm_share": acc["alarms"] / windows,
        "flagged_per_window": acc["flagged"] / windows,
        "null_sd_level_mean": acc["sd_sum"] / windows,
        "null_sd_level_max": acc["sd_max"],
        "bound": ALPHA + 2 * se,
        "upper95": upper95(acc["alarms"], windows),
        "seconds": round(acc["seconds"], 1),
        "seconds_per_window": round(acc["seconds"] / windows, 3),
    }


def _settings() -> dict:
    return {"ref_days": REF_DAYS, "min_effect": MIN_EFFECT, "level_variance": stats.LEVEL_VARIANCE}


def null_part(
    cases: list[str],
    products: int,
    windows: int,
    seed: int,
    state: dict | None = None,
    chunk: int = 0,
    save: Callable[[], None] | None = None,
    stop_at: float | None = None,
) -> list[dict]:
    """Share of null windows that alarm, per case.

    `state` (case -> counts, updated in place) lets a run resume; windows run in chunks
    of `chunk` (0: all at once), round by round over the cases, each chunk seeded by
    (seed, products, case, chunk index); `save` is called after every chunk; no chunk
    starts after the epoch time `stop_at`.
    """
    unknown = [c for c in cases if c not in NULL_CASES]
    if unknown:
        raise ValueError(f"unknown null case(s) {unknown}; known: {sorted(NULL_CASES)}")
    state = {} if state is None else state
    chunk = chunk or windows
    for name in cases:
        acc = state.setdefault(
            name,
            {
                "windows": 0,
                "alarms": 0,
                "flagged": 0,
                "sd_sum": 0.0,
                "sd_max": 0.0,
                "seconds": 0.0,
                "chunk": chunk,
                **_settings(),
            },
        )
        if acc["chunk"] != chunk or any(acc[k] != v for k, v in _settings().items()):
            raise ValueError(
                f"cannot resume {name} at {products} products: saved with chunk "
                f"{acc['chunk']} and {[acc[k] for k in _settings()]}, now chunk {chunk} "
                f"and {list(_settings().values())}"
            )
        if acc["windows"] % chunk and acc["windows"] < windows:
            raise ValueError(f"{name}: {acc['windows']} saved windows, not whole chunks")
    rounds = math.ceil(windows / chunk)
    for k in range(rounds):
        for name in cases:
            acc = state[name]
            done = acc["windows"]
            if done >= min((k + 1) * chunk, windows) or done // chunk > k:
                continue
            if stop_at is not None and time.time() >= stop_at:
                print(f"stop time reached: {name} at {done} windows", flush=True)
                return [_null_row(c, products, state[c]) for c in cases if state[c]["windows"]]
            rng = np.random.default_rng([seed, products, case_seed(name), done // chunk])
            start = time.perf_counter()
            for _ in range(min(chunk, windows - done)):
                errors, _ = NULL_CASES[name](rng, products, REF_DAYS + DAYS)
                d = decide(errors, REF_DAYS)
                acc["windows"] += 1
                acc["alarms"] += bool(d.drift.any())
                acc["flagged"] += int(d.drift.sum())
                acc["sd_sum"] += float(d.null_sd_level)
                acc["sd_max"] = max(acc["sd_max"], float(d.null_sd_level))
            acc["seconds"] += time.perf_counter() - start
            row = _null_row(name, products, acc)
            print(
                f"null {name:15s} {products:6d} products: {acc['alarms']} of "
                f"{acc['windows']} windows alarm ({row['alarm_share']:.3f}, upper 95 % "
                f"{row['upper95']:.3f}; {acc['flagged']} flagged; null sd "
                f"{row['null_sd_level_mean']:.2f})  [{row['seconds_per_window']} s a window]",
                flush=True,
            )
            if save:
                save()
    return [_null_row(c, products, state[c]) for c in cases if state[c]["windows"]]


def power_part(
    products: int,
    windows: int,
    seed: int,
    refs: tuple[int, ...] = (30, 90, 180),
    effects: tuple[float, ...] | None = None,
) -> list[dict]:
    """Recall and precision for level shifts in 5 % of the products."""
    rows = []
    cases = [(0.5, 1.5), (0.5, 2.0), (0.0, 1.5)]
    # By default the interval null of MIN_EFFECT, and the point null beside it.
    effects = effects or (MIN_EFFECT, 0.0)
    for ref_days in refs:
        for phi, size in cases:
            rng = np.random.default_rng(
                [seed, 7, int(size * 10), int(phi * 10), ref_days]
                + ([products] if products != 1000 else [])
            )
            tp, fp = dict.fromkeys(effects, 0), dict.fromkeys(effects, 0)
            n_true = 0
            for _ in range(windows):
                errors, sd = suite(rng, products, ref_days + DAYS, phi)
                drifted = rng.random(products) < 0.05
                sign = rng.choice([-1.0, 1.0], int(drifted.sum()))
                errors[drifted, ref_days:] += (sign * size * sd[drifted])[:, None]
                t = stats.drift_tests(
                    errors[:, :ref_days],
                    errors[:, ref_days:],
                    contiguous=np.ones(products, bool),
                    weekday=np.arange(ref_days + DAYS) % 7,
                )
                for e in effects:
                    f = stats.drift_decision(t, ALPHA, e).drift
                    tp[e] += int((f & drifted).sum())
                    fp[e] += int((f & ~drifted).sum())
                n_true += int(drifted.sum())
            for e in effects:
                row = {
                    "phi": phi,
                    "size_sd": size,
                    "ref_days": ref_days,
                    "min_effect": e,
                    "products": products,
                    "windows": windows,
                    "recall": tp[e] / n_true,
                    "precision": tp[e] / (tp[e] + fp[e]) if tp[e] + fp[e] else float("nan"),
                }
                rows.append(row)
                print(
                    f"power phi {phi} shift {size} sd, {ref_days}-day reference, min effect "
                    f"{e}: recall {row['recall']:.2f} precision {row['precision']:.3f}",
                    flush=True,
                )
    return rows


def _period(rng, products: int, shift: float, case: str = "suite_phi0.5"):
    """(errors of REF_DAYS + 30 + 30 days, shifted products): the shift starts on day
    REF_DAYS + 30."""
    errors, sd = NULL_CASES[case](rng, products, REF_DAYS + 2 * DAYS)
    shifted = np.zeros(products, bool)
    if shift:
        shifted = rng.random(products) < 0.05
        sign = rng.choice([-1.0, 1.0], int(shifted.sum()))
        errors[shifted, REF_DAYS + DAYS :] += (sign * shift * sd[shifted])[:, None]
    return errors, shifted


def _daily_checks(errors: np.ndarray, checks: int = DAYS, min_effect: float | None = None):
    """Simes p-values and flags of the daily checks 1..checks (window ending day
    REF_DAYS + 29 + d, the previous REF_DAYS days its reference)."""
    simes, flags = [], []
    for d in range(1, checks + 1):
        e = errors[:, d : d + REF_DAYS + DAYS]
        dec = decide(e, REF_DAYS, min_effect)
        simes.append(float(np.nanmin(dec.qvalue)))
        flags.append(dec.qvalue)
    return np.array(simes), np.array(flags)


RULES = {  # the per-check level a retrain request needs, over 30 daily checks
    "every check at 0.05": ALPHA,
    "alpha / 5": ALPHA / 5,
    "alpha / 10": ALPHA / 10,
    "alpha / 30 (Bonferroni over the month)": ALPHA / 30,
}


def monthly_part(
    products: int,
    periods: int,
    seed: int,
    case: str = "suite_phi0.5",
    min_effect: float | None = None,
    delays: bool = True,
) -> dict:
    """False retrain requests per 30-day period, and the detection delay of shifts."""
    rng = np.random.default_rng([seed, 30, products, case_seed(case)])
    null = {r: 0 for r in RULES}
    start = time.perf_counter()
    for _ in range(periods):
        errors, _ = _period(rng, products, 0.0, case)
        simes, _ = _daily_checks(errors, min_effect=min_effect)
        for rule, level in RULES.items():
            null[rule] += bool((simes <= level).any())
    out: dict = {
        "case": case,
        "min_effect": MIN_EFFECT if min_effect is None else min_effect,
        "ref_days": REF_DAYS,
        "products": products,
        "periods": periods,
        "false_request_share": {r: null[r] / periods for r in RULES},
    }
    print(
        f"monthly null {case} min effect {out['min_effect']} ({periods} periods, {products} "
        f"products): {out['false_request_share']}  [{time.perf_counter() - start:.0f} s]",
        flush=True,
    )
    for shift in (1.5, 2.0) if delays else ():
        delays = {r: [] for r in RULES}
        product_days = {r: [] for r in RULES}
        for _ in range(max(periods // 5, 4)):
            errors, shifted = _period(rng, products, shift, case)
            simes, q = _daily_checks(errors, min_effect=min_effect)
            for rule, level in RULES.items():
                hit = np.flatnonzero(((q <= level) & shifted[None, :]).any(axis=1))
                delays[rule].append(int(hit[0]) + 1 if len(hit) else None)
                first = np.argmax(q[:, shifted] <= level, axis=0)
                found = (q[:, shifted] <= level).any(axis=0)
                product_days[rule].extend(np.where(found, first + 1, -1).tolist())
        out[f"shift_{shift}"] = {
            rule: {
                "days_to_first_request_median": _median(delays[rule]),
                "periods_without_request": sum(d is None for d in delays[rule]),
                "products_found_by_day_30": float(np.mean(np.array(product_days[rule]) > 0)),
                "days_to_product_flag_median": _median([d for d in product_days[rule] if d > 0]),
            }
            for rule in RULES
        }
        print(f"monthly shift {shift} sd: {json.dumps(out[f'shift_{shift}'])}", flush=True)
    return out


def _median(values: list) -> float | None:
    ok = [v for v in values if v is not None]
    return float(np.median(ok)) if ok else None


def _set_min_effect(value: float, ref_days: int = 30) -> None:
    global MIN_EFFECT, REF_DAYS
    MIN_EFFECT = value
    REF_DAYS = ref_days


def _stop_time(text: str) -> float | None:
    """The epoch time of the next HH:MM (UTC), or None for an empty text."""
    if not text:
        return None
    try:
        hour, minute = (int(x) for x in text.split(":"))
        clock = dt.time(hour, minute)
    except ValueError:
        raise SystemExit(f"--stop-at must be HH:MM (UTC), got {text!r}") from None
    now = dt.datetime.now(dt.UTC)
    stop = dt.datetime.combine(now.date(), clock, dt.UTC)
    if stop <= now:
        stop += dt.timedelta(days=1)
    return stop.timestamp()


def main() -> None:
    """Run the chosen parts and print (and optionally save) the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=200, help="null windows, 1,000 products")
    parser.add_argument("--windows-10k", type=int, default=40, help="null windows, 10,000")
    parser.add_argument("--chunk", type=int, default=0, help="null windows a checkpoint (0: all)")
    parser.add_argument("--power-windows", type=int, default=40)
    parser.add_argument(
        "--power-windows-10k", type=int, default=20, help="power windows, 10,000 products"
    )
    parser.add_argument("--power-products", default="1000", help="product counts of power")
    parser.add_argument("--periods", type=int, default=100, help="monthly null periods")
    parser.add_argument("--monthly-products", type=int, default=1000)
    parser.add_argument("--part", default="null,power,monthly,pasta")
    parser.add_argument("--cases", default=",".join(NULL_CASES))
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument(
        "--min-effect", type=float, default=MIN_EFFECT, help="0: point nulls (the test alone)"
    )
    parser.add_argument(
        "--reference-days", type=int, default=30, help="reference of the null/monthly parts"
    )
    parser.add_argument("--power-refs", default="30,90,180", help="references of the power part")
    parser.add_argument(
        "--power-effects", default="", help="MIN_DRIFT_EFFECT values (default: --min-effect, 0)"
    )
    parser.add_argument(
        "--monthly-cases",
        default="suite_phi0.5,ar2,phi_uniform_t5,t3_common,point",
        help="null cases of the monthly part (point: the suite with point nulls)",
    )
    parser.add_argument(
        "--level-variance",
        choices=("pooled", "separate"),
        default=stats.LEVEL_VARIANCE,
        help="the level test's variance (stats.LEVEL_VARIANCE)",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --json")
    parser.add_argument("--stop-at", default="", help="HH:MM UTC: start no null chunk after")
    args = parser.parse_args()
    if args.resume and not (args.json and args.json.exists()):
        raise SystemExit("--resume needs an existing --json file")
    stats.LEVEL_VARIANCE = args.level_variance
    parts = set(args.part.split(","))
    cases = args.cases.split(",")
    _set_min_effect(args.min_effect, args.reference_days)
    stop_at = _stop_time(args.stop_at)
    out: dict = json.loads(args.json.read_text()) if args.resume else {}
    out.setdefault("runs", []).append(
        {
            "args": {k: str(v) for k, v in vars(args).items()},
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
    )
    state = out.setdefault("null_state", {})

    def save() -> None:
        if args.json:
            tmp = args.json.with_suffix(".tmp")
            tmp.write_text(json.dumps(out, indent=1, default=str))
            tmp.replace(args.json)

    if "null" in parts:
        rows = []
        for products, windows in ((1000, args.windows), (10_000, args.windows_10k)):
            if windows:
                rows += null_part(
                    cases,
                    products,
                    windows,
                    args.seed,
                    state.setdefault(str(products), {}),
                    args.chunk,
                    save,
                    stop_at,
                )
        kept = [
            r
            for r in out.get("null", [])
            if (r["case"], r["products"]) not in {(r2["case"], r2["products"]) for r2 in rows}
        ]
        out["null"] = kept + rows
        save()
    if "power" in parts:
        out.setdefault("power", [])
        for products in (int(x) for x in args.power_products.split(",")):
            windows = args.power_windows_10k if products >= 10_000 else args.power_windows
            rows = power_part(
                products,
                windows,
                args.seed,
                tuple(int(r) for r in args.power_refs.split(",")),
                tuple(float(e) for e in args.power_effects.split(",") if e) or None,
            )
            keys = {
                (r["products"], r["ref_days"], r["phi"], r["size_sd"], r["min_effect"])
                for r in rows
            }
            out["power"] = [
                r
                for r in out["power"]
                if (r["products"], r["ref_days"], r["phi"], r["size_sd"], r["min_effect"])
                not in keys
            ] + rows
            save()
    if "monthly" in parts:
        out.setdefault("monthly", [])
        products = args.monthly_products
        for case in args.monthly_cases.split(","):
            label = "point" if case == "point" else case
            if any(
                r.get("label") == label and r["products"] == products and r["ref_days"] == REF_DAYS
                for r in out["monthly"]
            ):
                print(f"monthly {label} at {products} products: saved, skipped", flush=True)
                continue
            if case == "suite_phi0.5":
                row = monthly_part(products, args.periods, args.seed)
            elif case == "point":
                row = monthly_part(products, args.periods * 2 // 3, args.seed, min_effect=0.0)
            else:
                row = monthly_part(products, args.periods * 2 // 3, args.seed, case, delays=False)
            row["label"] = label
            row["level_variance"] = stats.LEVEL_VARIANCE
            out["monthly"].append(row)
            save()
    if "mixture" in parts:
        out["mixture_thirds"] = mixture_part(1000, args.windows, args.seed, args.chunk or 25)
        save()
    if "pasta" in parts:
        out["pasta"] = pasta_part()
        save()


def pasta_part(path: Path | None = None) -> dict:
    """Weekly checks over 2015-2018 of a same-weekday-mean forecaster (8 weeks, refreshed
    every 28 days) on the pasta data: alarms of the old KS and the new test."""
    import pandas as pd

    from bench._pasta import pasta_path

    wide = pd.read_csv(path or pasta_path())
    dates = pd.to_datetime(wide["DATE"])
    days = pd.date_range(dates.min(), dates.max(), freq="D")
    pos = ((dates - days[0]).dt.days).to_numpy()
    qty_cols = [c for c in wide.columns if c.startswith("QTY_")]
    ids = [c[4:] for c in qty_cols]
    sales = np.full((len(ids), len(days)), np.nan)
    sales[:, pos] = wide[qty_cols].to_numpy(float).T
    promo = np.zeros_like(sales)
    promo[:, pos] = wide[[f"PROMO_{i}" for i in ids]].to_numpy(float).T
    weekday = days.day_of_week.to_numpy()
    forecast = np.full_like(sales, np.nan)
    for start in range(56, len(days), 28):
        past = sales[:, start - 56 : start]
        wd = weekday[start - 56 : start]
        for w in range(7):
            with np.errstate(invalid="ignore"):
                mean = np.nanmean(np.where(wd == w, past, np.nan), axis=1)
            cols = np.arange(start, min(start + 28, len(days)))
            cols = cols[weekday[cols] == w]
            forecast[:, cols] = mean[:, None]
    errors = sales - forecast
    closed = np.isnan(sales).all(axis=0)
    first = int(np.searchsorted(days, pd.Timestamp("2015-01-01"))) + 29 + REF_DAYS
    checks = []
    for end in range(first, len(days), 7):
        ref, win = errors[:, end - 29 - REF_DAYS : end - 29], errors[:, end - 29 : end + 1]
        t = stats.drift_tests(
            ref,
            win,
            contiguous=np.ones(len(ids), bool),
            weekday=weekday[end - 29 - REF_DAYS : end + 1],
        )
        dec = stats.drift_decision(t, ALPHA, MIN_EFFECT)
        new = dec.drift
        kinds = dec.kind
        ok_r, ok_w = ~np.isnan(ref), ~np.isnan(win)
        codes = np.arange(len(ids))
        sample = stats.two_sample(
            np.broadcast_to(codes[:, None], win.shape)[ok_w],
            win[ok_w],
            np.broadcast_to(codes[:, None], ref.shape)[ok_r],
            ref[ok_r],
            len(ids),
        )
        old = stats.benjamini_hochberg(stats.ks_pvalues(sample, 7)) <= ALPHA
        span = days[end - 29 - REF_DAYS : end + 1]
        christmas = bool(
            ((span.month == 12) & (span.day >= 20) | (span.month == 1) & (span.day <= 6)).any()
        )
        promo_change = (
            np.abs(
                promo[:, end - 29 : end + 1].mean(1)
                - promo[:, end - 29 - REF_DAYS : end - 29].mean(1)
            )
            >= 0.2
        )
        checks.append(
            {
                "as_of": str(days[end].date()),
                "new": [ids[i] for i in np.flatnonzero(new)],
                "new_kinds": [stats.DRIFT_KINDS[kinds[i]] for i in np.flatnonzero(new)],
                "old": [ids[i] for i in np.flatnonzero(old)],
                "christmas": christmas,
                "closed_days": int(closed[end - 29 - REF_DAYS : end + 1].sum()),
                "new_with_promo_change": int((new & promo_change).sum()),
                "old_with_promo_change": int((old & promo_change).sum()),
            }
        )
    n = len(checks)
    new_weeks = [c for c in checks if c["new"]]
    old_weeks = [c for c in checks if c["old"]]
    from collections import Counter

    summary = {
        "checks": n,
        "weeks_alarm_new": len(new_weeks),
        "weeks_alarm_old": len(old_weeks),
        "flagged_new": sum(len(c["new"]) for c in checks),
        "flagged_old": sum(len(c["old"]) for c in checks),
        "new_kinds": dict(Counter(k for c in checks for k in c["new_kinds"])),
        "top_new": Counter(p for c in checks for p in c["new"]).most_common(8),
        "top_old": Counter(p for c in checks for p in c["old"]).most_common(8),
        "new_weeks_christmas": sum(c["christmas"] for c in new_weeks),
        "old_weeks_christmas": sum(c["christmas"] for c in old_weeks),
        "weeks_christmas": sum(c["christmas"] for c in checks),
        "new_weeks_closure": sum(c["closed_days"] > 0 for c in new_weeks),
        "old_weeks_closure": sum(c["closed_days"] > 0 for c in old_weeks),
        "weeks_closure": sum(c["closed_days"] > 0 for c in checks),
        "new_flags_promo_change": sum(c["new_with_promo_change"] for c in checks),
        "old_flags_promo_change": sum(c["old_with_promo_change"] for c in checks),
        "alarm_dates_new": [c["as_of"] for c in new_weeks],
    }
    print(json.dumps(summary, indent=1), flush=True)
    return {"summary": summary, "checks": checks}


if __name__ == "__main__":
    main()
