from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from forecastguard.cli import main
from forecastguard.db import schema
from forecastguard.db.engine import make_engine
from forecastguard.sales_io import SalesFileError, load_sales, read_sales_csv

PASTA = Path(__file__).resolve().parents[3].parent / "shared/data/pasta_sales_uci611"

LONG = "product_id,date,units\nA,2026-01-01,3\nA,2026-01-02,4\nB,2026-01-01,0\n"
WIDE = "DATE,QTY_B1_1,QTY_B1_2,PROMO_B1_1,PROMO_B1_2\n2026-01-01,3,0,1,0\n2026-01-02,5,2,0,1\n"


def snapshot(url: str) -> tuple:
    engine = make_engine(url)
    with engine.connect() as conn:
        sales = sorted(conn.execute(sa.select(schema.sales)).all())
        promos = sorted(conn.execute(sa.select(schema.promotions)).all())
    engine.dispose()
    return sales, promos


def write(tmp_path: Path, text: str, name: str = "sales.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_long_and_wide_formats_load_and_reload_changes_nothing(tmp_path, db_url):
    for text in (LONG, WIDE):
        path = write(tmp_path, text)
        first = run("load-sales", "--database-url", db_url, "--csv", str(path))
        assert first.exit_code == 0, first.output
        once = snapshot(db_url)
        again = run("load-sales", "--database-url", db_url, "--csv", str(path))
        assert again.exit_code == 0 and snapshot(db_url) == once
    sales, promos = snapshot(db_url)
    assert len(sales) == 3 + 4
    assert {(p, d.isoformat()) for p, d in promos} == {
        ("B1_1", "2026-01-01"),
        ("B1_2", "2026-01-02"),
    }


BAD = {
    "bad date": "product_id,date,units\nA,2026-01-01,3\nA,2026-02-30,4\n",
    "negative": "product_id,date,units\nA,2026-01-01,3\nA,2026-01-02,-4\n",
    "non-numeric": "product_id,date,units\nA,2026-01-01,3\nA,2026-01-02,four\n",
    "nan": "product_id,date,units\nA,2026-01-01,3\nA,2026-01-02,nan\n",
    "duplicate": "product_id,date,units\nA,2026-01-01,3\nA,2026-01-01,4\n",
    "empty product": "product_id,date,units\nA,2026-01-01,3\n,2026-01-02,4\n",
    "wide negative": "DATE,QTY_X\n2026-01-01,3\n2026-01-02,-1\n",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_every_bad_input_fails_listing_rows_and_writes_nothing(tmp_path, db_url, case):
    run("load-sales", "--database-url", db_url, "--csv", str(write(tmp_path, LONG, "ok.csv")))
    before = snapshot(db_url)
    result = CliRunner().invoke(
        main, ["load-sales", "--database-url", db_url, "--csv", str(write(tmp_path, BAD[case]))]
    )
    assert result.exit_code == 2
    assert "line 3" in result.output and "nothing was loaded" in result.output
    assert snapshot(db_url) == before


def test_skip_mode_loads_good_rows_and_reports_skipped(tmp_path, sqlite_url):
    text = (
        "product_id,date,units\nA,2026-01-01,3\nA,2026-01-02,-4\nA,2026-01-03,x\nB,2026-01-01,1\n"
    )
    result = CliRunner().invoke(
        main,
        [
            "load-sales",
            "--database-url",
            sqlite_url,
            "--csv",
            str(write(tmp_path, text)),
            "--on-error",
            "skip",
        ],
    )
    assert result.exit_code == 0
    assert "skipped 2 row(s)" in result.output and "line 3" in result.output
    assert len(snapshot(sqlite_url)[0]) == 2


def test_missing_columns_and_missing_file_are_named(tmp_path):
    with pytest.raises(SalesFileError, match="no units column"):
        read_sales_csv(write(tmp_path, "product_id,date\nA,2026-01-01\n"))
    with pytest.raises(SalesFileError, match="not found"):
        read_sales_csv(tmp_path / "absent.csv")
    with pytest.raises(SalesFileError, match="no data rows"):
        read_sales_csv(write(tmp_path, "product_id,date,units\n"))


def test_failed_transaction_writes_nothing(tmp_path, sqlite_url, monkeypatch):
    frame = read_sales_csv(write(tmp_path, WIDE))
    import forecastguard.sales_io as sales_io

    real = sales_io.upsert_rows
    calls = []

    def failing(conn, table, rows, **kw):
        calls.append(table.name)
        if table.name == "promotions":
            raise RuntimeError("disk full")
        return real(conn, table, rows, **kw)

    monkeypatch.setattr(sales_io, "upsert_rows", failing)
    with pytest.raises(RuntimeError):
        load_sales(make_engine(sqlite_url), frame)
    assert calls == ["sales", "promotions"] and snapshot(sqlite_url) == ([], [])


def test_database_down_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "load-sales",
            "--database-url",
            "mysql+pymysql://root@127.0.0.1:1/x",
            "--csv",
            str(write(tmp_path, LONG)),
        ],
    )
    assert result.exit_code == 2 and "unreachable" in result.output


def test_database_without_schema_is_a_clear_error(tmp_path):
    """A database nobody upgraded: the error names the missing table and the fix."""
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = CliRunner().invoke(
        main, ["load-sales", "--database-url", url, "--csv", str(write(tmp_path, LONG))]
    )
    assert result.exit_code == 2, result.output
    assert "no such table: sales" in result.output
    assert "forecastguard db upgrade" in result.output


@pytest.mark.realdata
@pytest.mark.skipif(not PASTA.is_dir(), reason=f"real pasta data set absent at {PASTA}")
def test_real_pasta_data_reads_in_wide_format():
    frame = read_sales_csv(PASTA / "hierarchical_sales_data.csv")
    assert frame.source_format == "wide" and not frame.problems
    assert frame.sales["product_id"].nunique() == 118
    assert frame.promotions is not None and frame.promotions["on_promotion"].any()
    assert frame.frequency.kind == "daily" and frame.warnings() == []


NEGATIVE = (
    "product_id,date,units\nA,2026-01-01,3\nA,2026-01-02,-4\nA,2026-01-03,-1.5\nA,2026-01-04,2\n"
)


def test_negative_policy_reject_clip_keep(tmp_path, sqlite_url):
    path = str(write(tmp_path, NEGATIVE))
    rejected = run("load-sales", "--database-url", sqlite_url, "--csv", path)
    assert rejected.exit_code == 2 and "negative units" in rejected.output
    assert "--negative clip" in rejected.output and snapshot(sqlite_url)[0] == []

    clipped = run("load-sales", "--database-url", sqlite_url, "--csv", path, "--negative", "clip")
    assert clipped.exit_code == 0, clipped.output
    assert "2 row(s) with negative units (5.5 units returned) clipped to 0" in clipped.output
    assert [u for _, _, u in snapshot(sqlite_url)[0]] == [3.0, 0.0, 0.0, 2.0]

    kept = run("load-sales", "--database-url", sqlite_url, "--csv", path, "--negative", "keep")
    assert kept.exit_code == 0, kept.output
    assert "kept as net returns (--negative keep)" in kept.output
    assert [u for _, _, u in snapshot(sqlite_url)[0]] == [3.0, -4.0, -1.5, 2.0]


def test_weekly_file_loads_with_a_warning_naming_the_frequency(tmp_path, sqlite_url):
    days = [f"2026-{m:02d}-{d:02d}" for m, d in ((1, 2), (1, 9), (1, 16), (1, 23), (1, 30))]
    text = "product_id,date,units\n" + "".join(
        f"{p},{d},{10 + i}\n" for p in ("D1", "D2") for i, d in enumerate(days)
    )
    result = run("load-sales", "--database-url", sqlite_url, "--csv", str(write(tmp_path, text)))
    assert result.exit_code == 0, result.output
    assert "weekly sales" in result.output
    assert "warning: these sales are weekly: one row per product every 7 days" in result.output
    assert "the trainer will refuse them" in result.output
    assert len(snapshot(sqlite_url)[0]) == 10


def test_daily_file_has_no_warning(tmp_path, sqlite_url):
    result = run("load-sales", "--database-url", sqlite_url, "--csv", str(write(tmp_path, LONG)))
    assert result.exit_code == 0 and "daily sales" in result.output
    assert "warning:" not in result.output
