"""The best tuning trial's LSTM is reused as the final group-DRO LSTM (helper A, issue 26's
demo goal): a trial trains exactly that network, so the job no longer trains it twice."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from tests.support.trainer_config import small_config
from tests.unit.trainer.helpers import make_sales
from trainer.config import ModelParams
from trainer.models.tuning import BestModel, tune

pytestmark = pytest.mark.usefixtures("keras_eagerly")

CFG = small_config(epochs=2)
PARAMS = ModelParams(units=4, dropout=0.0, activation="tanh", learning_rate=0.005, lookback=7)


def _trained(params: ModelParams = PARAMS, fairness: bool = True) -> SimpleNamespace:
    return SimpleNamespace(params=params, fairness=fairness)


def test_best_model_keeps_the_best_completed_trial_only():
    keep = BestModel()
    first, better, tie, worse = _trained(), _trained(), _trained(), _trained()
    keep.offer(0, math.nan, _trained())  # a failed trial is never kept
    assert keep.trained is None
    keep.offer(1, 0.9, first)
    keep.offer(2, 0.7, better)
    keep.offer(3, 0.7, tie)  # a tie keeps the earlier trial, as Optuna's best_trial does
    keep.offer(4, 0.8, worse)
    assert (keep.number, keep.value, keep.trained) == (2, 0.7, better)
    best = SimpleNamespace(number=2)
    assert keep.of(best, PARAMS) is better
    assert keep.of(SimpleNamespace(number=1), PARAMS) is None  # another trial is the best
    other = ModelParams(**(PARAMS.to_dict() | {"units": 8}))
    assert keep.of(best, other) is None  # not trained with the final params
    plain = BestModel()
    plain.offer(2, 0.7, _trained(fairness=False))
    assert plain.of(best, PARAMS) is None  # without group DRO it is not the final LSTM


@pytest.fixture(scope="module")
def prepared():
    from trainer.data.prepare import prepare

    return prepare(make_sales(3, 150), CFG)


def test_tune_returns_the_best_trials_model(prepared):
    made: list[SimpleNamespace] = []

    def fake_train(prepared, params, cfg, *, fairness, callbacks, verbose):
        t = SimpleNamespace(
            params=params,
            fairness=fairness,
            val_metrics={
                "rmsse": 1.0 / (len(made) + 1),  # each trial better than the one before
                "worst_decile_rmsse": 1.0,
                "disparity_p90_over_median": 1.0,
            },
            best_epoch=1,
            epochs_run=1,
            duration_s=0.0,
        )
        made.append(t)
        return t

    result = tune(prepared, CFG, n_trials=3, study_name="reuse", train_fn=fake_train, units=(4,))
    assert result.best_trial == 2 and result.best_model is made[2]
    assert result.best_model.params == result.best_params
    assert "best_model" not in result.to_dict()


@pytest.mark.slow
def test_the_trials_lstm_is_the_one_train_challenger_would_train(prepared):
    """The reuse is output-neutral: the trial's network (trained with the pruning
    callback, quietly) has the same weights as a fresh group-DRO training."""
    from trainer.models.lstm import train

    result = tune(prepared, CFG, n_trials=1, study_name="same", units=(4,))
    assert result.best_model is not None
    fresh = train(prepared, result.best_params, CFG, fairness=True)
    kept = result.best_model.model.get_weights()
    again = fresh.model.get_weights()
    assert len(kept) == len(again)
    assert all(np.array_equal(a, b) for a, b in zip(kept, again, strict=True))
    assert result.best_model.history == fresh.history
    assert result.best_model.val_metrics == fresh.val_metrics


def test_train_challenger_refuses_an_lstm_of_other_params(prepared):
    from trainer.models.challenger import train_challenger

    other = ModelParams(**(PARAMS.to_dict() | {"units": 8}))
    with pytest.raises(ValueError, match="group-DRO LSTM trained with params"):
        train_challenger(prepared, PARAMS, CFG, lstm=_trained(other))
    with pytest.raises(ValueError, match="group-DRO LSTM trained with params"):
        train_challenger(prepared, PARAMS, CFG, lstm=_trained(fairness=False))
