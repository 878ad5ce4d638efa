"""The run report: `report.md` plus PNG plots beside it (matplotlib, Agg backend).

Built from plain dicts and frames (`ReportData`), so it renders without a model. The
same Markdown becomes the email's HTML (markdown-it-py) with the plots inline.

Product ids and every other data-derived text are hostile input (docs/security.md): they
enter the Markdown through `md_text` (Markdown's markup characters backslash-escaped) or
`md_code` (a code span its content cannot close), the HTML renderer follows no link or
image but the report's own plots, and the plots draw labels as plain text (matplotlib's
mathtext off). A plot that fails to draw is logged and named in the report instead; it
never fails the run (`draw_plots`).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from forecastguard.logs import get_logger

log = get_logger(__name__)

PLOTS = ("fairness.png", "bias.png", "shap_summary.png", "training.png")
# The partitioned run's report (`trainer.report.partitioned`) draws its own beside SHAP's.
PARTITION_PLOTS = ("partitions_rmsse.png",)
# What makes Markdown markup inline: links and images (`[`, `]`), code, emphasis (`_`
# inside a word cannot), table cells, and `<` or `&` when they could open an autolink, raw
# HTML or an entity. Data never starts a line of the report, so line-start markup (`#`,
# `-`, `>`, `1.`) cannot be reached; line breaks in data become spaces.
_MD_SPECIAL = re.compile(r"[\\`*\[\]|]|(?<![^\W_])_|_(?![^\W_])|<(?=\S)|&(?=[#A-Za-z0-9])")


def md_text(value: object) -> str:
    """Data as Markdown text that renders as itself: no link, image, code or emphasis."""
    text = " ".join(str(value).splitlines())
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), text)


def md_code(value: object) -> str:
    """Data as a Markdown code span (literal text) that its own backticks cannot close."""
    text = " ".join(str(value).splitlines())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


@dataclass
class ReportData:
    """Everything the report shows (plain data; no model objects)."""

    run_id: str
    model_version: str
    created_at: str
    request: dict[str, Any]  # request_id, reason, health_check_id, window_start, window_end
    split_dates: dict[str, str]
    quality: dict[str, Any]  # QualityReport.to_dict()
    tuning: dict[str, Any]  # TuningResult.to_dict()
    trials: pd.DataFrame  # study.trials_dataframe()
    metrics: dict[str, Any]  # metrics.json of the challenger (corrected forecasts)
    champion: dict[str, Any] | None  # {"model_version", "metrics"} on the same test window
    champion_note: str | None
    per_product: pd.DataFrame  # product_id, rmsse (served), rmsse_lstm_dro, rmsse_lstm_plain, ...
    fairness_compare: dict[str, Any]  # {"with": {...}, "without": {...}} disparity figures
    bias: dict[str, Any]  # correction_effect(): {"before": {...}, "after": {...}}
    per_product_bias: pd.DataFrame  # product_id, bias_before, bias_after
    shap_summary: pd.DataFrame  # feature, input, mean_abs_shap, ...
    shap_per_product: pd.DataFrame  # product_id, feature, input, model, mean_abs_shap
    history: dict[str, list[float]]  # Keras history of the final model
    decision: dict[str, Any]  # promote, reason, against, fallback
    artifacts: list[str] = field(default_factory=list)
    serving: dict[str, Any] | None = None  # kind, model_version, description, reason
    best_baseline: str | None = None  # kind of the best baseline on the test window
    data_quality_failures: list[str] = field(default_factory=list)
    shap_settings: dict[str, Any] = field(default_factory=dict)  # Explanation.settings
    plot_errors: dict[str, str] = field(default_factory=dict)  # plot file name -> error


def _interval_lines(data: ReportData) -> list[str]:
    """The served interval (issue 27): its test coverage against the promotion bounds."""
    iv = data.metrics.get("intervals") or {}
    served = iv.get("served") or {}
    if served.get("coverage") is None:
        return []
    lo, hi = iv.get("coverage_bounds") or (0.75, 0.85)
    inside = lo <= served["coverage"] <= hi
    # The guard judges more than this figure (lower bounds at 0, sampling error, the
    # interval that would serve instead): whether it blocked is the decision's to say.
    blocked = bool(data.decision.get("interval_blocked", False))
    outside = f"**outside the promotion bounds [{lo:.0%}, {hi:.0%}]" + (
        ": not promoted**."
        if blocked
        else "**, which did not block the promotion (the decision below says why)."
    )
    return [
        f"Forecast intervals: P10/P50/P90 served beside the point forecast (the point is "
        f"the model's mean-type forecast, not P50). The challenger's 80 % interval covered "
        f"**{served['coverage']:.1%}** of the test days (10th percentile over products "
        f"{served['coverage_p10']:.1%}; interval score {served['interval_score']:.3g}), "
        + (f"inside the promotion bounds [{lo:.0%}, {hi:.0%}]." if inside else outside),
        "",
    ]


def _quality_lines(quality: dict[str, Any]) -> list[str]:
    """The data-quality section's head: frequency, export kind, per-rule table, failures."""
    out = ["## Data quality", ""]
    freq = quality.get("frequency") or {}
    if freq:
        out += [
            f"Sampling frequency: **{freq.get('kind')}** ({freq.get('agreeing')} of "
            f"{freq.get('products')} products). Export: {quality.get('export_kind', '–')}.",
            "",
        ]
    if quality.get("failures"):
        out += [
            "**Data-quality rules failed** (no promotion): "
            + "; ".join(md_text(f) for f in quality["failures"])
            + ".",
            "",
        ]
    if quality.get("table"):
        out += [md_table(pd.DataFrame(quality["table"])), ""]
    else:
        totals = quality.get("totals", {})
        rows = [{"finding": k, "count": v} for k, v in totals.items()]
        out += [md_table(pd.DataFrame(rows)), ""]
    if quality.get("missing_dates"):
        missing = quality["missing_dates"]
        out += [
            f"Missing data, not filled: {len(missing)} days ({missing[0]} … {missing[-1]}).",
            "",
        ]
    if quality.get("dropped_products"):
        out += [f"Dropped products: {', '.join(map(md_text, quality['dropped_products']))}.", ""]
    return out


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            return "–"
        return f"{value:.{digits}g}"
    return md_text(value)


def md_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-style Markdown table (numbers right-aligned)."""
    if frame.empty:
        return "_(none)_"
    cols = [md_text(c) for c in frame.columns]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    head = "| " + " | ".join(cols) + " |"
    rule = "|" + "|".join("---:" if n else "---" for n in numeric) + "|"
    rows = [
        "| " + " | ".join(_fmt(v, digits) for v in row) + " |"
        for row in frame.itertuples(index=False, name=None)
    ]
    return "\n".join([head, rule, *rows])


def _scores_table(data: ReportData) -> pd.DataFrame:
    rows = [{"model": f"challenger {data.model_version}", **data.metrics["model"]}]
    if data.champion is not None:
        rows.append(
            {
                "model": f"champion {data.champion['model_version']}",
                **data.champion["metrics"]["model"],
            }
        )
    for name, scores in data.metrics["baselines"].items():
        rows.append({"model": name.replace("_", " "), **scores})
    frame = pd.DataFrame(rows)
    disp = {
        f"challenger {data.model_version}": data.metrics["fairness"]["disparity_p90_over_median"]
    }
    if data.champion is not None:
        disp[f"champion {data.champion['model_version']}"] = data.champion["metrics"]["fairness"][
            "disparity_p90_over_median"
        ]
    for name, scores in data.metrics["baselines"].items():
        disp[name.replace("_", " ")] = scores.get("disparity_p90_over_median")
    frame["disparity"] = frame["model"].map(disp).astype(float)
    frame = frame.rename(columns={"rmsse": "mean RMSSE"})
    return frame[["model", "mean RMSSE", "rmse", "mae", "bias", "disparity"]]


def _against(kind: str) -> str:
    if kind.startswith("baseline:"):
        return f"the best baseline, {md_text(kind.removeprefix('baseline:').replace('_', ' '))},"
    return f"the {md_text(kind.replace('_', ' '))}"


def _plot(data: ReportData, name: str, alt: str) -> str:
    """The plot's image, or a line that says it could not be drawn and why."""
    if name in data.plot_errors:
        return f"_The plot {name} could not be drawn: {md_text(data.plot_errors[name])}._"
    return f"![{alt}]({name})"


def _serving_lines(data: ReportData) -> list[str]:
    srv = data.serving
    if not srv or not srv.get("model_version"):
        return []
    d = data.decision
    if d["promote"]:
        why = "it passed the promotion rule above"
    elif d.get("fallback"):
        why = (
            "no trained model has been promoted yet (or the champion could not be "
            "loaded) and this run's model did not pass, so the best baseline of the "
            "evaluation serves until a trained model beats it"
        )
    else:
        why = "the champion was not beaten, so it keeps serving"
    return [
        f"**Serving now: {md_text(srv['description'])} ({md_code(srv['model_version'])}, "
        f"kind {md_code(srv['kind'])})**, because {why}. Its forecasts of the next "
        f"{data.metrics['horizon']} days are written after this report.",
        "",
    ]


def _candidate_lines(data: ReportData) -> list[str]:
    """Which trained candidate is the challenger, and why (validation), with every score."""
    cands = data.metrics.get("candidates")
    chosen = data.metrics.get("served_kind_chosen_on_validation")
    if not cands or not chosen:
        return []
    frame = pd.DataFrame(
        [
            {
                "candidate": kind + (" (chosen)" if kind == chosen else ""),
                "validation mean RMSSE": c.get("val_rmsse"),
                "validation worst decile": c.get("val_worst_decile_rmsse"),
                "test mean RMSSE": c.get("test_rmsse"),
                "test worst decile": c.get("test_worst_decile_rmsse"),
            }
            for kind, c in cands.items()
        ]
    )
    days = data.metrics.get("lightgbm_history_days")
    members = (
        f" (an ensemble of {len(days)} boosters on the last "
        f"{', '.join(f'{d:,}' if d else 'all' for d in days)} days of history)"
        if days and len(days) > 1
        else ""
    )
    weight = data.metrics.get("blend_weight")
    share = f" (the LSTM's share {weight:g}, chosen on validation)" if weight is not None else ""
    out = [
        "## The challenger's candidates",
        "",
        f"Trained side by side: the debiased LSTM, LightGBM on the same features{members} "
        f"and their blend{share}. The challenger is the one with the lowest validation mean "
        f"RMSSE: **{md_text(chosen)}**. The test window chose nothing; its figures are the ones "
        "judged "
        "above.",
        "",
        md_table(frame),
        "",
    ]
    refit = data.metrics.get("lightgbm_refit")
    if refit:
        out += [
            f"LightGBM is served refitted on every day through {refit['through']} with the "
            f"boosting rounds validation chose ({_rounds(refit['rounds'])}). "
            "Every figure here is its held-out twin's, trained on the training days only: "
            "the refit has no day left to be scored on.",
            "",
        ]
    return out


def _rounds(rounds: int | list[int]) -> str:
    """Boosting rounds of a refit: one booster's, or each ensemble member's."""
    if isinstance(rounds, list):
        return ", ".join(str(r) for r in rounds) + " for its members"
    return str(rounds)


_SHAP_KINDS = {
    "lstm": "the debiased LSTM (`shap.GradientExplainer` on a wrapper with the product "
    "fixed, the level the pipeline adds computed inside it)",
    "lightgbm": "LightGBM (`shap.TreeExplainer` on each member booster over its feature "
    "rows, one row per forecast step, averaged as the ensemble's forecast is)",
    "blend": "the blend, `w` × LSTM + (1 − `w`) × LightGBM: both explained on the same "
    "windows and weighted by `w` and 1 − `w` (SHAP values are linear in the model)",
}


def _shap_lines(data: ReportData) -> list[str]:
    """The SHAP section: what was explained and the tables, or why nothing was."""
    s = data.shap_settings
    out = ["## What drives the forecasts (SHAP)", ""]
    if s and not s.get("explained", True):
        return [*out, f"No SHAP values: {md_text(s.get('reason', 'nothing was explained'))}.", ""]
    kind = s.get("kind", "lstm")
    what = _SHAP_KINDS.get(kind, kind)
    weight = f" (`w` = {s['blend_weight']:g})" if "blend_weight" in s else ""
    out += [
        f"Explained: {what}{weight}. Mean |SHAP| of each feature on the H-day total of the "
        "forecast in units, less the product's mean (the bias offsets are constant per "
        "product: they move the expected value, not the attributions), over sampled test "
        "windows; `history` features are read from the days before the forecast, "
        "`future` ones are known in advance for the forecast days.",
    ]
    if s.get("note"):
        out += ["", md_text(s["note"])]
    out += [
        "",
        _plot(data, "shap_summary.png", "SHAP summary"),
        "",
        md_table(data.shap_summary.head(15)),
        "",
    ]
    if not data.shap_per_product.empty:
        out += ["Top features of the worst products:", ""]
        top = (
            data.shap_per_product.sort_values(
                ["product_id", "mean_abs_shap"], ascending=[True, False]
            )
            .groupby("product_id")
            .head(5)
        )
        out += [md_table(top), ""]
    return out


def request_lines(req: dict[str, Any]) -> list[str]:
    """The retrain request the run serves, in one paragraph (none without a request id)."""
    if not req.get("request_id"):
        return []
    # The request's reason quotes product ids (the health check's drift reasons).
    return [
        f"Retrain request {md_code(req['request_id'])}: "
        + md_text(req.get("reason") or "no reason given")
        + (
            f" (health check {md_code(req['health_check_id'])}, window "
            f"{md_text(req.get('window_start') or '?')} – "
            f"{md_text(req.get('window_end') or '?')})"
            if req.get("health_check_id")
            else ""
        ),
        "",
    ]


def render_markdown(data: ReportData) -> str:
    """The report's Markdown (plots referenced by file name, beside report.md)."""
    d = data.decision
    verdict = "**promoted** to champion" if d["promote"] else "**not promoted**"
    req = data.request
    srv = data.serving or {}
    serves = (
        f" Serving: {md_text(srv['description'])} ({md_code(srv['model_version'])})."
        if srv.get("model_version")
        else ""
    )
    reason = md_text(d["reason"])
    out = [
        f"# forecastguard training run {md_text(data.run_id)}",
        "",
        f"Model version {md_code(data.model_version)}, {md_text(data.created_at)}. Decision: "
        f"{verdict} — {reason}.{serves}",
        "",
    ]
    out += request_lines(req)
    s = data.split_dates
    out += [
        f"Data: training {s.get('train_start')} – {s.get('train_end')}, validation "
        f"{s.get('val_start')} – {s.get('val_end')}, test {s.get('test_start')} – "
        f"{s.get('test_end')}; {data.metrics['n_products']} products, horizon "
        f"{data.metrics['horizon']} days.",
        "",
        "## Promotion decision",
        "",
        f"{verdict[0].upper()}{verdict[1:]}: {reason}. Judged against "
        f"{_against(d['against'])} on the same latest test window.",
        "",
        "Promotion metric: **mean per-product RMSSE** (each product's RMSE scaled by its "
        "own one-day naive error, averaged so every product weighs the same); the "
        "challenger must be lower than the champion's (or, with no champion, the best "
        "baseline's) and its disparity (p90/median of per-product RMSSE) within the "
        "tolerance. Pooled RMSE is shown, not judged.",
        "",
    ]
    if data.data_quality_failures:
        out += [
            "Data-quality checks failed, which blocks any promotion: "
            + ", ".join(map(md_text, data.data_quality_failures))
            + ".",
            "",
        ]
    out += _interval_lines(data)
    out += _serving_lines(data)
    out += _candidate_lines(data)
    if data.champion_note:
        out += [f"Note: {md_text(data.champion_note)}", ""]
    out += [
        "## Comparison with the champion and the baselines",
        "",
        md_table(_scores_table(data)),
        "",
    ]

    out += _quality_lines(data.quality)
    flagged = data.quality.get("products_with_findings", {})
    if flagged:
        frame = pd.DataFrame.from_dict(flagged, orient="index").rename_axis("product_id")
        out += [
            f"Products with findings ({len(frame)}; first 15):",
            "",
            md_table(frame.reset_index().head(15)),
            "",
        ]
    if data.quality.get("rules"):
        out += [
            "Rules applied: "
            + "; ".join(f"{md_text(k)}: {md_text(v)}" for k, v in data.quality["rules"].items()),
            "",
        ]

    t = data.tuning
    out += [
        "## Tuning (Optuna)",
        "",
        f"Study {md_code(t['study_name'])} ({md_text(t['storage'])} storage, task "
        f"{t['task_index'] + 1} of "
        f"{t['task_count']}): {t['counts'].get('complete', 0)} complete, "
        f"{t['counts'].get('pruned', 0)} pruned, {t['counts'].get('fail', 0)} failed trials "
        f"in {t['duration_s']:.0f} s. Objective: a mix of the validation's mean and "
        f"worst-decile RMSSE. Best trial {t['best_trial']}: {t['best_value']:.4g} with "
        + ", ".join(f"{md_text(k)}={_fmt(v)}" for k, v in t["best_params"].items())
        + "; trained on the training days only (no refit: validation figures stay out of "
        "sample).",
        "",
    ]
    trials = data.trials.copy()
    keep = [
        c for c in trials.columns if c in ("number", "state", "value") or c.startswith("params_")
    ]
    out += [md_table(trials[keep].rename(columns=lambda c: c.removeprefix("params_"))), ""]

    fc = data.fairness_compare
    out += [
        "## Per-product fairness",
        "",
        "Disparity is the 90th percentile of the products' RMSSE over its median (1.0 = even).",
        "",
        md_table(
            pd.DataFrame(
                [
                    {"training": name, **{k: v for k, v in vals.items() if not isinstance(v, str)}}
                    for name, vals in fc.items()
                ]
            )
        ),
        "",
        _plot(
            data, "fairness.png", "Per-product test error of the LSTM with and without group DRO"
        ),
        "",
        md_table(data.per_product.sort_values("rmsse", ascending=False)),
        "",
    ]

    b = data.bias
    out += [
        "## Bias before and after correction",
        "",
        md_table(pd.DataFrame([{"forecasts": k, **v} for k, v in b.items()])),
        "",
        _plot(data, "bias.png", "Per-product bias before and after correction"),
        "",
        *_shap_lines(data),
    ]
    out += ["## Training", "", _plot(data, "training.png", "Training history"), ""]
    out += closing_lines(data.plot_errors, data.artifacts)
    return "\n".join(out)


def closing_lines(plot_errors: dict[str, str], artifacts: Sequence[str]) -> list[str]:
    """A report's closing sections: the plots that could not be drawn (each with its
    error) and the run's artifacts; none when there are none."""
    out: list[str] = []
    if plot_errors:
        out += [
            "## Plots that could not be drawn",
            "",
            *[f"- {name}: {md_text(error)}" for name, error in sorted(plot_errors.items())],
            "",
        ]
    if artifacts:
        out += ["## Artifacts", "", *[f"- {md_code(a)}" for a in artifacts], ""]
    return out


def markdown_to_html(markdown: str, title: str) -> str:
    """The report as a standalone HTML page (tables enabled, raw HTML disabled).

    The only link or image it renders is one of the reports' own plots (`PLOTS`,
    `PARTITION_PLOTS`): any
    other `[..](..)`, `![..](..)` or `<..>` stays text, whatever reached the Markdown.
    """
    from html import escape

    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    own = set(PLOTS) | set(PARTITION_PLOTS)
    md.validateLink = lambda url: url in own  # type: ignore[method-assign]
    body = md.render(markdown)
    style = (
        "body{font-family:sans-serif;max-width:60em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{style}</style></head><body>{body}</body></html>"
    )


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def draw_plots(
    data: Any, drawers: dict[str, Callable[[Any], bytes]] | None = None
) -> tuple[dict[str, bytes], dict[str, str]]:
    """The report's PNG plots by file name, and the error of each plot that failed.

    `drawers` (file name -> function of `data`) defaults to a training run's plots of a
    `ReportData`. Each plot is drawn on its own; a failure is logged (ERROR `report plot
    failed`) and returned, never raised: a report is decoration and must not cost the run.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots: dict[str, bytes] = {}
    errors: dict[str, str] = {}
    for name, draw in (_DRAWERS if drawers is None else drawers).items():
        try:
            plots[name] = draw(data)
        except Exception as exc:
            plt.close("all")
            errors[name] = f"{type(exc).__name__}: {str(exc)[:300]}"
            log.error(
                "report plot failed",
                extra={"plot": name, "run_id": data.run_id, "error": errors[name]},
                exc_info=True,
            )
    return plots, errors


def make_plots(data: ReportData) -> dict[str, bytes]:
    """The report's PNG plots, by file name (the ones that could be drawn)."""
    return draw_plots(data)[0]


# Labels and titles carry data (product ids, feature names): drawn as plain text, since
# matplotlib's mathtext would parse `$...$` in them and raise on what it cannot parse.
_PLAIN = {"parse_math": False}


def _fairness_plot(data: ReportData) -> bytes:
    import matplotlib.pyplot as plt

    # One difference only: the same LSTM with and without group DRO, both uncorrected.
    with_col = "rmsse_lstm_dro" if "rmsse_lstm_dro" in data.per_product else "rmsse"
    per = data.per_product.sort_values(with_col, ascending=False)
    fig, ax = plt.subplots(figsize=(8, max(3, 0.25 * len(per) + 1)))
    y = np.arange(len(per))
    ax.barh(y - 0.2, per[with_col], height=0.4, label="with group DRO")
    if "rmsse_lstm_plain" in per:
        ax.barh(y + 0.2, per["rmsse_lstm_plain"], height=0.4, label="without")
    ax.set_yticks(y, per["product_id"].astype(str), **_PLAIN)
    ax.invert_yaxis()
    ax.set_xlabel("test RMSSE (no bias correction)")
    ax.set_title("Per-product error of the LSTM with and without group DRO")
    ax.legend()
    return _png(fig)


def _bias_plot(data: ReportData) -> bytes:
    import matplotlib.pyplot as plt

    pb = data.per_product_bias.sort_values("bias_before")
    fig, ax = plt.subplots(figsize=(8, max(3, 0.25 * len(pb) + 1)))
    y = np.arange(len(pb))
    ax.barh(y - 0.2, pb["bias_before"], height=0.4, label="before correction")
    ax.barh(y + 0.2, pb["bias_after"], height=0.4, label="after correction")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, pb["product_id"].astype(str), **_PLAIN)
    ax.set_xlabel("mean error (actual − forecast), units")
    ax.set_title("Per-product bias on the test window")
    ax.legend()
    return _png(fig)


def _shap_plot(data: ReportData) -> bytes:
    import matplotlib.pyplot as plt

    top = data.shap_summary.head(15).iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, max(3, 0.3 * len(top) + 1)))
    if top.empty:  # a baseline serves: nothing to attribute
        reason = data.shap_settings.get("reason", "nothing was explained")
        ax.text(
            0.5, 0.5, f"No SHAP values:\n{reason}", ha="center", va="center", wrap=True, **_PLAIN
        )
        ax.set_axis_off()
    else:
        labels = [f"{f} ({i})" for f, i in zip(top["feature"], top["input"], strict=True)]
        if "model" in top and top["model"].nunique() > 1:
            labels = [f"{m}: {lab}" for m, lab in zip(top["model"], labels, strict=True)]
        y = np.arange(len(labels))
        ax.barh(y, top["sum_abs_shap_over_steps"])
        ax.set_yticks(y, labels, **_PLAIN)
        ax.set_xlabel("mean |SHAP| summed over time steps")
    kind = data.shap_settings.get("kind", "lstm")
    ax.set_title(f"Feature attributions (SHAP of the {kind} forecast, test windows)", **_PLAIN)
    return _png(fig)


def _training_plot(data: ReportData) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for key in ("loss", "val_loss", "val_rmsse", "val_disparity"):
        if data.history.get(key):
            ax.plot(range(1, len(data.history[key]) + 1), data.history[key], marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_title("Final model training")
    ax.legend()
    return _png(fig)


_DRAWERS = {
    "fairness.png": _fairness_plot,
    "bias.png": _bias_plot,
    "shap_summary.png": _shap_plot,
    "training.png": _training_plot,
}
