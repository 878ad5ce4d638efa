"""The report of a partitioned training run (issue 26): one report for the whole run.

A partitioned run (`trainer.run.partitioned`) trains, judges and explains each partition
in its own task; task 0 gathers the partitions' done-markers and builds this report from
them. It is rendered by the same code as a single run's report (`trainer.report.render`:
`md_table`, `markdown_to_html`, `draw_plots`, the SHAP plot) and emailed by the same
`trainer.run.main.send_report`. It shows:

- which partitions changed: per partition its products, what serves it, whether the LSTM
  serves there, the challenger's, the champion's and the best baseline's mean RMSSE on
  the partition's test window, the served interval's coverage, promoted / fell back /
  kept and why (the table is bounded: changed partitions first, then the worst served;
  `partitions.csv` holds every partition);
- overall accuracy: the mean RMSSE served over every product, against the challengers
  everywhere, the incumbents everywhere and promotion as a whole, by served kind;
- a plot of every partition's challenger against its incumbent;
- SHAP merged over the partitions (`merge_shap`): each task explains its partition's
  served forecast on a bounded sample (`shap_document`), the gather weighs the
  partitions' mean |SHAP| by their product counts.

Product ids and partition groups (captured from the ids by `TRAIN_PARTITION_KEY`) are
hostile input: Markdown through `md_text`/`md_code`, CSV through `csv_text` (the
writer's), plot labels as plain text (mathtext off).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from forecastguard.logs import get_logger
from trainer.report.explain import PER_PRODUCT_COLUMNS, SUMMARY_COLUMNS, Explanation
from trainer.report.render import (
    _PLAIN,
    _plot,
    _png,
    _shap_plot,
    closing_lines,
    md_code,
    md_table,
    md_text,
    request_lines,
)

log = get_logger(__name__)

LSTM_KINDS = ("lstm", "blend")  # served kinds whose forecast is (partly) the LSTM's
MAX_TABLE_ROWS = 100  # partitions in the report's table (partitions.csv has all)
# Products in the email's per_product.csv (about 100 bytes a row: an email stays far
# below the 25 MB that Gmail takes); the run's per_product.csv has every product.
EMAIL_PRODUCTS = 10_000
MAX_NAMED = 20  # partitions named in a sentence
# Issue 26: a partition trains the LSTM once (with group DRO). The second LSTM, without
# it, fed only the single-model report's fairness comparison and cost about half of the
# LSTMs' CPU; a partitioned run says so instead of comparing.
FAIRNESS_SKIPPED = (
    "skipped in a partitioned run: each partition trains the LSTM with group DRO only "
    "(the LSTM without it fed nothing but this comparison and cost about half of the "
    "LSTMs' CPU); a catalogue of one partition still compares both"
)
MAX_LABELLED = 30  # partitions labelled in the plot
WORST_SHAP_PRODUCTS = 5  # products whose own SHAP table the report shows
SHAP_SETTINGS = ("kind", "explained", "explainer", "output", "reason", "note", "blend_weight")
ARTIFACTS = (
    "partitions.json",
    "params.json",
    "metrics.json",
    "partitions.csv",
    "per_product.csv",
    "tuning/summary.json",
    "shap/summary.csv",
    "shap/per_product.csv",
    "report.md",
    "report.html",
)


# The task's side: one partition's explanation, small enough for its done-marker -------


def shap_document(explanation: Explanation, *, top_per_product: int = 5) -> dict[str, Any]:
    """A partition's SHAP results for its done-marker: the settings, how many windows
    were explained, the global table and each worst product's top features (bounded by
    the sample's size, whatever the partition's)."""
    doc: dict[str, Any] = {
        "settings": {k: v for k, v in explanation.settings.items() if k in SHAP_SETTINGS},
        "products": len(explanation.settings.get("products", [])),
        "windows": len(explanation.values.get("product_id", [])),
        "summary": explanation.summary[SUMMARY_COLUMNS].to_dict("records"),
        "worst": [],
    }
    per = explanation.per_product
    if not per.empty:
        top = (
            per.sort_values(["product_id", "mean_abs_shap"], ascending=[True, False])
            .groupby("product_id")
            .head(top_per_product)
        )
        doc["worst"] = top[PER_PRODUCT_COLUMNS].to_dict("records")
    return doc


# The gather's side ---------------------------------------------------------------------


def outcome(marker: dict[str, Any]) -> str:
    """What the run did to a partition: promoted, fell back (to a baseline) or kept."""
    d = marker["decision"]
    if d.get("promote"):
        return "promoted"
    if d.get("fallback"):
        return "fell back"
    return "kept"


def lstm_status(marker: dict[str, Any]) -> str:
    """Where the LSTM stands in a partition: serves, trained but not serving, not trained."""
    if marker["serving"].get("kind") in LSTM_KINDS:
        return "serves"
    candidates = marker.get("candidates")
    if candidates is None or any(k in LSTM_KINDS for k in candidates):
        return "not serving"
    return "not trained"


def _mean(values: dict[str, Any] | None) -> float | None:
    vals = [v for v in (values or {}).values() if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def partition_table(markers: list[dict[str, Any]], groups: dict[str, str]) -> pd.DataFrame:
    """One row per partition (the report's table and `partitions.csv`)."""
    rows = []
    for m in markers:
        pp, serving = m["per_product"], m["serving"]
        served_iv = (m.get("intervals") or {}).get("served") or {}
        rows.append(
            {
                "partition": m["partition"],
                "group": groups.get(m["partition"], ""),
                "products": len(m["products"]),
                "serves": serving.get("kind"),
                "serving_version": serving.get("model_version"),
                "lstm": lstm_status(m),
                "challenger_kind": m.get("challenger_kind"),
                "challenger_rmsse": _mean(pp.get("challenger")),
                "champion_rmsse": _mean(pp.get("champion")),
                "baseline_rmsse": _mean(pp.get("baseline")),
                "served_rmsse": _mean(pp.get("served")),
                "served_coverage_80": served_iv.get("coverage"),
                "outcome": outcome(m),
                "reason": m["decision"].get("reason", ""),
            }
        )
    return pd.DataFrame(rows)


def product_table(markers: list[dict[str, Any]]) -> pd.DataFrame:
    """Every product's test RMSSE by the challenger, champion, best baseline and what
    serves it (`per_product.csv`). Built from plain lists, one frame at the end (a frame
    per partition costs seconds a thousand partitions)."""
    columns: list[str] = []
    for m in markers:
        columns += [c for c in m["per_product"] if c not in columns]
    data: dict[str, list[Any]] = {"partition": [], "product_id": [], **{c: [] for c in columns}}
    for m in markers:
        pp = m["per_product"]
        ids = list(dict.fromkeys(pid for c in columns for pid in pp.get(c, {})))
        data["partition"] += [m["partition"]] * len(ids)
        data["product_id"] += ids
        for c in columns:
            values = pp.get(c, {})
            data[c] += [values.get(pid) for pid in ids]
    frame = pd.DataFrame(data)
    frame[columns] = frame[columns].astype(float)
    return frame


def merge_shap(markers: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The run's SHAP tables from the partitions' (`shap_document`): (summary,
    per_product, settings).

    The summary is each feature's mean |SHAP| (and mean SHAP, and the sum over steps)
    averaged over the explained partitions, each weighted by its product count: the
    catalogue's forecast is each product's partition's forecast, so a feature of a model
    that does not serve a partition counts 0 there. Partitions served by a baseline
    (nothing learned to attribute) or whose SHAP failed are left out and counted. The
    per-product table is the worst explained products' (by the challenger's test RMSSE).
    """
    explained = [
        m for m in markers if ((m.get("shap") or {}).get("settings") or {}).get("explained")
    ]
    names = {m["partition"] for m in explained}
    skipped = [m for m in markers if m["partition"] not in names]
    settings: dict[str, Any] = {
        "partitions": len(markers),
        "explained_partitions": len(explained),
        "explained_products": int(sum(len(m["products"]) for m in explained)),
        "windows": int(sum(m["shap"]["windows"] for m in explained)),
        "not_explained_partitions": len(skipped),
        "not_explained": {  # the first few, with the reason
            m["partition"]: ((m.get("shap") or {}).get("settings") or {}).get(
                "reason", "no SHAP results"
            )
            for m in skipped[:MAX_NAMED]
        },
    }
    if not explained:
        settings |= {
            "explained": False,
            "reason": "no partition has a learned model to attribute its forecast to "
            "(baselines serve) or SHAP failed in every partition",
        }
        return (
            pd.DataFrame(columns=SUMMARY_COLUMNS),
            pd.DataFrame(columns=["partition", *PER_PRODUCT_COLUMNS]),
            settings,
        )
    kinds = sorted({m["shap"]["settings"].get("kind", "") for m in explained})
    total = settings["explained_products"]
    numeric = ["mean_abs_shap", "mean_shap", "sum_abs_shap_over_steps"]
    sums: dict[tuple[str, str, str], list[float]] = {}
    for m in explained:
        weight = len(m["products"]) / total
        for row in m["shap"]["summary"]:
            acc = sums.setdefault((row["feature"], row["input"], row["model"]), [0.0] * 3)
            for i, c in enumerate(numeric):
                acc[i] += weight * float(row[c])
    summary = pd.DataFrame(
        [(*key, *values) for key, values in sums.items()], columns=SUMMARY_COLUMNS
    ).sort_values("sum_abs_shap_over_steps", ascending=False, ignore_index=True)
    worst = []
    for m in explained:
        challenger = m["per_product"].get("challenger", {})
        for row in m["shap"].get("worst", []):
            worst.append(
                {"partition": m["partition"], **row, "_rmsse": challenger.get(row["product_id"])}
            )
    per_product = pd.DataFrame(worst, columns=["partition", *PER_PRODUCT_COLUMNS, "_rmsse"])
    if not per_product.empty:
        order = (
            per_product.drop_duplicates("product_id")
            .sort_values("_rmsse", ascending=False, na_position="last")["product_id"]
            .head(WORST_SHAP_PRODUCTS)
        )
        per_product = per_product[per_product["product_id"].isin(set(order))]
    per_product = per_product.drop(columns="_rmsse").reset_index(drop=True)
    notes = sorted({m["partition"] for m in explained if m["shap"]["settings"].get("note")})
    settings |= {
        "explained": True,
        "kind": kinds[0] if len(kinds) == 1 else "mixed",
        "kinds": kinds,
        "output": explained[0]["shap"]["settings"].get("output"),
        "challenger_explained": notes,  # a kept champion serves: its challenger explained
        "weighting": "partitions weighted by their product counts",
    }
    return summary, per_product, settings


@dataclass
class PartitionedReportData:
    """Everything the partitioned run's report shows (plain data, no model)."""

    run_id: str
    model_version: str
    created_at: str
    request: dict[str, Any]
    decision: dict[str, Any]  # the run's: promote (any partition changed), reason
    serving: dict[str, Any] | None  # kind, model_version (who serves after the run)
    partitioning: dict[str, Any]  # size, key_pattern, note
    partitions: pd.DataFrame  # partition_table()
    means: dict[str, Any]  # served_means(): per_partition, whole, ...
    disparity: float | None
    shap_summary: pd.DataFrame
    shap_per_product: pd.DataFrame
    shap_settings: dict[str, Any]
    artifacts: list[str] = field(default_factory=list)
    plot_errors: dict[str, str] = field(default_factory=dict)


def _names(names: list[str]) -> str:
    shown = ", ".join(md_text(n) for n in names[:MAX_NAMED])
    return shown + (f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else "")


def _table_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Changed partitions first, then the worst served; at most `MAX_TABLE_ROWS`."""
    order = frame.assign(_kept=frame["outcome"].eq("kept")).sort_values(
        ["_kept", "served_rmsse", "partition"], ascending=[True, False, True], na_position="last"
    )
    return order.drop(columns="_kept").head(MAX_TABLE_ROWS)


def _partition_lines(data: PartitionedReportData) -> list[str]:
    parts = data.partitions
    n, products = len(parts), int(parts["products"].sum())
    counts = parts["outcome"].value_counts()
    changed = parts.loc[parts["outcome"] != "kept", "partition"].tolist()
    lstm = parts[parts["lstm"] == "serves"]
    p = data.partitioning
    how = (
        f"grouped by {md_code(p['key_pattern'])} on the product id, each group cut in hash "
        f"ranges of at most {p['size']:,} products"
        if p.get("key_pattern")
        else f"hash ranges of at most {p.get('size', 0):,} products"
    )
    out = [
        "## Which partitions changed",
        "",
        f"{n} partitions ({how}), {products:,} products. "
        f"**{len(changed)} changed**: {int(counts.get('promoted', 0))} promoted their "
        f"challenger, {int(counts.get('fell back', 0))} fell back to their best baseline"
        f" (no usable champion and the challenger did not pass); "
        f"{int(counts.get('kept', 0))} kept their champion."
        + (f" Changed: {_names(changed)}." if changed else ""),
        "",
    ]
    if p.get("note"):
        out += [f"Note: {md_text(p['note'])}", ""]
    out += [
        f"**Where the LSTM serves**: {len(lstm)} of {n} partitions "
        f"({int(lstm['products'].sum()):,} products), alone or in the blend"
        + (f": {_names(lstm['partition'].tolist())}." if len(lstm) else ".")
        + f" Not serving though trained: {int((parts['lstm'] == 'not serving').sum())}; "
        f"not trained: {int((parts['lstm'] == 'not trained').sum())}.",
        "",
        _plot(
            data, "partitions_rmsse.png", "Challenger against incumbent mean RMSSE per partition"
        ),
        "",
    ]
    shown = _table_rows(parts)
    table = shown.rename(
        columns={
            "challenger_kind": "challenger",
            "challenger_rmsse": "challenger RMSSE",
            "champion_rmsse": "champion RMSSE",
            "baseline_rmsse": "best baseline RMSSE",
            "served_rmsse": "served RMSSE",
            "served_coverage_80": "80 % coverage",
            "lstm": "LSTM",
            "outcome": "decision",
            "reason": "why",
        }
    ).drop(columns=["serving_version"])
    if not table["group"].astype(bool).any():
        table = table.drop(columns="group")
    out += [
        "Mean RMSSE of each partition's products on its test window"
        + (
            f" (the first {len(shown)} of {n}: changed partitions, then the worst served; "
            "`partitions.csv` has them all)"
            if len(shown) < n
            else ""
        )
        + ". The champion column is empty for a partition without one (judged against its "
        "best baseline).",
        "",
        md_table(table),
        "",
    ]
    return out


def _accuracy_lines(data: PartitionedReportData) -> list[str]:
    m, parts = data.means, data.partitions
    out = [
        "## Overall accuracy",
        "",
        f"Mean RMSSE served over all {m['products']:,} products on the test windows: "
        f"**{m['per_partition']:.4f}** with per-partition promotion (what the run did); "
        f"{m['whole']:.4f} with promotion as a whole (the challengers "
        f"{'would' if m['whole_promotes'] else 'would not'} have been promoted as a whole); "
        f"the challengers everywhere {m['challenger_everywhere']:.4f}, the incumbents "
        f"everywhere {m['incumbent_everywhere']:.4f}"
        + (
            f"; disparity (p90/median of per-product RMSSE) served {data.disparity:.3g}"
            if data.disparity is not None
            else ""
        )
        + f". {md_text(m['note'][:1].upper() + m['note'][1:])}.",
        "",
        f"Fairness comparison (the LSTM with and without group DRO): {FAIRNESS_SKIPPED}.",
        "",
    ]
    cov = parts.dropna(subset=["served_coverage_80"])
    if len(cov):
        weighted = float(np.average(cov["served_coverage_80"], weights=cov["products"]))
        out += [
            f"Forecast intervals: where this run's challenger or fallback serves "
            f"({len(cov)} of {len(parts)} partitions), the served 80 % interval covered "
            f"**{weighted:.1%}** of the test days (partitions weighted by products; from "
            f"{cov['served_coverage_80'].min():.1%} to {cov['served_coverage_80'].max():.1%}).",
            "",
        ]
    by_kind = (
        parts.assign(weighted=parts["served_rmsse"] * parts["products"])
        .groupby("serves", dropna=False)
        .agg(partitions=("partition", "size"), products=("products", "sum"), w=("weighted", "sum"))
        .reset_index()
    )
    by_kind["mean served RMSSE"] = by_kind["w"] / by_kind["products"].where(by_kind["products"] > 0)
    out += [
        "By served kind (each partition's mean weighted by its products):",
        "",
        md_table(by_kind.drop(columns="w").rename(columns={"serves": "served kind"})),
        "",
    ]
    return out


def _shap_lines(data: PartitionedReportData) -> list[str]:
    s = data.shap_settings
    out = ["## What drives the forecasts (SHAP)", ""]
    skipped = s.get("not_explained") or {}
    if not s.get("explained"):
        out += [f"No SHAP values: {md_text(s.get('reason', 'nothing was explained'))}."]
    else:
        out += [
            f"Each partition's task explained its served forecast on a bounded sample "
            f"(its worst products and a seeded sample of the others, a few test windows "
            f"each; {s['windows']:,} windows in all) with the single run's explainers; "
            f"here {s['explained_partitions']} of {s['partitions']} partitions "
            f"({s['explained_products']:,} products) merged, {md_text(s['weighting'])}. "
            f"Kind{'s' if len(s['kinds']) > 1 else ''} explained: "
            f"{', '.join(md_text(k) for k in s['kinds'])}. Output: "
            f"{md_text(s.get('output') or '')}.",
        ]
        if s.get("challenger_explained"):
            out += [
                "",
                f"In {_names(s['challenger_explained'])} the kept champion serves; their "
                "challenger is explained (the champion's own run explains it).",
            ]
        out += [
            "",
            _plot(data, "shap_summary.png", "SHAP summary over the partitions"),
            "",
            md_table(data.shap_summary.head(15)),
            "",
        ]
        if not data.shap_per_product.empty:
            out += [
                "Top features of the worst explained products:",
                "",
                md_table(data.shap_per_product),
            ]
    total = s.get("not_explained_partitions", len(skipped))
    if total:
        names = sorted(skipped)[:5]
        out += [
            "",
            f"Not explained: {total} partition{'s' if total > 1 else ''} ("
            + "; ".join(f"{md_text(n)}: {md_text(skipped[n])}" for n in names)
            + (f"; and {total - len(names)} more" if total > len(names) else "")
            + ").",
        ]
    return [*out, ""]


def render_partitioned_markdown(data: PartitionedReportData) -> str:
    """The partitioned run's report (plots referenced by file name, beside report.md)."""
    d = data.decision
    verdict = "**promoted** to champion" if d["promote"] else "**not promoted**"
    srv = data.serving or {}
    serves = (
        f" Serving: {md_text(srv.get('description') or srv.get('kind') or 'the champion')} "
        f"({md_code(srv['model_version'])})."
        if srv.get("model_version")
        else ""
    )
    out = [
        f"# forecastguard partitioned training run {md_text(data.run_id)}",
        "",
        f"Model version {md_code(data.model_version)}, {md_text(data.created_at)}. Decision: "
        f"{verdict} — {md_text(d['reason'])}.{serves}",
        "",
        *request_lines(data.request),
        "Each partition's challenger was judged against that partition's champion (without "
        "one, its best baseline) on the partition's own test window, by the single run's "
        "rule: mean per-product RMSSE lower, disparity within the tolerance, the 80 % "
        "interval's test coverage within its bounds, no failed data-quality check. Each "
        "partition's own run (`runs/<execution>-<partition>/`) holds its metrics, "
        "per-product figures and SHAP tables.",
        "",
        *_partition_lines(data),
        *_accuracy_lines(data),
        *_shap_lines(data),
    ]
    out += closing_lines(data.plot_errors, data.artifacts)
    products = int(data.partitions["products"].sum()) if len(data.partitions) else 0
    if products > EMAIL_PRODUCTS:
        out += [
            f"The email's `per_product.csv` holds the {EMAIL_PRODUCTS:,} worst-served of the "
            f"{products:,} products; the run's `per_product.csv` holds them all.",
            "",
        ]
    return "\n".join(out)


def email_products(per_product: pd.DataFrame) -> pd.DataFrame:
    """The products the email attaches: all, or the `EMAIL_PRODUCTS` worst served."""
    if len(per_product) <= EMAIL_PRODUCTS or "served" not in per_product:
        return per_product
    return per_product.sort_values("served", ascending=False, na_position="first").head(
        EMAIL_PRODUCTS
    )


def _rmsse_plot(data: PartitionedReportData) -> bytes:
    """Each partition's challenger against its incumbent (champion, else best baseline):
    below the diagonal the challenger was better; the marker says what the run did."""
    import matplotlib.pyplot as plt

    parts = data.partitions.assign(
        incumbent=data.partitions["champion_rmsse"].fillna(data.partitions["baseline_rmsse"])
    ).dropna(subset=["incumbent", "challenger_rmsse"])
    fig, ax = plt.subplots(figsize=(7, 5.5))
    styles = {
        "promoted": ("o", "tab:green"),
        "fell back": ("s", "tab:orange"),
        "kept": ("x", "tab:gray"),
    }
    for name, (marker, colour) in styles.items():
        sel = parts[parts["outcome"] == name]
        if len(sel):
            ax.scatter(
                sel["incumbent"],
                sel["challenger_rmsse"],
                marker=marker,
                color=colour,
                label=f"{name} ({len(sel)})",
            )
    if len(parts):
        lo = float(min(parts["incumbent"].min(), parts["challenger_rmsse"].min()))
        hi = float(max(parts["incumbent"].max(), parts["challenger_rmsse"].max()))
        pad = 0.05 * max(hi - lo, 1e-6)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="black", linewidth=0.8)
    if len(parts) <= MAX_LABELLED:
        for row in parts.itertuples(index=False):
            label = str(row.partition) + (f" {row.group}" if row.group else "")
            ax.annotate(
                label,
                (row.incumbent, row.challenger_rmsse),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
                **_PLAIN,
            )
    ax.set_xlabel("incumbent mean RMSSE (champion, else best baseline)")
    ax.set_ylabel("challenger mean RMSSE")
    ax.set_title("Per partition, on its test window: below the line the challenger is better")
    ax.legend()
    return _png(fig)


DRAWERS = {"partitions_rmsse.png": _rmsse_plot, "shap_summary.png": _shap_plot}


@dataclass
class PartitionedReport:
    """The partitioned run's report in every form it is written and sent in."""

    data: PartitionedReportData
    per_product: pd.DataFrame  # per_product.csv (every product)
    plots: dict[str, bytes]
    markdown: str
    html: str
    error: str | None = None  # set when the full report could not be rendered


def build_partitioned_report(
    data: PartitionedReportData, per_product: pd.DataFrame
) -> PartitionedReport:
    """Draw the plots and render the report. A plot that fails is logged and named in the
    report (`draw_plots`); a rendering failure raises, and the caller replaces the report
    by a short one (`trainer.run.partitioned.gathered_report`)."""
    from trainer.report.render import draw_plots, markdown_to_html

    plots, data.plot_errors = draw_plots(data, DRAWERS)
    data.artifacts = sorted([*ARTIFACTS, *plots])
    markdown = render_partitioned_markdown(data)
    html = markdown_to_html(markdown, f"forecastguard partitioned run {data.run_id}")
    return PartitionedReport(data, per_product, plots, markdown, html)
