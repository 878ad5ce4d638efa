"""The knobs of the synthetic sales generator, with defaults that look like a grocery store."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

# Mean share of each weekday in a week's sales, Monday first: the shape of the real
# pasta data set (busy Friday and Saturday, quiet Sunday).
RETAIL_WEEK = (0.86, 0.87, 0.85, 0.99, 1.19, 1.52, 0.72)


@dataclass(frozen=True)
class SynthParams:
    """How products differ and what moves their demand. Ranges are (low, high).

    Base levels (mean units a day) are log-normal across products and spread by Latin
    hypercube sampling, so even a few products cover the whole range: with the defaults
    one product in six sells under one unit a day (mostly zeros), half sell under five,
    and one in twenty-five sells over a hundred (forecast errors in the tens).
    """

    level_median: float = 5.0
    level_sigma: float = 1.7  # log-normal spread of base levels across products
    level_max: float = 400.0
    # Negative-binomial noise (gamma-Poisson): variance = mean + mean**2 / shape, with
    # shape = c x sqrt(level), c log-uniform in this range: slow sellers are the most
    # erratic relative to their mean, fast sellers' daily error runs at 15-30 %.
    dispersion: tuple[float, float] = (1.5, 3.0)
    weekly_strength: tuple[float, float] = (0.5, 1.5)  # power applied to RETAIL_WEEK
    weekly_jitter: float = 0.08  # product-specific log noise on each weekday
    yearly_amplitude: tuple[float, float] = (0.05, 0.3)  # first harmonic, random phase
    christmas_lift: float = 0.25  # log-lift of the weeks before Christmas (all products)
    trend_sigma: float = 0.08  # sd of the yearly log-growth of a product
    promo_share: float = 0.12  # mean share of weeks a product is on promotion
    promo_lift: tuple[float, float] = (1.3, 2.5)  # demand multiplier while on promotion
    holiday_factor: float = 0.0  # demand on public holidays (0: the store is closed)
    pre_holiday_lift: float = 1.4  # demand multiplier on the days before a holiday
    pre_holiday_days: int = 2

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            values = value if isinstance(value, tuple) else (value,)
            if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
                raise ValueError(f"SynthParams.{f.name} must be finite numbers, got {value!r}")
            if any(v < 0 for v in values):
                raise ValueError(f"SynthParams.{f.name} must not be negative, got {value!r}")
            if isinstance(value, tuple) and (len(value) != 2 or value[0] > value[1]):
                raise ValueError(f"SynthParams.{f.name} must be (low, high), got {value!r}")
        if self.level_median <= 0 or self.level_max <= 0:
            raise ValueError("SynthParams.level_median and level_max must be positive")
        if self.dispersion[0] <= 0:
            raise ValueError("SynthParams.dispersion must be positive")
        if self.promo_share > 1:
            raise ValueError(f"SynthParams.promo_share must be <= 1, got {self.promo_share}")
