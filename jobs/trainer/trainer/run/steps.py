"""The steps of a training run, in the order `trainer.run.main.run_train` calls them.

Each step is a function with typed inputs and outputs; the run passes what one stage
made to the next, so a crash at any point before `record_and_serve` changes no champion:

1. `load_and_prepare`: the sales from the database ▸ data quality, features, windows.
2. `tune_params`: this task's share of the Optuna study (task 0 then trains).
3. `trainer.models.challenger.train_challenger`: the candidates and the served kind, chosen on
   validation.
4. `judge`: the champion and the best baseline on the challenger's test window ▸ the
   promotion decision ▸ who serves after the run.
5. `explain_served`: SHAP attributions of the served kind (`trainer.report.explain`).
6. `build_report`: per-product tables, `metrics.json`, the report (Markdown, HTML, plots).
7. `write_artifacts`: the model bundle, LightGBM and every file of the run; the
   manifest last (a run without it is incomplete).
8. `record_and_serve`: one database transaction (registry + residuals) ▸
   champion.json ▸ forecasts by whoever serves now.

Emailing the report is `trainer.run.main.send_report`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecastguard.logs import get_logger, timed
from forecastguard.safetext import csv_text
from forecastguard.storage import ArtifactStore
from trainer.judge.promotion import (
    COVERAGE_BOUNDS,
    CURRENT,
    Decision,
    Fallback,
    Scores,
    Tolerances,
)
from trainer.run.options import JobOptions

if TYPE_CHECKING:
    from trainer.config import ModelParams, TrainConfig
    from trainer.judge.promotion import ChampionEvaluation
    from trainer.models.challenger import Challenger
    from trainer.models.tuning import TuningResult
    from trainer.report.explain import Explanation
    from trainer.report.render import ReportData
    from trainer.serve.artifacts import ChampionPointer, ModelBundle, RunWriter
    from trainer.types import Prepared

log = get_logger(__name__)

ARTIFACTS: tuple[str, ...] = (
    "model/",
    "params.json",
    "metrics.json",
    "per_product.csv",
    "holdout.csv",
    "quality.json",
    "history.json",
    "tuning/trials.csv",
    "tuning/summary.json",
    "shap/summary.csv",
    "shap/per_product.csv",
    "shap/values.npz",
    "report.md",
    "report.html",
)


def now() -> str:
    """The current UTC time, ISO seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


# 1. load + quality --------------------------------------------------------------------


def load_and_prepare(engine: sa.Engine, cfg: TrainConfig) -> Prepared:
    """Load every sale and prepare it (quality, augmentation, features, windows)."""
    from trainer.data.load import load_sales
    from trainer.data.prepare import prepare

    with timed(log, "stage load", stage="load") as out:
        sales = load_sales(engine)
        out.update(rows=len(sales), products=int(sales["product_id"].nunique()))
    return prepare(sales, cfg)


# 2. tune ------------------------------------------------------------------------------


def tune_params(prepared: Prepared, opts: JobOptions) -> TuningResult:
    """This task's share of the (possibly shared) Optuna study."""
    from trainer.models.tuning import tune

    return tune(
        prepared,
        opts.train_config,
        n_trials=opts.trials,
        timeout_s=opts.timeout_s,
        study_name=f"forecastguard-{opts.study_id}",
        storage=opts.optuna_storage,
        task_index=opts.task_index,
        task_count=opts.task_count,
        disparity_weight=opts.disparity_weight,
        units=opts.search_units,
    )


# 4. judge: champion, baseline, decision, who serves ------------------------------------


@dataclass(frozen=True)
class Judgement:
    """The promotion decision and everything it was made from."""

    champion: ChampionEvaluation
    challenger: Scores
    base_kind: str  # the best baseline's serving kind ("baseline:...")
    base_scores: Scores
    quality_failures: tuple[str, ...]  # failed data-quality checks: block the promotion
    decision: Decision
    fallback: Fallback | None  # the baseline registered as champion, if it is
    serving: dict[str, Any]  # kind, model_version, description, reason
    coverage_bounds: tuple[float, float] = COVERAGE_BOUNDS  # the interval guard's


def judge(
    store: ArtifactStore,
    prepared: Prepared,
    ch: Challenger,
    tolerances: Tolerances,
    model_version: str,
    workdir: Path,
    champion: ChampionPointer | str | None = CURRENT,
) -> Judgement:
    """Score the champion and the best baseline on the challenger's test window; decide.

    `champion`: the champion to judge against — champion.json's ("current"), a
    partition's (issue 26), or None (there is none: a first model).
    """
    from trainer.judge.evaluate import baseline_evaluation, best_baseline
    from trainer.judge.promotion import decide, evaluate_champion
    from trainer.serve.forecast import baseline_kind, describe_kind, is_baseline

    evaluation = ch.evaluation
    with timed(log, "stage champion", stage="champion"):
        champ = evaluate_champion(store, prepared, workdir / "champion", evaluation, champion)
    best = best_baseline(evaluation)
    base_eval = baseline_evaluation(evaluation, best)
    base_kind = baseline_kind(best)
    challenger = Scores.from_metrics(evaluation.metrics)
    base_scores = Scores.from_metrics(base_eval.metrics)
    quality_failures: tuple[str, ...] = prepared.quality.failures
    interval = ch.interval_test.get(ch.kind, {})
    # What serves if the challenger is not promoted, when its interval was scored on the
    # same test days: the best baseline (no champion) or a baseline champion.
    incumbent_kind = base_kind if champ.scores is None else champ.kind
    incumbent = ch.interval_test.get(incumbent_kind, {}) if is_baseline(incumbent_kind) else {}
    decision = decide(
        challenger,
        champ.scores,
        base_scores,
        tolerances,
        champ.model_version,
        baseline_kind=base_kind,
        data_quality_failures=quality_failures,
        interval_coverage=interval.get("coverage_adjusted", interval.get("coverage")),
        interval_coverage_raw=interval.get("coverage"),
        interval_coverage_se=interval.get("coverage_se"),
        incumbent_coverage=incumbent.get("coverage_adjusted", incumbent.get("coverage")),
    )
    log.info("promotion decision", extra=asdict(decision))
    fallback = (
        Fallback(base_kind, base_eval.metrics, base_eval.baseline_predictions)
        if decision.fallback
        else None
    )
    if decision.promote:
        serving = {"kind": ch.kind, "model_version": model_version}
    elif fallback is not None:
        serving = {"kind": fallback.kind, "model_version": fallback.model_version}
    else:
        serving = {"kind": champ.kind, "model_version": champ.model_version}
    serving |= {"description": describe_kind(serving["kind"]), "reason": decision.reason}
    return Judgement(
        champion=champ,
        challenger=challenger,
        base_kind=base_kind,
        base_scores=base_scores,
        quality_failures=quality_failures,
        decision=decision,
        fallback=fallback,
        serving=serving,
        coverage_bounds=tolerances.coverage,
    )


# 5. explain ---------------------------------------------------------------------------


def explain_served(
    ch: Challenger,
    prepared: Prepared,
    params: ModelParams,
    j: Judgement,
    *,
    run_id: str,
    max_products: int,
    seed: int,
) -> Explanation:
    """SHAP attributions of the served forecast (worst products first).

    The challenger's served kind is explained (`trainer.report.explain.explain_forecaster`:
    the debiased LSTM, LightGBM or their blend); when a baseline serves there is
    nothing to attribute and the explanation says why. When the kept champion serves,
    the challenger is explained and a note says so (the champion's own run explains it).
    """
    from dataclasses import replace

    from trainer.report.explain import explain_forecaster, no_explanation
    from trainer.serve.forecast import describe_kind, is_baseline

    kind = j.serving["kind"]
    if is_baseline(kind):
        return no_explanation(
            kind,
            f"{describe_kind(kind)} serves: a fixed rule of the last days' sales, with no "
            "learned model whose features SHAP could attribute the forecast to",
        )
    per = ch.evaluation.per_product.set_index("product_id")
    explanation = explain_forecaster(
        ch.kind,
        prepared,
        per_product_error=per["rmsse"],
        model=ch.lstm.model,
        lookback=params.lookback,
        gbm=ch.gbm,
        blend_weight=ch.blend_weight,
        max_products=max_products,
        seed=seed,
    )
    if j.serving.get("model_version") != run_id:
        note = (
            f"The kept champion {j.serving.get('model_version')} ({describe_kind(kind)}) "
            f"serves; its own run's report explains it. Explained here: this run's "
            f"challenger, {describe_kind(ch.kind)}."
        )
        explanation = replace(explanation, settings=explanation.settings | {"note": note})
    return explanation


# 6. report ----------------------------------------------------------------------------


def _product_bias(frame: pd.DataFrame) -> pd.Series:
    return (frame["actual"] - frame["predicted"]).groupby(frame["product_id"]).mean()


def per_product_table(ch: Challenger, champ: ChampionEvaluation) -> pd.DataFrame:
    """The served forecaster's per-product test figures, with the LSTM with and without
    group DRO (both uncorrected: one difference) and the champion beside them."""
    per_product = ch.evaluation.per_product.set_index("product_id").reset_index()
    ev_fair, ev_unfair = ch.fairness_evaluations["with"], ch.fairness_evaluations["without"]
    per_product["rmsse_lstm_plain"] = per_product["product_id"].map(
        ev_unfair.per_product.set_index("product_id")["rmsse"]
    )
    per_product["rmsse_lstm_dro"] = per_product["product_id"].map(
        ev_fair.per_product.set_index("product_id")["rmsse"]
    )
    if champ.evaluation is not None:
        per_product["champion_rmsse"] = per_product["product_id"].map(
            champ.evaluation.per_product.set_index("product_id")["rmsse"]
        )
    return per_product


def bias_table(ch: Challenger) -> pd.DataFrame:
    """The DRO LSTM's per-product test bias before and after its offsets (one difference)."""
    lstm_test = ch.lstm_test_raw
    return pd.DataFrame(
        {
            "bias_before": _product_bias(lstm_test),
            "bias_after": _product_bias(ch.correction.apply(lstm_test)),
        }
    ).rename_axis("product_id")


def intervals_document(
    ch: Challenger, bounds: tuple[float, float] = COVERAGE_BOUNDS
) -> dict[str, Any]:
    """metrics.json's `intervals`: the levels, how they were calibrated, and every
    forecaster's test coverage of its 80 % interval (the served kind's judged)."""
    cal = ch.intervals.get(ch.kind)
    return {
        "levels": list(cal.levels) if cal is not None else [],
        "point_forecast": "the model's mean-type forecast (trained on squared error), not P50",
        "calibration": (
            "split-conformal quantiles of validation residuals of the models trained on "
            "the training days only (origins every val_origin_every days; the LSTM's "
            "offsets cross-fitted), per horizon band, scaled by each product's residual "
            "scale shrunk toward its group; the models' also by the forecast's level, with "
            "a point mass at zero for the lower levels (not the baselines') "
            "(trainer.models.intervals); for LightGBM and the blend, when their quantile "
            "model was trained (served_method), conformalised quantile regression instead: "
            "quantile boosters on all the sales, P10/P90 widened per horizon band by the "
            "conformal quantile of the scores on the last horizon of days, forecast by the "
            "same boosters trained without them, P50 theirs (trainer.models.quantile); "
            "their test coverage is that held-out band, each half of the products widened "
            "by the other half's scores; a P50 in whole units for count products"
        ),
        "served_method": (
            "quantile model (CQR)" if cal is not None and cal.tail_levels else "conformal residuals"
        ),
        "coverage_bounds": list(bounds),
        "served": ch.interval_test.get(ch.kind),
        "test": ch.interval_test,
    }


def metrics_document(
    ch: Challenger, prepared: Prepared, tuning: TuningResult, j: Judgement, run_id: str
) -> dict[str, Any]:
    """`metrics.json`: the served forecaster's test metrics and how the run decided."""
    from trainer.judge.promotion import METRIC

    champ = j.champion
    return {
        **ch.evaluation.metrics,
        "run_id": run_id,
        "model_version": run_id,
        "split": prepared.split_dates(),
        "validation": ch.validation | {"tuning_objective": tuning.best_value},
        "candidates": ch.candidates,
        "served_kind_chosen_on_validation": ch.kind,
        "blend_weight": ch.blend_weight,
        "lightgbm_history_days": ch.gbm.history_days,
        **(
            {
                "lightgbm_refit": {
                    "through": prepared.split_dates()["test_end"],
                    "rounds": ch.gbm.rounds,  # per member of `lightgbm_history_days`
                }
            }
            if ch.gbm_heldout is not None
            else {}
        ),
        "fairness_comparison": ch.fairness_compare,
        "bias_correction": ch.bias_effect,
        "intervals": intervals_document(ch, j.coverage_bounds),
        "champion": (
            {"model_version": champ.model_version, **champ.evaluation.metrics}
            if champ.evaluation is not None
            else {"model_version": champ.model_version, "note": champ.note}
        ),
        "decision": asdict(j.decision),
        "promotion_metric": METRIC,
        "best_baseline": {"kind": j.base_kind, **j.base_scores.__dict__},
        "data_quality_failures": list(j.quality_failures),
        "data_quality": {
            k: prepared.quality.to_dict()[k]
            for k in ("frequency", "export_kind", "shares", "augmentation", "totals")
        },
        "serving": j.serving,
    }


@dataclass
class RunReport:
    """The run's report in every form it is written and sent in."""

    metrics_doc: dict[str, Any]  # metrics.json
    per_product: pd.DataFrame  # per_product.csv
    data: ReportData
    plots: dict[str, bytes]  # file name -> PNG
    markdown: str
    html: str


def build_report(
    ch: Challenger,
    prepared: Prepared,
    tuning: TuningResult,
    j: Judgement,
    explanation: Explanation,
    opts: JobOptions,
) -> RunReport:
    """Tables, metrics.json and the rendered report (Markdown, HTML, plots).

    Drawing and rendering never fail the run (issue 28: a `$` in a product id once made
    matplotlib raise and cost the model, its promotion and the forecasts): a plot that
    fails is named in the report, and a report that cannot be rendered at all is
    replaced by a short one that says so; both are logged at ERROR.
    """
    from trainer.report.render import ReportData, draw_plots, markdown_to_html, render_markdown

    run_id = opts.run_id
    champ = j.champion
    per_product = per_product_table(ch, champ)
    metrics_doc = metrics_document(ch, prepared, tuning, j, run_id)
    metrics_doc["shap"] = {
        k: v
        for k, v in explanation.settings.items()
        if k in ("kind", "explained", "explainer", "output", "reason", "note", "blend_weight")
    }
    data = ReportData(
        run_id=run_id,
        model_version=run_id,
        created_at=now(),
        request=asdict(opts.request),
        split_dates=prepared.split_dates(),
        quality=prepared.quality.to_dict(),
        tuning=tuning.to_dict(),
        trials=tuning.trials,
        metrics=ch.evaluation.metrics
        | {  # which candidate is the challenger, and why: the report's candidates section
            k: metrics_doc[k]
            for k in (
                "candidates",
                "served_kind_chosen_on_validation",
                "blend_weight",
                "lightgbm_history_days",
                "lightgbm_refit",
                "intervals",
            )
            if k in metrics_doc
        },
        champion=(
            {"model_version": champ.model_version, "metrics": champ.evaluation.metrics}
            if champ.evaluation is not None
            else None
        ),
        champion_note=champ.note,
        per_product=per_product[
            [c for c in per_product.columns if c in ("product_id", "n", "rmse", "bias")]
            + [c for c in per_product.columns if "rmsse" in c]
        ],
        fairness_compare=ch.fairness_compare,
        bias=ch.bias_effect,
        per_product_bias=bias_table(ch).reset_index(),
        shap_summary=explanation.summary,
        shap_per_product=explanation.per_product,
        shap_settings=explanation.settings,
        history=ch.lstm.history,
        decision=asdict(j.decision),
        serving=j.serving,
        best_baseline=j.base_kind,
        data_quality_failures=list(j.quality_failures),
    )
    with timed(log, "stage report", stage="report") as out:
        plots, data.plot_errors = draw_plots(data)
        data.artifacts = sorted([*ARTIFACTS, *plots])
        try:
            markdown = render_markdown(data)
            html = markdown_to_html(markdown, f"forecastguard run {run_id}")
        except Exception as exc:
            markdown, html = failed_report(data, exc)
        out.update(plots=len(plots), plot_errors=sorted(data.plot_errors))
    return RunReport(metrics_doc, per_product, data, plots, markdown, html)


def failed_report(data: ReportData, exc: Exception) -> tuple[str, str]:
    """The short report (Markdown, HTML) of a run whose report could not be rendered."""
    from html import escape

    from trainer.report.render import md_code, md_text

    error = f"{type(exc).__name__}: {str(exc)[:300]}"
    log.error(
        "stage report failed: a short report replaces it",
        extra={"run_id": data.run_id, "error": error},
        exc_info=True,
    )
    d = data.decision
    markdown = (
        f"# forecastguard training run {md_text(data.run_id)}\n\n"
        f"Model version {md_code(data.model_version)}. Decision: "
        f"{'promoted' if d.get('promote') else 'not promoted'} — {md_text(d.get('reason'))}.\n\n"
        f"The full report could not be rendered ({md_text(error)}); metrics.json and the "
        "CSV files of the run hold its figures.\n"
    )
    html = (
        "<!doctype html><html><head><meta charset='utf-8'><title>forecastguard run "
        f"{escape(data.run_id)}</title></head><body><pre>{escape(markdown)}</pre></body></html>"
    )
    return markdown, html


# 7. artifacts -------------------------------------------------------------------------


def model_bundle(
    ch: Challenger, prepared: Prepared, params: ModelParams, run_id: str
) -> ModelBundle:
    """The served LSTM's bundle (model, feature pipeline, config, params, offsets)."""
    from trainer.serve.artifacts import ModelBundle

    return ModelBundle(
        model=ch.lstm.model,
        pipeline=prepared.pipeline,
        cfg=prepared.cfg,
        params=params,
        correction=ch.correction,
        model_version=run_id,
        run_id=run_id,
    )


def write_artifacts(
    writer: RunWriter,
    bundle: ModelBundle,
    ch: Challenger,
    prepared: Prepared,
    tuning: TuningResult,
    explanation: Explanation,
    report: RunReport,
    j: Judgement,
    *,
    request_id: str | None,
    workdir: Path,
) -> None:
    """Every file of the run, then the manifest that seals it."""
    from trainer.models.challenger import save_gbm, save_intervals
    from trainer.serve.artifacts import save_model_bundle

    metrics = ch.evaluation.metrics
    fair, unfair = ch.lstm, ch.plain
    with timed(log, "stage artifacts", stage="artifacts", run_uri=writer.uri) as out:
        save_model_bundle(writer, bundle, workdir / "bundle")
        save_gbm(writer, ch.gbm, ch.blend_weight, workdir / "bundle")
        save_intervals(writer, ch.intervals)
        writer.put_json("metrics.json", report.metrics_doc)
        writer.put_text("per_product.csv", csv_text(report.per_product))
        writer.put_text("holdout.csv", csv_text(ch.test))
        writer.put_json("quality.json", prepared.quality.to_dict())
        writer.put_json(
            "history.json",
            {
                "final": ch.lstm.history,
                "with_callback": {"keras": fair.history, "fairness": fair.fairness_history},
                "without_callback": {"keras": unfair.history, "fairness": unfair.fairness_history},
            },
        )
        writer.put_text("tuning/trials.csv", csv_text(tuning.trials))
        writer.put_json("tuning/summary.json", tuning.to_dict())
        writer.put_text("shap/summary.csv", csv_text(explanation.summary))
        writer.put_text("shap/per_product.csv", csv_text(explanation.per_product))
        npz = workdir / "shap_values.npz"
        np.savez_compressed(npz, **explanation.npz_arrays())
        writer.put_file("shap/values.npz", npz)
        for name, png in report.plots.items():
            writer.put_bytes(name, png)
        writer.put_text("report.md", report.markdown)
        writer.put_text("report.html", report.html)
        writer.seal(
            model_version=writer.run_id,
            request_id=request_id,
            decision=asdict(j.decision),
            rmse=metrics["model"]["rmse"],
            rmsse=metrics["model"]["rmsse"],
            serving=j.serving,
        )
        out["files"] = len(writer.files) + 1


# 8. record, publish, forecast ---------------------------------------------------------


def record_and_serve(
    engine: sa.Engine,
    store: ArtifactStore,
    *,
    run_uri: str,
    ch: Challenger,
    bundle: ModelBundle,
    j: Judgement,
    metrics_doc: dict[str, Any],
    request_id: str | None,
    workdir: Path,
    bigquery: Any = None,
) -> dict[str, Any]:
    """Record the run (one transaction), publish the new champion if it changed, and
    forecast the next days with whoever serves now (to `bigquery` too, a BigQueryTarget
    from BIGQUERY_URL); returns the forecast summary."""
    from trainer.judge.promotion import publish, record
    from trainer.models.challenger import TrainedForecaster
    from trainer.serve.forecast import BaselineForecaster, forecast_with

    run_id = model_version = bundle.run_id
    record(
        engine,
        model_version=model_version,
        run_id=run_id,
        run_uri=run_uri,
        metrics=metrics_doc,
        decision=j.decision,
        holdout=ch.test,
        request_id=request_id,
        kind=ch.kind,
        fallback=j.fallback,
    )
    if j.decision.promote:
        publish(
            store,
            model_version=model_version,
            run_id=run_id,
            run_uri=run_uri,
            scores=j.challenger,
            kind=ch.kind,
        )
        served = TrainedForecaster(
            ch.kind, bundle, ch.gbm, ch.blend_weight, ch.intervals.get(ch.kind)
        )
        return forecast_with(engine, served, bigquery=bigquery).to_dict()
    if j.fallback is not None:
        publish(
            store,
            model_version=j.fallback.model_version,
            run_id=run_id,
            run_uri=run_uri,
            scores=j.base_scores,
            kind=j.fallback.kind,
        )
        forecaster = BaselineForecaster(
            j.fallback.kind,
            j.fallback.model_version,
            bundle.cfg,
            ch.intervals.get(j.fallback.kind),
        )
        return forecast_with(engine, forecaster, bigquery=bigquery).to_dict()
    return forecast_with_champion(engine, store, workdir / "serving", bigquery)


def forecast_with_champion(
    engine: sa.Engine, store: ArtifactStore, workdir: Path, bigquery: Any = None
) -> dict[str, Any]:
    """The kept champion's fresh forecasts; a failure is logged and returned, not raised
    (the run's decision is already committed)."""
    from trainer.serve.artifacts import read_champion
    from trainer.serve.forecast import forecast_with, load_forecaster

    pointer = read_champion(store)
    if pointer is None:
        log.error("no champion pointer after the decision: no forecasts")
        return {"error": "no champion pointer"}
    try:
        forecaster = load_forecaster(store, pointer, workdir)
        return forecast_with(engine, forecaster, bigquery=bigquery).to_dict()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.error(
            "the champion's forecasts failed",
            extra={"model_version": pointer.model_version, "error": error},
        )
        return {"model_version": pointer.model_version, "kind": pointer.kind, "error": error}
