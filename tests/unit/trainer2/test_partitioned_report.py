"""The partitioned run's report (issue 26) from done-markers: which partitions changed,
where the LSTM serves, SHAP merged over partitions, hostile ids and groups as text, and
a report that cannot be drawn or rendered never stops the gather."""

from __future__ import annotations

import json
import logging
import re

import pandas as pd
import pytest

from tests.support.trainer_config import small_config
from trainer.judge.promotion import Decision
from trainer.report import partitioned as rp
from trainer.report.render import markdown_to_html
from trainer.run.partitioned import Plan, gathered_report, served_means
from trainer.run.partitions import make_partitioning

IMAGE = "![t](https://evil.example/p.png)"
FORMULA = '=HYPERLINK("https://evil.example/x","o")'
DOLLAR = "Big $x^{$ Saver"
GROUP = "[g](https://evil.example/g)|$y$"


def _summary(rows: dict[tuple[str, str], float]) -> list[dict]:
    return [
        {
            "feature": f,
            "input": "history",
            "model": m,
            "mean_abs_shap": v,
            "mean_shap": -v,
            "sum_abs_shap_over_steps": 7 * v,
        }
        for (f, m), v in rows.items()
    ]


def _marker(
    name: str,
    challenger: dict,
    champion: dict,
    baseline: dict,
    *,
    promote: bool = False,
    fallback: str | None = None,
    kind: str = "lstm",
    shap: dict | None = None,
) -> dict:
    changed = promote or fallback is not None
    served_kind = kind if promote else (fallback or "lightgbm")
    served = challenger if promote else (baseline if fallback else champion)
    return {
        "partition": name,
        "products": sorted(challenger),
        "changed": changed,
        "decision": {
            "promote": promote,
            "reason": f"reason of {name} [r](https://evil.example/r)",
            "against": "champion",
            "fallback": fallback,
        },
        "serving": {"kind": served_kind, "model_version": f"v-{name}"},
        "challenger_kind": kind,
        "candidates": {"lstm": {}, "lightgbm": {}, "blend": {}},
        "intervals": {"served": {"coverage": 0.8} if changed else None},
        "shap": shap,
        "per_product": {
            "challenger": challenger,
            "champion": champion,
            "baseline": baseline,
            "served": served,
        },
    }


def _shap(rows: dict[tuple[str, str], float], kind: str = "lstm", worst: list | None = None):
    return {
        "settings": {"kind": kind, "explained": True, "output": "H-day total"},
        "products": 2,
        "windows": 4,
        "summary": _summary(rows),
        "worst": worst or [],
    }


def _markers() -> list[dict]:
    worst = [
        {
            "product_id": IMAGE,
            "feature": "units",
            "input": "history",
            "model": "lstm",
            "mean_abs_shap": 3.0,
        }
    ]
    return [
        # promoted: three products, its LSTM serves
        _marker(
            "p0000",
            {IMAGE: 0.5, FORMULA: 0.7, "c": 0.6},
            {IMAGE: 1.0, FORMULA: 1.0, "c": 1.0},
            {IMAGE: 2.0, FORMULA: 2.0, "c": 2.0},
            promote=True,
            shap=_shap({("units", "lstm"): 2.0, ("known_dow", "lstm"): 1.0}, worst=worst),
        ),
        # kept: its champion (LightGBM) serves; its challenger is explained
        _marker(
            "p0001",
            {DOLLAR: 1.5},
            {DOLLAR: 1.0},
            {DOLLAR: 2.0},
            kind="lightgbm",
            shap=_shap({("units", "lightgbm"): 4.0}, kind="lightgbm")
            | {"settings": {"kind": "lightgbm", "explained": True, "note": "kept"}},
        ),
        # no champion, the challenger lost: a baseline serves, nothing to explain
        _marker(
            "p0002",
            {"d": 1.2},
            {},
            {"d": 1.0},
            fallback="baseline:seasonal_naive",
            shap={
                "settings": {
                    "kind": "baseline:seasonal_naive",
                    "explained": False,
                    "reason": "a fixed rule",
                },
                "products": 0,
                "windows": 0,
                "summary": [],
                "worst": [],
            },
        ),
    ]


def test_shap_is_merged_weighted_by_products_and_a_missing_feature_counts_zero() -> None:
    summary, per_product, settings = rp.merge_shap(_markers())
    assert settings["explained_partitions"] == 2 and settings["explained_products"] == 4
    assert settings["not_explained"] == {"p0002": "a fixed rule"}
    assert settings["kind"] == "mixed" and settings["kinds"] == ["lightgbm", "lstm"]
    assert settings["challenger_explained"] == ["p0001"]
    got = summary.set_index(["feature", "model"])["mean_abs_shap"]
    # p0000 weighs 3/4, p0001 1/4; each model's features count 0 where it does not serve
    assert got[("units", "lstm")] == pytest.approx(0.75 * 2.0)
    assert got[("known_dow", "lstm")] == pytest.approx(0.75 * 1.0)
    assert got[("units", "lightgbm")] == pytest.approx(0.25 * 4.0)
    assert summary["sum_abs_shap_over_steps"].is_monotonic_decreasing
    assert per_product["product_id"].tolist() == [IMAGE]
    assert per_product["partition"].tolist() == ["p0000"]


def test_nothing_to_explain_says_why() -> None:
    markers = [m for m in _markers() if m["partition"] == "p0002"]
    summary, per_product, settings = rp.merge_shap(markers)
    assert summary.empty and per_product.empty and settings["explained"] is False
    assert "baselines serve" in settings["reason"]


def _data(markers: list[dict], key: str | None = None, groups: dict | None = None):
    summary, per_product, settings = rp.merge_shap(markers)
    return rp.PartitionedReportData(
        run_id="run-9",
        model_version="run-9",
        created_at="2026-12-06T00:00:00+00:00",
        request={"request_id": "req-1", "reason": f"drift in {IMAGE}"},
        decision={"promote": True, "reason": "partitions p0000, p0002 of 3 changed"},
        serving={"kind": "partitioned", "model_version": "run-9", "description": "per part"},
        partitioning={"size": 3, "key_pattern": key, "note": None},
        partitions=rp.partition_table(markers, groups or {}),
        means=served_means(markers),
        disparity=1.3,
        shap_summary=summary,
        shap_per_product=per_product,
        shap_settings=settings,
    )


def _links(html: str) -> list[str]:
    return re.findall(r"""(?:href|src)\s*=\s*["']?([^"'\s>]*)""", html, flags=re.I)


def test_the_report_says_which_partitions_changed_and_where_the_lstm_serves() -> None:
    markers = _markers()
    groups = {"p0000": GROUP, "p0001": GROUP, "p0002": "b"}
    report = rp.build_partitioned_report(
        _data(markers, key="~(.+)$", groups=groups), rp.product_table(markers)
    )
    md = report.markdown
    assert report.data.plot_errors == {}
    assert sorted(report.plots) == ["partitions_rmsse.png", "shap_summary.png"]
    assert "**2 changed**: 1 promoted their challenger, 1 fell back" in md
    assert "1 kept their champion" in md
    assert "**Where the LSTM serves**: 1 of 3 partitions (3 products)" in md
    # changed partitions first; each with its products, served kind, LSTM, scores, decision
    rows = [line for line in md.splitlines() if line.startswith("| p000") and "reason of" in line]
    assert [r.split(" | ")[0] for r in rows] == ["| p0002", "| p0000", "| p0001"]
    rows = {r.split(" | ")[0][2:]: r for r in rows}
    assert rows["p0000"].startswith(
        "| p0000 | \\[g\\](https://evil.example/g)\\|$y$ | 3 | lstm | serves"
    )
    assert "| 0.6 | 1 | 2 | 0.6 | 0.8 | promoted |" in rows["p0000"]
    assert "| kept |" in rows["p0001"] and "not serving" in rows["p0001"]
    assert "| baseline:seasonal_naive | not serving |" in rows["p0002"]
    assert "Mean RMSSE served over all 5 products" in md and "in-sample" in md
    assert "covered **80.0%**" in md
    assert "## What drives the forecasts (SHAP)" in md and "| units | history | lstm |" in md
    assert "Not explained: 1 partition (p0002: a fixed rule)" in md
    # hostile text stays text: no link but the report's own plots
    html = markdown_to_html(md, "t")
    assert sorted(set(_links(html))) == ["partitions_rmsse.png", "shap_summary.png"]
    assert "evil.example" in html and "<a " not in html


def test_a_long_partition_list_is_bounded_and_csv_holds_every_partition(monkeypatch) -> None:
    monkeypatch.setattr(rp, "MAX_TABLE_ROWS", 2)
    markers = _markers()
    data = _data(markers)
    md = rp.render_partitioned_markdown(data)
    assert "(the first 2 of 3: changed partitions, then the worst served" in md
    assert len(data.partitions) == 3


def test_hostile_groups_and_ids_draw_as_text(monkeypatch) -> None:
    from trainer.report.render import draw_plots

    markers = _markers()
    data = _data(markers, key="~(.+)$", groups=dict.fromkeys(["p0000", "p0001", "p0002"], "$x^{$"))
    data.shap_summary = data.shap_summary.assign(feature=DOLLAR)
    plots, errors = draw_plots(data, rp.DRAWERS)
    assert errors == {} and sorted(plots) == ["partitions_rmsse.png", "shap_summary.png"]


def test_the_csv_tables_carry_formulas_as_text() -> None:
    from forecastguard.safetext import csv_text

    text = csv_text(rp.product_table(_markers()))
    assert "'" + FORMULA.replace('"', '""') in text or "'" + FORMULA in text
    assert "\n=" not in text and ",=" not in text


def _plan(markers: list[dict]) -> Plan:
    ids = [pid for m in markers for pid in m["products"]]
    partitioning = make_partitioning(ids, size=2)
    names = partitioning.names
    return Plan(partitioning, {n: [] for n in names}, dict.fromkeys(names))


def test_a_plot_that_fails_is_logged_and_named(monkeypatch, caplog) -> None:
    from trainer.run.options import JobOptions

    def broken(data):
        raise RuntimeError("the plot broke")

    monkeypatch.setitem(rp.DRAWERS, "partitions_rmsse.png", broken)
    markers = _markers()
    opts = JobOptions(mode="train", run_id="run-9", study_id="run-9")
    with caplog.at_level(logging.ERROR):
        report = gathered_report(
            markers,
            served_means(markers),
            Decision(True, "x", "champion"),
            _plan(markers),
            {"model_version": "run-9"},
            1.2,
            opts,
        )
    assert report.error is None and sorted(report.plots) == ["shap_summary.png"]
    assert "The plot partitions_rmsse.png could not be drawn: RuntimeError: the plot broke" in (
        report.markdown
    )
    assert [r.plot for r in caplog.records if r.getMessage() == "report plot failed"] == [
        "partitions_rmsse.png"
    ]


def test_a_report_that_cannot_render_is_replaced_by_a_short_one(monkeypatch, caplog) -> None:
    from trainer.run.options import JobOptions

    def broken(data):
        raise KeyError("missing")

    monkeypatch.setattr(rp, "render_partitioned_markdown", broken)
    markers = _markers()
    opts = JobOptions(mode="train", run_id="run-9", study_id="run-9")
    with caplog.at_level(logging.ERROR):
        report = gathered_report(
            markers,
            served_means(markers),
            Decision(True, f"[x]({IMAGE})", "champion"),
            _plan(markers),
            {"model_version": "run-9"},
            1.2,
            opts,
        )
    assert report.error == "KeyError: 'missing'"
    assert "could not be rendered (KeyError: 'missing')" in report.markdown
    assert "<a " not in report.html
    assert len(report.per_product) == 5  # the tables are still written
    assert any(r.getMessage().startswith("stage report failed") for r in caplog.records)


def test_a_partitions_explanation_fits_its_marker_and_merges() -> None:
    """A real LightGBM partition explained (TreeSHAP), its marker document merged."""
    pytest.importorskip("lightgbm")
    from tests.unit.trainer.helpers import make_sales
    from trainer.data.prepare import prepare
    from trainer.models.gbm import train_gbm
    from trainer.report.explain import explain_forecaster

    cfg = small_config()
    prepared = prepare(make_sales(3, 150), cfg)
    gbm = train_gbm(prepared, rounds=10, early_stopping=5, num_threads=1)
    errors = pd.Series({"P00": 0.5, "P01": 2.0, "P02": 1.0})
    e = explain_forecaster(
        "lightgbm",
        prepared,
        per_product_error=errors,
        gbm=gbm,
        n_worst=1,
        max_products=2,
        n_background=4,
        n_explain=2,
        seed=1,
    )
    doc = rp.shap_document(e)
    assert doc["windows"] == 4 and doc["products"] == 2
    assert len(doc["worst"]) == 5 and {r["product_id"] for r in doc["worst"]} == {"P01"}
    doc = json.loads(json.dumps(doc))  # it travels in the done-marker
    marker = _marker(
        "p0000", errors.to_dict(), {}, errors.to_dict(), promote=True, kind="lightgbm", shap=doc
    )
    # the same partition twice under two names: the merge is its own table
    summary, _, settings = rp.merge_shap([marker, {**marker, "partition": "p0001"}])
    one = e.summary.set_index(["feature", "input", "model"])["mean_abs_shap"]
    both = summary.set_index(["feature", "input", "model"])["mean_abs_shap"]
    pd.testing.assert_series_equal(both.sort_index(), one.sort_index(), check_exact=False)
    assert settings["kind"] == "lightgbm" and settings["windows"] == 8


def test_the_email_attaches_the_worst_served_products_of_a_large_catalogue(monkeypatch) -> None:
    monkeypatch.setattr(rp, "EMAIL_PRODUCTS", 2)
    markers = _markers()
    per_product = rp.product_table(markers)
    attached = rp.email_products(per_product)
    assert len(per_product) == 5 and attached["served"].tolist() == [1.0, 1.0]
    assert set(attached["product_id"]) == {DOLLAR, "d"}
    md = rp.render_partitioned_markdown(_data(markers))
    assert "The email's `per_product.csv` holds the 2 worst-served of the 5 products" in md


def test_the_report_says_the_fairness_comparison_was_skipped() -> None:
    md = rp.render_partitioned_markdown(_data(_markers()))
    assert (
        "Fairness comparison (the LSTM with and without group DRO): skipped in a "
        "partitioned run" in md
    )
