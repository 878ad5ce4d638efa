"""Bias detection and correction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainer.models.bias import (
    BiasCorrection,
    _noise,
    bias_report,
    correction_effect,
    fit_bias_correction,
)


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
    per = (fixed["actual"] - fixed["predicted"]).groupby(fixed["product_id"]).mean()
    np.testing.assert_allclose(per.to_numpy(), 0.0, atol=1e-9)  # mean-based
    before = bias_report(frame)["mean_abs_product_bias"]
    after = bias_report(fixed)["mean_abs_product_bias"]
    assert before > 1.5 and after < 0.2


def test_noisy_products_are_shrunk_more_and_pure_noise_gives_zero() -> None:
    frame = residual_frame(n=200)
    noisy = residual_frame(n=200, seed=1, offsets=(3.0,)).assign(product_id="NOISY")
    noisy["actual"] = noisy["predicted"] + 3.0 + np.random.default_rng(2).normal(0, 40, 200)
    corr = fit_bias_correction(pd.concat([frame, noisy]))
    raw = fit_bias_correction(pd.concat([frame, noisy]), shrinkage=0.0)
    assert corr.prior_var is not None and corr.prior_var > 0
    # a quiet product keeps almost all of its mean; a noisy one is pulled toward 0
    assert corr.offsets["P0"] / raw.offsets["P0"] > 0.99
    assert abs(corr.offsets["NOISY"]) < 0.6 * abs(raw.offsets["NOISY"])
    # no real offsets, only noise: the spread of the means is mostly noise: shrunk hard
    rng = np.random.default_rng(5)
    pure = pd.DataFrame(
        {
            "product_id": np.repeat([f"Q{i}" for i in range(30)], 56),
            "predicted": 10.0,
            "actual": 10.0 + rng.normal(0, 3, 30 * 56),
        }
    )
    shrunk = fit_bias_correction(pure)
    raw_pure = fit_bias_correction(pure, shrinkage=0.0)
    assert shrunk.prior_var is not None and shrunk.prior_var < 0.1  # noise var of a mean: 0.16
    total = sum(abs(v) for v in shrunk.offsets.values())
    assert total < 0.3 * sum(abs(v) for v in raw_pure.offsets.values())


def test_serial_correlation_and_repeated_days_lower_the_effective_n() -> None:
    rng = np.random.default_rng(7)
    days = pd.date_range("2020-01-01", periods=56)
    e = np.zeros(56)
    for t in range(1, 56):  # AR(1) residuals, rho 0.8
        e[t] = 0.8 * e[t - 1] + rng.normal()
    one = pd.DataFrame(
        {"product_id": "A", "predicted": 5.0, "actual": 5.0 + e, "target_date": days}
    )
    per = _noise(one, e)
    assert 3.0 < per.loc["A", "n_eff"] < 25.0  # 56 days, strongly correlated
    twice = pd.concat([one, one])  # every day forecast twice (overlapping origins)
    assert _noise(twice, np.concatenate([e, e])).loc["A", "n_eff"] <= per.loc["A", "n_eff"]


def test_unknown_products_are_not_corrected_and_forecast_frames_work() -> None:
    corr = BiasCorrection(offsets={"A": 2.0, "B": -5.0}, shrinkage=0.0, prior_var=1.5)
    fc = pd.DataFrame({"product_id": ["A", "B", "C"], "predicted_units": [1.0, 1.0, 1.0]})
    out = corr.apply(fc, column="predicted_units")
    assert out["predicted_units"].tolist() == [3.0, 0.0, 1.0]  # clipped at zero
    assert BiasCorrection.from_dict(corr.to_dict()) == corr


def test_correction_effect_reports_before_and_after() -> None:
    val, test = residual_frame(seed=0), residual_frame(seed=1)
    effect = correction_effect(test, fit_bias_correction(val))
    assert effect["after"]["mean_abs_product_bias"] < effect["before"]["mean_abs_product_bias"]
    assert effect["after"]["rmse"] < effect["before"]["rmse"]


def test_bad_frames_are_named() -> None:
    with pytest.raises(ValueError, match="lacks column"):
        fit_bias_correction(pd.DataFrame({"product_id": ["a"], "actual": [1.0]}))
