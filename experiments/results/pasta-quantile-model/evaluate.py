"""The ninth pass's figures (issue 27): per cutoff, the served trainer's interval against
the quantile-LightGBM reference and its CQR, per set of cutoffs, and the identity check
(the trainer's served P10/P90 against the same run's `lightgbm_cqr`).

    .venv/bin/python experiments/results/pasta-quantile-model/evaluate.py RUN... \
        --out experiments/results/pasta-quantile-model/served.json

Each RUN is one `python -m experiments ... --models trainer,lightgbm_quantile
--keep-forecasts --out RUN` folder (`summary.json` and `raw/forecasts.csv.gz`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

SETS = {
    "new six (the plan's test)": [
        "2015-10-19",
        "2015-12-07",
        "2016-04-18",
        "2017-01-16",
        "2017-07-17",
        "2018-04-16",
    ],
    "2018 six (the pasta backtest)": [
        "2018-03-05",
        "2018-06-04",
        "2018-09-03",
        "2018-10-08",
        "2018-11-05",
        "2018-12-03",
    ],
    "2016 four": ["2016-03-07", "2016-06-06", "2016-09-05", "2016-12-05"],
    "2017 four": ["2017-03-06", "2017-06-05", "2017-09-04", "2017-12-04"],
    "fresh six (the seventh pass's)": [
        "2016-07-18",
        "2016-10-17",
        "2017-04-17",
        "2017-10-16",
        "2018-01-15",
        "2018-07-16",
    ],
}
MODELS = ("trainer", "lightgbm_quantile", "lightgbm_cqr")
FIELDS = ("coverage_80", "coverage_80_p10", "wspl")


def one_run(folder: Path) -> tuple[str, dict]:
    """A run's cutoff and its figures."""
    summary = json.loads((folder / "summary.json").read_text())
    rows = {r["model"]: r for r in summary["per_cutoff"]}
    (cutoff,) = {r["cutoff"] for r in summary["per_cutoff"]}
    f = pd.read_csv(folder / "raw" / "forecasts.csv.gz")
    keys = ["product_id", "date"]
    t = f[f["model"] == "trainer"].set_index(keys).sort_index()
    c = f[f["model"] == "lightgbm_cqr"].set_index(keys).sort_index()
    if not t.index.equals(c.index):
        raise SystemExit(f"{folder}: the trainer's and lightgbm_cqr's rows differ")
    d90 = np.abs(t["q90"].to_numpy() - c["q90"].to_numpy()) > 1e-9
    lifted = np.abs(t["q90"].to_numpy() - t["q50"].to_numpy()) <= 1e-9
    return cutoff, {
        **{m: {k: rows[m][k] for k in FIELDS} for m in MODELS},
        "p10_max_abs_diff_vs_cqr": float(np.max(np.abs(t["q10"].to_numpy() - c["q10"].to_numpy()))),
        "p90_share_differing_from_cqr": float(d90.mean()),
        "p90_differs_only_where_the_whole_p50_lifted_it": bool(np.all(~d90 | lifted)),
    }


def summarise(rows: dict[str, dict], cutoffs: list[str]) -> dict:
    """Means over `cutoffs` and the count at or below the reference."""
    have = [c for c in cutoffs if c in rows]
    out = {m: {k: float(np.mean([rows[c][m][k] for c in have])) for k in FIELDS} for m in MODELS}
    out["trainer_at_or_below_reference"] = sum(
        rows[c]["trainer"]["wspl"] <= rows[c]["lightgbm_quantile"]["wspl"] for c in have
    )
    out["trainer_below_lightgbm_cqr"] = sum(
        rows[c]["trainer"]["wspl"] < rows[c]["lightgbm_cqr"]["wspl"] for c in have
    )
    out["cutoffs"] = len(have)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    rows = dict(sorted(one_run(r) for r in args.runs))
    sets = {name: summarise(rows, cs) for name, cs in SETS.items()}
    twenty = [c for name, cs in SETS.items() if not name.startswith("new") for c in cs]
    sets["the twenty"] = summarise(rows, twenty)
    sets["all"] = summarise(rows, list(rows))
    text = json.dumps({"per_cutoff": rows, "sets": sets}, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
