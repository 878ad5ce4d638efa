"""Metrics that fit Cloud Monitoring's quota (issue 24): a check writes a fixed number of
time series whatever the catalogue's size — per-product series only for the top drifted
and worst products, aggregates for the whole catalogue."""

from __future__ import annotations

import dataclasses
from datetime import date

import numpy as np
import pandas as pd
import pytest

from forecastguard.health.check import HealthParams, compute_health
from forecastguard.health.service import health_points
from forecastguard.metrics import TOP_PRODUCTS, top_products
from tests.integration.health.synthetic import synthetic_window

MAX_SERIES = 301  # what one check may write, at any size (300 + the slow share, issue 23)


def _check_of(n: int):
    """A real check's result, its product rows repeated (new ids) to `n` products."""
    result = compute_health(
        synthetic_window(400, date(2026, 5, 30), seed=2, drift_share=0.2), HealthParams()
    )
    rows = result.products
    # One take of the rows, cycled (a concat of 2,500 copies took seconds at 1M).
    big = rows.iloc[np.arange(n) % len(rows)].reset_index(drop=True)
    big["product_id"] = ("S" + pd.Series(np.arange(n)).astype(str).str.zfill(7)).to_numpy()
    big["rmse"] = big["rmse"].to_numpy() * np.linspace(0.5, 1.5, n)  # distinct worst ones
    return dataclasses.replace(result, products=big, n_products=n)


def _series(points) -> set[tuple[str, tuple]]:
    return {(p.name, tuple(sorted(p.labels.items()))) for p in points}


@pytest.mark.parametrize("n", [1_000, 1_000_000])
def test_series_count_is_fixed_whatever_the_catalogue(n: int) -> None:
    result = _check_of(n)
    points = health_points(result)
    series = _series(points)
    assert len(series) == len(points) <= MAX_SERIES
    per_product = {s for s in series if any(k == "product_id" for k, _ in s[1])}
    ids = {dict(s[1])["product_id"] for s in per_product}
    assert len(ids) <= 2 * TOP_PRODUCTS
    drifted = result.products[result.products["drift"]]
    # The most drifted and the worst products are the ones shown.
    best_q = drifted.sort_values(["drift_qvalue", "product_id"])["product_id"].iloc[0]
    key = result.products["rmsse"].fillna(result.products["rmse"])
    worst = result.products.loc[key.idxmax(), "product_id"]
    assert {best_q, worst} <= ids
    # The drift counts by kind cover the whole catalogue.
    by_kind = {p.labels["kind"]: p.value for p in points if p.name == "drifted_products"}
    assert sum(by_kind.values()) == int(result.products["drift"].sum())
    [checked] = [p.value for p in points if p.name == "products_checked"]
    assert checked == n


def test_top_products_are_drifted_first_then_worst() -> None:
    frame = pd.DataFrame(
        {
            "product_id": ["a", "b", "c", "d"],
            "drift": [True, False, True, False],
            "drift_qvalue": [0.01, 0.5, 0.001, 0.9],
            "rmsse": [0.1, 9.0, 0.2, np.nan],
            "rmse": [1.0, 1.0, 1.0, 50.0],
        }
    )
    assert top_products(frame, 1)["product_id"].tolist() == ["c", "d"]
    assert sorted(top_products(frame, 2)["product_id"]) == ["a", "b", "c", "d"]
