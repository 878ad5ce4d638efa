"""SHAP follows the served kind: LightGBM (TreeExplainer), the blend (linear
combination), the LSTM (the forecast, not its change from the level), baselines (none)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tests.support.trainer_config import small_config
from tests.unit.trainer.helpers import make_sales
from trainer.config import ModelParams
from trainer.report.explain import explain_forecaster, no_explanation, sample_windows

pytestmark = pytest.mark.usefixtures("keras_eagerly")

CFG = small_config(
    gbm_history_days=(40, 0),  # a two-member LightGBM ensemble: SHAP is the members' mean
)
ERRORS = pd.Series({"P00": 0.5, "P01": 2.0, "P02": 1.0})
SMALL = dict(n_worst=2, max_products=3, n_background=8, n_explain=2, nsamples=8, seed=3)


@pytest.fixture(scope="module")
def prepared():
    from trainer.data.prepare import prepare

    return prepare(make_sales(3, 150), CFG)


@pytest.fixture(scope="module")
def gbm(prepared):
    pytest.importorskip("lightgbm")
    from trainer.models.gbm import train_gbm

    gbm = train_gbm(prepared, rounds=15, early_stopping=5, num_threads=1)
    assert gbm.history_days == [40, 0]
    return gbm


def test_lightgbm_is_explained_by_tree_shap_of_its_forecast_total(prepared, gbm) -> None:
    e = explain_forecaster("lightgbm", prepared, per_product_error=ERRORS, gbm=gbm, **SMALL)
    assert e.settings["kind"] == "lightgbm" and "TreeExplainer" in e.settings["explainer"]
    assert e.worst_products == ["P01", "P02"]
    assert set(e.summary["model"]) == {"lightgbm"}
    assert set(e.summary["input"]) == {"history", "future"}
    future = e.summary.loc[e.summary["input"] == "future", "feature"]
    assert future.str.startswith("known_").all() and len(e.summary) == len(gbm.names)
    # Local accuracy: a window's values sum to its H-day forecast total in units (less
    # the product's mean) minus the booster's expected total.
    sample = sample_windows(prepared, per_product_error=ERRORS, **_sampling())
    w = prepared.test.subset(sample.index)
    products = [prepared.panel.product_ids[s] for s in w.series]
    mean, std = prepared.pipeline.series_stats(products)
    total = std * gbm.predict_z(w, mean, std).sum(axis=1)
    expected = std * CFG.horizon * e.settings["lightgbm_expected_value"]
    values = e.values["lightgbm"]
    assert values.shape == (len(w), CFG.horizon, len(gbm.names))
    np.testing.assert_allclose(values.sum(axis=(1, 2)), total - expected, rtol=1e-3, atol=1e-3)
    assert list(e.values["product_id"]) == products
    arrays = e.npz_arrays()
    assert {"lightgbm_shap", "lightgbm_features", "product_id", "kind"} <= set(arrays)


def _sampling() -> dict:
    return {k: SMALL[k] for k in ("n_worst", "max_products", "n_background", "n_explain", "seed")}


def test_a_baseline_has_no_explanation_and_the_report_says_why() -> None:
    from trainer.report.render import make_plots  # noqa: F401  (the plot handles the empty table)
    from trainer.run.steps import explain_served

    j = SimpleNamespace(
        serving={"kind": "baseline:moving_average", "model_version": "baseline:moving_average"}
    )
    e = explain_served(None, None, ModelParams(), j, run_id="r1", max_products=3, seed=0)
    assert not e.explained and e.summary.empty and e.per_product.empty
    assert "moving average baseline serves" in e.settings["reason"]
    assert set(e.npz_arrays()) == {"kind", "reason"}
    empty = no_explanation("baseline:seasonal_naive", "because")
    assert list(empty.summary.columns)[:3] == ["feature", "input", "model"]


def test_unknown_kind_or_missing_model_is_refused(prepared, gbm) -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        explain_forecaster("baseline:seasonal_naive", prepared, per_product_error=ERRORS)
    with pytest.raises(ValueError, match="needs the LSTM"):
        explain_forecaster("blend", prepared, per_product_error=ERRORS, gbm=gbm)
    with pytest.raises(ValueError, match="needs the LightGBM"):
        explain_forecaster("lightgbm", prepared, per_product_error=ERRORS)


@pytest.mark.slow
def test_the_blend_is_the_weighted_sum_of_both_explanations(prepared, gbm) -> None:
    pytest.importorskip("tensorflow")
    from trainer.models.lstm import train

    model = train(prepared, ModelParams(units=4, lookback=7), CFG, verbose=False).model
    common = dict(per_product_error=ERRORS, model=model, lookback=7, gbm=gbm, **SMALL)
    lstm = explain_forecaster("lstm", prepared, **common)
    tree = explain_forecaster("lightgbm", prepared, **common)
    mix = explain_forecaster("blend", prepared, blend_weight=0.3, **common)
    assert lstm.settings["kind"] == "lstm" and set(lstm.summary["model"]) == {"lstm"}
    assert mix.settings["blend_weight"] == 0.3
    assert set(mix.summary["model"]) == {"lstm", "lightgbm"}
    # Same windows, same seeds: the blend's values are 0.3 × the LSTM's and 0.7 × LightGBM's.
    assert list(mix.values["product_id"]) == list(lstm.values["product_id"])
    np.testing.assert_allclose(mix.values["sequence"], 0.3 * lstm.values["sequence"], atol=1e-6)
    np.testing.assert_allclose(mix.values["known"], 0.3 * lstm.values["known"], atol=1e-6)
    np.testing.assert_allclose(mix.values["lightgbm"], 0.7 * tree.values["lightgbm"], atol=1e-6)
    n_lstm = len(prepared.feature_names) + len(prepared.known_names)
    assert len(mix.summary) == n_lstm + len(gbm.names)
    assert set(mix.npz_arrays()) >= {"sequence_shap", "known_shap", "lightgbm_shap", "blend_weight"}
