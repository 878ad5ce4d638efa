"""`forecastguard demo`: the whole event chain on one machine, told as a story.

The timeline (T is today, UTC):

    history ........ T-43 | wave 1: 28 days with drift T-42..T-15 | wave 2: 14 days T-14..T-1

1. sales for the history are generated (or loaded from --sales-csv, shifted to end at T-1);
2. the first model is trained and judged against the best baseline (seasonal naive or
   moving average, by mean RMSSE on the test window): if it beats it, it is promoted;
   if not, that baseline becomes the champion. Either way the champion forecasts the
   next 28 days, and the story says which forecaster serves and why;
3. wave 1 of actual sales arrives, with drift injected into a share of the products;
4. a scheduler tick pushes the health-check message to the health function (a Pub/Sub
   CloudEvent over HTTP) → metrics → unhealthy → retrain message → train_trigger →
   the trainer (subprocess) → new model, promotion decision, new forecasts, report, email;
5. wave 2 arrives and a second check — over HTTPS-style `/model/health` with a bearer
   token — judges the retrained model's own forecasts;
6. a summary says what happened, with timings, and where to look.

A run starts clean: the work folder (default `.demo/`) is emptied first.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pandas as pd
import requests
import sqlalchemy as sa

from forecastguard.db import schema
from forecastguard.db.engine import make_engine
from forecastguard.db.migrate import upgrade
from forecastguard.local import EmlSink, LocalStack, interrupts_as_exit, stop_process_group
from forecastguard.safetext import terminal_safe

HISTORY_GAP = 43  # days before today where the history ends
WAVE1 = 28
WAVE2 = 14


@dataclass(frozen=True)
class DemoOptions:
    """What `forecastguard demo` is asked to do."""

    workdir: Path
    products: int = 30
    years: float = 2.0
    seed: int = 7
    sales_csv: Path | None = None
    trials: int = 1
    epochs: int = 6
    drift_share: float = 0.3
    drift_kind: str = "level_shift"
    drift_magnitude: float | None = None
    today: date = field(default_factory=lambda: datetime.now(UTC).date())
    trainer_timeout_s: float = 1800.0
    # The promotion margin (PROMOTION_RMSSE_TOLERANCE) the trainers run with; None: theirs.
    # 0.95 means no trained model can be promoted: the chain runs on the baseline champion.
    promotion_rmsse_tolerance: float | None = None


@dataclass
class Step:
    """One step of the story and how long it took."""

    title: str
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class Story:
    """Prints the numbered steps as they happen and remembers them for the summary."""

    def __init__(self, echo: Callable[[str], None] = click.echo) -> None:
        self.echo = echo
        self.steps: list[Step] = []
        self.started = time.perf_counter()

    @contextmanager
    def step(self, title: str) -> Iterator[Step]:
        step = Step(title)
        self.steps.append(step)
        self.echo(click.style(f"\n[{len(self.steps)}] {title}", bold=True))
        t0 = time.perf_counter()
        try:
            yield step
        finally:
            step.seconds = time.perf_counter() - t0
            self.echo(click.style(f"    done in {step.seconds:.1f} s", dim=True))

    def say(self, step: Step, text: str) -> None:
        """Note `text` for the summary and show it, its data escaped for the terminal
        (product ids reach these lines: checks' reasons, the trainer's log)."""
        step.notes.append(text)
        self.echo(f"    {terminal_safe(text)}")


def timeline(today: date) -> dict[str, date]:
    """The demo's key dates, relative to today."""
    history_end = today - timedelta(days=HISTORY_GAP)
    wave1_end = history_end + timedelta(days=WAVE1)
    return {
        "history_end": history_end,
        "wave1_start": history_end + timedelta(days=1),
        "wave1_end": wave1_end,
        "wave2_start": wave1_end + timedelta(days=1),
        "wave2_end": wave1_end + timedelta(days=WAVE2),
    }


def build_sales(opts: DemoOptions, dates: dict[str, date]) -> tuple[pd.DataFrame, list[str]]:
    """All the demo's sales (history and both waves) with drift injected from wave 1."""
    from forecastguard.synth import generate_sales, inject_drift

    if opts.sales_csv is not None:
        sales = _real_sales(opts.sales_csv, dates["wave2_end"], opts.products)
    else:
        start = dates["history_end"] - timedelta(days=round(365 * opts.years))
        sales = generate_sales(opts.products, start, dates["wave2_end"], opts.seed)
    return inject_drift(
        sales,
        share=opts.drift_share,
        start=dates["wave1_start"],
        kind=opts.drift_kind,
        seed=opts.seed,
        magnitude=opts.drift_magnitude,
    )


def _real_sales(path: Path, end: date, products: int) -> pd.DataFrame:
    """A sales file (long or wide), its busiest products, shifted so it ends on `end`."""
    from forecastguard.sales_io import read_sales_csv

    frame = read_sales_csv(path)
    sales = frame.sales.rename(columns={"sale_date": "date"})
    top = sales.groupby("product_id")["units_sold"].sum().nlargest(products).index
    sales = sales[sales["product_id"].isin(top)].copy()
    if frame.promotions is not None:
        promo = frame.promotions.rename(columns={"promo_date": "date"})
        sales = sales.merge(promo, on=["product_id", "date"], how="left")
        sales["on_promotion"] = sales["on_promotion"].fillna(False).astype(bool)
    else:
        sales["on_promotion"] = False
    shift = end - max(sales["date"])
    sales["date"] = pd.to_datetime(sales["date"]) + pd.Timedelta(days=shift.days)
    return sales.reset_index(drop=True)


def write_sales_between(engine: sa.Engine, sales: pd.DataFrame, lo: date, hi: date) -> int:
    """Upsert the sales (and promotion days) dated lo..hi; returns the rows written."""
    from forecastguard.synth.output import write_database

    days = pd.to_datetime(sales["date"]).dt.date
    part = sales[(days >= lo) & (days <= hi)]
    write_database(engine, part)
    return len(part)


def pubsub_push(url: str, data: dict[str, Any], topic: str, timeout_s: float = 600) -> int:
    """POST `data` to a CloudEvent function as Pub/Sub's push (a structured CloudEvent)."""
    from forecastguard.publish import pubsub_cloudevent_for

    headers, body = pubsub_cloudevent_for(json.dumps(data).encode(), topic)
    response = requests.post(url, data=body, headers=headers, timeout=timeout_s)
    response.raise_for_status()
    return response.status_code


def latest_health(engine: sa.Engine) -> dict[str, Any] | None:
    """The newest stored health check's full result."""
    hc = schema.health_checks
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(hc.c.result_json).order_by(hc.c.checked_at.desc()).limit(1)
        ).first()
    return None if row is None else json.loads(row[0])


def describe_health(result: dict[str, Any]) -> list[str]:
    """A few human lines about a health result."""
    verdict = "HEALTHY" if result.get("healthy") else "UNHEALTHY"
    avg = result.get("avg_rmse")
    lines = [
        f"{verdict}: avg RMSE {avg:.2f}" if avg is not None else f"{verdict}: no RMSE",
        f"window {result.get('window_start')} .. {result.get('window_end')}, "
        f"{result.get('n_products')} products, global p-value {result.get('p_value')}",
    ]
    drifted = result.get("drifted_products") or [
        p["product_id"] for p in result.get("products", []) if p.get("drift")
    ]
    if drifted:
        shown = ", ".join(drifted[:8]) + (" ..." if len(drifted) > 8 else "")
        lines.append(f"drift in {len(drifted)} products: {shown}")
    lines += [f"reason: {r}" for r in result.get("reasons", [])]
    return lines


def wait_for_retrain(
    engine: sa.Engine, timeout_s: float, on_line: Callable[[str], None]
) -> dict[str, Any]:
    """Follow the newest retrain request until it ends; echo the trainer's progress."""
    rr = schema.retrain_requests
    deadline = time.monotonic() + timeout_s
    offset = 0
    row: Any = None
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            row = conn.execute(sa.select(rr).order_by(rr.c.id.desc()).limit(1)).mappings().first()
        if row is not None and row["log_path"] and Path(row["log_path"]).exists():
            with open(row["log_path"], "rb") as log_file:
                log_file.seek(offset)
                chunk = log_file.read()
            offset += len(chunk)
            for line in chunk.decode(errors="replace").splitlines():
                shown = _progress_line(line)
                if shown:
                    on_line(shown)
        if row is not None and row["status"] in {"finished", "failed", "rejected"}:
            return dict(row)
        time.sleep(1.0)
    raise TimeoutError(f"the retraining did not finish in {timeout_s:.0f} s (last: {row})")


_PROGRESS_WORDS = ("stage", "epoch", "trial", "promot", "forecast", "email", "report", "tun")


def _progress_line(line: str) -> str | None:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(entry, dict) or "message" not in entry:
        return None
    message = str(entry["message"])
    if not str(entry.get("logger", "")).startswith(("trainer", "forecastguard")):
        return None
    if entry.get("severity") in {"WARNING", "ERROR", "CRITICAL"} or any(
        w in message.lower() for w in _PROGRESS_WORDS
    ):
        extras = {
            k: v
            for k, v in entry.items()
            if k not in {"message", "severity", "time", "logger"} and not isinstance(v, dict | list)
        }
        detail = " ".join(f"{k}={v}" for k, v in list(extras.items())[:5])
        return f"trainer: {message}" + (f" ({detail})" if detail else "")
    return None


def run_demo(opts: DemoOptions, echo: Callable[[str], None] = click.echo) -> dict[str, Any]:
    """Play the whole chain; return a summary (also written to <workdir>/summary.json)."""
    story = Story(echo)
    # The story is told on stdout; the children's JSON logs go to files under logs/.
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    work = opts.workdir.resolve()
    if work.exists():
        shutil.rmtree(work)
    for sub in ("artifacts", "logs", "emails"):
        (work / sub).mkdir(parents=True)
    db_url = f"sqlite:///{work / 'forecastguard.db'}"
    metrics_file = work / "metrics.jsonl"
    token = secrets.token_urlsafe(24)
    dates = timeline(opts.today)
    engine = make_engine(db_url)
    upgrade(engine)
    children: list[subprocess.Popen] = []
    summary: dict[str, Any] = {"workdir": str(work), "database_url": db_url, "dates": {}}

    with interrupts_as_exit(), EmlSink(work / "emails") as smtp:
        env = {
            "DATABASE_URL": db_url,
            "ARTIFACT_URI": (work / "artifacts").as_uri(),
            "METRICS_SINK": str(metrics_file),
            "TRAINER_JOB": "local",
            "TRAINER_LOG_DIR": str(work / "logs"),
            "HEALTH_API_TOKEN": token,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp.port),
            "SMTP_STARTTLS": "0",
            "REPORT_FROM": "forecastguard-demo@localhost",
            "REPORT_RECIPIENTS": "stakeholders@example.com",
            "TRIALS": str(opts.trials),
            "EPOCHS": str(opts.epochs),
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
        if opts.promotion_rmsse_tolerance is not None:
            env["PROMOTION_RMSSE_TOLERANCE"] = str(opts.promotion_rmsse_tolerance)
        stack = LocalStack(env={}, log_dir=work / "logs")
        env["RETRAIN_TOPIC"] = stack.url("train_trigger")
        stack.env = env
        try:
            with story.step("Sales history") as step:
                sales, drifted = build_sales(opts, dates)
                n = write_sales_between(engine, sales, date.min, dates["history_end"])
                source = opts.sales_csv or f"synthetic, seed {opts.seed}"
                story.say(step, f"{n:,} rows, {sales['product_id'].nunique()} products ({source})")
                story.say(step, f"history ends {dates['history_end']}")

            with story.step("First model: train, promote, forecast (trainer subprocess)") as step:
                log_path = work / "logs" / "trainer-initial.log"
                with open(log_path, "wb") as out:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "trainer", "--mode", "train", "--run-id", "initial"],
                        env={**os.environ, **env},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                children.append(proc)
                _follow(proc, log_path, lambda s: story.say(step, s), opts.trainer_timeout_s)
                if proc.returncode != 0:
                    raise click.ClickException(f"the first training failed; see {log_path}")
                summary["serving_initial"] = _serving(engine)
                story.say(step, _decision(engine))
                story.say(step, _describe_serving(summary["serving_initial"]))

            with story.step(f"{WAVE1} days of actual sales arrive, drift in some products") as step:
                n = write_sales_between(engine, sales, dates["wave1_start"], dates["wave1_end"])
                story.say(step, f"{n:,} rows {dates['wave1_start']} .. {dates['wave1_end']}")
                story.say(step, f"{opts.drift_kind} injected into {len(drifted)} products")

            with story.step("Serve the functions locally (functions-framework)") as step:
                stack.start()
                for name in ("health_http", "health_pubsub", "train_trigger"):
                    story.say(step, f"{name:<14} {stack.url(name)}")
                story.say(step, f"SMTP sink     127.0.0.1:{smtp.port} -> {work / 'emails'}")

            with story.step("Scheduler tick -> health function (Pub/Sub push)") as step:
                pubsub_push(
                    stack.url("health_pubsub"),
                    {"as_of": dates["wave1_end"].isoformat(), "window_days": WAVE1},
                    "projects/local/topics/health-check-requests",
                )
                first = latest_health(engine) or {}
                summary["first_check"] = first
                for line in describe_health(first):
                    story.say(step, line)

            with story.step("Retrain message -> train_trigger -> trainer") as step:
                if first.get("healthy"):
                    story.say(step, "the model was judged healthy: nothing to retrain")
                    request = None
                else:
                    request = wait_for_retrain(
                        engine, opts.trainer_timeout_s, lambda s: story.say(step, s)
                    )
                    summary["retrain_request"] = {
                        k: str(v) for k, v in request.items() if k != "payload"
                    }
                    story.say(step, f"request {request['request_id']}: {request['status']}")
                    story.say(step, _decision(engine))
                    story.say(step, _describe_serving(_serving(engine)))

            with story.step(f"{WAVE2} more days arrive; second check over /model/health") as step:
                write_sales_between(engine, sales, dates["wave2_start"], dates["wave2_end"])
                response = requests.post(
                    stack.url("health_http") + "model/health",
                    json={"as_of": dates["wave2_end"].isoformat(), "window_days": WAVE2},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=600,
                )
                second = response.json()
                summary["second_check"] = second
                story.say(step, f"HTTP {response.status_code}")
                for line in describe_health(second):
                    story.say(step, line)
                held = (second.get("retrain") or {}).get("skipped")
                if not second.get("healthy", True) and held:
                    # Issue 23's back-off: the drift persists, but the challenger of the
                    # retrain it asked for was rejected and nothing new happened since.
                    story.say(step, f"unhealthy again, no retrain: {held}")
                elif not second.get("healthy", True):
                    # The check published another retrain request: follow it to its end
                    # rather than leave a trainer behind.
                    story.say(step, "unhealthy again: the chain retrains once more")
                    again = wait_for_retrain(
                        engine, opts.trainer_timeout_s, lambda s: story.say(step, s)
                    )
                    story.say(step, f"request {again['request_id']}: {again['status']}")
                    story.say(step, _decision(engine))
                    story.say(step, _describe_serving(_serving(engine)))
        finally:
            stack.stop()
            for proc in children:
                stop_process_group(proc)
            _stop_local_trainers(engine)

    summary["serving"] = _serving(engine)
    summary["steps"] = [{"title": s.title, "seconds": round(s.seconds, 1)} for s in story.steps]
    summary["files"] = _where_to_look(work)
    (work / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    _tell(story, summary, work)
    return summary


def _follow(proc: subprocess.Popen, log_path: Path, say: Callable[[str], None], timeout_s: float):
    deadline = time.monotonic() + timeout_s
    offset = 0
    while True:
        done = proc.poll() is not None
        with open(log_path, "rb") as f:
            f.seek(offset)
            chunk = f.read()
        offset += len(chunk)
        for line in chunk.decode(errors="replace").splitlines():
            shown = _progress_line(line)
            if shown:
                say(shown)
        if done:
            return
        if time.monotonic() > deadline:
            stop_process_group(proc)
            raise click.ClickException(f"the trainer took longer than {timeout_s:.0f} s")
        time.sleep(0.5)


def _serving(engine: sa.Engine) -> dict[str, Any] | None:
    """The registry's champion (the forecaster that serves): version, kind, why."""
    reg = schema.model_registry
    with engine.connect() as conn:
        row = (
            conn.execute(
                sa.select(reg.c.model_version, reg.c.kind, reg.c.decision_reason).where(
                    reg.c.status == "champion"
                )
            )
            .mappings()
            .first()
        )
    return None if row is None else dict(row)


def _describe_serving(serving: dict[str, Any] | None) -> str:
    if serving is None:
        return "nothing serves: no champion registered"
    kind = serving["kind"]
    what = (
        f"the {kind.removeprefix('baseline:').replace('_', ' ')} baseline"
        if kind.startswith("baseline:")
        else f"the trained {kind.upper()} model"
    )
    return f"serving now: {what} ({serving['model_version']}), because {serving['decision_reason']}"


def _decision(engine: sa.Engine) -> str:
    """The newest trained model's registry row: its status and the decision's reason."""
    reg = schema.model_registry
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(reg.c.model_version, reg.c.status, reg.c.decision_reason)
            .where(~reg.c.kind.startswith("baseline:"))
            .order_by(reg.c.created_at.desc())
            .limit(1)
        ).first()
    return "no model registered" if row is None else f"model {row[0]}: {row[1]} — {row[2]}"


def _stop_local_trainers(engine: sa.Engine) -> None:
    """Stop trainer subprocesses train_trigger started that are still running (Ctrl-C)."""
    rr = schema.retrain_requests
    with engine.connect() as conn:
        names = conn.execute(
            sa.select(rr.c.execution_name).where(rr.c.status == "started")
        ).scalars()
        pids = [int(n.split("pid=")[1]) for n in names if n and "pid=" in n]
    for pid in pids:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, 15)


def _where_to_look(work: Path) -> dict[str, Any]:
    artifacts = work / "artifacts"
    return {
        "reports": sorted(str(p) for p in artifacts.glob("runs/*/report.md")),
        "plots": sorted(str(p) for p in artifacts.glob("runs/*/*.png"))[:12],
        "champion": str(artifacts / "champion.json"),
        "metrics": str(work / "metrics.jsonl"),
        "emails": sorted(str(p) for p in (work / "emails").glob("*.eml")),
        "logs": str(work / "logs"),
        "summary": str(work / "summary.json"),
    }


def _tell(story: Story, summary: dict[str, Any], work: Path) -> None:
    echo = story.echo
    total = time.perf_counter() - story.started
    echo(click.style(f"\nWhat happened ({total:.0f} s in all)", bold=True))
    for i, step in enumerate(story.steps, 1):
        echo(f"  {i}. {step.title:<62} {step.seconds:7.1f} s")
    files = summary["files"]
    echo(click.style("\nWhich forecaster serves", bold=True))
    echo(f"  {_describe_serving(summary.get('serving'))}")
    echo(click.style("\nWhere to look", bold=True))
    for report in files["reports"]:
        echo(f"  report         {report}")
    echo(f"  plots          {len(files['plots'])} PNG files beside the reports")
    echo(f"  health (JSON)  {work / 'summary.json'} (first_check, second_check)")
    echo(f"  metrics        {files['metrics']}")
    for email in files["emails"]:
        echo(f"  email          {email}")
    echo(f"  logs           {files['logs']}")
    echo(f"  database       {summary['database_url']}")
    from forecastguard.report.history import where_to_see  # the pages (issue 17)

    echo(click.style("\nSee it", bold=True))
    for label, address in where_to_see(summary["database_url"], work, summary):
        echo(f"  {label:<14} {address}")
