"""Seeded synthetic retail sales: the demo's and the tests' stand-in for a real store.

- `generate_sales`: daily units of N products with realistic structure (log-normal
  spread of volumes from intermittent to hundreds a day, weekday and yearly
  seasonality, public holidays, promotions, trend, negative-binomial noise).
- `generate_predictions`: what a reasonable model would have forecast for those days.
- `inject_drift`: a level shift, seasonality change or variance change in a share of
  the products from a given day.

Everything is pure, vectorised and deterministic: the same arguments give the same
frame, and a product's value on a day does not depend on the window asked for.
"""

from forecastguard.synth.drift import DEFAULT_MAGNITUDE, DRIFT_KINDS, inject_drift
from forecastguard.synth.params import SynthParams
from forecastguard.synth.predictions import generate_predictions
from forecastguard.synth.sales import generate_sales

__all__ = [
    "DEFAULT_MAGNITUDE",
    "DRIFT_KINDS",
    "SynthParams",
    "generate_predictions",
    "generate_sales",
    "inject_drift",
]
