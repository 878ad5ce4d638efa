"""The trainer job: `--mode train` (tune, train, judge, promote, forecast, report) and
`--mode forecast` (the champion's next H days). `trainer.run.cli` parses the flags.

Order of a training run (`run_train`; each stage a function of `trainer.run.steps`),
so that a crash at any point changes no champion: load + quality ▸ tune ▸ train the
challenger (`trainer.models.challenger`: LSTM with and without group DRO, bias offsets, LightGBM,
the served kind chosen on validation) ▸ evaluate challenger, champion and best baseline
on the same test window ▸ decide ▸ SHAP ▸ report ▸ artifacts ▸ manifest (last file of
the run) ▸ one DB transaction (registry + residuals) ▸ champion.json ▸ forecasts by
whoever serves now ▸ email. The retrain request is marked finished or failed at the end.

Something always serves after a training run: the promoted challenger, the kept
champion, or (no usable champion and the challenger not promoted) the best baseline,
registered as the fallback champion (`trainer.judge.promotion`, `trainer.serve.forecast`).
"""

from __future__ import annotations

import os
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from forecastguard.config import Settings
from forecastguard.logs import get_logger
from forecastguard.safetext import csv_text
from forecastguard.storage import ArtifactStore
from trainer.judge.promotion import Decision, reconcile_champion
from trainer.report.emailer import Attachment, EmailOutcome, SmtpConfig, build_message, send
from trainer.run.options import JobOptions, RequestInfo
from trainer.run.steps import now

__all__ = [
    "JobOptions",
    "RequestInfo",
    "TrainOutcome",
    "run_job",
    "run_partitioned",
    "run_train",
    "send_report",
]

log = get_logger(__name__)


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


def forecast_target(settings: Settings) -> Any:
    """Where the forecasts also go (issue 24): the BigQuery data plane of BIGQUERY_URL
    (a `forecastguard.bigquery.BigQueryTarget`), or None."""
    if not settings.bigquery_url:
        return None
    from forecastguard.bigquery import BigQueryTarget

    return BigQueryTarget.from_url(settings.bigquery_url)


def run_train(
    settings: Settings,
    opts: JobOptions,
    engine: sa.Engine,
    store: ArtifactStore,
    *,
    workdir: Path,
    smtp: SmtpConfig | None = None,
) -> TrainOutcome | None:
    """One training run; returns None on a tuning-only task (index > 0).

    The stages are `trainer.run.steps`' functions, called in the order of this
    module's docstring.
    """
    from trainer.models.challenger import train_challenger
    from trainer.run import steps as rs
    from trainer.serve.artifacts import RunWriter
    from trainer.serve.forecast import TRAINED_KINDS

    cfg = opts.train_config
    run_id = opts.run_id
    # Issue 26: a catalogue of several partitions is trained by the job's tasks together.
    from trainer.run.partitioned import partition_plan

    plan = partition_plan(engine, store, opts, workdir)
    if plan is not None:
        return run_partitioned(settings, opts, engine, store, plan, workdir=workdir, smtp=smtp)
    if opts.task_index > 0 and not opts.optuna_storage:
        log.warning(
            "task > 0 without OPTUNA_STORAGE has no shared study to tune: nothing to do",
            extra={"task_index": opts.task_index},
        )
        return None
    writer = RunWriter(store, run_id) if opts.task_index == 0 else None
    prepared = rs.load_and_prepare(engine, cfg)
    tuning = rs.tune_params(prepared, opts)
    if writer is None:
        log.info("tuning share done; task 0 trains the final model", extra=tuning.to_dict())
        return None
    params = tuning.best_params
    # Issue 16: LSTM with and without group DRO, bias offsets, LightGBM, the served
    # forecaster chosen on validation; the LSTM is not refitted (its validation figures
    # stay out of sample), LightGBM is (`cfg.gbm_refit`), its figures the held-out twin's.
    # The best trial's group-DRO LSTM is that network already (tuning.best_model: the
    # same seed, windows and epochs), so it is reused rather than trained a second time.
    ch = train_challenger(prepared, params, cfg, kinds=TRAINED_KINDS, lstm=tuning.best_model)
    j = rs.judge(store, prepared, ch, opts.tolerances, run_id, workdir)
    explanation = rs.explain_served(
        ch, prepared, params, j, run_id=run_id, max_products=opts.shap_products, seed=cfg.seed
    )
    report = rs.build_report(ch, prepared, tuning, j, explanation, opts)
    bundle = rs.model_bundle(ch, prepared, params, run_id)
    rs.write_artifacts(
        writer,
        bundle,
        ch,
        prepared,
        tuning,
        explanation,
        report,
        j,
        request_id=opts.request.request_id,
        workdir=workdir,
    )
    # Serving: whoever is champion after the decision forecasts the next days.
    forecast = rs.record_and_serve(
        engine,
        store,
        run_uri=writer.uri,
        ch=ch,
        bundle=bundle,
        j=j,
        metrics_doc=report.metrics_doc,
        request_id=opts.request.request_id,
        workdir=workdir,
        bigquery=forecast_target(settings),
    )
    outcome = TrainOutcome(
        run_id=run_id,
        model_version=run_id,
        run_uri=writer.uri,
        decision=j.decision,
        metrics=report.metrics_doc,
        files=[*sorted(writer.files), "manifest.json"],
        forecast=forecast,
    )
    if smtp is not None:
        email = send_report(
            smtp,
            store,
            report.data,
            report.markdown,
            report.html,
            report.plots,
            report.per_product,
            j.decision,
            forecast,
        )
        outcome.email = email.to_dict()
    return outcome


def run_partitioned(
    settings: Settings,
    opts: JobOptions,
    engine: sa.Engine,
    store: ArtifactStore,
    plan: Any,
    *,
    workdir: Path,
    smtp: SmtpConfig | None = None,
) -> TrainOutcome | None:
    """This task's partitions (`trainer.run.partitioned`); task 0 then gathers them and
    promotes per partition; every task forecasts its own partitions with what serves them
    after that decision; task 0 emails the run's report as a single run does. Returns
    None on the other tasks."""
    import time

    from trainer.report.partitioned import email_products
    from trainer.run.partitioned import (
        forecast_task,
        gather,
        gathered_forecasts,
        run_task,
        serving_failed,
    )

    bigquery = forecast_target(settings)
    if opts.task_index > 0:
        run_task(engine, store, plan, opts, workdir)
        log.info(
            "partitions of this task done; task 0 gathers, then this task forecasts them",
            extra={"run_id": opts.run_id},
        )
        forecast_task(engine, store, plan, opts, workdir, bigquery)
        return None
    try:
        params, tuning = run_task(engine, store, plan, opts, workdir)
        result = gather(engine, store, plan, opts, params, tuning, workdir)
    except Exception as exc:
        serving_failed(store, opts, exc)  # the other tasks stop waiting for a decision
        raise
    started = time.monotonic()
    own = forecast_task(engine, store, plan, opts, workdir, bigquery)
    # The other tasks forecast as many partitions at the same time: wait as long again.
    wait_s = min(opts.gather_timeout_s, 2 * (time.monotonic() - started) + 60.0)
    result["forecast"] = gathered_forecasts(store, plan, opts, own, wait_s)
    outcome = TrainOutcome(
        run_id=opts.run_id,
        model_version=opts.run_id,
        run_uri=result["run_uri"],
        decision=result["decision"],
        metrics=result["metrics"],
        files=result["files"],
        forecast=result["forecast"],
    )
    if smtp is not None:
        report = result["report"]
        email = send_report(
            smtp,
            store,
            report.data,
            report.markdown,
            report.html,
            report.plots,
            email_products(report.per_product),
            result["decision"],
            result["forecast"],
            extra=(Attachment("partitions.csv", csv_text(report.data.partitions).encode()),),
        )
        outcome.email = email.to_dict()
    return outcome


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
    extra: tuple[Attachment, ...] = (),
) -> EmailOutcome:
    """Email the report (the plots, per_product.csv and `extra` attached); record the
    outcome beside the run (never raises)."""
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
            + [Attachment("per_product.csv", csv_text(per_product).encode()), *extra],
        )
        outcome = send(smtp, msg)
    except ValueError as exc:  # no recipients configured
        outcome = EmailOutcome(False, smtp.recipients, subject, now(), str(exc), skipped=True)
    except Exception as exc:  # building the message: the run and its forecasts stand
        error = f"{type(exc).__name__}: {exc}"
        log.error("report email not built", extra={"error": error}, exc_info=True)
        outcome = EmailOutcome(False, smtp.recipients, subject, now(), error)
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
        "rmse": outcome.metrics["model"].get("rmse"),  # a partitioned run has none pooled
        "forecast": outcome.forecast,
        "email": outcome.email,
    }


def _partitioned_champion(settings: Settings, store: ArtifactStore | None) -> bool:
    """Whether champion.json names a partitioned champion (forecast mode: then every
    task forecasts its partitions). False when it cannot be read: task 0 reports why."""
    from forecastguard.storage import open_store
    from trainer.serve.artifacts import read_champion
    from trainer.serve.forecast import PARTITIONED

    try:
        pointer = read_champion(store or open_store(settings.artifact_uri or ""))
    except Exception as exc:
        log.warning("champion.json unreadable in a task > 0", extra={"error": str(exc)})
        return False
    return pointer is not None and pointer.kind == PARTITIONED


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
    if (
        opts.mode == "forecast"
        and opts.task_index > 0
        and not _partitioned_champion(settings, store)
    ):
        # An execution with several tasks (the job's task_count is set for parallel
        # tuning) must forecast once: task 0 does it, the others leave at once. A
        # partitioned champion is forecast by every task, its partitions i mod count.
        log.info(
            "forecast mode runs in task 0 only: this task does nothing",
            extra={"task_index": opts.task_index, "task_count": opts.task_count},
        )
        return 0
    own_engine = engine is None
    try:
        try:
            settings.require("artifact_uri")
            engine = engine or make_engine(settings)
            store = store or open_store(settings.artifact_uri)
            reconcile_champion(engine, store)
            with tempfile.TemporaryDirectory(prefix="fg-trainer-") as tmp:
                if opts.mode == "forecast":
                    from trainer.serve.forecast import run_forecast

                    result = run_forecast(
                        engine,
                        store,
                        workdir=Path(tmp),
                        bigquery=forecast_target(settings),
                        task_index=opts.task_index,
                        task_count=opts.task_count,
                    ).to_dict()
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
            from trainer.data.load import DataError

            # Bad input data (not daily, too short, unusable) is 2: retrying cannot fix it.
            return 2 if isinstance(exc, DataError) else 1
        log.info("trainer finished", extra={"mode": opts.mode, "run_id": opts.run_id, **result})
        _ledger(engine, opts, settings, None)
        return 0
    finally:
        if own_engine and engine is not None:
            engine.dispose()
