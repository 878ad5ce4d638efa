"""The check's two phases (issue 24's Beam pipeline runs them): product_phase on disjoint
batches of products, combined, then global_phase, equals compute_health on them all."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from forecastguard.health.check import (
    HealthParams,
    combine_phases,
    compute_health,
    global_phase,
    product_phase,
)
from forecastguard.health.window import WindowData, with_episodes
from tests.integration.health.synthetic import synthetic_window

AS_OF = date(2026, 5, 30)


def _window_with_holdout(n: int) -> tuple[WindowData, tuple[np.ndarray, np.ndarray]]:
    """Drift in 10 % of the products; a sixth of them lose their reference-window
    forecasts (they fall back to a holdout of varying length)."""
    data = synthetic_window(n, AS_OF, seed=5, drift_share=0.1, drift_factor=1.8)
    rng = np.random.default_rng(3)
    no_ref = rng.random(n) < 1 / 6
    in_ref = (data.day >= data.history_days - data.window_days) & (data.day < data.history_days)
    predicted = data.predicted.copy()
    predicted[in_ref & no_ref[data.codes]] = np.nan
    data = WindowData(**{**data.__dict__, "predicted": predicted})
    # Issue 23: a few products with an open drift episode (since the reference's middle).
    episodes = pd.DataFrame(
        {
            "product_id": data.products[::37],
            "since": data.window_start - timedelta(days=15),
            "checks": 2,
        }
    )
    data = with_episodes(data, episodes)
    lengths = rng.integers(10, 60, n)
    codes = np.repeat(np.arange(n), lengths)
    errors = rng.normal(0.0, 2.0, len(codes))
    return data, (codes, errors)


def _split(data: WindowData, holdout, parts: list[np.ndarray]):
    """product_phase of each batch (with its holdout rows recoded)."""
    out = []
    for ids in parts:
        sub = data.subset(ids)
        index = pd.Index(sub.products).get_indexer(data.products)
        codes = index[holdout[0]]
        keep = codes >= 0
        out.append(product_phase(sub, HealthParams(), (codes[keep], holdout[1][keep])))
    return out


def test_phases_on_disjoint_batches_equal_the_whole_check() -> None:
    data, holdout = _window_with_holdout(300)
    whole = compute_health(data, HealthParams(), holdout)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, len(data.products))
    parts = [data.products[labels == k] for k in range(3)]
    single = product_phase(data, HealthParams(), holdout)
    batches = _split(data, holdout, parts)
    combined = combine_phases(batches[::-1])
    # The per-product rows are the same bit for bit, whatever the batch.
    pd.testing.assert_frame_equal(combined.products, single.products, check_exact=True)
    result = global_phase(combined, HealthParams())
    assert whole.references["holdout"] > 20 and whole.drift_detected
    assert whole.references["before_drift"] > 0
    assert result.healthy == whole.healthy and result.reason_kinds == whole.reason_kinds
    assert result.reasons == whole.reasons
    assert result.p_value == pytest.approx(whole.p_value, rel=1e-12, abs=1e-300)
    a, b = result.products, whole.products
    assert (a["product_id"] == b["product_id"]).all()
    for column in ("drift_pvalue", "drift_qvalue", "ks_pvalue", "sales_ks_qvalue"):
        np.testing.assert_allclose(a[column], b[column], rtol=1e-12, atol=0.0)
    for column in ("drift", "drift_kind", "reference", "sales_drift", "persisting"):
        assert a[column].tolist() == b[column].tolist(), column
    assert result.summary() == whole.summary()


def test_combine_refuses_overlap_and_mixed_models() -> None:
    data = synthetic_window(20, AS_OF, seed=1)
    part = product_phase(data, HealthParams())
    with pytest.raises(ValueError, match="more than one part"):
        combine_phases([part, part])
    other = product_phase(
        WindowData(**{**data.subset(data.products[:5]).__dict__, "current_version": "m9"}),
        HealthParams(),
    )
    rest = product_phase(data.subset(data.products[5:]), HealthParams())
    with pytest.raises(ValueError, match="different current models"):
        combine_phases([other, rest])
