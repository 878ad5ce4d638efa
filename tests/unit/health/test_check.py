"""compute_health on synthetic windows: verdicts, reasons, references, data drift."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd
import pytest

from forecastguard.health.check import HealthParams, compute_health, needs_holdout
from forecastguard.health.service import retrain_message
from forecastguard.health.window import window_from_frames
from tests.integration.health.synthetic import frames, synthetic_window

AS_OF = date(2026, 5, 30)


def test_healthy_window() -> None:
    data = synthetic_window(300, AS_OF, seed=1)
    result = compute_health(data, HealthParams())
    assert result.healthy, result.reasons
    assert result.reasons == [] and result.reason_kinds == []
    assert result.n_products == 300 and result.n_pairs == 300 * 30
    assert result.references == {"previous_window": 300, "before_drift": 0, "holdout": 0, "none": 0}
    assert result.window_start == date(2026, 5, 1) and result.window_end == AS_OF
    # avg_rmse is the mean of the per-product RMSEs, each the numpy RMSE of its errors.
    in_window = (data.day >= data.history_days) & (data.codes == 0)
    errors = data.units[in_window] - data.predicted[in_window]
    assert result.products.loc[0, "rmse"] == pytest.approx(np.sqrt(np.mean(errors**2)))
    assert result.avg_rmse == pytest.approx(result.products["rmse"].mean())
    record = result.to_dict()
    for key in (
        "healthy",
        "avg_rmse",
        "p_value",
        "drift_detected",
        "reasons",
        "window_start",
        "window_end",
        "model_versions",
        "n_products",
        "duration_s",
        "products",
    ):
        assert key in record
    assert set(record["products"][0]) >= {
        "product_id",
        "n",
        "rmse",
        "mae",
        "bias",
        "ks_pvalue",
        "ks_qvalue",
        "drift",
    }


def test_injected_drift_is_detected_in_the_drifted_products() -> None:
    data = synthetic_window(500, AS_OF, seed=2, drift_share=0.04, drift_factor=1.8)
    result = compute_health(data, HealthParams())
    assert not result.healthy
    assert result.drift_detected and "drift" in result.reason_kinds
    flagged = set(result.products.loc[result.products["drift"], "product_id"])
    drifted = {f"P{i:03d}" for i in range(20)}
    assert len(flagged & drifted) >= 15
    assert len(flagged - drifted) <= 2
    assert result.p_value is not None and result.p_value <= 0.05
    assert set(result.summary()["drifted_products"]) == flagged
    # Sales drifted too: reported as information, not a reason (by default).
    assert result.data_drift["detected"] and "data_drift" not in result.reason_kinds
    strict = compute_health(data, HealthParams(data_drift_unhealthy=True))
    assert "data_drift" in strict.reason_kinds


def test_rmse_above_threshold_is_a_reason() -> None:
    data = synthetic_window(100, AS_OF, seed=0)
    result = compute_health(data, HealthParams(rmse_threshold=0.5))
    assert not result.healthy and result.reason_kinds == ["rmse"]
    assert result.reasons[0].startswith(f"avg_rmse {result.avg_rmse:.2f} > 0.5")


def test_stale_data_and_empty_window_are_reasons() -> None:
    data = synthetic_window(50, AS_OF, seed=4)
    stale = replace(data, last_sale_date=date(2026, 5, 27))
    assert compute_health(stale, HealthParams(stale_days=3)).reason_kinds == ["stale"]
    assert compute_health(stale, HealthParams(stale_days=4)).healthy
    assert compute_health(stale, HealthParams(stale_days=0)).healthy  # 0 turns it off
    empty = replace(data, predicted=np.full_like(data.predicted, np.nan))
    result = compute_health(empty, HealthParams())
    assert result.n_products == 0 and result.avg_rmse is None and result.p_value is None
    assert result.reason_kinds == ["empty"]
    assert "no (product, date) pairs" in result.reasons[0]


def test_holdout_is_the_reference_without_a_previous_window() -> None:
    data = synthetic_window(40, AS_OF, seed=5)
    sales_frame, predictions_frame = frames(data, predictions_from=data.window_start)
    window = window_from_frames(AS_OF, 30, sales_frame, predictions_frame)
    assert needs_holdout(window, 7)
    no_reference = compute_health(window, HealthParams())
    assert no_reference.references["none"] == 40 and no_reference.n_tested == 0
    assert no_reference.products["ks_pvalue"].isna().all()
    rng = np.random.default_rng(0)
    codes = np.repeat(np.arange(40), 25)
    codes = codes[codes != 3]  # product 3 has no holdout errors
    holdout = (codes, rng.normal(0, 3, codes.size))
    result = compute_health(window, HealthParams(), holdout)
    assert result.references == {"previous_window": 0, "before_drift": 0, "holdout": 39, "none": 1}
    assert result.products.loc[3, "reference"] == "none"
    assert np.isnan(result.products.loc[3, "ks_pvalue"])


def test_products_with_few_errors_get_no_pvalue() -> None:
    data = synthetic_window(10, AS_OF, window_days=5, seed=6)
    result = compute_health(data, HealthParams(min_samples=7))
    assert result.n_tested == 0 and result.p_value is None and not result.drift_detected
    assert (result.products["reference"] == "none").all()
    assert compute_health(data, HealthParams(min_samples=5)).n_tested == 10


def test_request_id_is_stable_for_the_same_window() -> None:
    data = synthetic_window(60, AS_OF, seed=7)
    first = compute_health(data, HealthParams(rmse_threshold=0.5))
    second = compute_health(replace(data, units=data.units + 1.0), HealthParams(rmse_threshold=0.5))
    assert first.reasons != second.reasons  # the numbers moved ...
    assert retrain_message(first).request_id == retrain_message(second).request_id  # ... same id
    other_day = compute_health(
        replace(data, as_of=date(2026, 5, 31)), HealthParams(rmse_threshold=0.5)
    )
    assert retrain_message(other_day).request_id != retrain_message(first).request_id


def test_window_from_frames_matches_the_arrays() -> None:
    data = synthetic_window(5, AS_OF, seed=8)
    sales_frame, predictions_frame = frames(data)
    window = window_from_frames(AS_OF, 30, sales_frame, predictions_frame)
    np.testing.assert_array_equal(window.codes, data.codes)
    np.testing.assert_array_equal(window.day, data.day)
    np.testing.assert_allclose(window.predicted, data.predicted)
    assert window.current_version == "m1" and window.model_versions == ("m1",)
    assert isinstance(window.products[0], str) and pd.notna(window.last_sale_date)


def test_previous_window_of_another_model_is_no_reference() -> None:
    data = synthetic_window(6, AS_OF, seed=9, model_version="m2")
    versions = (frozenset({"m1"}), frozenset({"m2"}), frozenset({"m1", "m2"}), *[frozenset()] * 3)
    retrained = replace(data, reference_versions=versions)
    np.testing.assert_array_equal(
        retrained.same_model_reference(), [False, True, False, True, True, True]
    )
    assert needs_holdout(retrained, 7) and not needs_holdout(data, 7)
    result = compute_health(retrained, HealthParams())
    assert list(result.products["reference"]) == [
        "none",
        "previous_window",
        "none",
        *["previous_window"] * 3,
    ]
    rng = np.random.default_rng(1)
    codes = np.repeat(np.arange(6), 20)
    with_holdout = compute_health(retrained, HealthParams(), (codes, rng.normal(0, 3, 120)))
    assert list(with_holdout.products["reference"][:3]) == ["holdout", "previous_window", "holdout"]
