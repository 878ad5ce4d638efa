"""Daily sales of N synthetic products: the expected demand, then count noise around it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import holidays
import numpy as np
import pandas as pd

from forecastguard.synth import _random as rnd
from forecastguard.synth.params import RETAIL_WEEK, SynthParams

DateLike = str | dt.date | pd.Timestamp


def as_day(value: DateLike, name: str = "date") -> pd.Timestamp:
    """A day as a midnight Timestamp; ValueError naming `name` when it is not a date."""
    try:
        day = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ValueError(f"{name} must be a date (YYYY-MM-DD), got {value!r}") from None
    if pd.isna(day):
        raise ValueError(f"{name} must be a date (YYYY-MM-DD), got {value!r}")
    return day.normalize()


def product_ids(n_products: int) -> list[str]:
    """P0001, P0002, ...: zero-padded so they sort in order."""
    width = max(4, len(str(n_products)))
    return [f"P{i:0{width}d}" for i in range(1, n_products + 1)]


@dataclass(frozen=True)
class _Products:
    """Per-product draws (arrays of length N, weekly of shape N x 7)."""

    level: np.ndarray
    dispersion: np.ndarray
    weekly: np.ndarray  # multipliers with a weekly mean of 1
    yearly_amplitude: np.ndarray
    yearly_phase: np.ndarray
    trend: np.ndarray  # log-growth a year
    promo_rate: np.ndarray
    promo_lift: np.ndarray


def _draw_products(n: int, seed: int, p: SynthParams) -> _Products:
    rng = np.random.default_rng([seed, n, 0x5A1E5])
    # Latin hypercube: one draw from each 1/n slice of the log-normal, in random order.
    u = (rng.permutation(n) + rng.random(n)) / n
    level = np.minimum(p.level_median * np.exp(p.level_sigma * rnd.normal(u)), p.level_max)
    lo, hi = np.log(p.dispersion)
    dispersion = np.exp(rng.uniform(lo, hi, n)) * np.sqrt(level)
    strength = rng.uniform(*p.weekly_strength, n)
    log_week = strength[:, None] * np.log(RETAIL_WEEK) + rng.normal(0, p.weekly_jitter, (n, 7))
    weekly = np.exp(log_week)
    weekly /= weekly.mean(axis=1, keepdims=True)
    return _Products(
        level=level,
        dispersion=dispersion,
        weekly=weekly,
        yearly_amplitude=rng.uniform(*p.yearly_amplitude, n),
        yearly_phase=rng.uniform(0, 2 * np.pi, n),
        trend=rng.normal(0, p.trend_sigma, n),
        promo_rate=np.minimum(p.promo_share * rng.uniform(0.25, 1.75, n), 1.0),
        promo_lift=rng.uniform(*p.promo_lift, n),
    )


def holiday_multipliers(dates: pd.DatetimeIndex, country: str, p: SynthParams) -> np.ndarray:
    """Demand multiplier of each day: public holidays and the days before them."""
    years = range(dates.min().year, dates.max().year + 2)
    try:
        calendar = holidays.country_holidays(country, years=years)
    except NotImplementedError:
        raise ValueError(f"no holiday calendar for country {country!r}") from None
    holiday_days = np.array(sorted(calendar), dtype="datetime64[D]").astype(np.int64)
    days = rnd.day_numbers(dates)
    is_holiday = np.isin(days, holiday_days)
    before = np.zeros(len(days), dtype=bool)
    for ahead in range(1, p.pre_holiday_days + 1):
        before |= np.isin(days + ahead, holiday_days)
    return np.where(is_holiday, p.holiday_factor, np.where(before, p.pre_holiday_lift, 1.0))


def _christmas_log_lift(dates: pd.DatetimeIndex, lift: float) -> np.ndarray:
    # Rises over the three weeks before Christmas Eve.
    eve = pd.to_datetime({"year": dates.year, "month": 12, "day": 24})
    to_eve = (eve.to_numpy() - dates.to_numpy()).astype("timedelta64[D]").astype(np.int64)
    return np.where((to_eve >= 0) & (to_eve < 21), lift * (1 - to_eve / 21), 0.0)


def generate_sales(
    n_products: int,
    start: DateLike,
    end: DateLike,
    seed: int,
    *,
    country: str = "IT",
    params: SynthParams | None = None,
) -> pd.DataFrame:
    """Daily sales of `n_products` products from `start` to `end` (inclusive).

    Returns one row per product and day, sorted by product then date, with columns
    `product_id` ("P0001", ...), `date` (datetime64), `units_sold` (non-negative whole
    numbers, as float), `on_promotion` (bool) and `expected_units`: the mean demand the
    day's units were drawn from, which is what a well-specified model would forecast.

    Demand = base level x trend x the product's weekday profile x yearly seasonality
    (a product-specific harmonic plus the Christmas run-up) x public holidays of
    `country` (closed by default, busier the days before) x promotion lift; units are
    gamma-Poisson (negative binomial) around it. Same arguments, same frame; and a day's
    values do not depend on `end`, so a longer run only appends days.
    """
    p = params or SynthParams()
    if isinstance(n_products, bool) or not isinstance(n_products, int | np.integer):
        raise ValueError(f"n_products must be a positive integer, got {n_products!r}")
    n_products = int(n_products)
    if n_products < 1:
        raise ValueError(f"n_products must be a positive integer, got {n_products!r}")
    _check_seed(seed)
    first, last = as_day(start, "start"), as_day(end, "end")
    if last < first:
        raise ValueError(f"end ({last.date()}) is before start ({first.date()})")

    dates = pd.date_range(first, last, freq="D")
    ids = product_ids(n_products)
    prod = _draw_products(n_products, seed, p)
    days = rnd.day_numbers(dates)
    keys = rnd.product_keys(ids)[:, None]

    weeks = (days + 3) // 7  # Monday-based week number (1970-01-01 was a Thursday)
    promo = rnd.uniforms(seed, "promotion", keys, weeks[None, :]) < prod.promo_rate[:, None]

    angle = 2 * np.pi * days / 365.2425
    years = (days - days[0]) / 365.25
    log_mean = (
        np.log(prod.level)[:, None]
        + np.log(prod.weekly)[:, dates.day_of_week]
        + prod.yearly_amplitude[:, None] * np.cos(angle[None, :] - prod.yearly_phase[:, None])
        + _christmas_log_lift(dates, p.christmas_lift)[None, :]
        + prod.trend[:, None] * years[None, :]
    )
    expected = (
        np.exp(log_mean)
        * holiday_multipliers(dates, country, p)[None, :]
        * np.where(promo, prod.promo_lift[:, None], 1.0)
    )

    shock = rnd.gamma_unit_mean(
        rnd.uniforms(seed, "demand-shock", keys, days[None, :]), prod.dispersion[:, None]
    )
    units = rnd.poisson(rnd.uniforms(seed, "count", keys, days[None, :]), expected * shock)

    n_days = len(dates)
    return pd.DataFrame(
        {
            "product_id": np.repeat(np.array(ids, dtype=object), n_days),
            "date": np.tile(dates.to_numpy(), n_products),
            "units_sold": units.ravel(),
            "on_promotion": promo.ravel(),
            "expected_units": expected.ravel(),
        }
    )


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
