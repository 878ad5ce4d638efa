"""The trainer job: `--mode train` (tune, train, judge, promote, forecast, report) and
`--mode forecast` (the champion's next H days). `trainer.cli` parses the flags.

Order of a training run, so that a crash at any point changes no champion:
tune ▸ train (with and without the fairness callback) ▸ bias correction ▸ refit on
train + validation ▸ evaluate challenger and champion on the same test window ▸ decide
▸ SHAP ▸ report ▸ artifacts ▸ manifest (last file of the run) ▸ one DB transaction
(registry + residuals) ▸ champion.json ▸ forecasts by whoever serves now ▸ email. The
retrain request is marked finished or failed at the end.

Something always serves after a training run: the promoted challenger, the kept
champion, or (no usable champion and the challenger not promoted) the best baseline,
registered as the fallback champion (`trainer.promotion`, `trainer.forecast`).
"""

from __future__ import annotations

import os
import tempfile
import traceback
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecastguard.config import Settings
from forecastguard.logs import get_logger, timed
from forecastguard.storage import ArtifactStore
from trainer.config import TrainConfig
from trainer.emailer import Attachment, EmailOutcome, SmtpConfig, build_message, send
from trainer.promotion import Decision, Scores, Tolerances, reconcile_champion
from trainer.tuning import UNITS

log = get_logger(__name__)


@dataclass(frozen=True)
class RequestInfo:
    """The retrain request this run serves (as train_trigger sets it in the environment)."""

    request_id: str | None = None
    reason: str | None = None
    health_check_id: str | None = None
    window_start: str | None = None
    window_end: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | Any) -> RequestInfo:
        """Read REQUEST_ID, REASON, HEALTH_CHECK_ID, WINDOW_START, WINDOW_END."""
        values = {
            name: (environ.get(name.upper()) or "").strip() or None
            for name in ("request_id", "reason", "health_check_id", "window_start", "window_end")
        }
        return cls(**values)


@dataclass(frozen=True)
class JobOptions:
    """The run's options (flags and their environment variables), read at the entry point."""

    mode: str
    run_id: str
    study_id: str
    train_config: TrainConfig = field(default_factory=TrainConfig)
    trials: int = 20
    timeout_s: float | None = None
    optuna_storage: str | None = None
    task_index: int = 0
    task_count: int = 1
    attempt: int = 0
    max_retries: int = 0
    search_units: tuple[int, ...] = UNITS
    disparity_weight: float = 0.5
    tolerances: Tolerances = field(default_factory=Tolerances)
    shap_products: int = 8
    request: RequestInfo = field(default_factory=RequestInfo)


@dataclass
class TrainOutcome:
    """What a training run produced (for the log and the tests)."""

    run_id: str
    model_version: str
    run_uri: str
    decision: Decision
    metrics: dict[str, Any]
    files: list[str]
    forecast: dict[str, Any] | None = None
    email: dict[str, Any] | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _product_bias(frame: pd.DataFrame) -> pd.Series:
    return (frame["actual"] - frame["predicted"]).groupby(frame["product_id"]).mean()


def run_train(
    settings: Settings,
    opts: JobOptions,
    engine: sa.Engine,
    store: ArtifactStore,
    *,
    workdir: Path,
    smtp: SmtpConfig | None = None,
) -> TrainOutcome | None:
    """One training run; returns None on a tuning-only task (index > 0)."""
    from trainer import pipeline as tp
    from trainer.artifacts import ModelBundle, RunWriter, save_model_bundle
    from trainer.data import load_sales
    from trainer.evaluate import baseline_evaluation, best_baseline
    from trainer.explain import explain
    from trainer.forecast import (
        TRAINED_KINDS,
        BaselineForecaster,
        baseline_kind,
        describe_kind,
        forecast_with,
    )
    from trainer.promotion import METRIC, Fallback, decide, evaluate_champion, publish, record
    from trainer.report import ReportData, make_plots, markdown_to_html, render_markdown
    from trainer.stages import TrainedForecaster, save_gbm, train_challenger
    from trainer.tuning import tune

    cfg = opts.train_config
    run_id = model_version = opts.run_id
    if opts.task_index > 0 and not opts.optuna_storage:
        log.warning(
            "task > 0 without OPTUNA_STORAGE has no shared study to tune: nothing to do",
            extra={"task_index": opts.task_index},
        )
        return None
    writer = RunWriter(store, run_id) if opts.task_index == 0 else None
    with timed(log, "stage load", stage="load") as out:
        sales = load_sales(engine)
        out.update(rows=len(sales), products=int(sales["product_id"].nunique()))
    prepared = tp.prepare(sales, cfg)

    tuning = tune(
        prepared,
        cfg,
        n_trials=opts.trials,
        timeout_s=opts.timeout_s,
        study_name=f"forecastguard-{opts.study_id}",
        storage=opts.optuna_storage,
        task_index=opts.task_index,
        task_count=opts.task_count,
        disparity_weight=opts.disparity_weight,
        units=opts.search_units,
    )
    if writer is None:
        log.info("tuning share done; task 0 trains the final model", extra=tuning.to_dict())
        return None
    params = tuning.best_params
    # Issue 16: LSTM with and without group DRO, bias offsets, LightGBM, the served
    # forecaster chosen on validation; no refit (every validation figure out of sample).
    ch = train_challenger(prepared, params, cfg, kinds=TRAINED_KINDS)
    fair, unfair, final = ch.lstm, ch.plain, ch.lstm
    ev_fair, ev_unfair = ch.fairness_evaluations["with"], ch.fairness_evaluations["without"]
    correction = ch.correction
    test = ch.test
    evaluation = ch.evaluation
    effect = ch.bias_effect
    metrics = evaluation.metrics

    with timed(log, "stage champion", stage="champion"):
        champ = evaluate_champion(store, prepared, workdir / "champion", evaluation)
    best = best_baseline(evaluation)
    base_eval = baseline_evaluation(evaluation, best)
    base_kind = baseline_kind(best)
    challenger = Scores.from_metrics(metrics)
    base_scores = Scores.from_metrics(base_eval.metrics)
    # Names of failed data-quality checks; a non-empty list blocks the promotion.
    quality_failures: tuple[str, ...] = prepared.quality.failures
    decision = decide(
        challenger,
        champ.scores,
        base_scores,
        opts.tolerances,
        champ.model_version,
        baseline_kind=base_kind,
        data_quality_failures=quality_failures,
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

    per = evaluation.per_product.set_index("product_id")
    explanation = explain(
        final.model,
        prepared,
        lookback=params.lookback,
        per_product_error=per["rmsse"],
        max_products=opts.shap_products,
        seed=cfg.seed,
    )

    per_product = per.reset_index()
    # One difference at a time: the LSTM with and without group DRO, both uncorrected.
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
    # The DRO LSTM's test bias before and after its offsets (one difference).
    lstm_test = ch.lstm_test_raw
    bias_frame = pd.DataFrame(
        {
            "bias_before": _product_bias(lstm_test),
            "bias_after": _product_bias(correction.apply(lstm_test)),
        }
    ).rename_axis("product_id")
    fairness_compare = ch.fairness_compare
    metrics_doc = {
        **metrics,
        "run_id": run_id,
        "model_version": model_version,
        "split": prepared.split_dates(),
        "validation": ch.validation | {"tuning_objective": tuning.best_value},
        "candidates": ch.candidates,
        "served_kind_chosen_on_validation": ch.kind,
        "fairness_comparison": fairness_compare,
        "bias_correction": effect,
        "champion": (
            {"model_version": champ.model_version, **champ.evaluation.metrics}
            if champ.evaluation is not None
            else {"model_version": champ.model_version, "note": champ.note}
        ),
        "decision": asdict(decision),
        "promotion_metric": METRIC,
        "best_baseline": {"kind": base_kind, **base_scores.__dict__},
        "data_quality_failures": list(quality_failures),
        "data_quality": {
            k: prepared.quality.to_dict()[k]
            for k in ("frequency", "export_kind", "shares", "augmentation", "totals")
        },
        "serving": serving,
    }
    data = ReportData(
        run_id=run_id,
        model_version=model_version,
        created_at=_now(),
        request=asdict(opts.request),
        split_dates=prepared.split_dates(),
        quality=prepared.quality.to_dict(),
        tuning=tuning.to_dict(),
        trials=tuning.trials,
        metrics=metrics,
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
        fairness_compare=fairness_compare,
        bias=effect,
        per_product_bias=bias_frame.reset_index(),
        shap_summary=explanation.summary,
        shap_per_product=explanation.per_product,
        history=final.history,
        decision=asdict(decision),
        serving=serving,
        best_baseline=base_kind,
        data_quality_failures=list(quality_failures),
    )
    with timed(log, "stage report", stage="report"):
        plots = make_plots(data)
        data.artifacts = sorted(
            [
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
                *plots,
            ]
        )
        markdown = render_markdown(data)
        html = markdown_to_html(markdown, f"forecastguard run {run_id}")

    bundle = ModelBundle(
        model=final.model,
        pipeline=prepared.pipeline,
        cfg=cfg,
        params=params,
        correction=correction,
        model_version=model_version,
        run_id=run_id,
    )
    with timed(log, "stage artifacts", stage="artifacts", run_uri=writer.uri) as out:
        save_model_bundle(writer, bundle, workdir / "bundle")
        save_gbm(writer, ch.gbm, ch.blend_weight, workdir / "bundle")
        writer.put_json("metrics.json", metrics_doc)
        writer.put_text("per_product.csv", per_product.to_csv(index=False))
        writer.put_text("holdout.csv", test.to_csv(index=False))
        writer.put_json("quality.json", prepared.quality.to_dict())
        writer.put_json(
            "history.json",
            {
                "final": final.history,
                "with_callback": {"keras": fair.history, "fairness": fair.fairness_history},
                "without_callback": {"keras": unfair.history, "fairness": unfair.fairness_history},
            },
        )
        writer.put_text("tuning/trials.csv", tuning.trials.to_csv(index=False))
        writer.put_json("tuning/summary.json", tuning.to_dict())
        writer.put_text("shap/summary.csv", explanation.summary.to_csv(index=False))
        writer.put_text("shap/per_product.csv", explanation.per_product.to_csv(index=False))
        npz = workdir / "shap_values.npz"
        np.savez_compressed(npz, **explanation.npz_arrays())
        writer.put_file("shap/values.npz", npz)
        for name, png in plots.items():
            writer.put_bytes(name, png)
        writer.put_text("report.md", markdown)
        writer.put_text("report.html", html)
        writer.seal(
            model_version=model_version,
            request_id=opts.request.request_id,
            decision=asdict(decision),
            rmse=metrics["model"]["rmse"],
            rmsse=metrics["model"]["rmsse"],
            serving=serving,
        )
        out["files"] = len(writer.files) + 1

    record(
        engine,
        model_version=model_version,
        run_id=run_id,
        run_uri=writer.uri,
        metrics=metrics_doc,
        decision=decision,
        holdout=test,
        request_id=opts.request.request_id,
        kind=ch.kind,
        fallback=fallback,
    )
    # Serving: whoever is champion after the decision forecasts the next days.
    if decision.promote:
        publish(
            store,
            model_version=model_version,
            run_id=run_id,
            run_uri=writer.uri,
            scores=challenger,
            kind=ch.kind,
        )
        served = TrainedForecaster(ch.kind, bundle, ch.gbm, ch.blend_weight)
        forecast = forecast_with(engine, served).to_dict()
    elif fallback is not None:
        publish(
            store,
            model_version=fallback.model_version,
            run_id=run_id,
            run_uri=writer.uri,
            scores=base_scores,
            kind=fallback.kind,
        )
        forecaster = BaselineForecaster(fallback.kind, fallback.model_version, cfg)
        forecast = forecast_with(engine, forecaster).to_dict()
    else:
        forecast = _forecast_with_champion(engine, store, workdir / "serving")

    outcome = TrainOutcome(
        run_id=run_id,
        model_version=model_version,
        run_uri=writer.uri,
        decision=decision,
        metrics=metrics_doc,
        files=[*sorted(writer.files), "manifest.json"],
        forecast=forecast,
    )
    if smtp is not None:
        email = send_report(
            smtp, store, data, markdown, html, plots, per_product, decision, forecast
        )
        outcome.email = email.to_dict()
    return outcome


def _forecast_with_champion(
    engine: sa.Engine, store: ArtifactStore, workdir: Path
) -> dict[str, Any]:
    """The kept champion's fresh forecasts; a failure is logged and returned, not raised
    (the run's decision is already committed)."""
    from trainer.artifacts import read_champion
    from trainer.forecast import forecast_with, load_forecaster

    pointer = read_champion(store)
    if pointer is None:
        log.error("no champion pointer after the decision: no forecasts")
        return {"error": "no champion pointer"}
    try:
        return forecast_with(engine, load_forecaster(store, pointer, workdir)).to_dict()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.error(
            "the champion's forecasts failed",
            extra={"model_version": pointer.model_version, "error": error},
        )
        return {"model_version": pointer.model_version, "kind": pointer.kind, "error": error}


def send_report(
    smtp: SmtpConfig,
    store: ArtifactStore,
    data: Any,
    markdown: str,
    html: str,
    plots: dict[str, bytes],
    per_product: pd.DataFrame,
    decision: Decision,
    forecast: dict[str, Any] | None,
) -> EmailOutcome:
    """Email the report; record the outcome beside the run (never raises)."""
    verdict = "promoted" if decision.promote else "not promoted"
    subject = f"forecastguard: model {data.model_version} {verdict}"
    if not decision.promote and data.serving:
        subject += f"; {data.serving['model_version']} serves"
    text = markdown
    if forecast and "written" in forecast:
        text += (
            f"\n\nForecasts by {forecast['model_version']} ({forecast.get('kind', 'lstm')}): "
            f"{forecast['written']} rows written, {forecast['unchanged']} unchanged "
            f"({forecast['first_date']} – {forecast['last_date']}).\n"
        )
    try:
        msg = build_message(
            sender=smtp.sender or smtp.user or "forecastguard@localhost",
            recipients=smtp.recipients,
            subject=subject,
            text=text,
            html=html,
            inline_images={k: v for k, v in plots.items() if f"]({k})" in markdown},
            attachments=[Attachment(n, b) for n, b in plots.items()]
            + [Attachment("per_product.csv", per_product.to_csv(index=False).encode())],
        )
        outcome = send(smtp, msg)
    except ValueError as exc:  # no recipients configured
        outcome = EmailOutcome(False, smtp.recipients, subject, _now(), str(exc), skipped=True)
    try:
        store.write_json(f"notifications/{data.run_id}/email.json", outcome.to_dict())
    except Exception as exc:  # recording the outcome must not fail the run either
        log.error("could not record the email outcome", extra={"error": str(exc)})
    return outcome


def _ledger(
    engine: sa.Engine | None, opts: JobOptions, settings: Settings, error: str | None
) -> None:
    """Mark the retrain request finished/failed; start a queued one if the trigger allows."""
    rid = opts.request.request_id
    if not rid or engine is None or opts.task_index != 0:
        return
    from forecastguard import retrain

    try:
        if error is None:
            waiting = retrain.mark_finished(engine, rid)
        elif opts.attempt < opts.max_retries:
            log.warning(
                "run failed; Cloud Run will retry it",
                extra={"request_id": rid, "attempt": opts.attempt, "max_retries": opts.max_retries},
            )
            return
        else:
            waiting = retrain.mark_failed(engine, rid, error[:2000])
    except Exception as exc:
        log.error(
            "could not update the retrain ledger", extra={"request_id": rid, "error": str(exc)}
        )
        return
    if waiting is not None and settings.trainer_job:
        try:
            from forecastguard.trigger import Runtime, start_next

            start_next(Runtime.from_settings(settings, dict(os.environ)))
        except Exception as exc:
            log.error("could not start the queued request", extra={"error": str(exc)})


def _summary(outcome: TrainOutcome | None) -> dict[str, Any]:
    if outcome is None:
        return {"tuning_only": True}
    return {
        "run_uri": outcome.run_uri,
        "promoted": outcome.decision.promote,
        "reason": outcome.decision.reason,
        "serving": outcome.metrics.get("serving", {}).get("model_version"),
        "rmsse": outcome.metrics["model"]["rmsse"],
        "rmse": outcome.metrics["model"]["rmse"],
        "forecast": outcome.forecast,
        "email": outcome.email,
    }


def run_job(
    settings: Settings,
    opts: JobOptions,
    *,
    engine: sa.Engine | None = None,
    store: ArtifactStore | None = None,
    smtp: SmtpConfig | None = None,
) -> int:
    """Run the job in `opts.mode`; returns the process exit code (0 ok, 1 failed, 2 bad data).

    Any failure is logged with its traceback and recorded on the retrain request;
    it never escapes (the exit code tells Cloud Run to retry).
    """
    from forecastguard.db.engine import make_engine
    from forecastguard.storage import open_store

    log.info(
        "trainer started",
        extra={
            "mode": opts.mode,
            "run_id": opts.run_id,
            "request_id": opts.request.request_id,
            "task_index": opts.task_index,
            "task_count": opts.task_count,
            "attempt": opts.attempt,
        },
    )
    own_engine = engine is None
    try:
        try:
            settings.require("artifact_uri")
            engine = engine or make_engine(settings)
            store = store or open_store(settings.artifact_uri)
            reconcile_champion(engine, store)
            with tempfile.TemporaryDirectory(prefix="fg-trainer-") as tmp:
                if opts.mode == "forecast":
                    from trainer.forecast import run_forecast

                    result = run_forecast(engine, store, workdir=Path(tmp)).to_dict()
                else:
                    smtp = smtp if smtp is not None else SmtpConfig.from_settings(settings)
                    result = _summary(
                        run_train(settings, opts, engine, store, workdir=Path(tmp), smtp=smtp)
                    )
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.error(
                "trainer failed",
                extra={
                    "mode": opts.mode,
                    "run_id": opts.run_id,
                    "error": error,
                    "traceback": traceback.format_exc(),
                },
            )
            _ledger(engine, opts, settings, error)
            from trainer.data import DataError

            # Bad input data (not daily, too short, unusable) is 2: retrying cannot fix it.
            return 2 if isinstance(exc, DataError) else 1
        log.info("trainer finished", extra={"mode": opts.mode, "run_id": opts.run_id, **result})
        _ledger(engine, opts, settings, None)
        return 0
    finally:
        if own_engine and engine is not None:
            engine.dispose()
