"""SHAP attributions on a tiny trained model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.support.trainer_config import small_config
from tests.unit.trainer.helpers import make_sales
from trainer.config import ModelParams, TrainConfig
from trainer.report.explain import _aggregate, explain, fixed_product_model

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("keras_eagerly")]

CFG = small_config()


@pytest.fixture(scope="module")
def trained():
    from trainer.data.prepare import prepare
    from trainer.models.lstm import train

    prepared = prepare(make_sales(3, 150), CFG)
    params = ModelParams(units=4, lookback=7)
    return prepared, train(prepared, params, CFG, verbose=False).model


def test_fixed_product_model_explains_the_forecast_total_in_units(trained):
    prepared, model = trained
    w = prepared.test
    inputs = w.inputs(7)
    product = int(w.product[0])
    mask = w.product == product
    scaler = prepared.pipeline.scaler
    scale = (float(scaler.scale_[0]), float(scaler.mean_[0]))
    wrapped = fixed_product_model(model, product, 7, units_scale=scale, product_std=2.5)
    got = wrapped.predict([inputs["sequence"][mask], w.known[mask]], verbose=0)[:, 0]
    net = model.predict({k: v[mask] for k, v in inputs.items()}, verbose=0)
    level = (inputs["sequence"][mask][:, :, 0] * scale[0] + scale[1]).mean(axis=1)
    want = 2.5 * (net.sum(axis=1) + net.shape[1] * level)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_the_wrappers_level_is_the_pipelines_with_a_28_day_window():
    from trainer.data.prepare import prepare

    cfg = TrainConfig(horizon=7, lookback=28, val_days=14, test_days=14, min_observations=30)
    prepared = prepare(make_sales(2, 150), cfg)
    w = prepared.test
    scaler = prepared.pipeline.scaler
    level = (w.x[:, -28:, 0] * scaler.scale_[0] + scaler.mean_[0]).mean(axis=1)
    np.testing.assert_allclose(level, w.level, rtol=1e-4, atol=1e-4)


def test_explain_aggregates_per_feature_and_names_the_worst_products(trained):
    prepared, model = trained
    errors = pd.Series({"P00": 0.5, "P01": 2.0, "P02": 1.0})
    result = explain(
        model,
        prepared,
        lookback=7,
        per_product_error=errors,
        n_worst=2,
        max_products=3,
        n_background=8,
        n_explain=2,
        nsamples=8,
    )
    assert result.worst_products == ["P01", "P02"]
    n_seq, n_known = len(prepared.feature_names), len(prepared.known_names)
    assert len(result.summary) == n_seq + n_known
    assert set(result.summary["input"]) == {"history", "future"}
    assert result.summary["sum_abs_shap_over_steps"].is_monotonic_decreasing
    assert result.summary["mean_abs_shap"].gt(0).any()
    assert set(result.per_product["product_id"]) == {"P01", "P02"}
    seq = result.values["sequence"]
    assert seq.shape[1:] == (7, n_seq) and result.values["known"].shape[1:] == (7, n_known)
    assert set(result.npz_arrays()) >= {"sequence_shap", "known_shap", "product_id"}


def test_aggregate_is_mean_abs_over_samples_and_steps():
    seq = np.array([[[1.0, -2.0], [3.0, 0.0]]])  # 1 sample, 2 steps, 2 features
    known = np.zeros((1, 2, 1))
    table = _aggregate(seq, known, ["a", "b"], ["k"]).set_index("feature")
    assert table.loc["a", "mean_abs_shap"] == 2.0 and table.loc["b", "mean_abs_shap"] == 1.0
    assert table.loc["a", "sum_abs_shap_over_steps"] == 4.0
    assert table.loc["b", "mean_shap"] == -1.0
    with pytest.raises(ValueError, match="disagree"):
        _aggregate(seq, known, ["a"], ["k"])
