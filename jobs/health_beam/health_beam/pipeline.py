"""The health check as an Apache Beam pipeline: the same statistics, batch by batch.

    Batches ─▶ Spread ─▶ ProductPhase ─▶ Combine ─▶ GlobalPhase ─▶ Finish
    (product    (re-      (read a batch's   (rows of    (BH, Simes,   (per-product rows to
     ranges)    shuffle)   rows, window_     every       verdict)      BigQuery, summary to
                           from_frames,      product)                  the control database,
                           product_phase)                              report, metrics)

Each element of ProductPhase is a batch of thousands of products: its rows are read (the
Storage Read API on BigQuery, or SQL on a database URL), built into the batch's
`WindowData` by `window_from_frames` with the window's facts, and reduced by
`forecastguard.health.check.product_phase` to one row a product. No step holds every
product's series; the global step holds one row a product (the p-values and figures).

Runs on Dataflow (Flex Template, `--runner DataflowRunner`) or, by default, on Beam's
in-process FnApiRunner, named explicitly (the DirectRunner may try PrismRunner first,
which downloads a binary).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
import pandas as pd
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from forecastguard import bigquery as bq
from forecastguard.config import Settings
from forecastguard.health.check import (
    HealthParams,
    HealthResult,
    ProductPhase,
    combine_phases,
    global_phase,
    product_phase,
)
from forecastguard.health.dataflow import CONTROL_SOURCE, FORWARDED, with_db_pass
from forecastguard.health.window import window_from_frames
from forecastguard.logs import get_logger
from health_beam.sources import Source, SqlSource, Window, batch_window, make_source

log = get_logger(__name__)

DEFAULT_BATCH_SIZE = 5000
IN_PROCESS = "FnApiRunner"


class HealthCheckOptions(PipelineOptions):
    """The check's pipeline options (the same on Dataflow and in-process)."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--source",
            required=True,
            help="bigquery://PROJECT/DATASET, or a SQLAlchemy database URL.",
        )
        parser.add_argument("--as_of", help="Last day of the window (YYYY-MM-DD).")
        parser.add_argument("--window_days", type=int, help="Days in the window.")
        parser.add_argument(
            "--batch_size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            help="Products per element of the per-product step.",
        )
        parser.add_argument(
            "--control_database_url",
            help="Where the summary is stored. Default: the source when it is a database "
            "URL, else $DATABASE_URL / Cloud SQL.",
        )
        parser.add_argument("--bq_api_endpoint", help="BigQuery REST endpoint (an emulator).")
        parser.add_argument(
            "--bq_storage_endpoint", help="Storage Read API host:port (an emulator)."
        )
        parser.add_argument("--result_path", help="Write the result as JSON to this file.")
        # The settings a Dataflow launch passes (forecastguard.health.dataflow.FORWARDED):
        # each wins over the launcher's environment, and reaches the workers with them.
        for name in FORWARDED:
            parser.add_argument(f"--{name}", help=f"${name.upper()} (a setting).")


def settings_from_options(settings: Settings, check: HealthCheckOptions) -> Settings:
    """`settings` with the options of `FORWARDED` that were given, parsed and checked as
    their environment variables would be (a malformed one raises ConfigError)."""
    given = {n: getattr(check, n) for n in FORWARDED if getattr(check, n, None) is not None}
    if not given:
        return settings
    parsed = Settings.from_env({}, **{n: str(v) for n, v in given.items()})
    return replace(settings, **{n: getattr(parsed, n) for n in given})


class ProductPhaseFn(beam.DoFn):
    """A batch of products (a product range) to its `ProductPhase`."""

    def __init__(
        self,
        source: Source,
        window: Window,
        facts: bq.WindowFacts,
        params: HealthParams,
        episodes: pd.DataFrame | None = None,
    ) -> None:
        self.source = source
        self.window = window
        self.facts = facts
        self.params = params
        self.episodes = episodes
        self.bytes_read = beam.metrics.Metrics.counter("health", "bytes_read")
        self.rows_read = beam.metrics.Metrics.counter("health", "rows_read")

    def setup(self) -> None:
        """Open the source's clients once per worker."""
        self.source.open()

    def process(self, products: tuple[str, str]):  # type: ignore[override]
        """Read the range's rows and run the per-product phase on them."""
        frames = self.source.read(self.window, products, self.facts.current_version)
        self.bytes_read.inc(frames.bytes_read)
        self.rows_read.inc(len(frames.sales) + len(frames.predictions) + len(frames.residuals))
        data, holdout = batch_window(
            frames, self.window, self.facts, self.params.min_samples, self.episodes
        )
        yield product_phase(data, self.params, holdout)


class CombinePhases(beam.CombineFn):
    """Every batch's `ProductPhase` as one (`combine_phases`); an empty check gives the
    phase of an empty window."""

    def __init__(self, window: Window, facts: bq.WindowFacts, params: HealthParams) -> None:
        self.window = window
        self.facts = facts
        self.params = params

    def create_accumulator(self) -> list[ProductPhase]:
        return []

    def add_input(self, acc: list[ProductPhase], phase: ProductPhase) -> list[ProductPhase]:
        acc.append(phase)
        return acc

    def merge_accumulators(self, accs) -> list[ProductPhase]:  # type: ignore[override]
        return [p for acc in accs for p in acc]

    def extract_output(self, acc: list[ProductPhase]) -> ProductPhase:
        if acc:
            return combine_phases(acc)
        empty = pd.DataFrame(columns=["product_id", "sale_date", "units_sold"])
        data = window_from_frames(
            self.window.as_of,
            self.window.window_days,
            empty,
            current_version=self.facts.current_version,
            last_sale_date=self.facts.last_sale_date,
            reference_days=self.window.reference_days,
        )
        return product_phase(data, self.params)


def _top_window(
    source: Source,
    window: Window,
    facts: bq.WindowFacts,
    result: HealthResult,
    episodes: pd.DataFrame | None,
):
    """The rows of the products the report plots (drifted and worst), read again."""
    from forecastguard.report.check_page import pick_products

    ids = sorted({pid for pid, _ in pick_products(result.products)})
    frames = [source.read(window, (pid, pid), facts.current_version) for pid in ids]
    if not frames:
        return None, None
    merged = bq.BatchFrames(
        pd.concat([f.sales for f in frames], ignore_index=True),
        pd.concat([f.predictions for f in frames], ignore_index=True),
        pd.concat([f.residuals for f in frames], ignore_index=True),
    )
    return batch_window(merged, window, facts, result.params.min_samples, episodes)


class FinishFn(beam.DoFn):
    """Act on the result as the in-process service does: the per-product rows (to
    BigQuery for a BigQuery source), the summary to the control database, the report
    page, the metrics and the retrain request; then the result JSON to `result_path`."""

    def __init__(
        self,
        settings: Settings,
        source: Source,
        window: Window,
        facts: bq.WindowFacts,
        result_path: str | None,
        started: float,
        episodes: pd.DataFrame | None = None,
        with_products: bool = True,
    ) -> None:
        self.with_products = with_products
        self.settings = settings
        self.source = source
        self.window = window
        self.facts = facts
        self.episodes = episodes
        self.result_path = result_path
        self.started = started

    def setup(self) -> None:
        """Open the source's clients once per worker."""
        self.source.open()

    def process(self, result: HealthResult):  # type: ignore[override]
        """Store, report, write metrics, ask for a retrain, write the JSON."""
        import uuid

        from forecastguard.health.render import to_json
        from forecastguard.health.service import HealthService

        result.check_id = str(uuid.uuid4())
        result.checked_at = datetime.now(UTC).replace(microsecond=0)
        result.duration_s = time.time() - self.started
        kept = self.source.write_products(result.check_id, result.as_of, result.products)
        data, holdout = (None, None)
        if self.settings.artifact_uri:
            data, holdout = _top_window(self.source, self.window, self.facts, result, self.episodes)
        service = HealthService(with_db_pass(self.settings))
        service.finish(result, data=data, holdout=holdout, store_products=not kept)
        if self.result_path:
            # The full result (what `forecastguard health --json` prints), or only its
            # summary: a million products' JSON is a gigabyte nobody reads.
            text = to_json(result) if self.with_products else json.dumps(result.summary())
            Path(self.result_path).write_text(text, encoding="utf-8")
        yield result.summary()


def build(
    pipeline: beam.Pipeline,
    source: Source,
    window: Window,
    facts: bq.WindowFacts,
    ranges: list[tuple[str, str]],
    params: HealthParams,
    episodes: pd.DataFrame | None = None,
) -> beam.PCollection:
    """The check's steps up to its `HealthResult` (one element)."""
    return (
        pipeline
        | "Batches" >> beam.Create(ranges)
        | "Spread" >> beam.Reshuffle()
        | "ProductPhase" >> beam.ParDo(ProductPhaseFn(source, window, facts, params, episodes))
        | "Combine" >> beam.CombineGlobally(CombinePhases(window, facts, params))
        | "GlobalPhase" >> beam.Map(global_phase, params)
    )


@dataclass
class Plan:
    """What the launcher works out before the pipeline runs."""

    source: Source
    window: Window
    facts: bq.WindowFacts
    ranges: list[tuple[str, str]]
    settings: Settings
    params: HealthParams
    episodes: pd.DataFrame | None


def plan(options: HealthCheckOptions, settings: Settings) -> Plan:
    """The source, the window, its facts and the batches of this run."""
    source = make_source(
        options.source, options.bq_api_endpoint, options.bq_storage_endpoint, settings
    )
    as_of = date.fromisoformat(options.as_of) if options.as_of else None
    if as_of is None:
        from forecastguard.health.service import default_as_of

        as_of = default_as_of()
    window = Window(
        as_of, options.window_days or settings.window_days, settings.reference_days or None
    )
    control = options.control_database_url
    if control is None and isinstance(source, SqlSource) and source.url != CONTROL_SOURCE:
        control = options.source
    if control is not None:
        settings = replace(settings, database_url=control)
    facts = source.facts(window)
    ranges = source.plan(window, options.batch_size)
    return Plan(
        source,
        window,
        facts,
        ranges,
        settings,
        HealthParams.from_settings(settings),
        _episodes(settings, facts.current_version),
    )


def _episodes(settings: Settings, model_version: str | None) -> pd.DataFrame | None:
    """The served model's open drift episodes (issue 23), from the control database."""
    if not model_version:
        return None
    from forecastguard.db.engine import make_engine
    from forecastguard.health.episodes import load_episodes

    engine = make_engine(with_db_pass(settings))
    try:
        return load_episodes(engine, model_version)
    finally:
        engine.dispose()


def runner_for(options: PipelineOptions) -> Any:
    """FnApiRunner (named explicitly) unless `--runner` names another (Dataflow)."""
    name = options.view_as(StandardOptions).runner
    if name in (None, IN_PROCESS):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return FnApiRunner()
    return name


def run(
    argv: list[str], settings: Settings | None = None, *, with_products: bool = True
) -> dict[str, Any] | None:
    """Run the check. In-process: wait, and return the result (`to_dict()`, as JSON
    text decoded; only its summary unless `with_products`) with the run's counters under
    "pipeline"; on Dataflow: None."""
    import tempfile

    started = time.time()
    options = PipelineOptions(argv)
    check = options.view_as(HealthCheckOptions)
    the_plan = plan(check, settings_from_options(settings or Settings.from_env(), check))
    runner = runner_for(options)
    in_process = not isinstance(runner, str)
    result_path = check.result_path
    if in_process and result_path is None:
        result_path = str(Path(tempfile.mkdtemp(prefix="fg-beam-")) / "result.json")
    pipeline = beam.Pipeline(runner=runner, options=options)
    _ = build(
        pipeline,
        the_plan.source,
        the_plan.window,
        the_plan.facts,
        the_plan.ranges,
        the_plan.params,
        the_plan.episodes,
    ) | "Finish" >> beam.ParDo(
        FinishFn(
            the_plan.settings,
            the_plan.source,
            the_plan.window,
            the_plan.facts,
            result_path,
            started,
            the_plan.episodes,
            with_products or check.result_path is not None,
        )
    )
    outcome = pipeline.run()
    if not in_process:
        return None
    outcome.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in outcome.metrics().query()["counters"]}
    result = json.loads(Path(result_path).read_text(encoding="utf-8"))
    if check.result_path is None:  # the temporary folder made above
        shutil.rmtree(Path(result_path).parent, ignore_errors=True)
    result["pipeline"] = {
        "batches": len(the_plan.ranges),
        "bytes_read": int(counters.get("bytes_read", 0)),
        "rows_read": int(counters.get("rows_read", 0)),
        "wall_s": round(time.time() - started, 3),
    }
    return result


def main(argv: list[str] | None = None) -> None:
    """Entry point: exit 0 healthy, 1 unhealthy, 2 error (as `forecastguard health`)."""
    from forecastguard.config import ConfigError
    from forecastguard.db.engine import DatabaseUnavailable

    try:
        summary = run(sys.argv[1:] if argv is None else argv, with_products=False)
    except (DatabaseUnavailable, ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    if summary is None:  # submitted to Dataflow
        return
    brief = {k: summary[k] for k in ("check_id", "healthy", "reasons", "pipeline")}
    print(json.dumps(brief), file=sys.stderr)
    sys.exit(0 if summary["healthy"] else 1)
