"""The daily panel every forecaster sees: the pasta CSV or the synthetic generator, in one shape.

A `Panel` holds N products on one contiguous daily calendar of T days: `units` (T, N)
with NaN where a product has no record that day (the store was closed, or the product
was not listed yet), and `promo` (T, N) 0/1. NaN days are filled with 0 for the models
(a closed store sells nothing) and are never scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trainer.data.load import DataError, read_pasta_csv

__all__ = ["DataError", "Panel", "panel_from_long", "read_pasta", "synthetic"]


@dataclass(frozen=True)
class Panel:
    """Products on one daily calendar."""

    dates: pd.DatetimeIndex  # (T,) contiguous days
    products: tuple[str, ...]  # (N,)
    units: np.ndarray  # (T, N) float64, NaN where there is no record
    promo: np.ndarray  # (T, N) float64 0/1

    def __post_init__(self) -> None:
        t, n = len(self.dates), len(self.products)
        if self.units.shape != (t, n) or self.promo.shape != (t, n):
            raise DataError(
                f"panel arrays must be ({t}, {n}); got units {self.units.shape}, promo {self.promo.shape}"
            )

    @property
    def observed(self) -> np.ndarray:
        """(T, N) bool: the product has a record that day (what is scored)."""
        return ~np.isnan(self.units)

    @property
    def filled(self) -> np.ndarray:
        """(T, N) units with NaN as 0: what the models train on."""
        return np.nan_to_num(self.units, nan=0.0)

    def upto(self, end: int) -> Panel:
        """The first `end` days."""
        return Panel(self.dates[:end], self.products, self.units[:end], self.promo[:end])

    def select(self, columns: list[int] | np.ndarray) -> Panel:
        """Only the products at these column positions."""
        cols = np.asarray(columns, dtype=int)
        return Panel(
            self.dates,
            tuple(self.products[i] for i in cols),
            self.units[:, cols],
            self.promo[:, cols],
        )

    def to_long(self) -> pd.DataFrame:
        """The project's long sales frame (product_id, date, units_sold, on_promotion).

        Days without a record are left out, as they are in the database.
        """
        t, n = self.units.shape
        frame = pd.DataFrame(
            {
                "product_id": np.tile(np.array(self.products, dtype=object), t),
                "date": np.repeat(self.dates.to_numpy(), n),
                "units_sold": self.units.reshape(-1),
                "on_promotion": self.promo.reshape(-1).astype(int),
            }
        )
        return frame[frame["units_sold"].notna()].reset_index(drop=True)


def panel_from_long(frame: pd.DataFrame, *, order: tuple[str, ...] | None = None) -> Panel:
    """Pivot a long sales frame (product_id, date, units_sold[, on_promotion]) to a panel.

    Products come in `order` when given (e.g. the file's), else sorted.
    """
    missing = {"product_id", "date", "units_sold"} - set(frame.columns)
    if missing:
        raise DataError(f"sales frame lacks column(s) {sorted(missing)}")
    if frame.empty:
        raise DataError("sales frame is empty")
    long = frame.assign(
        product_id=frame["product_id"].astype(str),
        date=pd.to_datetime(frame["date"]).dt.normalize(),
    )
    if "on_promotion" not in long.columns:
        long = long.assign(on_promotion=0)
    dates = pd.date_range(long["date"].min(), long["date"].max(), freq="D")
    products = list(order) if order is not None else sorted(long["product_id"].unique())
    units = long.pivot(index="date", columns="product_id", values="units_sold")
    promo = long.pivot(index="date", columns="product_id", values="on_promotion")
    return Panel(
        dates=dates,
        products=tuple(products),
        units=units.reindex(index=dates, columns=products).to_numpy(dtype=float),
        promo=promo.reindex(index=dates, columns=products).fillna(0).to_numpy(dtype=float),
    )


def read_pasta(path: str | Path, *, products: int | None = None) -> Panel:
    """Read the pasta data's wide CSV (DATE, QTY_B<b>_<n>, PROMO_B<b>_<n>) in place.

    `path` is the CSV or the folder holding `hierarchical_sales_data.csv`. Product ids are
    `B<b>_<n>`; `products` keeps the first N (file order) for quick runs. Days absent from
    the file (the store was closed) become NaN rows.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "hierarchical_sales_data.csv"
    long = read_pasta_csv(path, products=products)
    order = tuple(dict.fromkeys(long["product_id"]))  # file order
    return panel_from_long(long, order=order)


def synthetic(
    n_products: int, *, start: str = "2016-01-01", end: str = "2018-12-31", seed: int = 0
) -> Panel:
    """A panel from the project's synthetic sales generator (`forecastguard.synth`)."""
    from forecastguard.synth import generate_sales

    frame = generate_sales(n_products=n_products, start=start, end=end, seed=seed)
    return panel_from_long(frame)
