"""The trainer's partition settings (issue 26): TRAIN_PARTITION_SIZE, TRAIN_PARTITION_KEY,
TRAIN_GATHER_TIMEOUT_S, through the command line and the environment."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from forecastguard.config import ConfigError
from tests.unit.trainer2.test_trainer_cli import BASE, ENV
from trainer.run.cli import build, command
from trainer.run.partitions import DEFAULT_PARTITION_SIZE


def test_defaults_keep_one_partition_for_the_pasta_catalogue() -> None:
    _, opts = build(dict(BASE), dict(ENV))
    assert opts.partition_size == DEFAULT_PARTITION_SIZE == 5000
    assert opts.partition_key is None and opts.gather_timeout_s == 21600.0


def test_partition_settings_reach_the_job_options() -> None:
    params = BASE | {"partition_size": 250, "partition_key": r" ^(B\d+)_ ", "gather_timeout": 60.0}
    _, opts = build(params, dict(ENV))
    assert (opts.partition_size, opts.partition_key, opts.gather_timeout_s) == (
        250,
        r"^(B\d+)_",
        60.0,
    )


def test_a_bad_partition_key_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"TRAIN_PARTITION_KEY .* one capturing group"):
        build(BASE | {"partition_key": "^B"}, dict(ENV))


def test_the_environment_variables_are_read_and_checked() -> None:
    runner = CliRunner()
    result = runner.invoke(
        command, [], env={**ENV, "TRAIN_PARTITION_SIZE": "0"}, catch_exceptions=False
    )
    assert result.exit_code == 2 and "--partition-size" in result.output
    names = {p.envvar for p in command.params}
    assert {"TRAIN_PARTITION_SIZE", "TRAIN_PARTITION_KEY", "TRAIN_GATHER_TIMEOUT_S"} <= names
