"""Bias detection and correction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainer.bias import BiasCorrection, bias_report, correction_effect, fit_bias_correction


def residual_frame(n: int = 200, seed: int = 0, offsets=(3.0, -2.0, 0.0)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i, off in enumerate(offsets):
        predicted = rng.uniform(5, 20, n)
        actual = predicted + off + rng.normal(0, 1, n)
        rows.append(pd.DataFrame({"product_id": f"P{i}", "actual": actual, "predicted": predicted}))
    return pd.concat(rows, ignore_index=True)


def test_correction_removes_the_bias_it_was_fitted_on() -> None:
    frame = residual_frame()
    corr = fit_bias_correction(frame, shrinkage=0.0)
    fixed = corr.apply(frame)
    per = (fixed["actual"] - fixed["predicted"]).groupby(fixed["product_id"]).median()
    np.testing.assert_allclose(per.to_numpy(), 0.0, atol=1e-9)
    before = bias_report(frame)["mean_abs_product_bias"]
    after = bias_report(fixed)["mean_abs_product_bias"]
    assert before > 1.5 and after < 0.2


def test_shrinkage_pulls_small_products_toward_zero() -> None:
    frame = residual_frame(n=200)
    few = residual_frame(n=4, seed=1, offsets=(3.0,)).assign(product_id="FEW")
    corr = fit_bias_correction(pd.concat([frame, few]), shrinkage=28.0)
    p0 = frame[frame["product_id"] == "P0"]
    assert corr.offsets["P0"] == pytest.approx(
        (p0["actual"] - p0["predicted"]).median() * 200 / 228
    )
    med_few = (few["actual"] - few["predicted"]).median()
    assert corr.offsets["FEW"] == pytest.approx(med_few * 4 / 32)  # 4 points: shrunk by 4/32
    assert abs(corr.offsets["FEW"]) < 0.5


def test_unknown_products_are_not_corrected_and_forecast_frames_work() -> None:
    corr = BiasCorrection(offsets={"A": 2.0, "B": -5.0}, shrinkage=0.0)
    fc = pd.DataFrame({"product_id": ["A", "B", "C"], "predicted_units": [1.0, 1.0, 1.0]})
    out = corr.apply(fc, column="predicted_units")
    assert out["predicted_units"].tolist() == [3.0, 0.0, 1.0]  # clipped at zero
    assert BiasCorrection.from_dict(corr.to_dict()) == corr


def test_breusch_pagan_flags_heteroscedastic_residuals() -> None:
    rng = np.random.default_rng(0)
    predicted = rng.uniform(1, 50, 400)
    homo = pd.DataFrame(
        {"product_id": "A", "predicted": predicted, "actual": predicted + rng.normal(0, 2, 400)}
    )
    hetero = homo.assign(actual=predicted + rng.normal(0, 1, 400) * predicted * 0.3)
    assert bias_report(homo)["breusch_pagan"]["heteroscedastic"] is False
    assert bias_report(hetero)["breusch_pagan"]["heteroscedastic"] is True


def test_correction_effect_reports_before_and_after() -> None:
    val, test = residual_frame(seed=0), residual_frame(seed=1)
    effect = correction_effect(test, fit_bias_correction(val, shrinkage=28.0))
    assert effect["after"]["mean_abs_product_bias"] < effect["before"]["mean_abs_product_bias"]
    assert effect["after"]["rmse"] < effect["before"]["rmse"]


def test_bad_frames_are_named() -> None:
    with pytest.raises(ValueError, match="lacks column"):
        fit_bias_correction(pd.DataFrame({"product_id": ["a"], "actual": [1.0]}))
