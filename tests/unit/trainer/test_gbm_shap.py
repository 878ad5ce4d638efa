"""LightGBM's SHAP values as `report.explain.tree_shap` computes them for `gbm_values`
(LightGBM's own TreeSHAP over a member's validated rounds) are `shap.TreeExplainer`'s on
the booster truncated to those rounds, as the report computed them before: the same
numbers."""

from __future__ import annotations

import numpy as np

from trainer.report.explain import tree_shap


def test_pred_contrib_over_the_rounds_is_tree_explainers_values():
    import lightgbm as lgb
    import shap

    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 6)).astype(np.float32)
    x[:, -1] = rng.integers(0, 5, size=600)  # a categorical column, as `product` is
    y = x[:, 0] * 2 + np.sin(x[:, 1]) + x[:, -1] * 0.3 + rng.normal(scale=0.1, size=600)
    params = {"objective": "regression", "num_leaves": 15, "min_data_in_leaf": 10}
    params |= {"verbose": -1, "seed": 0, "num_threads": 1}
    data = lgb.Dataset(x, label=y, categorical_feature=[5])
    booster = lgb.train(params, data, num_boost_round=40)
    rows = x[:50]
    for rounds in (25, 0):  # the validated rounds of 40 trees; 0: every tree
        ours, expected = tree_shap(booster, rounds, rows)
        truncated = booster
        if rounds:
            truncated = lgb.Booster(model_str=booster.model_to_string(num_iteration=rounds))
        explainer = shap.TreeExplainer(truncated)
        theirs = np.asarray(explainer.shap_values(rows), dtype=float)
        assert np.array_equal(ours, theirs)
        assert expected == float(np.ravel(explainer.expected_value)[0])
        # local accuracy: the values and the expected value add up to the prediction
        predicted = booster.predict(rows, num_iteration=rounds or -1)
        np.testing.assert_allclose(ours.sum(axis=1) + expected, predicted, rtol=1e-6, atol=1e-6)
