"""The trainer's feature set, laid out for a direct multi-horizon tabular model.

The debiased LSTM (jobs/trainer) sees, per product and day: units standardised per
product, lags 1/7/14/28, rolling mean and std over 7 and 28 days, day of week and month,
public holiday today / tomorrow (the `holidays` package, Italy by default), promotion,
and the product's mean and std; for the forecast days it knows the calendar, holidays
and promotions. `direct_rows` gives a tabular model the same information for one
(product, origin, step) per row: the origin day's sequence features, the target day's
known features, the step, and the value of the same weekday in the last observed week.
The target is the standardised units of the target day, as in the trainer.

With `last_year=True` a row also gets the trainer's `last_year` known feature: the
standardised units of the target's weekday 52 weeks earlier (7-day centred mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import holidays
import numpy as np
import pandas as pd

LAGS: tuple[int, ...] = (1, 7, 14, 28)
ROLLING_WINDOWS: tuple[int, ...] = (7, 28)
FEATURE_NAMES: tuple[str, ...] = (
    "units",
    *(f"lag_{k}" for k in LAGS),
    *(f"roll_mean_{w}" for w in ROLLING_WINDOWS),
    *(f"roll_std_{w}" for w in ROLLING_WINDOWS),
    "same_weekday_last_week",
    "step",
    "dow",
    "month",
    "day_of_month",
    "holiday",
    "holiday_tomorrow",
    "promo",
    "promo_origin",
    "group_mean",
    "group_std",
    "product",
)
CATEGORICAL: tuple[str, ...] = ("product",)
LAST_YEAR = "last_year"
YEAR_DAYS = 364  # 52 weeks: the same weekday a year before


def feature_names(last_year: bool = False) -> list[str]:
    """Column names of `direct_rows`."""
    return [*FEATURE_NAMES, LAST_YEAR] if last_year else list(FEATURE_NAMES)


def holiday_flags(dates: pd.DatetimeIndex, country: str = "IT") -> tuple[np.ndarray, np.ndarray]:
    """(holiday today, holiday tomorrow) as 0/1 float arrays."""
    years = range(dates.min().year, dates.max().year + 2)
    days = set(holidays.country_holidays(country, years=years).keys())
    today = np.array([d.date() in days for d in dates], dtype=float)
    tomorrow = np.array([(d + pd.Timedelta(days=1)).date() in days for d in dates], dtype=float)
    return today, tomorrow


@dataclass(frozen=True)
class Standardiser:
    """Per-product mean and std of units over the observed history days."""

    mean: np.ndarray  # (N,)
    std: np.ndarray  # (N,)

    @classmethod
    def fit(cls, units: np.ndarray) -> Standardiser:
        """Fit on a (T, N) history (NaN = no record)."""
        observed = ~np.isnan(units)
        counts = observed.sum(axis=0)
        safe = np.where(observed, units, 0.0)
        mean = np.where(counts > 0, safe.sum(axis=0) / np.maximum(counts, 1), 0.0)
        var = np.where(observed, (units - mean) ** 2, 0.0).sum(axis=0) / np.maximum(counts, 1)
        std = np.sqrt(var)
        return cls(mean=mean, std=np.where(std > 1e-6, std, 1.0))

    def transform(self, units: np.ndarray) -> np.ndarray:
        """(T, N) standardised units (fill zeros for days without a record)."""
        return (np.nan_to_num(units) - self.mean) / self.std

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """(H, N) standardised values back to units, clipped at 0."""
        return np.clip(z * self.std + self.mean, 0.0, None)


@dataclass(frozen=True)
class DailyFeatures:
    """Per-day arrays over a calendar that covers the history and the horizon."""

    z: np.ndarray  # (T, N) standardised units (history days only are meaningful)
    lags: np.ndarray  # (T, N, len(LAGS))
    roll_mean: np.ndarray  # (T, N, len(ROLLING_WINDOWS))
    roll_std: np.ndarray  # (T, N, len(ROLLING_WINDOWS))
    promo: np.ndarray  # (T, N)
    dow: np.ndarray  # (T,)
    month: np.ndarray  # (T,)
    day_of_month: np.ndarray  # (T,)
    holiday: np.ndarray  # (T,)
    holiday_tomorrow: np.ndarray  # (T,)
    group_mean: np.ndarray  # (N,) log1p of the product's mean units
    group_std: np.ndarray  # (N,) log1p of the product's std
    last_year: np.ndarray  # (T, N) z of the same weekday 52 weeks before, 7-day centred mean


def daily_features(
    units: np.ndarray,
    promo: np.ndarray,
    dates: pd.DatetimeIndex,
    scaler: Standardiser,
    country: str = "IT",
) -> DailyFeatures:
    """Compute the per-day features; `units`/`promo`/`dates` may run past the history."""
    z = scaler.transform(units)
    zf = pd.DataFrame(z)
    lags = np.stack([zf.shift(k).fillna(0.0).to_numpy() for k in LAGS], axis=-1)
    roll_mean = np.stack(
        [zf.rolling(w, min_periods=1).mean().to_numpy() for w in ROLLING_WINDOWS], axis=-1
    )
    roll_std = np.stack(
        [zf.rolling(w, min_periods=2).std().fillna(0.0).to_numpy() for w in ROLLING_WINDOWS],
        axis=-1,
    )
    today, tomorrow = holiday_flags(dates, country)
    # Centred over days t-367..t-361: always before an origin at most 28 days earlier.
    last_year = zf.rolling(7, center=True, min_periods=1).mean().shift(YEAR_DAYS).fillna(0.0)
    return DailyFeatures(
        z=z,
        lags=lags,
        roll_mean=roll_mean,
        roll_std=roll_std,
        promo=np.asarray(promo, dtype=float),
        dow=dates.day_of_week.to_numpy().astype(float),
        month=dates.month.to_numpy().astype(float),
        day_of_month=dates.day.to_numpy().astype(float),
        holiday=today,
        holiday_tomorrow=tomorrow,
        group_mean=np.log1p(scaler.mean),
        group_std=np.log1p(scaler.std),
        last_year=last_year.to_numpy(),
    )


def direct_rows(
    feats: DailyFeatures,
    origins: np.ndarray,
    steps: np.ndarray,
    products: np.ndarray,
    *,
    last_year: bool = False,
) -> np.ndarray:
    """(R, len(feature_names(last_year))) rows for (origin index, step >= 1, product) triples.

    Only days up to the origin are used for the sequence features; the target day
    contributes only what is known in advance (calendar, holidays, promotion).
    """
    o, h, p = (np.asarray(a, dtype=int) for a in (origins, steps, products))
    target = o + h
    same_weekday = target - 7 * ((h + 6) // 7)  # <= origin for every step
    columns = [
        feats.z[o, p],
        feats.lags[o, p],
        feats.roll_mean[o, p],
        feats.roll_std[o, p],
        feats.z[same_weekday, p],
        h,
        feats.dow[target],
        feats.month[target],
        feats.day_of_month[target],
        feats.holiday[target],
        feats.holiday_tomorrow[target],
        feats.promo[target, p],
        feats.promo[o, p],
        feats.group_mean[p],
        feats.group_std[p],
        p,
    ]
    if last_year:
        columns.append(feats.last_year[target, p])
    return np.column_stack(columns).astype(np.float32)
