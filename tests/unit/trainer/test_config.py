"""TrainConfig / ModelParams: validation and JSON round trips."""

from __future__ import annotations

import json

import pytest

from trainer.config import ConfigError, ModelParams, TrainConfig


def test_defaults_round_trip_through_json() -> None:
    cfg, params = TrainConfig(), ModelParams()
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert ModelParams.from_dict(json.loads(json.dumps(params.to_dict()))) == params


def test_split_must_be_a_multiple_of_the_horizon() -> None:
    with pytest.raises(ConfigError, match="val_days=30 must be a positive multiple of horizon=28"):
        TrainConfig(val_days=30)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"dropout": 1.0}, "dropout"),
        ({"activation": "sigmoidish"}, "activation"),
        ({"learning_rate": 0}, "learning_rate"),
    ],
)
def test_bad_model_params_name_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        ModelParams(**changes)


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown field"):
        TrainConfig.from_dict({"horizon": 28, "horizn": 7})
