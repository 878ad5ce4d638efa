"""The promotion rule and its database writes (one transaction)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from forecastguard.db.schema import model_registry, model_residuals
from forecastguard.storage import open_store
from trainer.artifacts import RunWriter, read_champion
from trainer.promotion import (
    Decision,
    Scores,
    Tolerances,
    current_champion_version,
    decide,
    publish,
    reconcile_champion,
    record,
)

NAIVE = Scores(rmse=10.0)


def test_first_model_must_beat_seasonal_naive():
    assert decide(Scores(9.0, 1.5), None, NAIVE).promote
    d = decide(Scores(10.5, 1.5), None, NAIVE)
    assert not d.promote and "seasonal naive" in d.reason and d.against == "seasonal_naive"


@pytest.mark.parametrize(
    "challenger, tol, promote, words",
    [
        (Scores(8.0, 1.5), Tolerances(), True, "< champion v1's 9"),
        (Scores(9.5, 1.5), Tolerances(), False, "not lower"),
        (Scores(8.9, 1.5), Tolerances(rmse=0.05), False, "by more than 5.0%"),
        (Scores(8.0, 1.64), Tolerances(disparity=0.10), True, "disparity"),
        (Scores(8.0, 1.70), Tolerances(disparity=0.10), False, "beyond the 10% tolerance"),
    ],
)
def test_challenger_against_champion(challenger, tol, promote, words):
    d = decide(challenger, Scores(9.0, 1.5), NAIVE, tol, champion_version="v1")
    assert d.promote is promote
    assert words in d.reason


def test_bad_tolerances_and_scores():
    with pytest.raises(ValueError):
        Tolerances(rmse=1.5)
    with pytest.raises(ValueError):
        Scores(float("nan"))


def _holdout(n_products: int = 3, days: int = 4) -> pd.DataFrame:
    dates = pd.date_range("2026-03-01", periods=days)
    rows = [
        {"product_id": f"P{p}", "target_date": d, "actual": 5.0 + p, "predicted": 4.0}
        for p in range(n_products)
        for d in dates
    ]
    return pd.DataFrame(rows)


def _record(engine, version, promote, holdout=None):
    record(
        engine,
        model_version=version,
        run_id=version,
        run_uri=f"file:///a/runs/{version}",
        metrics={
            "model": {"rmse": 1.0, "rmsse": 0.8},
            "fairness": {"disparity_p90_over_median": 1.3},
        },
        decision=Decision(promote, "because", "champion"),
        holdout=_holdout() if holdout is None else holdout,
        request_id="req-1",
    )


def test_record_promotion_then_rejection(engine):
    _record(engine, "v1", True)
    _record(engine, "v2", False)
    _record(engine, "v3", True)
    with engine.connect() as conn:
        status = dict(
            conn.execute(sa.select(model_registry.c.model_version, model_registry.c.status)).all()
        )
        res = conn.execute(sa.select(model_residuals)).mappings().all()
    assert status == {"v1": "retired", "v2": "rejected", "v3": "champion"}
    assert current_champion_version(engine) == "v3"
    # Each champion's holdout errors stay keyed by its version; v2 (rejected) wrote none.
    assert {r["model_version"] for r in res} == {"v1", "v3"}
    v3 = [r for r in res if r["model_version"] == "v3"]
    assert len(v3) == 12
    assert {r["error"] for r in v3 if r["product_id"] == "P2"} == {3.0}
    assert all(isinstance(r["target_date"], dt.date) for r in v3)


def test_record_is_one_transaction(sqlite_url):
    engine = sa.create_engine(sqlite_url)
    _record(engine, "v1", True)
    with engine.begin() as conn:  # the registry write (the last statement) fails for v2
        conn.execute(
            sa.text(
                "CREATE TRIGGER fail_v2 BEFORE INSERT ON model_registry "
                "WHEN NEW.model_version = 'v2' BEGIN SELECT RAISE(ABORT, 'boom'); END"
            )
        )
    with pytest.raises(sa.exc.IntegrityError, match="boom"):
        _record(engine, "v2", True)
    assert current_champion_version(engine) == "v1"  # the retiring of v1 was rolled back
    with engine.connect() as conn:
        versions = conn.execute(sa.select(model_residuals.c.model_version).distinct()).scalars()
        assert set(versions) == {"v1"}


def test_publish_needs_a_sealed_run(tmp_path):
    store = open_store(tmp_path.as_uri())
    run = RunWriter(store, "v1")
    run.put_text("report.md", "r")
    with pytest.raises(Exception, match="no manifest"):
        publish(store, model_version="v1", run_id="v1", run_uri=run.uri, scores=Scores(1.0, 1.2))
    run.seal()
    pointer = publish(
        store, model_version="v1", run_id="v1", run_uri=run.uri, scores=Scores(1.0, 1.2)
    )
    assert read_champion(store) == pointer


def test_crash_between_commit_and_pointer_is_repaired(sqlite_url, tmp_path):
    """The registry committed v2 as champion but the run died before champion.json."""
    engine = sa.create_engine(sqlite_url)
    store = open_store(tmp_path.as_uri())
    for version in ("v1", "v2"):
        run = RunWriter(store, version)
        run.put_text("report.md", version)
        run.seal()
    _record(engine, "v1", True)
    publish(store, model_version="v1", run_id="v1", run_uri="u1", scores=Scores(1.0, 1.2))
    assert reconcile_champion(engine, store) is None  # in agreement: nothing to do
    _record(engine, "v2", True)  # ... crash here: champion.json still names v1
    assert read_champion(store).model_version == "v1"
    repaired = reconcile_champion(engine, store)
    assert repaired is not None and read_champion(store) == repaired
    assert (repaired.model_version, repaired.run_id) == ("v2", "v2")
    assert repaired.rmse == 1.0 and repaired.disparity == 1.3


def test_pointer_is_not_moved_to_an_unsealed_run(sqlite_url, tmp_path):
    engine = sa.create_engine(sqlite_url)
    store = open_store(tmp_path.as_uri())
    run = RunWriter(store, "v1")
    run.put_text("report.md", "v1")
    run.seal()
    _record(engine, "v1", True)
    publish(store, model_version="v1", run_id="v1", run_uri="u1", scores=Scores(1.0, 1.2))
    _record(engine, "v2", True)  # registry says v2, but v2 has no manifest
    assert reconcile_champion(engine, store) is None
    assert read_champion(store).model_version == "v1"
