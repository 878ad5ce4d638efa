"""Counter-based randomness: each number is a pure function of (seed, stream, product, day).

Drawing from a stateful generator would make a day's value depend on which other days
were generated with it. Hashing the coordinates instead keeps a product's sales on a day
the same whatever window is asked for, so a longer run only appends days.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy import special

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_DAY_MULT = np.uint64(0xD1B54A32D192ED03)
# Above this mean a Poisson quantile comes from a skew-corrected normal approximation.
_POISSON_EXACT_BELOW = 50.0


def _key(*parts: object) -> int:
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _mix(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser: a bijection of uint64 with full avalanche."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def product_keys(product_ids: Iterable[str]) -> np.ndarray:
    """A stable 64-bit key for each product id (its hash, not its position)."""
    return np.array([_key("product", p) for p in product_ids], dtype=np.uint64)


def day_numbers(dates: pd.Series | pd.DatetimeIndex | np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 as int64."""
    return np.asarray(dates, dtype="datetime64[D]").astype(np.int64)


def uniforms(seed: int, stream: str, keys: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Uniform numbers in the open interval (0, 1), one per broadcast (key, day) pair."""
    base = np.uint64(_key(seed, stream))
    k = np.asarray(keys, dtype=np.uint64)
    d = np.asarray(days, dtype=np.int64).astype(np.uint64)
    h = _mix(_mix(base ^ (k * _GOLDEN)) ^ (d * _DAY_MULT))
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def normal(u: np.ndarray) -> np.ndarray:
    """Standard normal quantiles of uniforms."""
    return special.ndtri(u)


def gamma_unit_mean(u: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Gamma(shape, scale=1/shape) quantiles of uniforms: mean 1, variance 1/shape."""
    return special.gammaincinv(shape, u) / shape


def poisson(u: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Poisson(lam) quantiles of uniforms, as float whole numbers.

    Exact (a vectorised walk up the cumulative distribution) for small means; above
    that a normal approximation with continuity and skewness corrections.
    """
    u, lam = np.broadcast_arrays(np.asarray(u, float), np.asarray(lam, float))
    out = np.zeros(u.shape)
    big = lam >= _POISSON_EXACT_BELOW
    if big.any():
        lb, z = lam[big], normal(u[big])
        out[big] = np.maximum(0.0, np.floor(lb + np.sqrt(lb) * z + (z * z - 1.0) / 6.0 + 0.5))
    idx = np.flatnonzero(~big & (lam > 0))
    lam_s, u_s = lam.ravel()[idx], u.ravel()[idx]
    p = np.exp(-lam_s)
    cdf = p.copy()
    flat = out.reshape(-1)
    x = 0
    limit = int(_POISSON_EXACT_BELOW * 4)  # rounding can leave cdf just below u near 1
    while idx.size and x < limit:
        done = u_s <= cdf
        flat[idx[done]] = x
        keep = ~done
        idx, lam_s, u_s, p, cdf = idx[keep], lam_s[keep], u_s[keep], p[keep], cdf[keep]
        x += 1
        p = p * lam_s / x
        cdf = cdf + p
    flat[idx] = x
    return out


def binomial(u: np.ndarray, n: np.ndarray, prob: np.ndarray | float) -> np.ndarray:
    """Binomial(n, prob) quantiles of uniforms, as float whole numbers."""
    from scipy import stats

    return np.nan_to_num(stats.binom.ppf(u, n, prob), nan=0.0)
