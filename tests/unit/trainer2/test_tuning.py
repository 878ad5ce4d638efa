"""Optuna tuning: the search space, the objective, pruning, and a study shared by tasks."""

from __future__ import annotations

import math

import optuna
import pytest

from tests.support.trainer_config import small_config
from tests.unit.trainer.helpers import make_sales
from trainer.config import ModelParams
from trainer.models.tuning import (
    TuningError,
    objective_value,
    open_study,
    pruning_callback,
    search_space,
    tune,
    wait_for_others,
)

pytestmark = pytest.mark.usefixtures("keras_eagerly")

CFG = small_config()


def test_search_space_respects_the_prepared_lookback_and_builds_params():
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=1))
    for _ in range(20):
        trial = study.ask()
        params = search_space(trial, max_lookback=14, units=(8, 16))
        ModelParams(**params)  # every draw is a valid configuration
        assert params["lookback"] in (7, 14) and params["units"] in (8, 16)
        assert 3e-4 <= params["learning_rate"] <= 1e-2
        study.tell(trial, 1.0)


def test_objective_value_mixes_mean_and_worst_decile_rmsse():
    assert objective_value(0.8, 1.6, 0.0) == pytest.approx(0.8)
    assert objective_value(0.8, 1.6, 0.5) == pytest.approx(1.2)
    assert objective_value(0.8, 1.6, 0.25) == pytest.approx(1.0)
    assert objective_value(0.8, float("nan"), 0.5) == pytest.approx(0.8)
    assert objective_value(float("nan"), 1.0, 0.5) == math.inf
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        objective_value(0.8, 1.6, 1.5)


def test_every_lookback_offered_can_be_trained():
    from trainer.models.tuning import search_space

    for max_lookback, expected in ((28, [7, 14, 21, 28]), (56, [7, 14, 21, 28, 56]), (10, [7, 10])):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        seen = set()
        for _ in range(40):
            trial = study.ask()
            seen.add(search_space(trial, max_lookback=max_lookback)["lookback"])
            study.tell(trial, 1.0)
        assert sorted(seen) == expected


def test_pruning_callback_prunes_a_trial_worse_than_the_median():
    study = open_study("prune", storage=None, seed=0)
    for value in (1.0, 1.1, 0.9):  # three finished trials with good first epochs
        trial = study.ask()
        trial.report(value, step=1)
        trial.report(value, step=2)
        study.tell(trial, value)
    trial = study.ask()
    cb = pruning_callback(trial, disparity_weight=0.5)
    cb.on_epoch_end(0, {"val_rmsse": 3.0, "val_disparity": 1.0})  # first epoch: never pruned
    with pytest.raises(optuna.TrialPruned, match="epoch 2"):
        cb.on_epoch_end(1, {"val_rmsse": 5.0, "val_disparity": 1.0})
    good = study.ask()
    pruning_callback(good, 0.5).on_epoch_end(1, {"val_rmsse": 0.5, "val_disparity": 1.0})
    assert trial.storage.get_trial(trial._trial_id).intermediate_values == {1: 3.0, 2: 5.0}


def test_the_tuning_budget_stops_a_running_trial_once_one_has_completed():
    import time

    past = time.monotonic() - 1.0
    study = open_study("budget", storage=None, seed=0)
    first = study.ask()  # nothing completed yet: the only trial runs on past the budget
    cb = pruning_callback(first, 0.5, deadline=past)
    for epoch in range(3):
        cb.on_epoch_end(epoch, {"val_rmsse": 1.0, "val_disparity": 1.0})
    study.tell(first, 1.0)
    late = study.ask()
    with pytest.raises(optuna.TrialPruned, match="budget spent at epoch 1"):
        pruning_callback(late, 0.5, deadline=past).on_epoch_end(0, {"val_rmsse": 0.5})
    in_time = study.ask()  # a deadline still ahead stops nothing
    ahead = time.monotonic() + 3600.0
    pruning_callback(in_time, 0.5, deadline=ahead).on_epoch_end(0, {"val_rmsse": 0.5})


@pytest.fixture(scope="module")
def prepared():
    from trainer.data.prepare import prepare

    return prepare(make_sales(3, 150), CFG)


@pytest.mark.slow
def test_two_tasks_tune_one_study_in_a_shared_storage(prepared, tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    common = dict(n_trials=2, study_name="shared", storage=storage, task_count=2, units=(4,))
    first = tune(prepared, CFG, task_index=1, **common)
    assert first.counts["complete"] + first.counts["pruned"] == 2
    second = tune(prepared, CFG, task_index=0, wait_poll_s=0.01, **common)
    # Task 0 found the study full and ran no trial of its own.
    assert len(second.trials) == 2
    assert second.best_value == first.best_value
    assert second.best_params == first.best_params
    assert isinstance(second.best_params, ModelParams)
    assert {"user_attrs_val_rmsse", "user_attrs_best_epoch"} <= set(second.trials.columns)


def test_task_0_looks_again_soon_while_a_trial_runs_and_gives_up_on_an_idle_study(
    monkeypatch,
):
    """While another task's trial runs, the pauses start at a quarter second and double
    up to the poll interval; with nothing running and trials missing, it still waits
    `idle_polls` whole intervals (a task that starts late) before giving up."""
    import time

    from trainer.models import tuning

    study = optuna.create_study()
    running = study.ask()  # another task's trial
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 7:
            study.tell(running, 1.0)

    monkeypatch.setattr(tuning.time, "sleep", sleep)
    wait_for_others(study, 1, time.monotonic() + 600, poll_s=10.0)
    assert pauses == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    pauses.clear()
    wait_for_others(study, 3, time.monotonic() + 600, poll_s=10.0, idle_polls=3)
    assert pauses == [10.0, 10.0, 10.0]


def test_no_completed_trial_is_a_clear_error(prepared):
    def always_fails(*args, **kwargs):
        raise ValueError("boom")

    with pytest.raises(TuningError, match="no trial completed"):
        tune(prepared, CFG, n_trials=2, study_name="fails", train_fn=always_fails)


def test_optuna_storage_refuses_forecastguard_database(sqlite_url, tmp_path):
    from trainer.models.tuning import open_storage

    with pytest.raises(TuningError, match="a database of its own"):
        open_storage(sqlite_url)  # migrated by forecastguard's Alembic
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    assert storage.get_all_studies() == []
    open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")  # a second task opens it too
