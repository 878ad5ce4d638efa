"""The pages without a browser: what the check stores, the server's answers (auth, bad
input as 4xx), `forecastguard health --html`, and the report's bounds."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from forecastguard.auth import Authenticator
from forecastguard.cli import main
from forecastguard.config import Settings
from forecastguard.db.engine import make_engine
from forecastguard.db.schema import health_checks
from forecastguard.health.check import HealthParams, compute_health
from forecastguard.health.service import HealthService, retrain_message
from forecastguard.report import svg
from forecastguard.report.app import create_app, is_loopback
from forecastguard.report.check_page import (
    MAX_DRIFTED_PLOTS,
    MAX_WORST_PLOTS,
    attach_report,
    browser_url,
    pick_products,
    render_check_report,
    report_key,
)
from forecastguard.report.history import where_to_see
from forecastguard.storage import open_store
from tests.integration.health.synthetic import frames, synthetic_window, write
from tests.integration.pages.conftest import AS_OF, fill

TOKEN = "pages-token-for-tests"


@pytest.fixture
def filled(tmp_path: Path, sqlite_url: str):
    engine = make_engine(sqlite_url)
    first, second = fill(engine, tmp_path / "artifacts")
    yield engine, tmp_path / "artifacts", first, second
    engine.dispose()


def test_the_check_stores_its_reports_address_and_the_retrain_reason_carries_it(filled) -> None:
    engine, artifacts, _, second = filled
    expected = artifacts / report_key(second.check_id)
    assert expected.is_file()
    with engine.connect() as conn:
        stored = json.loads(
            conn.execute(
                sa.select(health_checks.c.result_json).where(health_checks.c.id == second.check_id)
            ).scalar_one()
        )
    assert stored["report_uri"] == expected.as_uri()
    message = retrain_message(stored)
    assert message.reason.endswith(f"; report: {expected.as_uri()}")
    assert message.reason.startswith(second.reasons[0])


def test_the_pages_answer_and_refuse_bad_input(filled) -> None:
    engine, artifacts, first, second = filled
    client = create_app(engine, store=open_store(artifacts.as_uri())).test_client()
    page = client.get("/")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    report = client.get(f"/checks/{first.check_id}")
    assert report.status_code == 200 and b'id="verdict"' in report.data
    assert client.get(f"/products/{second.drifted_products()[0]}").status_code == 200
    assert client.get("/checks/no-such-check").status_code == 404
    assert client.get("/checks/..%2F..%2Fetc").status_code == 404
    assert client.get("/products/NOPE").status_code == 404
    assert client.get("/products/" + "x" * 65).status_code == 404
    assert client.get("/?n=abc").status_code == 400
    assert client.get("/?n=0").status_code == 400
    assert client.post("/").status_code == 405
    # A check whose report was never written: a 404 that says why.
    (artifacts / report_key(first.check_id)).unlink()
    gone = client.get(f"/checks/{first.check_id}")
    assert gone.status_code == 404 and b"no stored report" in gone.data


def test_off_loopback_the_pages_need_the_health_token(filled) -> None:
    engine, *_ = filled
    auth = Authenticator(TOKEN)
    client = create_app(engine, authenticator=auth).test_client()
    assert client.get("/").status_code == 401
    assert client.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")


def test_a_missing_schema_is_a_503(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    assert create_app(engine).test_client().get("/").status_code == 503


def test_health_html_writes_a_report(sqlite_url: str, tmp_path: Path, monkeypatch) -> None:
    engine = make_engine(sqlite_url)
    write(engine, *frames(synthetic_window(30, AS_OF, seed=3, drift_share=0.2)))
    monkeypatch.delenv("ARTIFACT_URI", raising=False)
    out = tmp_path / "check.html"
    run = CliRunner().invoke(
        main,
        ["health", "--database-url", sqlite_url, "--as-of", "2026-05-30", "--html", str(out)],
    )
    assert run.exit_code == 1, run.output  # unhealthy
    html = out.read_text()
    assert 'id="verdict">UNHEALTHY<' in html
    assert len(re.findall(r'<figure class="plot product-plot">', html)) >= 1
    bad = CliRunner().invoke(
        main,
        ["health", "--database-url", sqlite_url, "--html", str(tmp_path / "no" / "dir.html")],
    )
    assert bad.exit_code == 2 and "not written" in bad.output


def test_a_failed_report_write_never_loses_the_check(sqlite_url: str, tmp_path: Path) -> None:
    engine = make_engine(sqlite_url)
    write(engine, *frames(synthetic_window(10, AS_OF, seed=2)))
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")  # the artifact folder cannot be created below a file
    service = HealthService(Settings.from_env({}, artifact_uri=blocker.as_uri()), engine=engine)
    result = service.run(AS_OF, 30)
    assert result.outputs["report_uri"] is None and result.outputs["report_error"]
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(health_checks)).scalar() == 1


def test_a_big_checks_report_draws_a_bounded_number_of_products() -> None:
    data = synthetic_window(2_000, date(2026, 5, 30), seed=8, drift_share=0.05)
    result = compute_health(data, HealthParams())
    result.check_id = "big"
    picked = pick_products(result.products)
    assert len(picked) == MAX_DRIFTED_PLOTS + MAX_WORST_PLOTS
    assert [why for _, why in picked][:MAX_DRIFTED_PLOTS] == ["drifted"] * MAX_DRIFTED_PLOTS
    html = render_check_report(result, data)
    assert html.count('<section class="panel"') == len(picked)
    assert len(html.encode()) < 1_000_000


def test_the_report_shows_the_drift_kind_columns_when_present() -> None:
    data = synthetic_window(40, date(2026, 5, 30), seed=8, drift_share=0.2)
    result = compute_health(data, HealthParams())
    result.check_id = "kinds"
    result.products = result.products.assign(
        drift_kind=["level" if d else None for d in result.products["drift"]],
        bias_shift_sd=2.5,
        spread_ratio=1.1,
    )
    html = render_check_report(result, data)
    assert "kind <strong>level</strong>" in html
    assert "<th>kind</th>" in html and "<th>spread ratio</th>" in html


def test_attach_report_records_where_it_wrote(tmp_path: Path) -> None:
    data = synthetic_window(20, date(2026, 5, 30), seed=1)
    result = compute_health(data, HealthParams())
    result.check_id = "c-1"
    uri = attach_report((tmp_path / "a").as_uri(), result, data)
    assert uri == (tmp_path / "a" / "health" / "c-1" / "report.html").as_uri()
    latest = tmp_path / "a" / "health" / "latest" / "report.html"
    assert latest.read_bytes() == (tmp_path / "a" / "health" / "c-1" / "report.html").read_bytes()
    assert result.summary()["report_uri"] == uri and result.summary()["report_url"] == uri
    with pytest.raises(ValueError):
        report_key("../x")


def test_addresses_for_people() -> None:
    assert browser_url("gs://b/p/health/x/report.html") == (
        "https://storage.cloud.google.com/b/p/health/x/report.html"
    )
    assert browser_url("file:///tmp/r.html") == "file:///tmp/r.html"
    assert browser_url(None) is None


def test_the_demo_ending_lists_the_pages(filled, tmp_path: Path) -> None:
    engine, _, first, second = filled
    url = engine.url.render_as_string(hide_password=False)
    summary = {"first_check": first.summary(), "second_check": second.summary()}
    lines = dict(where_to_see(url, tmp_path, summary))
    assert Path(lines["history"].removeprefix("file://")).is_file()
    assert lines["first report"] == first.outputs["report_uri"]
    assert "http://127.0.0.1:8083/" in lines["served pages"]


def test_svg_charts_keep_their_data_inside_the_axes() -> None:
    assert svg.nice_ticks(0, 48)[-1] >= 48
    assert svg.nice_ticks(3.2, 3.2)[-1] > 3.2
    empty = svg.histogram(title="t", groups=[("a", [], svg.WINDOW)], x_label="x")
    assert "no values" in empty
    chart = svg.line_chart(
        title="a <b>",
        x=[0, 1, 2],
        series=[svg.Series("s", [1.0, float("nan"), 3.0], svg.ACTUAL)],
        x_label="x",
        y_label="y",
        x_ticks=[(0, "0")],
    )
    assert "a &lt;b&gt;" in chart and chart.count("<polyline") == 2  # the gap splits it


def test_the_health_function_imports_the_report_only_when_it_writes_one() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[3]
    code = (
        "import sys; "
        f"sys.path[:0] = [{str(root / 'functions' / 'health')!r}, {str(root / 'shared')!r}]; "
        "import main; "
        "print(sorted(m for m in sys.modules if m.startswith(('forecastguard.report', "
        "'matplotlib'))))"
    )
    env = {"PATH": "/usr/bin:/bin", "HEALTH_API_TOKEN": TOKEN}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_reports_order_is_the_terminal_tables_order() -> None:
    import numpy as np

    from forecastguard.health.render import worst_first
    from forecastguard.report.check_page import worst_order

    data = synthetic_window(500, date(2026, 5, 30), seed=4, drift_share=0.05)
    products = compute_health(data, HealthParams()).products.copy()
    products.loc[products.index[:20], "rmsse"] = np.nan  # no seasonal-naive scale
    ours = products.iloc[worst_order(products)]["product_id"].tolist()
    assert ours == worst_first(products)["product_id"].tolist()


def test_a_check_serves_only_its_own_report(filled, tmp_path: Path) -> None:
    engine, _, first, _ = filled
    secret = tmp_path / "secret.txt"
    secret.write_text("not a report")
    with engine.begin() as conn:
        text = conn.execute(
            sa.select(health_checks.c.result_json).where(health_checks.c.id == first.check_id)
        ).scalar_one()
        summary = {**json.loads(text), "report_uri": secret.as_uri()}
        conn.execute(
            health_checks.update()
            .where(health_checks.c.id == first.check_id)
            .values(result_json=json.dumps(summary))
        )
    client = create_app(engine).test_client()
    answer = client.get(f"/checks/{first.check_id}")
    assert answer.status_code == 404 and b"not a report" not in answer.data
