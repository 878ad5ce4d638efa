"""The retrain_requests ledger: idempotency, one run at a time, queue, timeouts, ends."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
import sqlalchemy as sa

from forecastguard import retrain
from forecastguard.db.engine import make_engine
from forecastguard.db.schema import retrain_requests, trainer_lock
from forecastguard.messages import MessageError, RetrainMessage

T0 = datetime(2026, 5, 31, 6, 0, 0)
TIMEOUT = 3600


def message(request_id: str, window_end: date = date(2026, 5, 30)) -> RetrainMessage:
    return RetrainMessage(
        request_id=request_id,
        reason="avg_rmse 21.4 > 18.0",
        window_start=window_end - timedelta(days=29),
        window_end=window_end,
        health_check_id="hc-1",
        model_version="v1",
    )


def arrive(engine, request_id, *, now=T0, window_end=date(2026, 5, 30)) -> retrain.Claim:
    retrain.record(
        engine, message(request_id, window_end), message_id="m-" + request_id, payload="{}", now=now
    )
    return retrain.claim(engine, request_id, timeout_s=TIMEOUT, now=now)


@pytest.fixture
def db(sqlite_url):
    """A migrated SQLite database."""
    eng = make_engine(sqlite_url)
    yield eng
    eng.dispose()


@pytest.fixture
def db_both(engine):
    """Once SQLite, once MariaDB (the `engine` fixture): for the dialect-sensitive tests."""
    return engine


def status(engine, request_id) -> str:
    found = retrain.get(engine, request_id)
    assert found is not None
    return found.status


def test_migration_creates_the_lock_row(db):
    with db.connect() as conn:
        assert conn.execute(sa.select(trainer_lock.c.name)).scalars().all() == ["trainer"]


def test_a_request_is_recorded_once(db):
    assert retrain.record(db, message("r1"), message_id="m1", payload='{"a": 1}', now=T0)
    assert not retrain.record(db, message("r1"), message_id="m2", payload="{}", now=T0)
    row = retrain.get(db, "r1")
    assert row is not None
    assert (row.status, row.message_id, row.payload) == ("received", "m1", '{"a": 1}')
    assert (row.window_start, row.window_end) == (date(2026, 5, 1), date(2026, 5, 30))


def test_first_claim_starts_and_a_repeated_claim_starts_nothing(db):
    first = arrive(db, "r1")
    assert first.decision == "start"
    assert first.request is not None and first.request.status == "launching"
    assert first.request.started_at == T0
    again = retrain.claim(db, "r1", timeout_s=TIMEOUT, now=T0 + timedelta(seconds=5))
    assert again.decision == "nothing"
    assert status(db, "r1") == "launching"


def test_claiming_an_unknown_request_names_it(db):
    with pytest.raises(retrain.LedgerError, match="'nope' is not in the ledger"):
        retrain.claim(db, "nope", timeout_s=TIMEOUT)


def test_a_request_during_a_run_is_queued_and_the_latest_window_wins(db_both):
    arrive(db_both, "run")
    retrain.mark_started(db_both, "run", execution_name="exec-1", now=T0)
    later = T0 + timedelta(minutes=1)
    queued = arrive(db_both, "q-new", now=later, window_end=date(2026, 6, 2))
    assert (queued.decision, queued.blocking) == ("queued", "run")
    # An older window arriving later does not displace the newer one: it is superseded.
    old = arrive(db_both, "q-old", now=later + timedelta(minutes=1), window_end=date(2026, 6, 1))
    assert old.decision == "queued"
    assert status(db_both, "q-old") == "superseded"
    assert retrain.get(db_both, "q-old").error == "superseded by q-new"
    assert status(db_both, "q-new") == "queued"
    # Same window: the later arrival wins.
    arrive(db_both, "q-same", now=later + timedelta(minutes=2), window_end=date(2026, 6, 2))
    assert status(db_both, "q-new") == "superseded"
    assert retrain.next_queued(db_both).request_id == "q-same"
    assert retrain.in_progress(db_both, timeout_s=TIMEOUT, now=later).request_id == "run"


def test_finishing_frees_the_trainer_for_the_queued_request(db_both):
    arrive(db_both, "run")
    arrive(db_both, "waiting", now=T0 + timedelta(minutes=1))
    nothing = retrain.claim_next(db_both, timeout_s=TIMEOUT, now=T0 + timedelta(minutes=2))
    assert (nothing.decision, nothing.blocking) == ("nothing", "run")

    waiting = retrain.mark_finished(db_both, "run", now=T0 + timedelta(hours=1))
    assert waiting is not None and waiting.request_id == "waiting"
    row = retrain.get(db_both, "run")
    assert (row.status, row.finished_at) == ("finished", T0 + timedelta(hours=1))

    claim = retrain.claim_next(db_both, timeout_s=TIMEOUT, now=T0 + timedelta(hours=1, seconds=1))
    assert claim.decision == "start" and claim.request.request_id == "waiting"
    assert status(db_both, "waiting") == "launching"
    assert retrain.claim_next(db_both, timeout_s=TIMEOUT).decision == "nothing"


def test_a_failed_run_also_frees_the_trainer(db):
    arrive(db, "run")
    assert retrain.mark_failed(db, "run", "out of memory", now=T0 + timedelta(minutes=5)) is None
    row = retrain.get(db, "run")
    assert (row.status, row.error) == ("failed", "out of memory")
    assert arrive(db, "next", now=T0 + timedelta(minutes=6)).decision == "start"


def test_a_run_older_than_the_timeout_is_presumed_dead(db_both):
    arrive(db_both, "stuck")
    retrain.mark_started(db_both, "stuck", execution_name="exec-1", now=T0)
    late = T0 + timedelta(seconds=TIMEOUT + 1)
    assert retrain.in_progress(db_both, timeout_s=TIMEOUT, now=late) is None
    claim = arrive(db_both, "fresh", now=late)
    assert claim.decision == "start"
    assert claim.timed_out == ("stuck",)
    stuck = retrain.get(db_both, "stuck")
    assert stuck.status == "failed"
    assert stuck.error.startswith("timed out: no end reported within TRAINER_TIMEOUT_S=3600s")
    # If it does end after all, the ledger says so truthfully.
    retrain.mark_finished(db_both, "stuck", now=late + timedelta(minutes=1))
    stuck = retrain.get(db_both, "stuck")
    assert stuck.status == "finished"
    assert "ended after being presumed dead" in stuck.error


def test_a_run_just_inside_the_timeout_still_blocks(db):
    arrive(db, "run")
    claim = arrive(db, "other", now=T0 + timedelta(seconds=TIMEOUT - 1))
    assert claim.decision == "queued"


def test_release_after_a_failed_start_queues_the_request_for_another_try(db):
    arrive(db, "r1")
    released = retrain.release(db, "r1", error="UNAVAILABLE", now=T0)
    assert (released.status, released.error, released.started_at) == ("queued", "UNAVAILABLE", None)
    assert retrain.in_progress(db, timeout_s=TIMEOUT, now=T0) is None
    assert retrain.claim(db, "r1", timeout_s=TIMEOUT, now=T0).decision == "start"


def test_mark_started_records_the_execution(db):
    arrive(db, "r1")
    row = retrain.mark_started(db, "r1", execution_name="exec-1", log_path="/tmp/x.log", now=T0)
    assert (row.status, row.execution_name, row.log_path) == ("started", "exec-1", "/tmp/x.log")


def test_a_run_that_ended_before_it_was_marked_started_stays_ended(db):
    arrive(db, "quick")
    retrain.mark_finished(db, "quick", now=T0)
    row = retrain.mark_started(db, "quick", execution_name="local:pid=1", log_path="/l", now=T0)
    assert (row.status, row.execution_name) == ("finished", "local:pid=1")


def test_ends_are_checked(db):
    arrive(db, "run")
    arrive(db, "waiting")
    with pytest.raises(retrain.LedgerError, match="is queued, not running"):
        retrain.mark_finished(db, "waiting")
    with pytest.raises(retrain.LedgerError, match="not in the ledger"):
        retrain.mark_failed(db, "ghost", "x")
    retrain.mark_finished(db, "run")
    retrain.mark_finished(db, "run")  # a repeated report changes nothing
    with pytest.raises(retrain.LedgerError, match="already finished"):
        retrain.mark_failed(db, "run", "x")


def test_a_missing_lock_row_is_created_on_first_use(db_both):
    with db_both.begin() as conn:
        conn.execute(sa.delete(trainer_lock))
    assert arrive(db_both, "r1").decision == "start"
    with db_both.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(trainer_lock)).scalar() == 1


def test_a_rejected_message_is_kept_once(db):
    key = retrain.reject(db, message_id="123", payload="not json", error="bad", now=T0)
    assert key == "rejected:123"
    assert retrain.reject(db, message_id="123", payload="not json", error="bad") == key
    with db.connect() as conn:
        rows = conn.execute(sa.select(retrain_requests)).all()
    assert len(rows) == 1
    assert (rows[0].status, rows[0].payload, rows[0].error) == ("rejected", "not json", "bad")


def test_payload_text_keeps_every_byte():
    assert retrain.payload_text(b'{"a": "\xc3\xa9"}') == '{"a": "é"}'
    assert retrain.payload_text(b"\xff\xfe") == "base64://4="


def test_fit_text_cuts_to_the_byte_limit_and_says_so():
    assert retrain.fit_text("short") == "short"
    cut = retrain.fit_text("é" * 1000, limit=500)
    assert len(cut.encode("utf-8")) <= 500
    assert cut.startswith("éé") and "[truncated: 2000 bytes in all, sha256 " in cut


def test_a_message_too_long_for_the_ledger_is_refused(db):
    long = RetrainMessage("r1", "x", date(2026, 5, 1), date(2026, 5, 2), health_check_id="h" * 37)
    with pytest.raises(MessageError, match="health_check_id is longer than 36 characters"):
        retrain.record(db, long, message_id="m", payload="{}")


def test_a_started_run_covers_the_queued_requests_of_earlier_windows(db_both):
    arrive(db_both, "run", window_end=date(2026, 5, 30))
    later = T0 + timedelta(minutes=1)
    arrive(db_both, "left-over", now=later, window_end=date(2026, 5, 31))
    retrain.mark_finished(db_both, "run", now=later)  # nobody started the queued request
    # A request for a later window arrives: it starts, and covers the left-over one.
    claim = arrive(db_both, "newest", now=later, window_end=date(2026, 6, 1))
    assert claim.decision == "start"
    assert status(db_both, "left-over") == "superseded"
    assert retrain.get(db_both, "left-over").error == "superseded by newest"


def test_a_queued_request_of_a_later_window_stays_queued_when_an_earlier_one_starts(db):
    arrive(db, "run", window_end=date(2026, 5, 30))
    arrive(db, "later-window", window_end=date(2026, 6, 5))
    retrain.mark_failed(db, "run", "boom")
    retrain.record(db, message("late-arrival", date(2026, 6, 1)), message_id="m", payload="{}")
    assert retrain.claim(db, "late-arrival", timeout_s=TIMEOUT, now=T0).decision == "start"
    assert status(db, "later-window") == "queued"


def test_the_rejected_prefix_is_reserved(db):
    clash = RetrainMessage("rejected:1", "x", date(2026, 5, 1), date(2026, 5, 2))
    with pytest.raises(MessageError, match="must not start with 'rejected:'"):
        retrain.record(db, clash, message_id="m", payload="{}")
