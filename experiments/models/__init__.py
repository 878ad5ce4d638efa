"""The forecasters the harness compares, by name; heavy libraries load only when used."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.models.base import Forecast, Forecaster, ForecastTask

MODEL_NAMES: tuple[str, ...] = (
    "seasonal_naive",
    "sarima",
    "sarima_adf",
    "lightgbm",
    "lightgbm_quantile",
    "deepar",
    "trainer",
)
CHEAP_MODELS: tuple[str, ...] = ("seasonal_naive", "sarima", "sarima_adf")


@dataclass(frozen=True)
class ModelOptions:
    """Knobs the command line passes to the models (defaults fit a 2-core machine)."""

    n_jobs: int = 2
    seed: int = 0
    sarima_history_days: int = 728
    lgbm_rounds: int = 300
    lgbm_last_year: bool = True
    deepar_epochs: int = 20
    lstm_epochs: int = 8
    lstm_train_stride: int = 4
    seeds: tuple[int, ...] = (42, 43, 44)  # the neural models' seeds
    interval_dump: Path | None = None  # the trainer's interval inputs per cutoff go here
    # the trainer's LightGBM quantile tails (issue 27; the trainer's default: none)
    trainer_tails: tuple[float, ...] = ()


def build_models(names: list[str] | tuple[str, ...], opts: ModelOptions) -> list[Forecaster]:
    """Instantiate the named models (unknown names raise `ValueError`)."""
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {list(MODEL_NAMES)}")
    models: list[Any] = []
    for name in names:
        if name == "seasonal_naive":
            from experiments.models.naive import SeasonalNaive

            models.append(SeasonalNaive())
        elif name in ("sarima", "sarima_adf"):
            from experiments.models.sarima import Sarima

            models.append(
                Sarima(
                    adf=name == "sarima_adf",
                    history_days=opts.sarima_history_days,
                    n_jobs=opts.n_jobs,
                )
            )
        elif name == "lightgbm":
            from experiments.models.lgbm import LightGBMGlobal

            models.append(
                LightGBMGlobal(
                    num_boost_round=opts.lgbm_rounds,
                    num_threads=opts.n_jobs,
                    seed=opts.seed,
                    last_year=opts.lgbm_last_year,
                )
            )
        elif name == "lightgbm_quantile":
            from experiments.models.lgbm import LightGBMQuantile

            models.append(
                LightGBMQuantile(
                    num_boost_round=opts.lgbm_rounds, num_threads=opts.n_jobs, seed=opts.seed
                )
            )
        elif name == "deepar":
            from experiments.models.deepar import DeepAR

            for seed in opts.seeds:
                model = DeepAR(max_epochs=opts.deepar_epochs, num_threads=opts.n_jobs, seed=seed)
                if len(opts.seeds) > 1:
                    model.name = f"deepar#s{seed}"
                models.append(model)
        else:
            from experiments.models.lstm import TrainerForecaster

            for seed in opts.seeds:
                models.append(
                    TrainerForecaster(
                        epochs=opts.lstm_epochs,
                        train_stride=opts.lstm_train_stride,
                        seed=seed,
                        suffix=f"#s{seed}" if len(opts.seeds) > 1 else "",
                        n_jobs=opts.n_jobs,
                        dump_dir=opts.interval_dump,
                        tail_levels=opts.trainer_tails,
                    )
                )
    return models


__all__ = [
    "CHEAP_MODELS",
    "MODEL_NAMES",
    "Forecast",
    "ForecastTask",
    "Forecaster",
    "ModelOptions",
    "build_models",
]
