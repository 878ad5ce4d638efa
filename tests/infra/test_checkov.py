"""checkov on terraform/: zero failed checks; every skip is in the code with its reason.

checkov lives in its own virtualenv (.venv-checkov, `make` builds it from
requirements/checkov.txt) because its pins fight pytest's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.infra.hcl import TERRAFORM_DIR

ROOT = TERRAFORM_DIR.parent
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
_SKIP = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?$")


def skip_comments() -> list[tuple[str, int, str, str]]:
    """(file, line, check id, reason) of every checkov skip written in terraform/."""
    found = []
    for path in sorted(TERRAFORM_DIR.glob("*.tf")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if m := _SKIP.search(line.strip()):
                found.append((path.name, n, m.group(1), (m.group(2) or "").strip()))
    return found


def test_every_checkov_skip_gives_its_reason() -> None:
    for name, line, check, reason in skip_comments():
        assert len(reason) >= 30, f"{name}:{line}: skip of {check} needs a real reason"


def _run_checkov() -> dict:
    if not CHECKOV.exists():
        message = f"{CHECKOV} is missing: run `make .venv-checkov/.installed`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    proc = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(TERRAFORM_DIR),
            "--framework",
            "terraform",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "LOG_LEVEL": "WARNING"},
    )
    assert proc.stdout.strip(), f"checkov printed nothing (exit {proc.returncode}): {proc.stderr}"
    report = json.loads(proc.stdout)
    if isinstance(report, list):  # one report per framework
        (report,) = [r for r in report if r.get("check_type") == "terraform"]
    return report


@pytest.mark.slow
def test_checkov_reports_zero_failed_checks() -> None:
    report = _run_checkov()
    summary = report["summary"]
    failed = report["results"].get("failed_checks", [])
    assert summary["parsing_errors"] == 0, summary
    assert summary["passed"] >= 30, f"checkov ran suspiciously few checks: {summary}"
    assert summary["failed"] == 0, "\n".join(
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}" for c in failed
    )
    # Each skip checkov honoured is one written in the code, with its reason.
    written = {(check, reason) for _f, _l, check, reason in skip_comments()}
    for check in report["results"].get("skipped_checks", []):
        reason = (check.get("check_result") or {}).get("suppress_comment", "")
        assert (check["check_id"], reason.strip()) in written, check["check_id"]


def test_skip_comment_pattern_reads_reasons(tmp_path: Path) -> None:
    m = _SKIP.search("#checkov:skip=CKV_GCP_62:Audit logs record access instead")
    assert m and m.group(1) == "CKV_GCP_62" and m.group(2).startswith("Audit")
    assert _SKIP.search("# checkov:skip=CKV_GCP_1").group(2) is None
