"""The backtest's outputs: a markdown table, a plot, and the per-product figures as CSV."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.backtest import BacktestResult

PLOT_NAME = "backtest.png"
TABLE_NAME = "results.md"


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def markdown_table(summary: pd.DataFrame) -> str:
    """The aggregated metrics as a GitHub markdown table, best mean RMSSE first."""
    header = (
        "| model | RMSE | MAE | RMSSE mean | RMSSE median | MASE | bias | disparity p90/median "
        "| worst-decile RMSSE | ΔRMSSE vs naive [95% CI] | beats naive | wall s | CPU s |"
    )
    lines = [header, "|" + "---|" * 13]
    for row in summary.sort_values("rmsse").itertuples(index=False):
        d = getattr(row, "d_rmsse", float("nan"))
        if isinstance(d, float) and math.isfinite(d):
            delta = f"{d:+.3f} [{row.d_rmsse_low:+.3f}, {row.d_rmsse_high:+.3f}]"
            beats = f"{row.beats_baseline:.0%}"
        else:
            delta, beats = "–", "–"
        lines.append(
            f"| {row.model} | {_num(row.rmse)} | {_num(row.mae)} | {_num(row.rmsse)} "
            f"| {_num(row.rmsse_median)} | {_num(row.mase)} | {_num(row.bias, 3)} "
            f"| {_num(row.disparity)} | {_num(row.worst_decile_rmsse)} | {delta} | {beats} "
            f"| {_num(row.wall_s, 1)} | {_num(row.cpu_s, 1)} |"
        )
    return "\n".join(lines)


def plot(
    result: BacktestResult, product_metrics: pd.DataFrame, summary: pd.DataFrame, path: Path
) -> Path:
    """Three panels: per-product RMSSE by model, run time, and total units at the last cutoff."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = list(summary.sort_values("rmsse")["model"])
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5), gridspec_kw={"width_ratios": [1.3, 0.9, 1.5]})

    ax = axes[0]
    data = [
        product_metrics.loc[product_metrics["model"] == m, "rmsse"].dropna().to_numpy()
        for m in order
    ]
    ax.boxplot(data, orientation="horizontal", showmeans=True, whis=(5, 95), showfliers=False)
    ax.set_yticks(range(1, len(order) + 1), order)
    ax.invert_yaxis()
    ax.set_xlabel("per-product RMSSE (box: quartiles, whiskers: 5–95%, ▲ mean)")
    ax.set_title("Accuracy and its spread over products")
    ax.grid(axis="x", alpha=0.3)

    ax = axes[1]
    times = summary.set_index("model").loc[order]
    y = np.arange(len(order))
    ax.barh(y - 0.2, times["wall_s"], height=0.4, label="wall")
    ax.barh(y + 0.2, times["cpu_s"], height=0.4, label="CPU")
    ax.set_yticks(y, order)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(f"seconds, all {len(result.cutoffs)} cutoffs (log scale)")
    ax.set_title("Run time (shared 2-core machine)")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)

    ax = axes[2]
    last = result.cutoffs[-1]
    fc = result.forecasts[result.forecasts["cutoff"] == last]
    # Seeded runs are named `model#s<seed>`: their forecasts are averaged, as in the tables.
    fc = fc.assign(model=fc["model"].str.replace(r"#s\d+$", "", regex=True))
    one = fc.drop_duplicates(["product_id", "date"])  # the actual sales, once per cell
    actual = one.groupby("date")["actual"].sum(min_count=1)  # closed days: no point
    ax.plot(
        actual.index, actual.to_numpy(), color="black", lw=2.2, label="actual", marker="o", ms=3
    )
    for m in order:
        mine = fc[fc["model"] == m]
        total = mine.groupby(["date", "product_id"])["forecast"].mean().groupby("date").sum()
        ax.plot(total.index, total.to_numpy(), lw=1.2, label=m)
    ax.set_title(f"All products' units, horizon after the last cutoff ({last.date()})")
    ax.set_ylabel("units (sum over products)")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def per_cutoff_table(rows: pd.DataFrame, value: str = "rmsse") -> str:
    """Models × cutoffs of `value` (mean per-product RMSSE by default), with the mean."""
    if rows.empty:
        return ""
    wide = rows.pivot(index="model", columns="cutoff", values=value)
    wide["mean"] = wide.mean(axis=1)
    wide = wide.sort_values("mean")
    cols = list(wide.columns)
    lines = ["| model | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for model, row in wide.iterrows():
        lines.append(f"| {model} | " + " | ".join(_num(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def interval_lines(rows: pd.DataFrame) -> list[str]:
    """The intervals section: coverage of the 10–90 interval, its 10th percentile over
    products and WSPL per cutoff, with issue 27's goals judged on them."""
    if rows.empty or "wspl" not in rows.columns or rows["wspl"].isna().all():
        return []
    q = rows[rows["wspl"].notna()]
    out = [
        "## Intervals (P10/P50/P90)",
        "",
        "`coverage_80`: share of scored days inside [P10, P90] (nominal 0.80):",
        "",
        per_cutoff_table(q, "coverage_80"),
        "",
        "`coverage_80_p10`: the 10th percentile over products of each product's coverage:",
        "",
        per_cutoff_table(q, "coverage_80_p10"),
        "",
        "`wspl`: M5's weighted scaled pinball loss at 0.1/0.5/0.9 (scale: in-sample seasonal-"
        "naive MAE; weights: units sold in the history's last 28 days; lower is better):",
        "",
        per_cutoff_table(q, "wspl"),
        "",
    ]
    models = set(q["model"])
    if "trainer" in models:
        t = q[q["model"] == "trainer"]
        cov, p10 = t["coverage_80"].mean(), t["coverage_80_p10"].mean()
        met = 0.78 <= cov <= 0.82 and p10 >= 0.65
        out.append(
            f"- Issue 27, coverage (served forecaster: mean `coverage_80` in [0.78, 0.82], "
            f"`coverage_80_p10` ≥ 0.65): {cov:.3f} and {p10:.3f} — "
            f"**{'met' if met else 'not met'}**."
        )
        if "lightgbm_quantile" in models:
            wide = q.pivot(index="cutoff", columns="model", values="wspl")
            both = wide[["trainer", "lightgbm_quantile"]].dropna()
            ok = both["trainer"] <= both["lightgbm_quantile"]
            missing = len(wide) - len(both)
            out.append(
                f"- Issue 27, WSPL (served ≤ quantile-LightGBM reference at ≥ 5 of 6 cutoffs): "
                f"at {int(ok.sum())} of {len(ok)}"
                + (f" (the reference did not run at {missing} cutoff(s))" if missing else "")
                + f" — **{'met' if ok.sum() >= 5 else 'not met'}**."
            )
        out.append("")
    return out


def comparisons_table(comparisons: list[dict[str, Any]]) -> str:
    """Paired comparisons: mean RMSSE difference and worst-decile change, with intervals."""
    lines = [
        "| model | against | cells | ΔRMSSE [95% CI] | mean change | worst-decile change [95% CI] |",
        "|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        lines.append(
            f"| {c['model']} | {c['reference']} | {c['cells']} "
            f"| {c['d_rmsse']:+.4f} [{c['d_rmsse_low']:+.4f}, {c['d_rmsse_high']:+.4f}] "
            f"| {c['rmsse_change']:+.1%} "
            f"| {c['worst_decile_change']:+.1%} [{c['worst_decile_change_low']:+.1%}, "
            f"{c['worst_decile_change_high']:+.1%}] |"
        )
    return "\n".join(lines)


def goals(rows: pd.DataFrame, comparisons: list[dict[str, Any]]) -> list[str]:
    """Issue 16's goals, judged on this run's figures (what is not measured says so)."""
    out = []
    fair = next(
        (c for c in comparisons if c["model"] == "debiased_lstm" and c["reference"] == "lstm"),
        None,
    )
    if fair is None:
        out.append("- Fairness goal: not measured (no `trainer` model in this run).")
    else:
        met = fair["worst_decile_change"] <= -0.10 and fair["rmsse_change"] <= 0.02
        out.append(
            f"- Fairness goal (debiased LSTM's worst-decile RMSSE ≥ 10% below the plain "
            f"LSTM's at ≤ 2% mean cost): worst decile {fair['worst_decile_change']:+.1%}, "
            f"mean {fair['rmsse_change']:+.1%} — **{'met' if met else 'not met'}**."
        )
    if rows.empty or not {"trainer", "lightgbm"} <= set(rows["model"]):
        out.append("- Accuracy goal: not measured (needs `trainer` and `lightgbm`).")
    else:
        wide = rows.pivot(index="cutoff", columns="model", values="rmsse")
        ok = wide["trainer"] <= wide["lightgbm"]
        out.append(
            "- Accuracy goal (served forecaster's mean RMSSE ≤ LightGBM alone at every "
            f"cutoff): at {int(ok.sum())} of {len(ok)} cutoffs — "
            f"**{'met' if bool(ok.all()) else 'not met'}**."
        )
    return out


def _notes_lines(notes: Mapping[str, list[dict[str, Any]]]) -> list[str]:
    lines = []
    for model, per_cutoff in notes.items():
        shown = [
            {k: v for k, v in n.items() if k != "fallback_reasons"}
            for n in per_cutoff
            if len(n) > 1
        ]
        if shown:
            lines.append(f"- `{model}`: " + "; ".join(json.dumps(n, default=str) for n in shown))
    return lines


def write_report(
    out_dir: Path,
    result: BacktestResult,
    product_metrics: pd.DataFrame,
    summary: pd.DataFrame,
    *,
    command: str,
    dataset: str,
    context: Mapping[str, Any],
    cutoff_rows: pd.DataFrame | None = None,
    comparisons: list[dict[str, Any]] | None = None,
) -> dict[str, Path]:
    """Write results.md, backtest.png, per_product.csv and summary.json into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot(result, product_metrics, summary, out_dir / PLOT_NAME)
    csv = out_dir / "per_product.csv"
    product_metrics.round(5).to_csv(csv, index=False)
    summary_json = out_dir / "summary.json"
    summary_json.write_text(
        json.dumps(
            {
                "dataset": dataset,
                "command": command,
                "horizon": result.horizon,
                "cutoffs": [str(c.date()) for c in result.cutoffs],
                "n_products": len(result.products),
                "context": dict(context),
                "models": summary.replace({np.nan: None}).to_dict(orient="records"),
                "per_cutoff": (
                    []
                    if cutoff_rows is None
                    else cutoff_rows.replace({np.nan: None}).to_dict(orient="records")
                ),
                "comparisons": comparisons or [],
                "notes": result.notes,
            },
            indent=2,
            default=str,
        )
    )
    cutoffs = ", ".join(str(c.date()) for c in result.cutoffs)
    lines = [
        f"# Backtest: {dataset}",
        "",
        "Made by:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"- Products: {len(result.products)}; horizon {result.horizon} days; cutoffs (last day "
        f"each model sees): {cutoffs}. Every model gets the same histories and the horizon's "
        "promotion flags; days without a record (store closed) are not scored.",
    ]
    lines += [f"- {k}: {v}" for k, v in context.items()]
    lines += [
        "",
        markdown_table(summary),
        "",
        "Bias is mean(forecast − actual), as in the health check and the trainer (> 0: forecasts "
        "too high). RMSE, MAE, bias in units; "
        "RMSSE scaled by the one-step naive in-sample RMSE (M5), MASE by the 7-day seasonal "
        "naive in-sample MAE, both per product on each cutoff's own history; every column "
        "is the mean over products (each product counts once) unless it says otherwise. "
        "Disparity = p90 / median of per-product RMSSE. ΔRMSSE: mean over products of "
        "(model − seasonal naive), bootstrap interval over products; beats naive: share of "
        "products with lower RMSSE than seasonal naive. Wall and CPU seconds are totals over "
        "all cutoffs, measured on a 2-core machine shared with other work, so they are rough.",
        "",
        *(
            [
                "## Per cutoff",
                "",
                "Mean per-product RMSSE of each cutoff's 28-day window (seeds averaged):",
                "",
                per_cutoff_table(cutoff_rows),
                "",
                "Worst-decile RMSSE (mean of the 10% worst products) per cutoff:",
                "",
                per_cutoff_table(cutoff_rows, "worst_decile_rmsse"),
                "",
                *interval_lines(cutoff_rows),
            ]
            if cutoff_rows is not None and not cutoff_rows.empty
            else []
        ),
        *(
            [
                "## Paired comparisons",
                "",
                "Same cutoffs and products, seeds averaged per cell. ΔRMSSE: mean over "
                "(cutoff, product) cells of model − reference, BCa bootstrap interval over "
                "the cells (not over time: six windows are few). Worst-decile change: "
                "relative, per-product RMSSE pooled over the cutoffs, paired bootstrap over "
                "products.",
                "",
                comparisons_table(comparisons),
                "",
                "Goals of issue 16 on these figures:",
                "",
                *goals(cutoff_rows if cutoff_rows is not None else pd.DataFrame(), comparisons),
                "",
            ]
            if comparisons
            else []
        ),
        f"![backtest]({PLOT_NAME})",
        "",
        "Per-product figures: [per_product.csv](per_product.csv); everything as JSON: "
        "[summary.json](summary.json).",
    ]
    notes = _notes_lines(result.notes)
    if notes:
        lines += ["", "## Model notes (per cutoff)", "", *notes]
    table = out_dir / TABLE_NAME
    table.write_text("\n".join(lines) + "\n")
    return {"table": table, "plot": png, "per_product": csv, "summary": summary_json}
