"""The report renders from plain data: sections, tables, plots, HTML."""

from __future__ import annotations

import pandas as pd

from trainer.report.render import (
    ReportData,
    make_plots,
    markdown_to_html,
    md_table,
    render_markdown,
)


def _metrics(rmse: float) -> dict:
    return {
        "model": {"rmse": rmse, "mae": rmse / 2, "rmsse": 0.8, "bias": 0.1},
        "baselines": {
            "seasonal_naive": {"rmse": 3.0, "mae": 2.0, "rmsse": 1.1, "bias": 0.0},
            "moving_average": {"rmse": 2.5, "mae": 1.9, "rmsse": 1.0, "bias": -0.2},
        },
        "fairness": {"disparity_p90_over_median": 1.4, "worst_decile_rmsse": 1.2},
        "n_products": 2,
        "horizon": 7,
    }


def _data(champion: bool) -> ReportData:
    return ReportData(
        run_id="r1",
        model_version="r1",
        created_at="2026-01-01T00:00:00+00:00",
        request={
            "request_id": "req-9",
            "reason": "avg_rmse 21 > 18",
            "health_check_id": "hc-1",
            "window_start": "2025-12-01",
            "window_end": "2025-12-30",
        },
        split_dates={
            "train_start": "2025-01-01",
            "train_end": "2025-10-01",
            "val_start": "a",
            "val_end": "b",
            "test_start": "c",
            "test_end": "d",
        },
        quality={
            "totals": {"missing_days": 3, "negative_units": 1},
            "dropped_products": ["P9"],
            "closure_dates": ["2025-12-25"],
            "rules": {"negative_units": "set to 0"},
            "products_with_findings": {"P1": {"missing_days": 3, "sparse": False}},
        },
        tuning={
            "study_name": "s",
            "storage": "memory",
            "task_index": 0,
            "task_count": 1,
            "counts": {"complete": 2, "pruned": 1, "fail": 0},
            "duration_s": 12.0,
            "best_trial": 1,
            "best_value": 0.9,
            "best_params": {"units": 8, "dropout": 0.1},
            "refit_epochs": 2,
        },
        trials=pd.DataFrame(
            {
                "number": [0, 1],
                "value": [1.2, 0.9],
                "state": ["COMPLETE"] * 2,
                "params_units": [8, 16],
                "user_attrs_x": [1, 2],
            }
        ),
        metrics=_metrics(2.0),
        champion={"model_version": "old", "metrics": _metrics(2.2)} if champion else None,
        champion_note=None if champion else "no champion yet",
        per_product=pd.DataFrame(
            {"product_id": ["P1", "P2"], "rmsse": [0.7, 0.9], "rmsse_lstm_plain": [0.6, 1.3]}
        ),
        fairness_compare={
            "with callback": {"disparity_p90_over_median": 1.2},
            "without callback": {"disparity_p90_over_median": 1.9},
        },
        bias={
            "before": {"mean_error": 0.5, "rmse": 2.1},
            "after": {"mean_error": 0.05, "rmse": 2.0},
        },
        per_product_bias=pd.DataFrame(
            {"product_id": ["P1", "P2"], "bias_before": [0.4, 0.6], "bias_after": [0.0, 0.1]}
        ),
        shap_summary=pd.DataFrame(
            {
                "feature": ["lag_7", "promo"],
                "input": ["history", "future"],
                "mean_abs_shap": [0.3, 0.2],
                "mean_shap": [0.1, 0.2],
                "sum_abs_shap_over_steps": [4.2, 1.4],
            }
        ),
        shap_per_product=pd.DataFrame(
            {
                "product_id": ["P2"],
                "feature": ["promo"],
                "input": ["future"],
                "mean_abs_shap": [0.5],
            }
        ),
        history={"loss": [1.0, 0.8], "val_loss": [1.1, 0.9]},
        decision={"promote": True, "reason": "RMSE 2 < champion old's 2.2", "against": "champion"},
        artifacts=["metrics.json", "report.md"],
    )


def test_markdown_has_every_section_and_the_decision():
    md = render_markdown(_data(champion=True))
    for text in (
        "# forecastguard training run r1",
        "**promoted** to champion — RMSE 2 < champion old's 2.2",
        "Retrain request `req-9`: avg_rmse 21 > 18 (health check `hc-1`",
        "## Comparison with the champion and the baselines",
        "| model | mean RMSSE | rmse |",
        "| champion old | 0.8 | 2.2 |",
        "| seasonal naive | 1.1 | 3 |",
        "Promotion metric: **mean per-product RMSSE**",
        "## Data quality",
        "Dropped products: P9.",
        "## Tuning (Optuna)",
        "2 complete, 1 pruned, 0 failed",
        "trained on the training days only",
        "## Per-product fairness",
        "| without callback | 1.9 |",
        "![Per-product test error of the LSTM with and without group DRO](fairness.png)",
        "## Bias before and after correction",
        "## What drives the forecasts (SHAP)",
        "| lag_7 | history |",
        "Top features of the worst products:",
        "- `metrics.json`",
    ):
        assert text in md, text
    assert "user_attrs_x" not in md  # the trials table keeps number, state, value, params


def test_first_model_report_and_html():
    data = _data(champion=False)
    data.decision = {
        "promote": False,
        "reason": "does not beat seasonal naive",
        "against": "seasonal_naive",
    }
    md = render_markdown(data)
    assert "**not promoted**" in md and "Note: no champion yet" in md
    assert "champion old" not in md
    html = markdown_to_html(md, "run <r1>")
    assert "<title>run &lt;r1&gt;</title>" in html and "<table>" in html
    assert '<img src="fairness.png"' in html


def test_report_says_the_baseline_serves_and_why():
    data = _data(champion=False)
    reason = (
        "first model: mean RMSSE 1.2 is not lower than the moving average baseline's 1; "
        "the moving average baseline (baseline:moving_average) becomes the champion and serves"
    )
    data.decision = {
        "promote": False,
        "reason": reason,
        "against": "baseline:moving_average",
        "fallback": "baseline:moving_average",
    }
    data.serving = {
        "kind": "baseline:moving_average",
        "model_version": "baseline:moving_average",
        "description": "the moving average baseline",
        "reason": reason,
    }
    data.data_quality_failures = ["duplicate sales rows"]
    md = render_markdown(data)
    assert "Serving: the moving average baseline (`baseline:moving_average`)." in md
    assert "Judged against the best baseline, moving average, on the same" in md
    assert "**Serving now: the moving average baseline (`baseline:moving_average`" in md
    assert "no trained model has been promoted yet" in md
    assert "Data-quality checks failed, which blocks any promotion: duplicate sales rows." in md


def test_md_table_formats_and_escapes():
    table = md_table(pd.DataFrame({"a": ["x|y", None], "b": [1.23456789, float("nan")]}))
    assert table.splitlines()[1] == "|---|---:|"
    assert "x\\|y" in table and "1.235" in table and "–" in table
    assert md_table(pd.DataFrame()) == "_(none)_"


def test_plots_are_pngs():
    plots = make_plots(_data(champion=True))
    assert set(plots) == {"fairness.png", "bias.png", "shap_summary.png", "training.png"}
    assert all(png.startswith(b"\x89PNG\r\n") and len(png) > 1000 for png in plots.values())


def test_report_says_which_kind_shap_explains_or_why_none():
    data = _data(champion=True)
    data.shap_settings = {"kind": "blend", "explained": True, "blend_weight": 0.5}
    md = render_markdown(data)
    assert "Explained: the blend" in md and "(`w` = 0.5)" in md
    assert "SHAP values are linear in the model" in md
    data.shap_settings = {"kind": "lightgbm", "explained": True}
    assert "Explained: LightGBM (`shap.TreeExplainer`" in render_markdown(data)
    data.shap_settings = {
        "kind": "baseline:moving_average",
        "explained": False,
        "reason": "the moving average baseline serves: a fixed rule",
    }
    data.shap_summary = data.shap_summary.iloc[0:0]
    data.shap_per_product = data.shap_per_product.iloc[0:0]
    md = render_markdown(data)
    assert "No SHAP values: the moving average baseline serves: a fixed rule." in md
    assert "| lag_7 |" not in md
    png = make_plots(data)["shap_summary.png"]
    assert png.startswith(b"\x89PNG\r\n")


def test_report_names_the_chosen_candidate_and_the_lightgbm_refit():
    data = _data(champion=True)
    scores = {
        "lstm": (0.70, 1.30, 0.71, 1.32),
        "lightgbm": (0.69, 1.27, 0.69, 1.33),
        "blend": (0.68, 1.27, 0.69, 1.31),
    }
    data.metrics = data.metrics | {
        "candidates": {
            kind: dict(
                zip(
                    (
                        "val_rmsse",
                        "val_worst_decile_rmsse",
                        "test_rmsse",
                        "test_worst_decile_rmsse",
                    ),
                    values,
                    strict=True,
                )
            )
            for kind, values in scores.items()
        },
        "served_kind_chosen_on_validation": "blend",
        "blend_weight": 0.25,
        "lightgbm_history_days": [364, 728, 0],
        "lightgbm_refit": {"through": "2018-12-31", "rounds": [40, 55, 61]},
    }
    md = render_markdown(data)
    section = md.split("## The challenger's candidates", 1)[1].split("\n## ", 1)[0]
    assert "lowest validation mean RMSSE: **blend**" in section
    assert "blend (chosen)" in section and "lightgbm |" in section and "lstm |" in section
    assert "an ensemble of 3 boosters on the last 364, 728, all days of history" in section
    assert "their blend (the LSTM's share 0.25, chosen on validation)" in section
    assert "through 2018-12-31 with the boosting rounds validation chose (40, 55, 61" in section
    # Without the refit (an LSTM challenger), no refit sentence.
    del data.metrics["lightgbm_refit"]
    assert "refitted on every day" not in render_markdown(data)
    # A run without candidates (older metrics) renders without the section.
    data.metrics = _metrics(2.0)
    assert "## The challenger's candidates" not in render_markdown(data)


def test_report_states_the_intervals_coverage_and_a_blocked_promotion():
    data = _data(champion=True)
    assert "Forecast intervals" not in render_markdown(data)  # a run without intervals
    served = {"coverage": 0.62, "coverage_p10": 0.4, "interval_score": 3.5}
    data.metrics = data.metrics | {
        "intervals": {"served": served, "coverage_bounds": [0.75, 0.85], "levels": [0.1, 0.5, 0.9]}
    }
    data.decision = {
        "promote": False,
        "reason": "RMSE 2 < champion old's 2.2, but its 80 % interval covered 62.0% of the "
        "test days, outside [75%, 85%] (too narrow); champion old keeps serving",
        "against": "champion",
        "interval_blocked": True,
    }
    md = render_markdown(data)
    assert "80 % interval covered **62.0%** of the test days" in md
    assert "outside the promotion bounds [75%, 85%]: not promoted" in md
    # outside the bounds but promoted (the guard allowed for what would serve instead)
    data.decision = {"promote": True, "reason": "RMSE 2 < champion old's 2.2; ...", "against": "x"}
    md = render_markdown(data)
    assert "outside the promotion bounds [75%, 85%]**, which did not block" in md
    assert "not promoted" not in md
    # not promoted on accuracy, the interval noted but not blocking: not blamed on it
    data.decision = {
        "promote": False,
        "reason": "RMSE 2.3 >= champion old's 2.2; its 80 % interval covered 62.0% ..., "
        "as is champion old's (60.0%), which would serve instead: the interval does not block",
        "against": "champion",
        "interval_blocked": False,
    }
    assert "which did not block the promotion" in render_markdown(data)
    data.metrics["intervals"]["served"] = served | {"coverage": 0.8}
    assert "inside the promotion bounds [75%, 85%]" in render_markdown(data)
