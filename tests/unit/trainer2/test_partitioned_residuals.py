"""The partitioned gather's residuals, streamed (issue 26): written part by part in short
transactions, the champion crowned only once they are all stored, a failure leaving the
registry and the old champion's residuals as they were."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from forecastguard.db.engine import make_engine
from forecastguard.db.schema import model_registry, model_residuals
from trainer.judge.promotion import (
    Carried,
    Decision,
    current_champion_version,
    record,
    record_partitioned,
    write_residuals,
)

OLD = "old-champion"
NEW = "gathered"


def _holdout(products: list[str], days: int = 5, offset: float = 0.0) -> pd.DataFrame:
    dates = pd.date_range("2026-03-01", periods=days)
    rows = [
        {"product_id": p, "target_date": d, "actual": 10.0 + i + offset, "predicted": 4.0}
        for i, p in enumerate(products)
        for d in dates
    ]
    return pd.DataFrame(rows)


def _crown_old(engine: sa.Engine) -> None:
    """An earlier champion (one model) with residuals for P0..P5 (error 6 + i)."""
    record(
        engine,
        model_version=OLD,
        run_id=OLD,
        run_uri="file:///a/runs/old",
        metrics={"model": {"rmse": 1.0, "rmsse": 0.9}},
        decision=Decision(True, "first", "champion"),
        holdout=_holdout([f"P{i}" for i in range(6)]),
    )


def _record(engine: sa.Engine, parts, chunk_rows: int = 3) -> int:
    return record_partitioned(
        engine,
        model_version=NEW,
        run_id=NEW,
        run_uri="file:///a/runs/gathered",
        metrics={"model": {"rmsse": 0.8}},
        reason="partitions changed",
        residuals=parts,
        chunk_rows=chunk_rows,
    )


def _residuals(engine: sa.Engine, version: str) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(model_residuals).where(model_residuals.c.model_version == version)
        ).all()
    return pd.DataFrame(rows, columns=["model_version", "product_id", "target_date", "error"])


def _status(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(
            conn.execute(sa.select(model_registry.c.model_version, model_registry.c.status)).all()
        )


def test_streamed_parts_and_carried_residuals_then_the_crown(engine):
    _crown_old(engine)
    changed = _holdout(["P0", "P1", "x'<b>\"; --"], offset=100.0)  # 15 rows: 5 chunks of 3
    changed.loc[0, "predicted"] = np.nan  # no error: left out
    written = _record(engine, [changed, Carried(OLD, ["P3", "P4", "P9-not-stored"])])
    assert written == 14 + 10
    got = _residuals(engine, NEW).set_index(["product_id", "target_date"])["error"]
    assert len(got) == 24
    assert got.loc[("P1", dt.date(2026, 3, 2))] == pytest.approx(107.0)
    assert got.loc[("x'<b>\"; --", dt.date(2026, 3, 5))] == pytest.approx(108.0)
    assert ("P0", dt.date(2026, 3, 1)) not in got.index
    assert got.loc[("P4", dt.date(2026, 3, 3))] == pytest.approx(10.0)  # carried: 10 + 4 - 4
    assert not {"P2", "P5"} & set(got.index.get_level_values(0))  # neither changed nor kept
    assert all(isinstance(d, dt.date) for d in got.index.get_level_values(1))
    assert _status(engine) == {OLD: "retired", NEW: "champion"}
    assert len(_residuals(engine, OLD)) == 30  # the old champion's reference is untouched


def test_a_failure_while_streaming_changes_no_champion_and_leaves_no_rows(engine):
    _crown_old(engine)

    def parts() -> Iterator[pd.DataFrame]:
        yield _holdout(["P0", "P1"])
        raise OSError("holdout.csv of partition p0001 unreadable")

    with pytest.raises(OSError, match="unreadable"):
        _record(engine, parts())
    assert current_champion_version(engine) == OLD
    assert _status(engine) == {OLD: "champion"}
    assert _residuals(engine, NEW).empty
    assert len(_residuals(engine, OLD)) == 30


def test_parts_are_written_as_they_come_and_readers_are_not_locked_out(sqlite_url):
    """Part 1 is committed before part 2 is asked for (one part in memory at a time), and
    another connection (the health check's) reads the old champion meanwhile."""
    engine = make_engine(sqlite_url)
    other = make_engine(sqlite_url)
    _crown_old(engine)
    seen: list[int] = []

    def parts() -> Iterator[pd.DataFrame]:
        yield _holdout(["P0", "P1"])
        seen.append(len(_residuals(other, NEW)))
        seen.append(len(_residuals(other, OLD)))
        yield _holdout(["P2"])

    assert _record(engine, parts()) == 15
    assert seen == [10, 30]
    engine.dispose()
    other.dispose()


def test_a_failed_chunk_write_is_rolled_back_and_leftovers_of_an_earlier_attempt_go(sqlite_url):
    engine = make_engine(sqlite_url)
    _crown_old(engine)
    with engine.begin() as conn:  # a failed earlier attempt left a row under NEW
        conn.execute(
            model_residuals.insert(),
            [
                {
                    "model_version": NEW,
                    "product_id": "STALE",
                    "target_date": dt.date(2026, 1, 1),
                    "error": 1.0,
                }
            ],
        )
        conn.execute(
            sa.text(
                "CREATE TRIGGER fail_p9 BEFORE INSERT ON model_residuals "
                "WHEN NEW.product_id = 'P9' BEGIN SELECT RAISE(ABORT, 'boom'); END"
            )
        )
    with pytest.raises(sa.exc.IntegrityError, match="boom"):
        _record(engine, [_holdout(["P0"]), _holdout(["P9"])])
    assert _residuals(engine, NEW).empty
    assert current_champion_version(engine) == OLD
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER fail_p9"))
    assert _record(engine, [_holdout(["P0"])]) == 5
    assert set(_residuals(engine, NEW)["product_id"]) == {"P0"}  # STALE is gone
    engine.dispose()


def test_a_gather_retried_after_its_crown_does_not_rewrite_the_residuals(engine):
    _crown_old(engine)
    assert _record(engine, [_holdout(["P0", "P1"])]) == 10

    def must_not_be_read() -> Iterator[pd.DataFrame]:
        raise AssertionError("the residuals were read again")
        yield  # pragma: no cover

    assert _record(engine, must_not_be_read()) == 0
    assert len(_residuals(engine, NEW)) == 10
    assert _status(engine) == {OLD: "retired", NEW: "champion"}


def test_bad_parts_are_clear_errors(sqlite_url):
    engine = make_engine(sqlite_url)
    with pytest.raises(ValueError, match="into itself"):
        write_residuals(engine, NEW, [Carried(NEW, ["P0"])])
    with pytest.raises(ValueError, match="lacks column"):
        write_residuals(engine, NEW, [pd.DataFrame({"product_id": ["P0"]})])
    with pytest.raises(ValueError, match="chunk_rows"):
        write_residuals(engine, NEW, [], chunk_rows=0)
    assert current_champion_version(engine) is None
    engine.dispose()
