"""Which engine runs a check, and running the Beam one from this process (issue 24).

The in-process check (`HealthService.run`) holds the whole window in one process: about
25-35 MB per 1,000 products. Above a size, or always on a BigQuery installation, the
check runs as the Apache Beam pipeline of jobs/health_beam instead: on Dataflow in
production, on Beam's in-process FnApiRunner here. apache-beam lives in its own
virtualenv (`.venv-beam`; it pins protobuf < 7), so this process starts the pipeline
as a subprocess of that interpreter and reads the result it writes. Nothing here imports
Beam or BigQuery.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

INPROCESS, DATAFLOW = "inprocess", "dataflow"
_REPO = Path(__file__).resolve().parents[3]


def choose_engine(n_products: int, *, on_bigquery: bool, max_inprocess_products: int) -> str:
    """The engine of a scheduled check: Dataflow for a BigQuery installation or above
    `max_inprocess_products` products (0: never), else in-process."""
    if on_bigquery or (max_inprocess_products > 0 and n_products > max_inprocess_products):
        return DATAFLOW
    return INPROCESS


def beam_python() -> str:
    """The interpreter with apache-beam: $BEAM_PYTHON, else the checkout's .venv-beam,
    else this one."""
    explicit = os.environ.get("BEAM_PYTHON")
    if explicit:
        return explicit
    local = _REPO / ".venv-beam" / "bin" / "python"
    return str(local) if local.exists() else sys.executable


@dataclass(frozen=True)
class BeamRun:
    """One run of the Beam pipeline on FnApiRunner (the `forecastguard health` flags)."""

    source: str  # a database URL or bigquery://PROJECT/DATASET
    as_of: date | None = None
    window_days: int | None = None
    batch_size: int | None = None
    control_database_url: str | None = None
    bq_api_endpoint: str | None = None
    bq_storage_endpoint: str | None = None

    def argv(self, result_path: Path) -> list[str]:
        """The pipeline's options."""
        args = [f"--source={self.source}", f"--result_path={result_path}"]
        for name in (
            "as_of",
            "window_days",
            "batch_size",
            "control_database_url",
            "bq_api_endpoint",
            "bq_storage_endpoint",
        ):
            value = getattr(self, name)
            if value is not None:
                args.append(f"--{name}={value}")
        return args


@dataclass(frozen=True)
class BeamOutcome:
    """The result the pipeline wrote: its JSON text (what `--json` prints) and fields."""

    json_text: str
    result: dict[str, Any]

    @property
    def healthy(self) -> bool:
        """The verdict."""
        return bool(self.result["healthy"])

    def text(self, top: int = 20) -> str:
        """A short report for people (the full table: --json, or the report page)."""
        from forecastguard.safetext import terminal_safe

        r = self.result
        lines = [
            f"model {'HEALTHY' if r['healthy'] else 'UNHEALTHY'} "
            f"(window {r['window_start']} to {r['window_end']}, {r['n_products']} products, "
            f"engine beam, check {r['check_id']})"
        ]
        lines += [f"  - {terminal_safe(reason)}" for reason in r["reasons"]]
        drifted = r.get("drifted_products") or []
        if drifted:
            shown = ", ".join(terminal_safe(p) for p in drifted[:top])
            lines.append(f"drifted (first {min(top, len(drifted))}): {shown}")
        return "\n".join(lines)


def run_module(
    module: str, args: list[str], python: str | None = None, timeout_s: float | None = None
) -> subprocess.CompletedProcess:
    """`python -m module args` with the Beam interpreter (its output captured)."""
    return subprocess.run(
        [python or beam_python(), "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def run_beam(
    run: BeamRun, python: str | None = None, timeout_s: float | None = None
) -> BeamOutcome:
    """Run the pipeline on FnApiRunner in a subprocess of the Beam interpreter; raise
    RuntimeError (with its error output) when it fails."""
    with tempfile.TemporaryDirectory(prefix="fg-beam-") as folder:
        path = Path(folder) / "result.json"
        proc = run_module("health_beam", run.argv(path), python, timeout_s)
        if proc.returncode not in (0, 1) or not path.exists():
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"the Beam pipeline failed (exit {proc.returncode}):\n{tail}")
        text = path.read_text(encoding="utf-8")
    return BeamOutcome(text, json.loads(text))
