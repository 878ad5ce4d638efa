"""Features: the daily panel of every series, and the fitted `FeaturePipeline`.

A *panel* holds every series (the real products, then any synthetic series) on one
daily calendar: units, promotion flags and a `listed` mask (the days between a
product's first and last record). `FeaturePipeline.fit` learns, from training rows
only, the per-product group statistics (mean, std of units), a `StandardScaler` over
the feature columns and an `OrdinalEncoder` of product ids; `transform` turns a panel
into arrays the windowing stage slices:

- `seq` (series, days, F): the LSTM's input features per day — units, lags 1/7/14/28,
  rolling mean and std over 7/28 days (all in the product's standardised units), the
  calendar (day of week, month: sine/cosine), holiday today / tomorrow (the `holidays`
  package, configurable country), promotion, listed, and the group mean/std.
- `known` (series, days, K): what is known in advance about a day, for the forecast
  days of a window — calendar, holidays, promotion, and `last_year`: the standardised
  units of the same weekday 52 weeks before (7-day centred mean), which carries the
  yearly pattern (the Christmas run-up) into a 28-day forecast.
- `target` (series, days): units standardised per product, `(units - mean) / std`.

The pipeline is saved with the model (`save(dir)` / `load(dir)`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import holidays
import joblib
import numpy as np
import pandas as pd
from sklearn.preprocessing import OrdinalEncoder, StandardScaler

from trainer.config import LAGS, ROLLING_WINDOWS

SEQ_FEATURES: tuple[str, ...] = (
    "units",
    *(f"lag_{k}" for k in LAGS),
    *(f"roll_mean_{w}" for w in ROLLING_WINDOWS),
    *(f"roll_std_{w}" for w in ROLLING_WINDOWS),
    "dow_sin",
    "dow_cos",
    "month_sin",
    "month_cos",
    "holiday",
    "holiday_tomorrow",
    "promo",
    "listed",
    "group_mean",
    "group_std",
)
KNOWN_FEATURES: tuple[str, ...] = (
    "dow_sin",
    "dow_cos",
    "month_sin",
    "month_cos",
    "holiday",
    "holiday_tomorrow",
    "promo",
    "last_year",
)
LAST_YEAR_DAYS = 364  # 52 weeks: the same weekday a year before
_CALENDAR = ("dow_sin", "dow_cos", "month_sin", "month_cos", "holiday", "holiday_tomorrow")


@dataclass(frozen=True)
class Panel:
    """Every series on one daily calendar (`units` NaN where a series is not listed)."""

    calendar: pd.DatetimeIndex
    series_ids: tuple[str, ...]
    product_ids: tuple[str, ...]  # the product of each series
    synthetic: np.ndarray  # (S,) bool
    units: np.ndarray  # (S, T) float64, NaN outside the listed days
    promo: np.ndarray  # (S, T) float32 0/1

    @property
    def listed(self) -> np.ndarray:
        """(S, T) bool: the series exists on that day."""
        return ~np.isnan(self.units)


def build_panel(
    clean: pd.DataFrame,
    synthetic: pd.DataFrame | None = None,
    *,
    end: pd.Timestamp | None = None,
    promotions: pd.DataFrame | None = None,
) -> Panel:
    """Put the cleaned real series (and synthetic ones) on one daily calendar.

    `end` extends the calendar past the last sale (forecast days: units NaN);
    `promotions` (product_id, date) marks promoted days, also future ones.
    """
    frames = [clean.assign(series_id=clean["product_id"], synthetic=False)]
    if synthetic is not None and not synthetic.empty:
        frames.append(synthetic)
    long = pd.concat(frames, ignore_index=True)
    start = long["date"].min()
    last = long["date"].max() if end is None else max(long["date"].max(), end)
    calendar = pd.date_range(start, last, freq="D")
    real = sorted(clean["product_id"].unique())
    syn = [] if len(frames) == 1 else sorted(synthetic["series_id"].unique())
    order = [*real, *syn]
    units = (
        long.pivot(index="date", columns="series_id", values="units_sold")
        .reindex(index=calendar, columns=order)
        .to_numpy(dtype=float)
        .T
    )
    promo_wide = long.pivot(index="date", columns="series_id", values="on_promotion").reindex(
        index=calendar, columns=order
    )
    promo = np.array(promo_wide.fillna(0).to_numpy(dtype=np.float32).T)  # writable copy
    meta = long.drop_duplicates("series_id").set_index("series_id")
    product_ids = tuple(str(meta.loc[s, "product_id"]) for s in order)
    if promotions is not None and not promotions.empty:
        col = calendar.get_indexer(pd.to_datetime(promotions["date"]))
        pids = promotions["product_id"].astype(str).to_numpy()
        for row, pid in enumerate(product_ids):
            promo[row, col[(pids == pid) & (col >= 0)]] = 1.0
    real_set = set(real)
    return Panel(
        calendar=calendar,
        series_ids=tuple(order),
        product_ids=product_ids,
        synthetic=np.array([s not in real_set for s in order], dtype=bool),
        units=units,
        promo=promo,
    )


def holiday_flags(calendar: pd.DatetimeIndex, country: str) -> tuple[np.ndarray, np.ndarray]:
    """(holiday today, holiday tomorrow) 0/1 arrays for `country` (ISO code)."""
    years = range(calendar.min().year, calendar.max().year + 2)
    try:
        days = holidays.country_holidays(country, years=years)
    except NotImplementedError as exc:
        raise ValueError(f"holiday_country {country!r} is not known to `holidays`") from exc
    dates = set(days.keys())
    today = np.array([d.date() in dates for d in calendar], dtype=np.float32)
    tomorrow = np.array(
        [(d + pd.Timedelta(days=1)).date() in dates for d in calendar], dtype=np.float32
    )
    return today, tomorrow


def calendar_features(calendar: pd.DatetimeIndex, country: str) -> np.ndarray:
    """(T, 6) calendar columns in `_CALENDAR` order."""
    dow = calendar.day_of_week.to_numpy()
    month = calendar.month.to_numpy() - 1
    today, tomorrow = holiday_flags(calendar, country)
    return np.column_stack(
        [
            np.sin(2 * np.pi * dow / 7),
            np.cos(2 * np.pi * dow / 7),
            np.sin(2 * np.pi * month / 12),
            np.cos(2 * np.pi * month / 12),
            today,
            tomorrow,
        ]
    ).astype(np.float32)


def last_year(z: np.ndarray, listed: np.ndarray) -> np.ndarray:
    """(S, T): 7-day centred mean of `z` around the same weekday 52 weeks before (0 if none).

    Day t uses days t-367..t-361 only, so it is known for forecasts up to 361 days ahead.
    """
    values = pd.DataFrame(np.where(listed, z, np.nan).T)
    smooth = values.rolling(7, center=True, min_periods=1).mean().shift(LAST_YEAR_DAYS)
    return smooth.fillna(0.0).to_numpy().T


@dataclass(frozen=True)
class FeatureArrays:
    """What `FeaturePipeline.transform` returns for a panel."""

    seq: np.ndarray  # (S, T, F) float32, scaled
    known: np.ndarray  # (S, T, K) float32
    target: np.ndarray  # (S, T) float32, standardised units (0 where not listed)
    product_index: np.ndarray  # (S,) int32: 0 unknown product, 1..P known
    listed: np.ndarray  # (S, T) bool


def _raw_sequence(panel: Panel, mean: np.ndarray, std: np.ndarray, cal: np.ndarray) -> np.ndarray:
    """(S, T, F) float32 unscaled sequence features in `SEQ_FEATURES` order.

    Each feature is computed over (S, T) in float64 and written straight into the float32
    block, so the only (S, T, F) array is the float32 result (no float64 copy of it).
    """
    listed = panel.listed
    units = np.where(listed, panel.units, 0.0)
    n_series, n_days = units.shape
    n_cols = 1 + len(LAGS) + 2 * len(ROLLING_WINDOWS)
    out = np.empty((n_series, n_days, n_cols + cal.shape[1] + 4), dtype=np.float32)
    wide = pd.DataFrame(units.T)  # (T, S): pandas shifts/rolls along days for every series
    z = np.where(listed, (units - mean[:, None]) / std[:, None], 0.0)
    out[:, :, 0] = z
    zwide = pd.DataFrame(z.T)
    col = 1
    for k in LAGS:
        out[:, :, col] = zwide.shift(k).fillna(0.0).to_numpy().T
        col += 1
    for w in ROLLING_WINDOWS:
        rm = wide.rolling(w, min_periods=1).mean().to_numpy().T
        out[:, :, col] = np.where(listed, (rm - mean[:, None]) / std[:, None], 0.0)
        col += 1
    for w in ROLLING_WINDOWS:
        rs = wide.rolling(w, min_periods=2).std().fillna(0.0).to_numpy().T
        out[:, :, col] = rs / std[:, None]
        col += 1
    out[:, :, col : col + cal.shape[1]] = cal[None, :, :]
    col += cal.shape[1]
    out[:, :, col] = panel.promo
    out[:, :, col + 1] = listed
    out[:, :, col + 2] = np.log1p(mean)[:, None]
    out[:, :, col + 3] = np.log1p(std)[:, None]
    return out


@dataclass
class FeaturePipeline:
    """Scalers, encoders and group statistics, fitted on training rows only."""

    holiday_country: str
    products: tuple[str, ...]
    group_mean: np.ndarray  # (P,) per product, training days only
    group_std: np.ndarray  # (P,)
    encoder: OrdinalEncoder
    scaler: StandardScaler

    feature_names: tuple[str, ...] = SEQ_FEATURES
    known_names: tuple[str, ...] = KNOWN_FEATURES

    @classmethod
    def fit(cls, panel: Panel, train_end: int, holiday_country: str) -> Self:
        """Fit on the real series' listed days before calendar index `train_end`."""
        real = ~panel.synthetic
        products = tuple(panel.product_ids[i] for i in np.flatnonzero(real))
        if list(products) != sorted(products):
            raise ValueError("panel: real series must come first, sorted by product id")
        train_units = panel.units[real, :train_end]
        counts = np.sum(~np.isnan(train_units), axis=1)
        if np.any(counts == 0):
            empty = [p for p, c in zip(products, counts, strict=True) if c == 0]
            raise ValueError(f"products with no training day (all after the split): {empty}")
        mean = np.nanmean(train_units, axis=1)
        std = np.nanstd(train_units, axis=1)
        std = np.where(std > 1e-6, std, 1.0)
        encoder = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=-1, dtype=np.int64
        ).fit(np.array(products, dtype=object)[:, None])
        pipe = cls(
            holiday_country=holiday_country,
            products=products,
            group_mean=mean,
            group_std=std,
            encoder=encoder,
            scaler=StandardScaler(),
        )
        cal = calendar_features(panel.calendar, holiday_country)
        m, s = pipe.series_stats(panel.product_ids)
        raw = _raw_sequence(panel, m, s, cal)
        rows = raw[real, :train_end][~np.isnan(train_units)]
        pipe.scaler.fit(rows)
        # Constant columns (e.g. `listed` on a complete panel) keep unit scale.
        pipe.scaler.scale_ = np.where(pipe.scaler.scale_ > 1e-6, pipe.scaler.scale_, 1.0)
        return pipe

    def product_index(self, product_ids: tuple[str, ...] | list[str]) -> np.ndarray:
        """Embedding index of each product: 1..P for known products, 0 for unknown."""
        codes = self.encoder.transform(np.array(product_ids, dtype=object)[:, None])[:, 0]
        return (codes + 1).astype(np.int32)

    def series_stats(
        self, product_ids: tuple[str, ...] | list[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Group mean and std for each product id (the median over products if unknown)."""
        idx = self.product_index(product_ids)
        mean = np.append(np.median(self.group_mean), self.group_mean)[idx]
        std = np.append(np.median(self.group_std), self.group_std)[idx]
        return mean, std

    def transform(self, panel: Panel) -> FeatureArrays:
        """Scaled feature arrays for a panel (any calendar, known or unknown products)."""
        mean, std = self.series_stats(panel.product_ids)
        cal = calendar_features(panel.calendar, self.holiday_country)
        raw = _raw_sequence(panel, mean, std, cal)
        shape = raw.shape
        # In place on the float32 block (the scaler's arithmetic is unchanged).
        seq = self.scaler.transform(raw.reshape(-1, shape[-1]), copy=False).reshape(shape)
        seq = seq.astype(np.float32, copy=False)
        n_series, n_days = panel.units.shape
        listed = panel.listed
        target = np.where(listed, (panel.units - mean[:, None]) / std[:, None], 0.0)
        known = np.concatenate(
            [
                np.broadcast_to(cal[None], (n_series, n_days, cal.shape[1])),
                panel.promo[:, :, None],
                last_year(target, listed)[:, :, None],
            ],
            axis=-1,
        ).astype(np.float32)
        return FeatureArrays(
            seq=seq,
            known=known,
            target=target.astype(np.float32),
            product_index=self.product_index(panel.product_ids),
            listed=listed,
        )

    def inverse_target(self, z: np.ndarray, product_ids: list[str] | tuple[str, ...]) -> np.ndarray:
        """Standardised predictions (N, ...) back to units (clipped at 0)."""
        mean, std = self.series_stats(product_ids)
        shape = (-1,) + (1,) * (z.ndim - 1)
        return np.clip(z * std.reshape(shape) + mean.reshape(shape), 0.0, None)

    def save(self, directory: str | Path) -> Path:
        """Write `feature_pipeline.joblib` and a readable `feature_pipeline.json`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        joblib.dump(self, directory / "feature_pipeline.joblib")
        (directory / "feature_pipeline.json").write_text(json.dumps(self.describe(), indent=2))
        return directory / "feature_pipeline.joblib"

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """Read what `save` wrote."""
        obj = joblib.load(Path(directory) / "feature_pipeline.joblib")
        if not isinstance(obj, cls):
            raise TypeError(f"{directory}: feature_pipeline.joblib holds {type(obj).__name__}")
        return obj

    def describe(self) -> dict[str, Any]:
        """JSON summary: features, country, per-product group statistics."""
        return {
            "holiday_country": self.holiday_country,
            "feature_names": list(self.feature_names),
            "known_names": list(self.known_names),
            "products": {
                p: {"mean": float(m), "std": float(s)}
                for p, m, s in zip(self.products, self.group_mean, self.group_std, strict=True)
            },
        }
