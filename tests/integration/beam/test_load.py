"""Sales into BigQuery (issue 24): the file validated as `load-sales` validates it, then
upserted by (product_id, sale_date) through the emulator with the real client."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

pytest.importorskip(
    "apache_beam", reason="Beam tests run in .venv-beam (`make test` runs them there)"
)

from forecastguard import bigquery as bq
from health_beam.load import main


def _argv(emulator, target: bq.BigQueryTarget, csv) -> list[str]:
    return [f"--csv={csv}", f"--target={target.url}", f"--bq-api-endpoint={emulator.rest_url}"]


def _load(emulator, target: bq.BigQueryTarget, csv) -> subprocess.CompletedProcess:
    """`python -m health_beam.load`, the command `load-sales` hands a file to."""
    return subprocess.run(
        [sys.executable, "-m", "health_beam.load", *_argv(emulator, target, csv)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _load_here(emulator, target: bq.BigQueryTarget, csv, capsys) -> tuple[int, str]:
    """The same entry point in this process (no second interpreter start): exit code and
    stderr."""
    capsys.readouterr()
    try:
        main(_argv(emulator, target, csv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def test_sales_are_validated_then_upserted(tmp_path, bigquery_emulator, capsys) -> None:
    target = bq.BigQueryTarget(
        bigquery_emulator.project, f"load_{uuid.uuid4().hex[:8]}", bigquery_emulator.rest_url
    )
    bq.ensure_tables(target.client(), target)
    first = tmp_path / "first.csv"
    first.write_text(
        "product_id,date,units\nA,2026-05-01,3\nA,2026-05-02,4\nB,2026-05-01,1\n", "utf-8"
    )
    again = tmp_path / "again.csv"  # A's 2 May corrected, C new
    again.write_text("product_id,date,units\nA,2026-05-02,9\nC,2026-05-01,2\n", "utf-8")
    bad = tmp_path / "bad.csv"
    bad.write_text("product_id,date,units\nA,2026-05-03,-4\n", "utf-8")
    loaded = _load(bigquery_emulator, target, first)
    assert loaded.returncode == 0, loaded.stderr
    assert json.loads(loaded.stdout)["rows"] == 3
    assert _load_here(bigquery_emulator, target, again, capsys)[0] == 0
    code, err = _load_here(bigquery_emulator, target, bad, capsys)
    assert code == 2 and "line 2" in err
    rows = target.client().query(
        f"SELECT product_id, CAST(sale_date AS STRING), units_sold FROM "
        f"`{target.table('sales')}` ORDER BY 1, 2"
    )
    assert [tuple(r) for r in rows.result()] == [
        ("A", "2026-05-01", 3.0),
        ("A", "2026-05-02", 9.0),
        ("B", "2026-05-01", 1.0),
        ("C", "2026-05-01", 2.0),
    ]
