"""Small synthetic sales frames for the trainer's tests (fixed seeds, a few products)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_sales(
    n_products: int = 4, days: int = 260, seed: int = 0, start: str = "2023-01-02"
) -> pd.DataFrame:
    """Long frame: weekly seasonality, promotions lifting sales, product-specific levels."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, periods=days, freq="D")
    frames = []
    for p in range(n_products):
        level = 3.0 + 4.0 * p
        promo = (rng.random(days) < 0.2).astype(int)
        weekly = 1.0 + 0.4 * np.sin(2 * np.pi * dates.day_of_week.to_numpy() / 7)
        mu = level * weekly * (1.0 + 0.8 * promo)
        frames.append(
            pd.DataFrame(
                {
                    "product_id": f"P{p:02d}",
                    "date": dates,
                    "units_sold": rng.poisson(mu).astype(float),
                    "on_promotion": promo,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
