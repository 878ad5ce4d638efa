"""A training run over partitions of the catalogue, shared by the job's tasks (issue 26).

Used when the catalogue makes more than one partition (`trainer.run.partitions`); with
one partition `trainer.run.main.run_train` runs as before. Every task of the execution
(`CLOUD_RUN_TASK_INDEX` of `CLOUD_RUN_TASK_COUNT`, or local subprocesses with the same
variables) computes the same partitioning from the product ids, then:

1. **Tuning, once, shared.** Task 0 tunes the model parameters on a budgeted,
   representative sample of products — `partition_size` products taken evenly from
   every partition (`partitions.tuning_sample`), so one partition's cost — and writes
   them to `partitioned/<execution>/tuning.json`; the other tasks wait for that file.
   Every partition trains with these parameters.
2. **Each task its partitions** (partition i by task i mod count): sales of the
   partition's products only, prepared, the challenger trained, judged against *that
   partition's* champion (a partitioned champion's member for the same partition; a
   champion from before partitions — one model — is scored on the partition's
   products; none: the best baseline). Each partition is a sealed run of its own,
   `runs/<execution>-<partition>/` (model, metrics.json, per_product.csv, holdout.csv of
   what serves it, quality.json, shap/ of its served forecast on a bounded sample), and a
   done-marker `partitioned/<execution>/done/<p>.json` with its decision, scores and a
   compact SHAP summary. A retried task skips partitions already marked done.
3. **Gather** (task 0, after its own partitions, waiting for every marker up to
   `gather_timeout_s`). Promotion is per partition: a partition's challenger replaces
   its champion only if it beats it (and the baselines, for a first model) by the usual
   rule. When any partition changed, the gather writes a sealed run `runs/<run_id>/`
   whose `partitions.json` lists each partition's serving model (the champion
   manifest: `champion.json` then has kind `partitioned`) and registers it as the
   champion (`model_residuals`: each product's errors by the model that serves it). A
   promoted partition's model was loaded once in its own task before its done-marker
   (a model that cannot serve is never promoted). `metrics.json` and the run's one report
   (`trainer.report.partitioned`: HTML and Markdown, plots, SHAP merged from the
   partitions' bounded samples; emailed by `trainer.run.main.run_partitioned`) say which
   partitions changed, where the LSTM serves, and compare per-partition with
   whole-catalogue promotion on the same test window. The report never costs the
   promotion or the forecasts.
4. **Each task forecasts its own partitions** (`forecast_task`). The gather ends by
   writing `partitioned/<execution>/serving.json` (the champion that serves after the
   decision: the gathered run, or the champion kept); every task waits for it, then
   forecasts the products of its partitions with what now serves them, partition by
   partition, reading only those products' sales (`serve.forecast.forecast_partitions`):
   a task's memory follows its partitions, not the catalogue. Each task writes
   `forecast/task<i>.json`; task 0 sums them for the run's summary and email (waiting
   as long again as its own forecast took, then naming the tasks not yet reported). A
   failed forecast is logged and returned, never costs the promotion; if the gather
   fails, task 0 writes the failure there and the tasks forecast nothing (nothing
   changed: the champion's forecasts stand).

A partition that fails in its task fails the gather (no champion changes; the run is
marked failed) — the champion's other partitions stay as they are.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecastguard.logs import get_logger, timed
from forecastguard.safetext import csv_text
from forecastguard.storage import ArtifactNotFound, ArtifactStore
from trainer.judge.promotion import Decision
from trainer.report.partitioned import FAIRNESS_SKIPPED, shap_document
from trainer.run.options import JobOptions
from trainer.run.partitions import Partitioning, make_partitioning, partitions_of_task

log = get_logger(__name__)

COORDINATION = "partitioned"  # <ARTIFACT_URI>/partitioned/<execution>/...
POLL_S = 5.0  # the longest pause between two looks at the store for another task's file
POLL_FIRST_S = 0.25  # the first pause; each next one doubles, up to POLL_S


def _pause(looks: int) -> None:
    """Sleep before look number `looks + 1`: briefly at first, so a task a moment behind
    is not waited for a whole POLL_S, then doubling up to POLL_S, so a long wait costs
    one store request every POLL_S."""
    time.sleep(min(POLL_S, POLL_FIRST_S * 2 ** min(looks, 16)))


class GatherError(RuntimeError):
    """The partitions of a run could not all be gathered (a task failed or timed out)."""


@dataclass(frozen=True)
class Plan:
    """This execution's partitioning, the products of each partition, and the champion
    each partition is judged against."""

    partitioning: Partitioning
    products: dict[str, list[str]]  # partition -> its products (sorted)
    champions: dict[str, dict[str, Any] | None]  # partition -> champion pointer (dict)
    note: str | None = None  # why partitions have no champion, if they have none

    @property
    def names(self) -> list[str]:
        """Partitions with products, in order."""
        return [n for n in self.partitioning.names if self.products.get(n)]


def base_id(opts: JobOptions) -> str:
    """The execution's id without the attempt suffix (shared by all tasks and retries),
    short enough for `<base>-p0000` to be a run id."""
    return opts.study_id[:58]


def coordination_key(opts: JobOptions, name: str) -> str:
    """`partitioned/<execution>/<name>` (tuning.json, done/<partition>.json)."""
    return f"{COORDINATION}/{base_id(opts)}/{name}"


def partition_run_id(opts: JobOptions, partition: str) -> str:
    """The sealed run of one partition: `<execution>-<partition>`."""
    return f"{base_id(opts)}-{partition}"


def plan(store: ArtifactStore, product_ids: list[str], opts: JobOptions, workdir: Path) -> Plan:
    """The partitioning of `product_ids` and each partition's champion.

    A partitioned champion made with the same settings keeps its partitioning (its hash
    ranges), so each partition is judged against its own champion; a champion from
    before partitions (one model) is every partition's champion.
    """
    from trainer.run.partitions import PartitionError
    from trainer.serve.artifacts import read_champion
    from trainer.serve.forecast import PARTITIONED, read_partitions

    pointer = read_champion(store)
    fresh = make_partitioning(product_ids, opts.partition_size, opts.partition_key)
    partitioning, entries, note = fresh, None, None
    if pointer is not None and pointer.kind == PARTITIONED:
        try:
            doc = read_partitions(store, pointer.run_id, workdir / "champion-partitions")
            old = Partitioning.from_dict(doc["partitioning"])
            if old.same_settings(opts.partition_size, opts.partition_key):
                old.assign(product_ids)  # every current product has a partition
                partitioning, entries = old, doc["entries"]
            else:
                note = (
                    f"the champion {pointer.model_version} was partitioned with other "
                    "settings: every partition is judged as a first model"
                )
        except (PartitionError, ArtifactNotFound, KeyError, ValueError, OSError) as exc:
            note = f"the champion's partitions cannot be reused ({exc}): first models"
    assignment = partitioning.assign(product_ids)
    products: dict[str, list[str]] = {n: [] for n in partitioning.names}
    for pid in sorted(assignment):
        products[assignment[pid]].append(pid)
    champions: dict[str, dict[str, Any] | None] = {}
    for name in partitioning.names:
        if pointer is None:
            champions[name] = None
        elif pointer.kind == PARTITIONED:
            champions[name] = (entries or {}).get(name)
        else:  # a champion from before partitions serves every partition
            champions[name] = asdict(pointer)
    return Plan(partitioning, products, champions, note)


def _wait_for(store: ArtifactStore, keys: list[str], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    missing = [k for k in keys if not store.exists(k)]
    looks = 0
    while missing:
        if time.monotonic() > deadline:
            raise GatherError(
                f"{what}: {len(missing)} of {len(keys)} not written after {timeout_s:.0f} s "
                f"(first: {missing[0]})"
            )
        log.info("waiting for other tasks", extra={"what": what, "missing": len(missing)})
        _pause(looks)
        looks += 1
        missing = [k for k in missing if not store.exists(k)]


def collect(store: ArtifactStore, keys: list[str], timeout_s: float) -> list[dict[str, Any]]:
    """Every partition's done-marker, waiting for them; a partition that failed for good
    (its task has no retry left) fails the gather at once, one whose task will be
    retried is waited for."""
    deadline = time.monotonic() + timeout_s
    looks = 0
    while True:
        _wait_for(store, keys, max(0.0, deadline - time.monotonic()), "partitions")
        markers = [store.read_json(k) for k in keys]
        failed = [m for m in markers if "error" in m]
        if not failed:
            return markers
        if any(m.get("final", True) for m in failed) or time.monotonic() > deadline:
            raise GatherError(
                "partition(s) failed, nothing promoted: "
                + "; ".join(f"{m['partition']}: {m['error']}" for m in failed)
            )
        log.info("waiting for retried partitions", extra={"failed": len(failed)})
        _pause(looks)
        looks += 1


def shared_params(
    engine: sa.Engine, store: ArtifactStore, p: Plan, opts: JobOptions
) -> tuple[Any, dict[str, Any]]:
    """The model parameters every partition trains with: tuned by task 0 on the tuning
    sample and written to tuning.json; other tasks read them (waiting if need be)."""
    from trainer.config import ModelParams
    from trainer.data.load import load_sales
    from trainer.data.prepare import prepare
    from trainer.run import steps as rs
    from trainer.run.partitions import tuning_sample

    key = coordination_key(opts, "tuning.json")
    if opts.task_index == 0 and not store.exists(key):
        assignment = {pid: name for name, ids in p.products.items() for pid in ids}
        sample = tuning_sample(assignment, opts.partition_size)
        with timed(log, "stage tuning sample", stage="tuning_sample", products=len(sample)):
            prepared = prepare(load_sales(engine, products=sample), opts.train_config)
        tuning = rs.tune_params(prepared, replace(opts, task_index=0, task_count=1))
        store.write_json(key, tuning.to_dict() | {"sample_products": len(sample)})
    _wait_for(store, [key], opts.gather_timeout_s, "the shared tuning")
    doc = store.read_json(key)
    return ModelParams.from_dict(doc["best_params"]), doc


def _per_product(evaluation: Any, column: str) -> pd.Series:
    if evaluation is None:
        return pd.Series(dtype=float, name=column)
    return evaluation.per_product.set_index("product_id")["rmsse"].rename(column)


def explain_partition(
    ch: Any, prepared: Any, params: Any, j: Any, run_id: str, opts: JobOptions
) -> Any:
    """SHAP of the partition's served forecast (`steps.explain_served`) on a bounded
    sample: `opts.shap_products` products (the worst first), a few test windows each, so
    its cost and memory do not grow with the partition. Never raises: SHAP is for the
    report, and a failure is logged and the explanation says why (the partition's model,
    decision and forecasts stand)."""
    from trainer.report.explain import no_explanation
    from trainer.run import steps as rs

    try:
        with timed(log, "stage partition shap", stage="shap", run_id=run_id):
            return rs.explain_served(
                ch,
                prepared,
                params,
                j,
                run_id=run_id,
                max_products=opts.shap_products,
                seed=opts.train_config.seed,
            )
    except Exception as exc:
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
        log.error(
            "partition SHAP failed: the report says so",
            extra={"run_id": run_id, "error": error},
            exc_info=True,
        )
        return no_explanation(j.serving["kind"], f"SHAP failed ({error})")


def train_partition(
    engine: sa.Engine,
    store: ArtifactStore,
    name: str,
    p: Plan,
    params: Any,
    opts: JobOptions,
    workdir: Path,
) -> dict[str, Any]:
    """Train, judge and seal one partition; returns its done-marker document."""
    from trainer.data.load import load_sales
    from trainer.data.prepare import prepare
    from trainer.judge.evaluate import baseline_evaluation
    from trainer.models.challenger import save_gbm, save_intervals, train_challenger
    from trainer.run import steps as rs
    from trainer.serve.artifacts import ChampionPointer, RunWriter, save_model_bundle
    from trainer.serve.forecast import TRAINED_KINDS

    cfg = opts.train_config
    run_id = partition_run_id(opts, name)
    products = p.products[name]
    entry = p.champions.get(name)
    champion = ChampionPointer.from_entry(entry) if entry else None
    with timed(log, "stage partition", stage="partition", partition=name, products=len(products)):
        prepared = prepare(load_sales(engine, products=products), cfg)
        ch = train_challenger(
            prepared, params, cfg, kinds=TRAINED_KINDS, fairness_comparison=FAIRNESS_SKIPPED
        )
        j = rs.judge(store, prepared, ch, opts.tolerances, run_id, workdir / name, champion)
        base_eval = baseline_evaluation(ch.evaluation, j.base_kind.split(":", 1)[1])
        explanation = explain_partition(ch, prepared, params, j, run_id, opts)
        shap_doc = shap_document(explanation)
        writer = RunWriter(store, run_id)
        bundle = rs.model_bundle(ch, prepared, params, run_id)
        save_model_bundle(writer, bundle, workdir / name / "bundle")
        save_gbm(writer, ch.gbm, ch.blend_weight, workdir / name / "bundle")
        save_intervals(writer, ch.intervals)
        crowned = {"run_id": run_id, "promoted_at": rs.now()}
        if j.decision.promote:
            serving = crowned | {"model_version": run_id, "kind": ch.kind}
            holdout, served = ch.test, ch.evaluation
        elif j.fallback is not None:
            serving = crowned | {"model_version": j.fallback.kind, "kind": j.fallback.kind}
            holdout, served = j.fallback.holdout, base_eval
        else:
            serving = dict(entry or {})
            holdout, served = None, j.champion.evaluation
        if "run_uri" not in serving:
            serving["run_uri"] = writer.uri
        per = pd.concat(
            [
                _per_product(ch.evaluation, "challenger"),
                _per_product(j.champion.evaluation, "champion"),
                _per_product(base_eval, "baseline"),
                _per_product(served, "served"),
            ],
            axis=1,
        ).rename_axis("product_id")
        if holdout is not None:
            writer.put_text("holdout.csv", csv_text(holdout))
        writer.put_text("per_product.csv", csv_text(per.reset_index()))
        writer.put_json("quality.json", prepared.quality.to_dict())
        writer.put_text("shap/summary.csv", csv_text(explanation.summary))
        writer.put_text("shap/per_product.csv", csv_text(explanation.per_product))
        served_kind = ch.kind if j.decision.promote else getattr(j.fallback, "kind", None)
        metrics = {
            **ch.evaluation.metrics,
            "partition": name,
            "products": len(products),
            "candidates": ch.candidates,
            "served_kind_chosen_on_validation": ch.kind,
            "fairness_comparison": ch.fairness_compare,
            "champion": {
                "model_version": j.champion.model_version,
                "note": j.champion.note,
                **(j.champion.evaluation.metrics if j.champion.evaluation is not None else {}),
            },
            "best_baseline": {"kind": j.base_kind, **j.base_scores.__dict__},
            "decision": asdict(j.decision),
            "serving": serving,
            "data_quality_failures": list(j.quality_failures),
            "intervals": {
                "served": ch.interval_test.get(served_kind or ""),
                "test": ch.interval_test,
            },
            "shap": shap_doc["settings"],
        }
        writer.put_json("metrics.json", metrics)
        writer.seal(
            model_version=run_id,
            partition=name,
            decision=asdict(j.decision),
            rmsse=ch.evaluation.metrics["model"]["rmsse"],
            serving=serving,
        )
        if j.decision.promote:
            # A model that cannot serve must not be promoted: loaded once here, in its
            # own task (the gather no longer loads every partition's model).
            from trainer.serve.forecast import load_forecaster

            load_forecaster(store, ChampionPointer.from_entry(serving), workdir / name / "check")
    return {
        "partition": name,
        "run_id": run_id,
        "run_uri": writer.uri,
        "products": products,
        "decision": asdict(j.decision),
        "changed": bool(j.decision.promote or j.fallback is not None),
        "has_holdout": holdout is not None,
        "serving": serving,
        "champion_version": j.champion.model_version,
        # For the gather's report: the challenger, where intervals and the LSTM serve, SHAP.
        "challenger_kind": ch.kind,
        "candidates": ch.candidates,
        "intervals": {"served": ch.interval_test.get(served_kind or "")},
        "shap": shap_doc,
        "per_product": {
            c: {pid: (None if pd.isna(v) else float(v)) for pid, v in per[c].items()}
            for c in per.columns
        },
    }


def _rss_mb() -> float:
    """This process's current resident memory in MB (0 where /proc is not readable)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def release_memory() -> dict[str, float]:
    """Between partitions of one task: return a finished partition's memory before the
    next is prepared (issue 26: a task's peak grew from partition to partition). Keras'
    global state is cleared (`keras.backend.clear_session`: its graph, name counters and
    cached functions hold on to the partition's models), cycles are collected and glibc
    hands freed heap back to the system (`malloc_trim`). Returns the RSS in MB before,
    after the collection and after the trim, for the log."""
    out = {"rss_mb": round(_rss_mb(), 1)}
    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()
    out["after_collect_mb"] = round(_rss_mb(), 1)
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    out["after_trim_mb"] = round(_rss_mb(), 1)
    return out


def run_task(
    engine: sa.Engine, store: ArtifactStore, p: Plan, opts: JobOptions, workdir: Path
) -> tuple[Any, dict[str, Any]]:
    """This task's partitions (tuning first, shared); returns (params, tuning summary)."""
    params, tuning = shared_params(engine, store, p, opts)
    log.info("memory released after the tuning", extra=release_memory())
    mine = partitions_of_task(p.names, opts.task_index, opts.task_count)
    log.info(
        "partitions of this task",
        extra={"task_index": opts.task_index, "partitions": mine, "of": len(p.names)},
    )
    for name in mine:
        key = coordination_key(opts, f"done/{name}.json")
        if store.exists(key) and "error" not in store.read_json(key):
            continue  # a retried task: this partition is done already
        try:
            marker = train_partition(engine, store, name, p, params, opts, workdir)
        except Exception as exc:
            # `final`: no retry of this task will come, the gather stops waiting for it.
            store.write_json(
                key,
                {
                    "partition": name,
                    "error": f"{type(exc).__name__}: {exc}",
                    "attempt": opts.attempt,
                    "final": opts.attempt >= opts.max_retries,
                },
            )
            raise
        finally:
            log.info(
                "memory released after a partition", extra={"partition": name, **release_memory()}
            )
        store.write_json(key, marker)
    return params, tuning


def served_means(markers: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean RMSSE over every product served, per-partition promotion against promotion
    as a whole (all partitions' challengers or none, by their mean RMSSE over all
    products only), on the same test window. A product without a champion score counts
    its baseline."""
    rows = []
    for m in markers:
        pp = m["per_product"]
        for pid, ch in pp["challenger"].items():
            champ = pp.get("champion", {}).get(pid)
            base = pp["baseline"].get(pid)
            rows.append(
                {
                    "partition": m["partition"],
                    "challenger": ch,
                    "incumbent": champ if champ is not None else base,
                    "served": pp["served"].get(pid),
                }
            )
    frame = pd.DataFrame(rows).astype({"challenger": float, "incumbent": float, "served": float})
    whole_promotes = bool(frame["challenger"].mean() < frame["incumbent"].mean())
    whole = frame["challenger"] if whole_promotes else frame["incumbent"]
    return {
        "products": len(frame),
        "per_partition": float(frame["served"].mean()),
        "whole": float(whole.mean()),
        "whole_promotes": whole_promotes,
        "challenger_everywhere": float(frame["challenger"].mean()),
        "incumbent_everywhere": float(frame["incumbent"].mean()),
        "note": (
            "decided and scored on the same test window (in-sample); 'whole' applies the "
            "mean-RMSSE rule only, while the per-partition decisions also apply the "
            "disparity, interval-coverage and data-quality guards, which are noisier on a "
            "small partition"
        ),
    }


def gathered_report(
    markers: list[dict[str, Any]],
    means: dict[str, Any],
    decision: Decision,
    p: Plan,
    serving: dict[str, Any],
    disparity: float | None,
    opts: JobOptions,
) -> Any:
    """The run's one report over every partition (`trainer.report.partitioned`). Never
    raises: a plot that fails is named in it, and a report that cannot be built is
    replaced by a short one; both are logged at ERROR, and the gather promotes and
    forecasts as if nothing happened."""
    from trainer.report.explain import PER_PRODUCT_COLUMNS, SUMMARY_COLUMNS
    from trainer.report.partitioned import (
        PartitionedReport,
        PartitionedReportData,
        build_partitioned_report,
        merge_shap,
        partition_table,
        product_table,
    )
    from trainer.run.steps import failed_report, now

    data = PartitionedReportData(
        run_id=opts.run_id,
        model_version=opts.run_id,
        created_at=now(),
        request=asdict(opts.request),
        decision=asdict(decision),
        serving=serving,
        partitioning={
            "size": p.partitioning.size,
            "key_pattern": p.partitioning.key_pattern,
            "note": p.note,
        },
        partitions=pd.DataFrame(),
        means=means,
        disparity=disparity,
        shap_summary=pd.DataFrame(columns=SUMMARY_COLUMNS),
        shap_per_product=pd.DataFrame(columns=PER_PRODUCT_COLUMNS),
        shap_settings={},
    )
    per_product = pd.DataFrame()
    try:
        with timed(log, "stage report", stage="report") as out:
            groups = {part.name: part.group for part in p.partitioning.partitions}
            data.partitions = partition_table(markers, groups)
            per_product = product_table(markers)
            data.shap_summary, data.shap_per_product, data.shap_settings = merge_shap(markers)
            report = build_partitioned_report(data, per_product)
            out.update(plots=len(report.plots), plot_errors=sorted(data.plot_errors))
        return report
    except Exception as exc:
        markdown, html = failed_report(data, exc)  # type: ignore[arg-type]
        return PartitionedReport(
            data, per_product, {}, markdown, html, error=f"{type(exc).__name__}: {exc}"
        )


def write_report(writer: Any, report: Any) -> None:
    """The report's files in the gathered run: tables (CSV, formula-safe), plots, the
    report as Markdown and HTML."""
    writer.put_text("partitions.csv", csv_text(report.data.partitions))
    writer.put_text("per_product.csv", csv_text(report.per_product))
    writer.put_text("shap/summary.csv", csv_text(report.data.shap_summary))
    writer.put_text("shap/per_product.csv", csv_text(report.data.shap_per_product))
    for name, png in report.plots.items():
        writer.put_bytes(name, png)
    writer.put_text("report.md", report.markdown)
    writer.put_text("report.html", report.html)


def gather(
    engine: sa.Engine,
    store: ArtifactStore,
    p: Plan,
    opts: JobOptions,
    params: Any,
    tuning: dict[str, Any],
    workdir: Path,
) -> dict[str, Any]:
    """Task 0: wait for every partition, then promote per partition and write the
    serving document (`write_serving`); each task then forecasts its own partitions
    (`forecast_task`)."""
    from trainer.judge.promotion import (
        Carried,
        Scores,
        current_champion_version,
        publish,
        record,
        record_partitioned,
    )
    from trainer.run import steps as rs
    from trainer.serve.artifacts import ChampionPointer, RunWriter, read_champion, run_key
    from trainer.serve.forecast import (
        PARTITIONED,
        PARTITIONS_FILE,
        describe_kind,
        load_forecaster,
    )

    keys = [coordination_key(opts, f"done/{n}.json") for n in p.names]
    markers = collect(store, keys, opts.gather_timeout_s)
    changed = [m["partition"] for m in markers if m["changed"]]
    means = served_means(markers)
    if changed:
        reason = (
            f"partitions {', '.join(changed)} of {len(markers)} changed "
            "(each beat its own champion or, without one, the best baseline); "
            f"mean RMSSE served {means['per_partition']:.4g}"
        )
    else:
        reason = f"no partition's challenger beat its champion ({len(markers)} partitions)"
    decision = Decision(bool(changed), reason, "champion")
    run_id = opts.run_id
    writer = RunWriter(store, run_id)
    entries = {m["partition"]: m["serving"] for m in markers}
    products = {m["partition"]: m["products"] for m in markers}
    writer.put_json(
        PARTITIONS_FILE,
        {"partitioning": p.partitioning.to_dict(), "entries": entries, "products": products},
    )
    writer.put_json(
        "params.json",
        {
            "model_version": run_id,
            "run_id": run_id,
            "model_params": params.to_dict(),
            "train_config": opts.train_config.to_dict(),
        },
    )
    writer.put_json("tuning/summary.json", tuning)
    served = [v for m in markers for v in m["per_product"]["served"].values() if v is not None]
    scores = Scores(
        float(np.mean(served)),
        float(np.percentile(served, 90) / max(np.median(served), 1e-12)) if served else None,
    )
    metrics = {
        "model": {"rmsse": scores.rmsse},
        "fairness": {"disparity_p90_over_median": scores.disparity},
        "run_id": run_id,
        "model_version": run_id,
        "kind": PARTITIONED,
        "partitioning": p.partitioning.to_dict() | {"note": p.note},
        "partitions": {
            m["partition"]: {
                "run_id": m["run_id"],
                "products": len(m["products"]),
                "decision": m["decision"],
                "changed": m["changed"],
                "serving": m["serving"],
            }
            for m in markers
        },
        "changed_partitions": changed,
        "serving": (
            {"kind": PARTITIONED, "model_version": run_id}
            if changed
            else {"model_version": getattr(read_champion(store), "model_version", None)}
        ),
        "promotion_modes": means,
        "fairness_comparison": {"skipped": FAIRNESS_SKIPPED},
        "decision": asdict(decision),
        "tuning": tuning,
    }
    serving = dict(metrics["serving"])
    pointer = None if changed else read_champion(store)
    serving["kind"] = PARTITIONED if changed else getattr(pointer, "kind", None)
    if serving["kind"]:
        serving["description"] = describe_kind(serving["kind"])
    report = gathered_report(markers, means, decision, p, serving, scores.disparity, opts)
    metrics["shap"] = report.data.shap_settings
    if report.error:
        metrics["report_error"] = report.error
    writer.put_json("metrics.json", metrics)
    write_report(writer, report)
    writer.seal(
        model_version=run_id,
        kind=PARTITIONED,
        decision=asdict(decision),
        rmsse=scores.rmsse,
        serving={"kind": PARTITIONED if changed else None, "changed": changed},
    )
    if not changed:
        record(
            engine,
            model_version=run_id,
            run_id=run_id,
            run_uri=writer.uri,
            metrics=metrics,
            decision=decision,
            holdout=pd.DataFrame(columns=["product_id", "target_date", "actual", "predicted"]),
            request_id=opts.request.request_id,
            kind=PARTITIONED,
        )
        write_serving(store, opts, read_champion(store))
        return {
            "metrics": metrics,
            "decision": decision,
            "run_uri": writer.uri,
            "report": report,
            "files": [*sorted(writer.files), "manifest.json"],
        }
    # Residuals: each product's errors by the model that serves it now, partition by
    # partition (a generator: one partition's holdout in memory at a time).
    old_version = current_champion_version(engine)

    def residuals() -> Iterator[pd.DataFrame | Carried]:
        for m in markers:
            if m["has_holdout"]:
                key = run_key(m["run_id"], "holdout.csv")
                yield pd.read_csv(io.StringIO(store.read_text(key)))
            elif old_version is not None and old_version != run_id:
                yield Carried(old_version, m["products"])

    # The partitions document must be servable before anything is recorded (each
    # promoted partition's model was loaded in its own task, `train_partition`).
    candidate = ChampionPointer(run_id, run_id, writer.uri, rs.now(), kind=PARTITIONED)
    load_forecaster(store, candidate, workdir / "serving")
    record_partitioned(
        engine,
        model_version=run_id,
        run_id=run_id,
        run_uri=writer.uri,
        metrics=metrics,
        reason=reason,
        residuals=residuals(),
        request_id=opts.request.request_id,
    )
    publish(
        store,
        model_version=run_id,
        run_id=run_id,
        run_uri=writer.uri,
        scores=scores,
        kind=PARTITIONED,
    )
    write_serving(store, opts, candidate)
    return {
        "metrics": metrics,
        "decision": decision,
        "run_uri": writer.uri,
        "report": report,
        "files": [*sorted(writer.files), "manifest.json"],
    }


def partition_plan(
    engine: sa.Engine, store: ArtifactStore, opts: JobOptions, workdir: Path
) -> Plan | None:
    """The execution's plan, or None when the catalogue is one partition (the run is
    then today's single-model run)."""
    from trainer.data.load import load_product_ids

    product_ids = load_product_ids(engine)
    if len(product_ids) <= opts.partition_size and not opts.partition_key:
        return None
    p = plan(store, product_ids, opts, workdir)
    if len(p.names) <= 1:
        return None
    log.info(
        "partitioned run",
        extra={
            "partitions": len(p.names),
            "products": len(product_ids),
            "partition_size": opts.partition_size,
            "partition_key": opts.partition_key,
            "note": p.note,
        },
    )
    return p


# Serving after the decision: each task forecasts its own partitions -------------------

SERVING = "serving.json"  # partitioned/<execution>/serving.json: what serves after the gather


def forecast_key(opts: JobOptions, task_index: int) -> str:
    """`partitioned/<execution>/forecast/task<i>.json`: what task i's forecast did."""
    return coordination_key(opts, f"forecast/task{task_index:05d}.json")


def write_serving(store: ArtifactStore, opts: JobOptions, pointer: Any) -> None:
    """Task 0, after the decision: the champion that now serves every partition (the
    gathered partitioned run, or the champion kept), for every task's forecast."""
    store.write_json(
        coordination_key(opts, SERVING),
        {"champion": None if pointer is None else asdict(pointer), "run_id": opts.run_id},
    )


def serving_failed(store: ArtifactStore, opts: JobOptions, exc: BaseException) -> None:
    """Task 0 failed before the decision: the other tasks forecast nothing (nothing
    changed; the champion's forecasts stand) — at once if no retry of task 0 will come
    (`final`), else they wait for the retry's decision. Never raises."""
    try:
        store.write_json(
            coordination_key(opts, SERVING),
            {
                "error": f"{type(exc).__name__}: {str(exc)[:500]}",
                "final": opts.attempt >= opts.max_retries,
            },
        )
    except Exception as write_exc:
        log.error("could not write the gather's failure", extra={"error": str(write_exc)})


def wait_serving(store: ArtifactStore, opts: JobOptions) -> dict[str, Any]:
    """The serving document, waiting for it (up to `gather_timeout_s`; a failure task 0
    will retry is waited past)."""
    key = coordination_key(opts, SERVING)
    deadline = time.monotonic() + opts.gather_timeout_s
    looks = 0
    while True:
        _wait_for(store, [key], max(0.0, deadline - time.monotonic()), "the gather's decision")
        doc = store.read_json(key)
        if "error" not in doc or doc.get("final", True) or time.monotonic() > deadline:
            return doc
        _pause(looks)
        looks += 1


def forecast_task(
    engine: sa.Engine,
    store: ArtifactStore,
    p: Plan,
    opts: JobOptions,
    workdir: Path,
    bigquery: Any = None,
) -> dict[str, Any]:
    """Every task, after the gather's decision: the products of this task's partitions
    forecast by what now serves them, partition by partition (each reads only its
    products' sales; `trainer.serve.forecast.forecast_partitions`), so a task's memory
    follows its partitions, not the catalogue. Never raises: a failure is logged and
    returned (and written to `forecast/task<i>.json`); the promotion stands."""
    from trainer.serve.artifacts import ChampionPointer
    from trainer.serve.forecast import forecast_partitions, load_forecaster

    mine = partitions_of_task(p.names, opts.task_index, opts.task_count)
    if not mine:  # more tasks than partitions: nothing to wait for
        return {"skipped": "no partition in this task", "task": opts.task_index}
    result: dict[str, Any]
    try:
        doc = wait_serving(store, opts)
        if "error" in doc:
            result = {"skipped": f"the gather failed, nothing changed: {doc['error']}"}
            log.info("no forecast by this task", extra=result)
        elif doc.get("champion") is None:
            result = {"error": "no champion pointer after the decision"}
            log.error("no champion pointer after the decision: no forecasts")
        else:
            pointer = ChampionPointer.from_entry(doc["champion"])
            forecaster = load_forecaster(store, pointer, workdir / "serving")
            groups = {name: p.products[name] for name in mine}
            result = forecast_partitions(engine, forecaster, groups, bigquery=bigquery).to_dict()
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
        log.error("this task's forecasts failed", extra=result, exc_info=True)
    result = {**result, "task": opts.task_index, "partitions_of_task": mine}
    try:
        store.write_json(forecast_key(opts, opts.task_index), result)
    except Exception as exc:
        log.error("could not write this task's forecast summary", extra={"error": str(exc)})
    return result


def gathered_forecasts(
    store: ArtifactStore, p: Plan, opts: JobOptions, own: dict[str, Any], wait_s: float
) -> dict[str, Any]:
    """Task 0: every task's forecast summed for the run's summary and email, waiting up
    to `wait_s` for the other tasks' summaries (they forecast as many partitions at the
    same time); a task not reported by then is named, not waited for."""
    tasks = sorted({i % opts.task_count for i in range(len(p.names))} - {opts.task_index})
    keys = {t: forecast_key(opts, t) for t in tasks}
    deadline = time.monotonic() + wait_s
    looks = 0
    while any(not store.exists(k) for k in keys.values()) and time.monotonic() < deadline:
        _pause(looks)
        looks += 1
    docs = [own] + [store.read_json(k) for k in keys.values() if store.exists(k)]
    done = [d for d in docs if "written" in d]
    out: dict[str, Any] = {
        "model_version": next((d["model_version"] for d in done), None),
        "kind": next((d["kind"] for d in done), None),
        "products": sum(d["products"] for d in done),
        "days": max((d["days"] for d in done), default=0),
        "first_date": min((d["first_date"] for d in done if d["first_date"]), default=""),
        "last_date": max((d["last_date"] for d in done if d["last_date"]), default=""),
        "written": sum(d["written"] for d in done),
        "unchanged": sum(d["unchanged"] for d in done),
        "by": "each task its own partitions",
        "tasks": {
            str(d["task"]): {
                k: d[k]
                for k in ("products", "written", "error", "skipped", "failed")
                if d.get(k) is not None
            }
            for d in docs
        },
        "failed_partitions": sorted(n for d in done for n in d.get("failed") or []),
        "failed_tasks": sorted(d["task"] for d in docs if "written" not in d),
        "not_reported": sorted(t for t, k in keys.items() if not store.exists(k)),
    }
    if not done:  # no figures to report (the email then says nothing of forecasts)
        for key in ("model_version", "kind", "products", "days", "first_date", "last_date"):
            del out[key]
        del out["written"], out["unchanged"]
        out["error"] = "; ".join(
            f"task {d['task']}: {d.get('error') or d.get('skipped')}" for d in docs
        )
    return out
