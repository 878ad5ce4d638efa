"""Hostile product ids through a whole training run (issue 28), on the trainer's small
settings (SQLite, file://, a local SMTP server):

- run 1 trains on ids with `$` (matplotlib's mathtext), a spreadsheet formula and a
  Markdown image: the registry row, the forecasts and every artifact are written, the
  report shows its four plots, and neither the email's HTML nor report.html links or
  loads anything outside the report; the CSV files carry the formula as text. Its
  decision is made to promote (as in the issue's log, `promote=true`), so that a trained
  model serves and SHAP explains it, whatever one epoch on this CPU scores;
- run 2 draws the report while one plot raises (monkeypatched) and the decision is to
  promote: the model is promoted and serves, its forecasts are written, and the report
  and the log name the plot that failed.
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
from tests.support.keras_eager import eager_keras
from tests.unit.trainer.helpers import make_sales
from trainer.config import TrainConfig
from trainer.run.main import JobOptions, run_job
from trainer.serve.artifacts import read_champion, verify_run

pytestmark = pytest.mark.slow

DOLLAR = "Big $$ Saver"  # the reproduction: mathtext could not parse it
FORMULA = '=HYPERLINK("https://evil.example/x","open")'
IMAGE = "![t](https://evil.example/p.png)"
IDS = (DOLLAR, FORMULA, IMAGE)
CFG = TrainConfig(
    horizon=7,
    lookback=14,
    val_days=14,
    test_days=14,
    epochs=1,
    batch_size=64,
    min_observations=30,
    augment_copies=1,
)


def _options(run_id: str) -> JobOptions:
    return JobOptions(
        mode="train",
        run_id=run_id,
        study_id=run_id,
        train_config=CFG,
        trials=1,
        search_units=(8,),
        shap_products=3,
    )


def _promoting(real_decide):
    """`trainer.judge.promotion.decide`, made to promote."""

    def promote(*args, **kwargs):
        decision = real_decide(*args, **kwargs)
        return replace(decision, promote=True, reason="promoted by the test", fallback=None)

    return promote


def _predictions(engine: sa.Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(sa.select(predictions), conn)


def _registry(engine: sa.Engine) -> dict[str, dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(model_registry)).mappings().all()
    return {r["model_version"]: dict(r) for r in rows}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    url = f"sqlite:///{tmp / 'fg.db'}"
    engine = make_engine(url)
    upgrade(engine)
    sales = make_sales(len(IDS), 200, seed=5)
    sales["product_id"] = sales["product_id"].map(
        dict(zip(["P00", "P01", "P02"], IDS, strict=True))
    )
    csv = tmp / "hostile.csv"
    sales.rename(columns={"units_sold": "units"}).assign(
        date=sales["date"].dt.strftime("%Y-%m-%d")
    ).to_csv(csv, index=False)
    load_sales(engine, read_sales_csv(csv))  # the ids pass the load: they are allowed
    uri = (tmp / "artifacts").as_uri()
    controller, inbox, smtp = start_trainer_smtp(tmp)
    settings = Settings.from_env({}, database_url=url, artifact_uri=uri)
    import trainer.judge.promotion

    # a test of hostile ids through every output, not of graph mode: Keras runs eagerly
    with pytest.MonkeyPatch.context() as patch, eager_keras():
        patch.setattr(trainer.judge.promotion, "decide", _promoting(trainer.judge.promotion.decide))
        code = run_job(settings, _options("run-1"), engine=engine, store=open_store(uri), smtp=smtp)
    yield {
        "engine": engine,
        "store": open_store(uri),
        "settings": settings,
        "smtp": smtp,
        "inbox": inbox,
        "code_1": code,
    }
    controller.stop()
    engine.dispose()


def test_ids_with_dollar_formula_and_markdown_train_and_write_everything(world):
    assert world["code_1"] == 0
    engine, store = world["engine"], world["store"]
    assert _registry(engine)["run-1"]["status"] == "champion"
    assert store.read_json("runs/run-1/metrics.json")["shap"].get("explained", True)
    forecasts = _predictions(engine)
    assert set(forecasts["product_id"]) == set(IDS)
    manifest = verify_run(store, "run-1")
    for plot in ("fairness.png", "bias.png", "shap_summary.png", "training.png"):
        assert plot in manifest["files"]
        assert store.read_bytes(f"runs/run-1/{plot}").startswith(b"\x89PNG")
    report = store.read_text("runs/run-1/report.md")
    assert "could not be drawn" not in report
    assert "![Per-product bias before and after correction](bias.png)" in report


def _links(html: str) -> list[str]:
    return re.findall(r"""(?:href|src)\s*=\s*["']?([^"'\s>]*)""", html, flags=re.I)


def test_report_html_and_email_link_or_load_nothing_outside_the_report(world):
    html = world["store"].read_text("runs/run-1/report.html")
    assert sorted(set(_links(html))) == [
        "bias.png",
        "fairness.png",
        "shap_summary.png",
        "training.png",
    ]
    assert "evil.example/p.png" in html  # shown as text, in the tables
    [got] = world["inbox"].messages
    msg = email.message_from_bytes(got["content"], policy=email.policy.default)
    body = msg.get_body(("html",)).get_content()
    assert all(link.startswith("cid:") for link in _links(body)), _links(body)
    assert "evil.example" in body


def _csv(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), keep_default_na=False)


def test_csv_outputs_carry_formulas_as_text(world):
    store = world["store"]
    for name in ("per_product.csv", "holdout.csv", "shap/per_product.csv"):
        ids = set(_csv(store.read_text(f"runs/run-1/{name}"))["product_id"])
        assert "'" + FORMULA in ids, name
        assert FORMULA not in ids and not any(i.startswith("=") for i in ids), name
        assert DOLLAR in ids, name
    [got] = world["inbox"].messages
    msg = email.message_from_bytes(got["content"], policy=email.policy.default)
    [attached] = [p for p in msg.iter_attachments() if p.get_filename() == "per_product.csv"]
    content = attached.get_content()
    text = content.decode() if isinstance(content, bytes) else content
    ids = set(_csv(text)["product_id"])
    assert "'" + FORMULA in ids


def test_a_plot_that_raises_costs_neither_the_promotion_nor_the_forecasts(
    world, monkeypatch, caplog
):
    import trainer.judge.promotion
    import trainer.report.render

    def broken(data):
        raise RuntimeError("the plot broke")

    monkeypatch.setattr(
        trainer.judge.promotion, "decide", _promoting(trainer.judge.promotion.decide)
    )
    monkeypatch.setitem(trainer.report.render._DRAWERS, "fairness.png", broken)
    engine, store = world["engine"], world["store"]
    with caplog.at_level(logging.ERROR), eager_keras():
        code = run_job(
            world["settings"], _options("run-2"), engine=engine, store=store, smtp=world["smtp"]
        )
    assert code == 0
    assert _registry(engine)["run-2"]["status"] == "champion"
    assert read_champion(store).model_version == "run-2"
    forecasts = _predictions(engine)
    assert set(forecasts["model_version"]) == {"run-2"}
    assert set(forecasts["product_id"]) == set(IDS)
    manifest = verify_run(store, "run-2")
    assert "fairness.png" not in manifest["files"] and "bias.png" in manifest["files"]
    report = store.read_text("runs/run-2/report.md")
    assert "The plot fairness.png could not be drawn: RuntimeError: the plot broke" in report
    assert "](fairness.png)" not in report
    failed = [r for r in caplog.records if r.getMessage() == "report plot failed"]
    assert failed and failed[0].plot == "fairness.png"
