"""Hyper-parameter tuning with Optuna: seeded TPE, median pruning on per-epoch reports.

The objective mixes the validation's mean per-product RMSSE with its worst-decile RMSSE,
`(1 - w) * mean + w * worst_decile` (`w` = `disparity_weight`, in [0, 1]): both terms are
RMSSEs, so the fairness term cannot dominate the accuracy term by its scale, and a
product getting worse never lowers it (a ratio such as p90 / median improves when the
median product gets worse). It is reported after every epoch (from the fairness
callback's `val_rmsse`/`val_worst_decile`) so the `MedianPruner` can stop a poor trial
early. With a time budget (`timeout_s`; the job's default 150 s) no trial starts after it
and a running one stops at its next epoch end once the study has a completed trial, so
the budget holds even when one trial trains a large model. Every lookback in the search
space can be chosen: the space holds the lookbacks up to the prepared windows' length
(`TrainConfig.lookback`), and that length itself.

The study lives in memory, or in an RDB (`OPTUNA_STORAGE`: a database of its own, e.g. on
the same Cloud SQL instance; not forecastguard's database, whose Alembic version table
Optuna's own migrations would collide with): then several Cloud Run Job tasks (`CLOUD_RUN_TASK_INDEX` of
`CLOUD_RUN_TASK_COUNT`) load the same study by name and tune it in parallel until the
study holds `n_trials` finished trials. Each task seeds its sampler with `seed + index`.

A trial trains the final model's group-DRO LSTM exactly (the same seed, windows and
epochs; the pruning callback only reports): when the study's best trial is one this
process completed, `TuningResult.best_model` holds its trained model, and the job reuses
it instead of training the same network a second time (`train_challenger(lstm=...)`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
import pandas as pd
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from forecastguard.logs import get_logger
from trainer.config import ACTIVATIONS, ModelParams, TrainConfig

if TYPE_CHECKING:
    from trainer.types import Prepared, Trained

log = get_logger(__name__)

LOOKBACKS = (7, 14, 21, 28)
UNITS = (16, 32, 64, 128)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class TuningError(RuntimeError):
    """Tuning produced no usable trial."""


def search_space(
    trial: optuna.Trial, *, max_lookback: int = 28, units: tuple[int, ...] = UNITS
) -> dict[str, Any]:
    """The hyper-parameters of one trial (`ModelParams` fields).

    The lookbacks are `LOOKBACKS` up to the prepared windows' length `max_lookback`, and
    `max_lookback` itself: every value offered can be trained.
    """
    lookbacks = sorted({lb for lb in LOOKBACKS if lb <= max_lookback} | {max_lookback})
    return {
        "units": trial.suggest_categorical("units", list(units)),
        "dropout": trial.suggest_float("dropout", 0.0, 0.4, step=0.05),
        "activation": trial.suggest_categorical("activation", [a for a in ACTIVATIONS[:3]]),
        "learning_rate": trial.suggest_float("learning_rate", 3e-4, 1e-2, log=True),
        "lookback": trial.suggest_categorical("lookback", lookbacks),
    }


def objective_value(rmsse: float, worst_decile: float, weight: float) -> float:
    """`(1 - weight) * mean RMSSE + weight * worst-decile RMSSE` (weight in [0, 1])."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"disparity_weight must be in [0, 1], got {weight}")
    if not math.isfinite(rmsse):
        return math.inf
    if not math.isfinite(worst_decile):
        worst_decile = rmsse
    return float((1.0 - weight) * rmsse + weight * worst_decile)


class _PruningCallbackFactory:
    """Builds a Keras callback that reports the objective each epoch and prunes.

    Built lazily so importing this module does not load Keras.
    """

    def __new__(cls, trial: optuna.Trial, weight: float, deadline: float | None = None) -> Any:
        import keras

        class OptunaPruning(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
                logs = logs or {}
                if "val_rmsse" not in logs:
                    raise TuningError("the epoch logs lack val_rmsse (fairness callback missing)")
                value = objective_value(
                    float(logs["val_rmsse"]), float(logs.get("val_worst_decile", math.nan)), weight
                )
                trial.report(value, step=epoch + 1)
                if trial.should_prune():
                    log.info(
                        "trial pruned",
                        extra={"trial": trial.number, "epoch": epoch + 1, "objective": value},
                    )
                    raise optuna.TrialPruned(f"pruned at epoch {epoch + 1}: {value:.4f}")
                if deadline is not None and time.monotonic() > deadline and _has_complete(trial):
                    # Optuna's own timeout only stops *starting* trials; one long trial would
                    # overrun the budget by minutes. Stopped here once a trial has completed.
                    log.info(
                        "trial stopped: tuning budget spent",
                        extra={"trial": trial.number, "epoch": epoch + 1, "objective": value},
                    )
                    raise optuna.TrialPruned(f"tuning budget spent at epoch {epoch + 1}")

        return OptunaPruning()


def _has_complete(trial: optuna.Trial) -> bool:
    study = trial.study
    return bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def pruning_callback(
    trial: optuna.Trial, disparity_weight: float, deadline: float | None = None
) -> Any:
    """The Keras callback reporting `objective_value` per epoch to `trial` (may prune).

    After `deadline` (`time.monotonic()`), it also stops the trial at its next epoch end,
    provided the study already has a completed trial (so tuning always yields one).
    """
    return _PruningCallbackFactory(trial, disparity_weight, deadline)


TrainFn = Callable[..., "Trained"]


def make_objective(
    prepared: Prepared,
    cfg: TrainConfig,
    *,
    disparity_weight: float = 0.5,
    units: tuple[int, ...] = UNITS,
    train_fn: TrainFn | None = None,
    deadline: float | None = None,
    keep: BestModel | None = None,
) -> Callable[[optuna.Trial], float]:
    """The objective closure: train with the trial's parameters, return the penalised error.

    With `keep`, the trained model of the best trial completed so far is kept in it."""
    if train_fn is None:
        from trainer.models.lstm import train as train_fn

    def objective(trial: optuna.Trial) -> float:
        params = ModelParams(**search_space(trial, max_lookback=prepared.cfg.lookback, units=units))
        trained = train_fn(
            prepared,
            params,
            cfg,
            fairness=True,
            callbacks=(pruning_callback(trial, disparity_weight, deadline),),
            verbose=False,
        )
        vm = trained.val_metrics
        value = objective_value(vm["rmsse"], vm["worst_decile_rmsse"], disparity_weight)
        trial.set_user_attr("val_rmsse", float(vm["rmsse"]))
        trial.set_user_attr("val_worst_decile", float(vm["worst_decile_rmsse"]))
        trial.set_user_attr("val_disparity", float(vm["disparity_p90_over_median"]))
        trial.set_user_attr("best_epoch", int(trained.best_epoch))
        trial.set_user_attr("epochs_run", int(trained.epochs_run))
        trial.set_user_attr("duration_s", round(float(trained.duration_s), 2))
        if keep is not None:
            keep.offer(trial.number, value, trained)
        return value

    return objective


@dataclass
class BestModel:
    """The trained model of this process's best completed trial so far (one kept: the
    others are released as soon as a trial beats them)."""

    number: int = -1
    value: float = math.inf
    trained: Trained | None = None

    def offer(self, number: int, value: float, trained: Trained) -> None:
        """Keep `trained` if its trial beats the kept one (a tie keeps the earlier trial,
        as `optuna.Study.best_trial` does; a NaN is a failed trial)."""
        if math.isnan(value):
            return
        if self.trained is None or value < self.value:
            self.number, self.value, self.trained = number, value, trained

    def of(self, best: optuna.trial.FrozenTrial, params: ModelParams) -> Trained | None:
        """The kept model when it is the study's best trial's, trained with `params`."""
        t = self.trained
        if t is None or best.number != self.number or t.params != params or not t.fairness:
            return None
        return t


@dataclass(frozen=True)
class TuningResult:
    """What tuning found (the table goes into the artifacts and the report)."""

    study_name: str
    best_params: ModelParams
    best_value: float
    best_trial: int
    best_epoch: int
    trials: pd.DataFrame
    counts: dict[str, int]
    storage: str
    task_index: int
    task_count: int
    duration_s: float
    extra: dict[str, Any] = field(default_factory=dict)
    # the best trial's trained group-DRO LSTM when this process trained it (None: another
    # task's trial, or a trial of an earlier run of the study); not part of the summary
    best_model: Trained | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON summary."""
        return {
            "study_name": self.study_name,
            "best_params": self.best_params.to_dict(),
            "best_value": self.best_value,
            "best_trial": self.best_trial,
            "best_epoch": self.best_epoch,
            "counts": self.counts,
            "storage": self.storage,
            "task_index": self.task_index,
            "task_count": self.task_count,
            "duration_s": round(self.duration_s, 2),
        }


def _progress(n_trials: int) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        done = len(study.get_trials(deepcopy=False, states=FINISHED))
        try:
            best = study.best_value
        except ValueError:
            best = None
        log.info(
            f"trial {trial.number} {trial.state.name.lower()} ({done}/{n_trials})",
            extra={
                "trial": trial.number,
                "state": trial.state.name,
                "value": trial.value,
                "params": trial.params,
                "best_value": best,
                "finished": done,
                "n_trials": n_trials,
            },
        )

    return report


def _storage_kind(storage: str | None) -> str:
    if not storage:
        return "memory"
    return storage.split(":", 1)[0]


HEARTBEAT_S = 60
GRACE_S = 300


@contextlib.contextmanager
def _init_lock(url: str, timeout_s: int = 300) -> Iterator[None]:
    """Serialize Optuna's storage initialization across processes.

    Optuna creates its tables and stamps their schema version on first use; tasks doing
    that at the same moment corrupt it (both stamp, one the oldest version). MySQL:
    `GET_LOCK`; SQLite: an exclusive lock on a file beside the database.
    """
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("mysql", "mariadb"):
        engine = sa.create_engine(parsed, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                got = conn.execute(
                    sa.text("SELECT GET_LOCK('forecastguard_optuna_init', :t)"), {"t": timeout_s}
                ).scalar()
                if got != 1:
                    raise TuningError(f"could not lock the Optuna storage within {timeout_s} s")
                try:
                    yield
                finally:
                    conn.execute(sa.text("SELECT RELEASE_LOCK('forecastguard_optuna_init')"))
        finally:
            engine.dispose()
    elif backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
        import fcntl

        with open(f"{parsed.database}.optuna-init.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    else:
        yield


def _check_own_database(url: str) -> None:
    """Refuse forecastguard's own database: Optuna and forecastguard's migrations would
    share Alembic's `alembic_version` table, and Optuna would refuse the schema."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    if "alembic_version" in tables and "studies" not in tables:
        raise TuningError(
            "OPTUNA_STORAGE points at a database that another Alembic schema (forecastguard's "
            "own) already uses: give Optuna a database of its own (the same server is fine)"
        )


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The study's RDB storage, created under a lock, with heartbeats: a crashed task's
    running trial is failed after `GRACE_S`, so it does not hold the others up."""
    _check_own_database(url)
    with _init_lock(url):
        return optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)


def open_study(
    study_name: str, *, storage: str | None, seed: int, task_index: int = 0
) -> optuna.Study:
    """Create or load the study (seeded TPE, median pruning from the second epoch on)."""
    sampler = optuna.samplers.TPESampler(seed=seed + task_index, n_startup_trials=5)
    # Steps are epochs counted from 1; the first epoch is too noisy to prune on.
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
    return optuna.create_study(
        study_name=study_name,
        storage=open_storage(storage) if storage else None,
        sampler=sampler,
        pruner=pruner,
        direction="minimize",
        load_if_exists=True,
    )


def wait_for_others(
    study: optuna.Study, n_trials: int, deadline: float, poll_s: float, idle_polls: int = 3
) -> None:
    """Wait until the shared study holds `n_trials` finished trials and none is running.

    Gives up at `deadline` (time.monotonic), or after `idle_polls` polls of `poll_s`
    with nothing running and trials still missing (another task failed or never
    started). While another task's trial runs, the polls start at a quarter second and
    double up to `poll_s`: a trial about to finish is not waited for a whole `poll_s`.
    """
    idle = busy = 0
    while time.monotonic() < deadline:
        optuna.storages.fail_stale_trials(study)  # trials of tasks that died
        finished = len(study.get_trials(deepcopy=False, states=FINISHED))
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if running == 0 and (finished >= n_trials or idle >= idle_polls):
            return
        idle = idle + 1 if running == 0 else 0
        busy = busy + 1 if running else 0
        log.info(
            "waiting for other tasks' trials",
            extra={"running": running, "finished": finished, "n_trials": n_trials},
        )
        time.sleep(min(poll_s, 0.25 * 2 ** min(busy - 1, 16)) if running else poll_s)


def tune(
    prepared: Prepared,
    cfg: TrainConfig,
    *,
    n_trials: int,
    timeout_s: float | None = None,
    study_name: str,
    storage: str | None = None,
    task_index: int = 0,
    task_count: int = 1,
    disparity_weight: float = 0.5,
    units: tuple[int, ...] = UNITS,
    train_fn: TrainFn | None = None,
    wait_poll_s: float = 10.0,
) -> TuningResult:
    """Run (this task's share of) the study; return the best trial of the whole study.

    With an RDB `storage` every task adds trials to the same study until it holds
    `n_trials` finished ones; task 0 then waits for the others' running trials.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if task_count > 1 and not storage:
        log.warning(
            "several tasks without OPTUNA_STORAGE: each task tunes its own in-memory study",
            extra={"task_index": task_index, "task_count": task_count},
        )
    start = time.monotonic()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(study_name, storage=storage, seed=cfg.seed, task_index=task_index)
    keep = BestModel()
    objective = make_objective(
        prepared,
        cfg,
        disparity_weight=disparity_weight,
        units=units,
        train_fn=train_fn,
        deadline=start + timeout_s if timeout_s else None,
        keep=keep,
    )
    already = len(study.get_trials(deepcopy=False, states=FINISHED))
    log.info(
        "tuning started",
        extra={
            "study": study_name,
            "storage": _storage_kind(storage),
            "n_trials": n_trials,
            "already_finished": already,
            "timeout_s": timeout_s,
            "task_index": task_index,
            "task_count": task_count,
        },
    )
    if already < n_trials:
        study.optimize(
            objective,
            n_trials=n_trials - already,
            timeout=timeout_s,
            catch=(ValueError, ArithmeticError),
            callbacks=[MaxTrialsCallback(n_trials, states=FINISHED), _progress(n_trials)],
            gc_after_trial=True,
        )
    if storage and task_count > 1 and task_index == 0:
        deadline = start + (timeout_s or 3600.0) + 600.0
        wait_for_others(study, n_trials, deadline, wait_poll_s)
    return _result(study, storage, task_index, task_count, time.monotonic() - start, keep)


def _result(
    study: optuna.Study,
    storage: str | None,
    task_index: int,
    task_count: int,
    duration: float,
    keep: BestModel | None = None,
) -> TuningResult:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    counts = {
        state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,)))
        for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    if not complete:
        raise TuningError(
            f"study {study.study_name}: no trial completed ({counts}); raise --trials or --timeout"
        )
    best = study.best_trial
    params = ModelParams(**best.params)
    frame = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs"))
    log.info(
        "tuning finished",
        extra={"best_value": best.value, "best_params": best.params, **counts},
    )
    return TuningResult(
        study_name=study.study_name,
        best_params=params,
        best_value=float(best.value),
        best_trial=best.number,
        best_epoch=int(best.user_attrs.get("best_epoch", 0)),
        trials=frame,
        counts=counts,
        storage=_storage_kind(storage),
        task_index=task_index,
        task_count=task_count,
        duration_s=duration,
        best_model=keep.of(best, params) if keep is not None else None,
    )
