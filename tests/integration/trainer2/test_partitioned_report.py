"""A partitioned run reports as a whole run does (issue 26), end to end through `run_job`
on SQLite, file:// and a local SMTP server (aiosmtpd).

Four products with hostile ids (a `$` mathtext, a spreadsheet formula, a Markdown image)
in two groups whose attribute, captured from the id by `TRAIN_PARTITION_KEY`, is hostile
too: two partitions, one task. Every partition's decision is made to promote (as in the
single run's hostile test), so a trained model serves each partition and SHAP explains
it whatever one epoch scores on this CPU; the per-partition plot is made to raise. The
gather still promotes and forecasts; its report (HTML with the per-partition table and
the merged SHAP, Markdown, CSV) is written beside the run and emailed, and names the
plot that could not be drawn. The run's Keras steps run eagerly
(`tests.support.keras_eager`).
"""

from __future__ import annotations

import email
import email.policy
import io
import logging
import re
from dataclasses import replace

import pandas as pd
import pytest
import sqlalchemy as sa

from forecastguard.config import Settings
from forecastguard.db.engine import make_engine
from forecastguard.db.migrate import upgrade
from forecastguard.db.schema import model_registry, predictions
from forecastguard.sales_io import load_sales, read_sales_csv
from forecastguard.storage import open_store
from tests.integration.trainer2.smtp_server import start_trainer_smtp
from tests.integration.trainer2.test_baseline_fallback import CFG
from tests.support.keras_eager import eager_keras
from tests.unit.trainer.helpers import make_sales
from trainer.run.main import JobOptions, run_job
from trainer.serve.artifacts import read_champion
from trainer.serve.forecast import PARTITIONED

pytestmark = pytest.mark.slow

FORMULA = '=HYPERLINK("http://e.x/x","o")'
IMAGE = "![t](http://e.x/p.png)"
G1 = "[g](http://e.x/g)"  # groups: what TRAIN_PARTITION_KEY captures
G2 = "$x^{$|<b>"
IDS = (f"{FORMULA}~{G1}", f"Big $$ Saver~{G1}", f"{IMAGE}~{G2}", f"P3~{G2}")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _promoting(real_decide):
    def promote(*args, **kwargs):
        decision = real_decide(*args, **kwargs)
        return replace(decision, promote=True, reason="promoted by the test", fallback=None)

    return promote


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import trainer.judge.promotion
    from trainer.report import partitioned as report_partitioned

    tmp = tmp_path_factory.mktemp("partitioned-report")
    url = f"sqlite:///{tmp / 'fg.db'}"
    engine = make_engine(url)
    upgrade(engine)
    sales = make_sales(len(IDS), 200, seed=11)
    sales["product_id"] = sales["product_id"].map(
        dict(zip([f"P{i:02d}" for i in range(len(IDS))], IDS, strict=True))
    )
    csv = tmp / "hostile.csv"
    sales.rename(columns={"units_sold": "units"}).assign(
        date=sales["date"].dt.strftime("%Y-%m-%d")
    ).to_csv(csv, index=False)
    load_sales(engine, read_sales_csv(csv))
    uri = (tmp / "artifacts").as_uri()
    controller, inbox, smtp = start_trainer_smtp(tmp)
    settings = Settings.from_env({}, database_url=url, artifact_uri=uri)
    opts = JobOptions(
        mode="train",
        run_id="run-1",
        study_id="run-1",
        train_config=CFG,
        trials=1,
        search_units=(8,),
        shap_products=2,
        partition_size=2,
        partition_key="~(.+)$",
    )

    def broken(data):
        raise RuntimeError("the plot broke")

    handler = _Records()
    render_log = logging.getLogger("trainer.report.render")
    render_log.addHandler(handler)
    try:
        with pytest.MonkeyPatch.context() as patch, eager_keras():
            patch.setattr(
                trainer.judge.promotion, "decide", _promoting(trainer.judge.promotion.decide)
            )
            patch.setitem(report_partitioned.DRAWERS, "partitions_rmsse.png", broken)
            code = run_job(settings, opts, engine=engine, store=open_store(uri), smtp=smtp)
    finally:
        render_log.removeHandler(handler)
    yield {
        "engine": engine,
        "store": open_store(uri),
        "inbox": inbox,
        "code": code,
        "errors": handler.records,
    }
    controller.stop()
    engine.dispose()


def _links(html: str) -> list[str]:
    return re.findall(r"""(?:href|src)\s*=\s*["']?([^"'\s>]*)""", html, flags=re.I)


def _csv(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), keep_default_na=False)


def test_a_plot_that_fails_costs_neither_the_promotion_nor_the_forecasts(world):
    assert world["code"] == 0
    engine, store = world["engine"], world["store"]
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(model_registry).where(model_registry.c.model_version == "run-1")
        ).one()
        preds = pd.read_sql(sa.select(predictions), conn)
    assert (row.status, row.kind) == ("champion", PARTITIONED)
    assert read_champion(store).model_version == "run-1"
    assert set(preds["product_id"]) == set(IDS) and set(preds["model_version"]) == {"run-1"}
    report = store.read_text("runs/run-1/report.md")
    assert "The plot partitions_rmsse.png could not be drawn: RuntimeError: the plot broke" in (
        report
    )
    assert [r.plot for r in world["errors"] if r.getMessage() == "report plot failed"] == [
        "partitions_rmsse.png"
    ]
    assert not store.exists("runs/run-1/partitions_rmsse.png")


def test_the_html_report_has_the_partition_table_and_the_merged_shap(world):
    store = world["store"]
    html = store.read_text("runs/run-1/report.html")
    assert "<table>" in html and "Which partitions changed" in html
    assert "<strong>2 changed</strong>: 2 promoted their challenger" in html
    for name in ("p0000", "p0001"):
        assert f"<td>{name}</td>" in html
        marker = store.read_json(f"partitioned/run-1/done/{name}.json")
        assert marker["shap"]["settings"]["explained"] is True  # a trained model serves
        assert marker["shap"]["products"] <= 2  # the bounded sample
        assert not _csv(store.read_text(f"runs/run-1-{name}/shap/summary.csv")).empty
    metrics = store.read_json("runs/run-1/metrics.json")
    assert metrics["shap"]["explained_partitions"] == 2
    assert "report_error" not in metrics
    summary = _csv(store.read_text("runs/run-1/shap/summary.csv"))
    assert len(summary) > 0 and "What drives the forecasts (SHAP)" in html
    assert "Where the LSTM serves" in html
    partitions = _csv(store.read_text("runs/run-1/partitions.csv"))
    assert sorted(partitions["group"]) == sorted([G1, G2])
    assert set(partitions["outcome"]) == {"promoted"}


def test_hostile_ids_and_groups_are_text_in_the_report_csv_and_email(world):
    store = world["store"]
    html = store.read_text("runs/run-1/report.html")
    # the only image is the report's own plot; the ids' links and images are text
    assert sorted(set(_links(html))) == ["shap_summary.png"]
    assert "<a " not in html and "http://e.x/g" in html
    report = store.read_text("runs/run-1/report.md")
    assert "\\[g\\](http://e.x/g)" in report  # the group, escaped in its table cell
    per_product = _csv(store.read_text("runs/run-1/per_product.csv"))
    assert "'" + IDS[0] in set(per_product["product_id"])
    assert not any(i.startswith("=") for i in per_product["product_id"])
    [got] = world["inbox"].messages
    msg = email.message_from_bytes(got["content"], policy=email.policy.default)
    assert msg["Subject"] == "forecastguard: model run-1 promoted"
    body = msg.get_body(("html",)).get_content()
    assert all(link.startswith("cid:") for link in _links(body)), _links(body)
    assert "Which partitions changed" in body and "<td>p0000</td>" in body
    names = sorted(p.get_filename() for p in msg.iter_attachments())
    assert names == ["partitions.csv", "per_product.csv", "shap_summary.png"]
    [attached] = [p for p in msg.iter_attachments() if p.get_filename() == "per_product.csv"]
    content = attached.get_content()
    text = content.decode() if isinstance(content, bytes) else content
    assert "'" + IDS[0] in set(_csv(text)["product_id"])
    assert store.read_json("notifications/run-1/email.json")["sent"] is True
