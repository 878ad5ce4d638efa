"""Retraining calibrated per month (issue 23): drift alone asks for a retrain only at
FDR_ALPHA / RETRAIN_SPENDING; other reasons retrain as before."""

from __future__ import annotations

from forecastguard.health.check import RETRAIN_SPENDING, retrain_held


def _summary(kinds: list[str], p_value: float | None) -> dict:
    return {"reason_kinds": kinds, "p_value": p_value, "thresholds": {"fdr_alpha": 0.05}}


def test_drift_alone_needs_the_monthly_level() -> None:
    level = 0.05 / RETRAIN_SPENDING
    held = retrain_held(_summary(["drift"], 0.02))
    assert held is not None and "retrain level 0.005" in held and "0.02" in held
    assert retrain_held(_summary(["drift"], level)) is None
    assert retrain_held(_summary(["drift"], 1e-9)) is None


def test_other_reasons_retrain_as_before() -> None:
    assert retrain_held(_summary(["rmse", "drift"], 0.04)) is None
    assert retrain_held(_summary(["rmse"], None)) is None
    assert retrain_held(_summary([], None)) is None
