"""Sales into BigQuery (issue 24): the file validated as `load-sales` validates it, then
upserted by (product_id, sale_date) through the emulator with the real client."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

pytest.importorskip(
    "apache_beam", reason="Beam tests run in .venv-beam (`make test` runs them there)"
)

from forecastguard import bigquery as bq


def _load(emulator, target: bq.BigQueryTarget, csv) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "health_beam.load",
            f"--csv={csv}",
            f"--target={target.url}",
            f"--bq-api-endpoint={emulator.rest_url}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_sales_are_validated_then_upserted(tmp_path, bigquery_emulator) -> None:
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
    assert _load(bigquery_emulator, target, first).returncode == 0
    assert _load(bigquery_emulator, target, again).returncode == 0
    refused = _load(bigquery_emulator, target, bad)
    assert refused.returncode == 2 and "line 2" in refused.stderr
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
