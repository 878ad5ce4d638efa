"""The retrain back-off (issue 23): a persisting drift whose retrain produced a rejected
challenger asks again only when something new happens or its back-off is over."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from forecastguard.db.schema import (
    health_check_products,
    health_checks,
    metadata,
    model_registry,
    retrain_requests,
)
from forecastguard.health import backoff

NOW = datetime(2026, 6, 10, 6, 0, tzinfo=UTC)
CHAMPION = "m1"


@pytest.fixture
def conn():
    engine = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool)
    metadata.create_all(engine)
    with engine.begin() as connection:
        yield connection


def _asking_check(conn, check_id: str, flagged: dict[str, tuple[str, float, float]]) -> None:
    """A stored check that flagged these products: id -> (kind, shift in sd, ratio)."""
    summary = {"reason_kinds": ["drift"], "drifted_products": sorted(flagged)}
    conn.execute(
        health_checks.insert(),
        {
            "id": check_id,
            "checked_at": datetime(2026, 6, 1),
            "as_of": date(2026, 5, 31),
            "window_start": date(2026, 5, 2),
            "window_end": date(2026, 5, 31),
            "healthy": False,
            "drift_detected": True,
            "n_products": len(flagged),
            "reasons": "[]",
            "model_versions": json.dumps([CHAMPION]),
            "duration_s": 1.0,
            "result_json": json.dumps(summary),
        },
    )
    conn.execute(
        health_check_products.insert(),
        [
            {
                "health_check_id": check_id,
                "product_id": pid,
                "n": 30,
                "drift": True,
                "drift_kind": kind,
                "bias_shift_sd": shift,
                "spread_ratio": ratio,
            }
            for pid, (kind, shift, ratio) in flagged.items()
        ],
    )


def _rejected(conn, challenger: str, request_id: str, check_id: str, when: datetime) -> None:
    """A retrain asked for CHAMPION by `check_id`, whose challenger was rejected `when`."""
    conn.execute(
        retrain_requests.insert(),
        {
            "request_id": request_id,
            "status": "finished",
            "health_check_id": check_id,
            "model_version": CHAMPION,
            "window_start": date(2026, 5, 2),
            "window_end": date(2026, 5, 31),
            "created_at": when,
            "updated_at": when,
        },
    )
    conn.execute(
        model_registry.insert(),
        {
            "model_version": challenger,
            "run_id": "r-" + challenger,
            "status": "rejected",
            "artifact_uri": "file:///tmp/x",
            "request_id": request_id,
            "created_at": when.replace(tzinfo=None),
        },
    )


def _check(flagged: dict[str, tuple[str, float, float]], kinds=("drift",)):
    products = pd.DataFrame(
        [
            {
                "product_id": pid,
                "drift": True,
                "drift_kind": kind,
                "bias_shift_sd": shift,
                "spread_ratio": ratio,
            }
            for pid, (kind, shift, ratio) in flagged.items()
        ]
        + [
            {
                "product_id": "Q-ok",
                "drift": False,
                "drift_kind": None,
                "bias_shift_sd": 0.1,
                "spread_ratio": 1.0,
            }
        ]
    )
    summary = {"healthy": False, "reason_kinds": list(kinds), "model_version": CHAMPION}
    return summary, products


FLAGGED = {"P1": ("level", 2.0, 1.1), "P2": ("scale", 0.3, 2.0)}


def _decide(conn, flagged=FLAGGED, kinds=("drift",), days=7, now=NOW):
    summary, products = _check(flagged, kinds)
    return backoff.decide(conn, summary, products, base_days=days, now=now)


def test_the_period_doubles_with_each_rejected_challenger() -> None:
    assert [backoff.backoff_days(7, k) for k in (1, 2, 3, 4)] == [7, 14, 28, 56]
    assert backoff.backoff_days(7, 50) == 7 * 2**backoff.MAX_DOUBLINGS


def test_no_rejected_challenger_no_backoff(conn) -> None:
    assert _decide(conn) is None


def test_the_same_drift_is_held_back_with_the_reason(conn) -> None:
    _asking_check(conn, "c1", FLAGGED)
    _rejected(conn, "m2", "r1", "c1", NOW - timedelta(days=2))
    decision = _decide(conn)
    assert decision["held"] is True
    assert decision["reason"].startswith(
        "retrain held back: challenger m2 rejected on 2026-06-08, next request after 2026-06-15"
    )
    assert decision["next_request_after"] == "2026-06-15" and decision["backoff_days"] == 7
    # A smaller or merely wobbling effect is the same drift.
    wobble = {"P1": ("level", 2.4, 1.0), "P2": ("scale", 0.3, 1.5)}
    assert _decide(conn, flagged=wobble)["held"] is True
    # Fewer products flagged: still held.
    assert _decide(conn, flagged={"P1": FLAGGED["P1"]})["held"] is True


def test_something_new_asks_again(conn) -> None:
    _asking_check(conn, "c1", FLAGGED)
    _rejected(conn, "m2", "r1", "c1", NOW - timedelta(days=2))
    new_product = _decide(conn, flagged={**FLAGGED, "P3": ("level", 1.0, 1.0)})
    assert new_product["held"] is False and new_product["new_products"] == ["P3"]
    assert "1 products drift that it did not flag" in new_product["reason"]
    grown = _decide(conn, flagged={"P1": ("level", 3.1, 1.0), "P2": FLAGGED["P2"]})
    assert grown["held"] is False and grown["grown_products"] == ["P1"]
    wider = _decide(conn, flagged={"P1": FLAGGED["P1"], "P2": ("scale", 0.3, 3.5)})
    assert wider["held"] is False and wider["grown_products"] == ["P2"]
    rmse = _decide(conn, kinds=("rmse", "drift"))
    assert rmse["held"] is False and rmse["new_reason_kinds"] == ["rmse"]


def test_the_backoff_ends_and_doubles(conn) -> None:
    _asking_check(conn, "c1", FLAGGED)
    _rejected(conn, "m2", "r1", "c1", NOW - timedelta(days=8))
    over = _decide(conn)
    assert over["held"] is False and "back-off of 7 days" in over["reason"]
    # The retrain asked again was rejected too (a day ago): 14 days now.
    _rejected(conn, "m3", "r2", "c1", NOW - timedelta(days=1))
    again = _decide(conn)
    assert again["held"] is True and again["backoff_days"] == 14
    assert again["challenger"] == "m3" and again["next_request_after"] == "2026-06-23"


def test_other_reasons_and_switched_off(conn) -> None:
    _asking_check(conn, "c1", FLAGGED)
    _rejected(conn, "m2", "r1", "c1", NOW - timedelta(days=2))
    assert _decide(conn, days=0) is None
    assert _decide(conn, kinds=("stale",)) is None
    assert _decide(conn, kinds=("drift", "data_drift")) is None
    summary, products = _check(FLAGGED)
    summary["model_version"] = "other"  # another champion: its own history
    assert backoff.decide(conn, summary, products, base_days=7, now=NOW) is None


def test_without_the_asking_checks_rows_the_listed_ids_are_compared(conn) -> None:
    conn.execute(
        health_checks.insert(),
        {
            "id": "c-bq",
            "checked_at": datetime(2026, 6, 1),
            "as_of": date(2026, 5, 31),
            "window_start": date(2026, 5, 2),
            "window_end": date(2026, 5, 31),
            "healthy": False,
            "drift_detected": True,
            "n_products": 2,
            "reasons": "[]",
            "model_versions": "[]",
            "duration_s": 1.0,
            "result_json": json.dumps({"reason_kinds": ["drift"], "drifted_products": ["P1"]}),
        },
    )
    _rejected(conn, "m2", "r1", "c-bq", NOW - timedelta(days=2))
    assert _decide(conn, flagged={"P1": FLAGGED["P1"]})["held"] is True
    assert _decide(conn)["new_products"] == ["P2"]
