"""The tail-recipe sweep (issue 27): recipes, averages and their scores on a small panel."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.data import synthetic

pytest.importorskip("lightgbm")


def test_recipes_average_and_restore_the_reference_parameters() -> None:
    import experiments.models.lgbm as lgbm
    from experiments.backtest import make_task
    from experiments.tail_recipe import Average, models_for, sweep

    before = dict(lgbm.DEFAULT_PARAMS)
    panel = synthetic(4, start="2017-01-01", end="2017-12-31", seed=5)
    cutoff = str(panel.dates[-29].date())
    models = models_for(["tails_100", "reference_lr_0.21_100@1"], conformal=True)
    scores, cpu = sweep(panel, models, [cutoff])
    # every recipe and its conformalised twin is scored, and the parameters are restored
    assert set(scores["model"]) == {
        "tails_100",
        "tails_100+cqr",
        "reference_lr_0.21_100@1",
        "reference_lr_0.21_100@1+cqr",
    }
    assert before == lgbm.DEFAULT_PARAMS
    assert ((scores["coverage_80"] >= 0) & (scores["coverage_80"] <= 1)).all()
    assert (scores["wspl"] > 0).all() and set(cpu) == {m.name for m in models}
    # an average is the level-wise mean of its members' quantiles
    task = make_task(panel, len(panel.dates) - 29, 28)
    (avg,) = models_for(["mean_reference_tails_100"])
    assert isinstance(avg, Average)
    parts = [m._quantiles(task, (0.1, 0.9)) for m in avg.members]
    mean = avg._quantiles(task, (0.1, 0.9))
    np.testing.assert_allclose(mean[0.9], (parts[0][0.9] + parts[1][0.9]) / 2)
    assert not np.allclose(parts[0][0.9], parts[1][0.9])  # two recipes, two fits


def test_unknown_recipes_are_named() -> None:
    from experiments.tail_recipe import models_for

    with pytest.raises(ValueError, match="nope"):
        models_for(["tails_100", "nope"])
    with pytest.raises(ValueError, match="nope"):
        models_for(["nope@2"])


def test_the_backtest_can_train_the_trainers_tails_on_the_references_recipe(monkeypatch) -> None:
    import trainer.models.gbm as gbm
    from experiments.__main__ import parse_args, use_tail_recipe
    from experiments.models.lgbm import DEFAULT_PARAMS

    monkeypatch.setattr(gbm, "TAIL_PARAMS", dict(gbm.TAIL_PARAMS))
    monkeypatch.setattr(gbm, "TAIL_ROUNDS", gbm.TAIL_ROUNDS)
    own = (dict(gbm.TAIL_PARAMS), gbm.TAIL_ROUNDS)
    use_tail_recipe(parse_args(["--synthetic", "3"]).trainer_tail_recipe)  # the default
    assert own == (gbm.TAIL_PARAMS, gbm.TAIL_ROUNDS)
    args = parse_args(["--synthetic", "3", "--trainer-tail-recipe", "reference"])
    use_tail_recipe(args.trainer_tail_recipe)
    assert gbm.TAIL_PARAMS == {"objective": "quantile", **DEFAULT_PARAMS}
    assert gbm.TAIL_ROUNDS == 300
    with pytest.raises(ValueError, match="unknown tail recipe"):
        use_tail_recipe("nope")


def test_the_sweep_describes_seeded_recipes_and_averages() -> None:
    """`describe` (the JSON's `recipes`): "name@seed" is the recipe with that seed (it was
    a KeyError after the scores were printed, so the JSON was never written)."""
    from experiments.tail_recipe import describe, recipes

    assert describe("reference@1") == {
        "params": recipes()["reference"][0],
        "rounds": 300,
        "seed": 1,
    }
    assert describe("tails_100")["seed"] == 0
    assert describe("seeds_3_reference") == {
        "mean_of": ["reference@0", "reference@1", "reference@2"]
    }


def test_the_sweep_shows_its_progress_and_writes_its_json(monkeypatch, tmp_path, capsys) -> None:
    """`main` logs each model's forecast at each cutoff as it goes (a sweep runs for tens
    of minutes) and writes the scores with the seeded recipe described."""
    import json
    import logging

    import experiments.tail_recipe as tail_recipe

    panel = synthetic(3, start="2017-01-01", end="2017-12-31", seed=2)
    monkeypatch.setattr(tail_recipe, "read_pasta", lambda _: panel)
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        out = tmp_path / "r.json"
        cutoff = str(panel.dates[-29].date())
        argv = ["--data", "x", "--cutoff-dates", cutoff, "--recipes", "tails_100@1", "--out"]
        assert tail_recipe.main([*argv, str(out)]) == 0
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    err = capsys.readouterr().err
    assert '"forecast done"' in err and '"model": "tails_100@1"' in err
    data = json.loads(out.read_text())
    assert data["recipes"]["tails_100@1"]["seed"] == 1
    assert {r["model"] for r in data["scores"]} == {"tails_100@1"}
