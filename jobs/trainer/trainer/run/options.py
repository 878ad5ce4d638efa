"""The training job's options: `JobOptions` (flags and their environment variables) and
`RequestInfo` (the retrain request a run serves).

A module of their own, so the run's stages (`trainer.run.steps`) take them without
importing the orchestrator (`trainer.run.main`, which re-exports both).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainer.config import TrainConfig
from trainer.judge.promotion import Tolerances
from trainer.models.tuning import UNITS
from trainer.run.partitions import DEFAULT_PARTITION_SIZE

__all__ = ["JobOptions", "RequestInfo"]


@dataclass(frozen=True)
class RequestInfo:
    """The retrain request this run serves (as train_trigger sets it in the environment)."""

    request_id: str | None = None
    reason: str | None = None
    health_check_id: str | None = None
    window_start: str | None = None
    window_end: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | Any) -> RequestInfo:
        """Read REQUEST_ID, REASON, HEALTH_CHECK_ID, WINDOW_START, WINDOW_END."""
        values = {
            name: (environ.get(name.upper()) or "").strip() or None
            for name in ("request_id", "reason", "health_check_id", "window_start", "window_end")
        }
        return cls(**values)


@dataclass(frozen=True)
class JobOptions:
    """The run's options (flags and their environment variables), read at the entry point."""

    mode: str
    run_id: str
    study_id: str
    train_config: TrainConfig = field(default_factory=TrainConfig)
    trials: int = 20
    timeout_s: float | None = None
    optuna_storage: str | None = None
    task_index: int = 0
    task_count: int = 1
    attempt: int = 0
    max_retries: int = 0
    search_units: tuple[int, ...] = UNITS
    disparity_weight: float = 0.5
    tolerances: Tolerances = field(default_factory=Tolerances)
    shap_products: int = 8
    request: RequestInfo = field(default_factory=RequestInfo)
    # Issue 26: products per partition (TRAIN_PARTITION_SIZE), the attribute pattern on
    # the product id (TRAIN_PARTITION_KEY), and how long a task waits for the shared
    # tuning and task 0 for every partition (TRAIN_GATHER_TIMEOUT_S).
    partition_size: int = DEFAULT_PARTITION_SIZE
    partition_key: str | None = None
    gather_timeout_s: float = 21600.0
