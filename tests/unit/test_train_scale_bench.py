"""bench/train_scale_bench.py (issue 26): its scoring, and a smoke run of the whole bench."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location(
        "train_scale_bench", ROOT / "bench" / "train_scale_bench.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_score_against_seasonal_naive_on_the_unseen_days() -> None:
    bench = _bench()
    days = pd.date_range("2024-01-01", periods=28, freq="D")
    history = pd.DataFrame(
        {
            "product_id": np.repeat(["a", "b"], 28),
            "date": np.tile(days, 2),
            "units_sold": np.r_[np.arange(28) % 7, np.full(28, 3.0)],
        }
    )
    future_days = pd.date_range("2024-01-29", periods=14, freq="D")
    future = pd.DataFrame(
        {
            "product_id": np.repeat(["a", "b"], 14),
            "date": np.tile(future_days, 2),
            "units_sold": np.r_[np.arange(28, 42) % 7 + 1.0, np.full(14, 5.0)],
        }
    )
    # "a": weekly pattern 0..6 for 4 weeks (27 one-day steps: 24 of +1, 3 of -6, scale
    # sqrt(132 / 27)), one unit higher after: seasonal naive's RMSE 1; "b": constant
    # (scale 0), not scored
    perfect = future.rename(columns={"date": "target_date", "units_sold": "predicted_units"})
    out = bench.score(perfect, history, future)
    assert out["products_scored"] == 1 and out["products_without_forecast"] == 0
    assert out["served_mean_rmsse"] == 0.0
    assert out["seasonal_naive_mean_rmsse"] == round(np.sqrt(27 / 132), 4)
    assert out["improvement_vs_seasonal_naive"] == 1.0
    missing = perfect[perfect["product_id"] == "a"].iloc[:-1]  # one day short
    out = bench.score(missing, history, future)
    assert out["products_without_forecast"] == 2 and out["products_scored"] == 0
    assert out["served_mean_rmsse"] is None


# The smallest run that still goes through every step of the bench: the trainer's own
# horizon must stay the bench's HORIZON (28 days scored after the catalogue's end); the
# rest is as small as a training allows (two-week lookback, four weeks of validation and
# of test, one LightGBM member, no augmentation, one trial, one epoch, eight LSTM units,
# one product explained). Four products x half a year: two partitions of two.
SMOKE_CONFIG = {
    "horizon": 28,
    "lookback": 14,
    "val_days": 28,
    "test_days": 28,
    "epochs": 1,
    "batch_size": 64,
    "min_observations": 30,
    "augment_copies": 0,
    "gbm_history_days": [0],
}


@pytest.mark.slow
def test_smoke_two_partitions_in_two_task_processes(tmp_path) -> None:
    bench = _bench()
    assert SMOKE_CONFIG["horizon"] == bench.HORIZON
    out = tmp_path / "scale.json"
    result = bench.main(
        [
            "--products", "4", "--years", "0.5", "--tasks", "2", "--partition-size", "2",
            "--env", "TRIALS=1", "--env", "EPOCHS=1", "--env", "TUNING_TIMEOUT_S=5",
            "--env", "SEARCH_UNITS=8", "--env", "SHAP_PRODUCTS=1",
            "--env", f"TRAIN_CONFIG={json.dumps(SMOKE_CONFIG)}",
            "--workdir", str(tmp_path / "work"), "--out", str(out),
        ]
    )  # fmt: skip
    assert json.loads(out.read_text())["products"] == 4
    run = result["partitioned"]
    assert [t["returncode"] for t in run["per_task"]] == [0, 0]
    assert all(t["peak_rss_mb"] > 0 and t["cpu_s"] > 0 for t in run["per_task"])
    assert run["partition_runs"] == 2 and run["champion"]["kind"] == "partitioned"
    held = run["held_out_next_days"]
    assert held["products_scored"] + held["products_without_forecast"] <= 4
    assert held["products_without_forecast"] == 0
    assert "partition" in run["stage_wall_s"]["task0"]
