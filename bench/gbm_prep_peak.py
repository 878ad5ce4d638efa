"""Peak memory of the trainer's preparation and LightGBM rows/bins, without the boosting.

Prepares a `forecastguard synth --out` CSV with the defaults and trains the LightGBM
ensemble for 5 rounds (so the peak is the rows and bins, not minutes of boosting);
prints the process's peak RSS (`ru_maxrss`) after `prepare` and after `train_gbm`.

    .venv/bin/python bench/gbm_prep_peak.py /tmp/synth300.csv
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from train_bench import read_synth_csv

from trainer.config import TrainConfig
from trainer.data.prepare import prepare
from trainer.models.gbm import train_gbm


def peak_mb() -> int:
    """The process's peak resident set size so far, in MB (Linux: ru_maxrss is in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sales", type=Path, help="a `forecastguard synth --out` CSV")
    args = parser.parse_args()
    t = time.perf_counter()
    prepared = prepare(read_synth_csv(args.sales), TrainConfig())
    after_prepare = peak_mb()
    train_gbm(prepared, rounds=5, early_stopping=2, num_threads=1)
    print(
        f"peak RSS after prepare {after_prepare} MB, after train_gbm (5 rounds) "
        f"{peak_mb()} MB, {time.perf_counter() - t:.1f} s"
    )


if __name__ == "__main__":
    main()
