"""Product data is hostile input (issue 28), one test per hostile input of
docs/security.md's table: `load-sales` refusals, ids printed in a terminal, the report's
Markdown and HTML, CSV cells, bad DATABASE_URL values, and the local trainer's
environment. The training run on hostile ids is `test_hostile_training.py`; the pages
server's cases are `test_pages_server.py`."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import date

import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from forecastguard.cli import main
from forecastguard.config import Settings
from forecastguard.db import schema
from forecastguard.db.engine import DatabaseUrlError, make_engine
from forecastguard.launcher import make_launcher
from forecastguard.safetext import csv_text, terminal_safe
from forecastguard.sales_io import read_sales_csv

ESC_ID = "\x1b[2J\x1b[HALL GOOD"
HEAD = "product_id,date,units\n"


def _run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def _sales(url: str) -> list[tuple]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(schema.sales)).all()
    finally:
        engine.dispose()


LOAD_CASES = [
    # (id, file text, text of the error, the row it names)
    ("esc", HEAD + f"A,2026-01-01,3\n{ESC_ID},2026-01-01,4\n", "U+001B (Cc)", "line 3"),
    ("zero-width", HEAD + "P0003,2026-01-01,3\nP\u200b0003,2026-01-01,4\n", "U+200B (Cf)", "line 3"),
    ("rtl-override", HEAD + "A,2026-01-01,3\n\u202eA,2026-01-01,4\n", "U+202E (Cf)", "line 3"),
    ("line-separator", HEAD + "A,2026-01-01,3\nA\u2028B,2026-01-01,4\n", "U+2028 (Zl)", "line 3"),
    ("para-separator", HEAD + "A,2026-01-01,3\nA\u2029B,2026-01-01,4\n", "U+2029 (Zp)", "line 3"),
    ("wide-header", "DATE,QTY_A,QTY_B\u200b\n2026-01-01,3,4\n", "U+200B (Cf)", "line 2"),
    ("huge-units", HEAD + "A,2026-01-01,3\nA,2026-01-02,1e300\n", "more than 1e+06 units", "line 3"),
    ("inf-units", HEAD + "A,2026-01-01,3\nA,2026-01-02,inf\n", "not a number", "line 3"),
    ("two-units", "product_id,date,units,units\nA,2026-01-01,3,4\n", "duplicate column(s) 'units'", ""),
    ("case-dup", "product_id,date,Units,units \nA,2026-01-01,3,4\n", "duplicate column(s)", ""),
    ("ambiguous-id", "product_id,product,date,units\nA,B,2026-01-01,3\n", "ambiguous product_id", ""),
    ("ambiguous-units", "product_id,date,units,qty\nA,2026-01-01,3,4\n", "ambiguous units", ""),
    ("two-dates-wide", "DATE,DATE,QTY_A\n2026-01-01,2026-01-02,3\n", "duplicate column(s) 'date'", ""),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "problem", "row"), [c[1:] for c in LOAD_CASES], ids=[c[0] for c in LOAD_CASES]
)
def test_load_sales_refuses_hostile_rows_and_columns(tmp_path, sqlite_url, text, problem, row):
    path = tmp_path / "sales.csv"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(
        main, ["load-sales", "--database-url", sqlite_url, "--csv", str(path)]
    )
    assert result.exit_code == 2, result.output
    assert problem in result.output and row in result.output
    assert "\x1b" not in result.output and "\u200b" not in result.output
    assert _sales(sqlite_url) == []  # nothing written


def test_load_sales_skip_mode_prints_ids_escaped(tmp_path, sqlite_url):
    path = tmp_path / "sales.csv"
    path.write_text(HEAD + f"A,2026-01-01,3\n{ESC_ID},2026-01-01,4\n", encoding="utf-8")
    result = _run(
        "load-sales", "--database-url", sqlite_url, "--csv", str(path), "--on-error", "skip"
    )
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output
    assert "product \\x1b[2J\\x1b[HALL GOOD" in result.output
    assert [r.product_id for r in _sales(sqlite_url)] == ["A"]


def test_max_units_is_configurable_by_flag_and_variable(tmp_path, sqlite_url):
    path = tmp_path / "sales.csv"
    path.write_text(HEAD + "A,2026-01-01,30\nA,2026-01-02,40\n", encoding="utf-8")
    refused = _run(
        "load-sales", "--database-url", sqlite_url, "--csv", str(path), "--max-units", "35"
    )
    assert (
        refused.exit_code == 2
        and "line 3" in refused.output
        and "more than 35 units" in refused.output
    )
    by_env = _run(
        "load-sales",
        "--database-url",
        sqlite_url,
        "--csv",
        str(path),
        env={"SALES_MAX_UNITS": "35"},
    )
    assert by_env.exit_code == 2 and "SALES_MAX_UNITS" in by_env.output
    bad = _run("load-sales", "--database-url", sqlite_url, "--csv", str(path), "--max-units", "-1")
    assert bad.exit_code == 2 and "SALES_MAX_UNITS must be > 0" in bad.output
    assert _sales(sqlite_url) == []
    assert _run("load-sales", "--database-url", sqlite_url, "--csv", str(path)).exit_code == 0


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, sqlite_url):
    path = tmp_path / "sales.csv"
    rows = "".join(f"A,{date.fromordinal(738000 + i).isoformat()},1\n" for i in range(2000))
    path.write_text(HEAD + rows, encoding="utf-8")
    size = path.stat().st_size
    result = _run(
        "load-sales", "--database-url", sqlite_url, "--csv", str(path), "--max-bytes", str(size - 1)
    )
    assert result.exit_code == 2
    assert f"is {size:,} bytes, more than the limit of {size - 1:,}" in result.output
    assert _sales(sqlite_url) == []
    assert read_sales_csv(path, max_bytes=size).sales.shape[0] == 2000


def test_forecastguard_health_prints_stored_ids_escaped(sqlite_url):
    # Ids stored before the load refused them (or written by another tool).
    from tests.integration.health.synthetic import frames, synthetic_window, write

    sales, preds = frames(synthetic_window(4, date(2026, 5, 30), seed=5))
    names = dict(zip(sorted(sales["product_id"].unique()), [ESC_ID, "P\u200b0003"], strict=False))
    for frame in (sales, preds):
        frame["product_id"] = frame["product_id"].map(lambda p: names.get(p, p))
    engine = make_engine(sqlite_url)
    write(engine, sales, preds)
    engine.dispose()
    result = _run("health", "--database-url", sqlite_url, "--as-of", "2026-05-30")
    assert result.exit_code in (0, 1), result.output
    assert "\x1b" not in result.output and "\u200b" not in result.output
    assert "\\x1b[2J" in result.output and "P\\u200b0003" in result.output


def test_terminal_safe_shows_every_invisible_character():
    assert terminal_safe(ESC_ID) == "\\x1b[2J\\x1b[HALL GOOD"
    assert terminal_safe("P\u200b0003") == "P\\u200b0003" != "P0003"
    assert terminal_safe("café $ € 東京") == "café $ € 東京"


@pytest.mark.parametrize(
    "cell", ['=HYPERLINK("https://evil.example")', "@SUM(A1)", "+1+1", "-1+1", "\tx", "\rx"]
)
def test_csv_text_cells_that_start_a_formula_are_prefixed(cell):
    frame = pd.DataFrame({"product_id": [cell, "P1"], "bias": [-3.2, 1.0]})
    back = pd.read_csv(io.StringIO(csv_text(frame)), keep_default_na=False)
    assert list(back["product_id"]) == ["'" + cell, "P1"]
    assert list(back["bias"]) == [-3.2, 1.0]  # numbers stay numbers


MARKDOWN_IDS = [
    "![t](https://evil.example/p.png)",
    "[Re-login](https://evil.example/phish)",
    "<https://evil.example/auto>",
    "`x` [y](https://evil.example/z)",
    "a]](https://evil.example/q) ![",
    "&#91;x&#93;(https://evil.example/e)",
]


@pytest.mark.parametrize("pid", MARKDOWN_IDS)
def test_markdown_ids_render_as_text_in_report_and_email_html(pid):
    from trainer.report.render import markdown_to_html, md_code, md_table, md_text

    frame = pd.DataFrame({"product_id": [pid], "rmsse": [1.0]})
    markdown = (
        f"Retrain request {md_code('r1')}: drift in {md_text(pid)}\n\n{md_table(frame)}\n\n"
        f"{md_code(pid)}\n\n![plot](fairness.png)\n"
    )
    html = markdown_to_html(markdown, "t")
    assert "<a " not in html
    assert html.count("<img ") == 1 and 'src="fairness.png"' in html
    assert "evil.example" in html  # shown, as text


def test_a_bad_database_url_is_named_without_its_password():
    for url in (
        "not a url",
        "mysql+pymysql://u:s3cret@h:notaport/db",
        "nosuch://x",
        "sqlite:///x.db?timeout=abc",
    ):
        with pytest.raises(DatabaseUrlError, match="DATABASE_URL") as info:
            make_engine(url)
        assert "s3cret" not in str(info.value)
    engine = make_engine("mysql+pymysql://u:s3cret@127.0.0.1:1/db?ssl=yes")  # the driver refuses
    with pytest.raises(DatabaseUrlError, match=r"DATABASE_URL .*AttributeError") as info:
        engine.connect()
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "mysql+pymysql://u:s3cret@h:notaport/db",
        "postgresql://u@h/db",
        "mysql+pymysql://u:s3cret@127.0.0.1/db?ssl=yes",
    ],
)
def test_the_cli_answers_a_bad_database_url_without_a_traceback(url):
    done = subprocess.run(
        [sys.executable, "-m", "forecastguard.cli", "db", "upgrade"],
        env={"DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "DATABASE_URL" in done.stderr and "Traceback" not in done.stderr
    assert "s3cret" not in done.stderr


def test_the_local_trainer_gets_an_allow_listed_environment(tmp_path):
    settings = Settings.from_env({"TRAINER_JOB": "local", "TRAINER_LOG_DIR": str(tmp_path)})
    environ = {
        "PATH": "/bin",
        "HEALTH_API_TOKEN": "t",
        "HEALTH_AUDIENCE": "https://x",
        "SMTP_PASSWORD": "p",
        "DB_PASS": "d",
        "OPTUNA_STORAGE": "sqlite:///o.db",
        "TF_ENABLE_ONEDNN_OPTS": "0",
        "AWS_SECRET_ACCESS_KEY": "no",
        "SOME_OTHER_TOKEN": "no",
    }
    env = make_launcher(settings, environ).base_env
    assert env == {
        "PATH": "/bin",
        "SMTP_PASSWORD": "p",  # the trainer sends the report email
        "DB_PASS": "d",  # and connects to Cloud SQL
        "OPTUNA_STORAGE": "sqlite:///o.db",
        "TF_ENABLE_ONEDNN_OPTS": "0",
    }


def _report_data(pid: str):
    from dataclasses import replace

    from tests.unit.trainer2.test_report_render import _data

    data = _data(champion=True)
    per = data.per_product.assign(product_id=[pid, "P2"][: len(data.per_product)])
    bias = data.per_product_bias.assign(product_id=[pid, "P2"][: len(data.per_product_bias)])
    return replace(data, per_product=per, per_product_bias=bias)


@pytest.mark.parametrize("pid", ["Big $$ Saver", "$x^{$", r"$\frac{1}{$", "a_b^c$"])
def test_plots_draw_ids_with_dollars_as_text(pid):
    from trainer.report.render import draw_plots

    plots, errors = draw_plots(_report_data(pid))
    assert errors == {}
    assert sorted(plots) == ["bias.png", "fairness.png", "shap_summary.png", "training.png"]


def test_a_report_that_cannot_render_is_replaced_by_a_short_one(caplog):
    from trainer.run.steps import failed_report

    data = _report_data("![t](https://evil.example/p.png)")
    data.decision = {"promote": True, "reason": "[x](https://evil.example/r)"}
    with caplog.at_level("ERROR"):
        markdown, html = failed_report(data, RuntimeError("boom"))
    assert "promoted" in markdown and "could not be rendered (RuntimeError: boom)" in markdown
    assert "\\[x\\](https://evil.example/r)" in markdown
    assert "<a " not in html and "<pre>" in html
    assert any(r.getMessage().startswith("stage report failed") for r in caplog.records)


def test_the_demo_story_escapes_what_it_shows_and_keeps_the_note():
    from forecastguard.demo import Step, Story

    shown: list[str] = []
    story, step = Story(echo=shown.append), Step("check")
    story.say(step, f"drift in 1 products: {ESC_ID}")
    assert shown == ["    drift in 1 products: \\x1b[2J\\x1b[HALL GOOD"]
    assert step.notes == [f"drift in 1 products: {ESC_ID}"]  # the summary's JSON escapes it
