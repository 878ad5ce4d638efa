"""The ledger of retrain requests (`retrain_requests`): idempotency and one run at a time.

The life of a request (its `status`):

- `received`: recorded under its unique `request_id` (a repeated delivery inserts nothing);
- `rejected`: the message did not follow its schema; its payload and the reason are kept;
- `launching`: claimed the trainer, which is being started right now;
- `started`: the trainer was started (`execution_name`, and `log_path` for a local run);
- `finished` / `failed`: set by the trainer when it ends (`mark_finished`, `mark_failed`);
  `failed` also when it could not be started for good, when the launcher says the run
  is no longer alive (`mark_dead`: the Cloud Run execution ended or the local process is
  gone, without reporting its end), or when it reported nothing within
  TRAINER_TIMEOUT_S (then it is presumed dead and no longer blocks);
- `queued`: arrived while another run was in progress, or its start failed for a while;
  it is started when the trainer is free (`claim_next`);
- `superseded`: a queued request replaced by a newer one (the latest window wins), or
  covered by a run started for a window at least as late.

A run is in progress while a request is `launching` or `started` and was claimed less
than TRAINER_TIMEOUT_S ago; at most one is. Every status change after the first insert
begins by updating the one row of `trainer_lock`, which serializes the check and the
claim on SQLite and on MySQL (the row lock is held until the transaction ends).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, TypeVar

import sqlalchemy as sa

from forecastguard.db.schema import retrain_requests, trainer_lock
from forecastguard.logs import get_logger
from forecastguard.messages import MessageError, RetrainMessage

log = get_logger(__name__)

LOCK_NAME = "trainer"
REJECTED_PREFIX = "rejected:"
IN_PROGRESS = ("launching", "started")
WAITING = ("received", "queued")
ENDED = ("finished", "failed")
# What a TEXT column holds on MySQL (65,535 bytes), with room to spare.
TEXT_BYTES = 60_000
_T = TypeVar("_T")


class LedgerError(RuntimeError):
    """A request is unknown, or not in a status that allows the change asked for."""


@dataclass(frozen=True)
class RetrainRequest:
    """One row of `retrain_requests`."""

    request_id: str
    status: str
    reason: str | None = None
    health_check_id: str | None = None
    model_version: str | None = None
    window_start: date | None = None
    window_end: date | None = None
    message_id: str | None = None
    payload: str | None = None
    error: str | None = None
    execution_name: str | None = None
    log_path: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> RetrainRequest:
        """Build from a `retrain_requests` row (the `id` column is left out)."""
        values = dict(row._mapping)
        values.pop("id", None)
        return cls(**values)


@dataclass(frozen=True)
class Claim:
    """What `claim` decided for a request.

    `decision`: `start` (it holds the trainer now: start it), `queued` (another run is
    in progress: `blocking` names it) or `nothing` (already handled, or not waiting).
    """

    decision: Literal["start", "queued", "nothing"]
    request: RetrainRequest | None
    blocking: str | None = None
    timed_out: tuple[str, ...] = field(default_factory=tuple)


def utcnow() -> datetime:
    """Now, as the naive UTC datetime the DateTime columns store."""
    return datetime.now(UTC).replace(tzinfo=None)


def payload_text(data: bytes) -> str:
    """A message's data as text for `retrain_requests.payload`, losing nothing.

    UTF-8 is kept as it is; anything else is kept as `base64:` and its base64 encoding.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode("ascii")


def check_fits(message: RetrainMessage) -> None:
    """Raise `MessageError` when a field is longer than its column can hold.

    A valid message that the database then refused would be redelivered forever.
    """
    if message.request_id.startswith(REJECTED_PREFIX):
        raise MessageError(f"request_id must not start with {REJECTED_PREFIX!r} (reserved)")
    c = retrain_requests.c
    for name, column in (
        ("request_id", c.request_id),
        ("health_check_id", c.health_check_id),
        ("model_version", c.model_version),
    ):
        value = getattr(message, name)
        if value is not None and len(value) > column.type.length:
            raise MessageError(f"{name} is longer than {column.type.length} characters")
    if len(message.reason.encode("utf-8")) > TEXT_BYTES:
        raise MessageError(f"reason is longer than {TEXT_BYTES} bytes")


def fit_text(text: str, limit: int = TEXT_BYTES) -> str:
    """`text` cut to `limit` UTF-8 bytes (a TEXT column on MySQL), saying what was cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    digest = hashlib.sha256(data).hexdigest()
    note = f"...[truncated: {len(data)} bytes in all, sha256 {digest}]"
    return data[: limit - len(note) - 4].decode("utf-8", "ignore") + note


def rejected_key(message_id: str) -> str:
    """The ledger key of a rejected message: its own request id may be missing or bad."""
    return f"{REJECTED_PREFIX}{message_id}"[:128]


# --- reading -------------------------------------------------------------------------


def get(engine: sa.Engine, request_id: str) -> RetrainRequest | None:
    """The request with this id, or None."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(retrain_requests).where(retrain_requests.c.request_id == request_id)
        ).first()
    return RetrainRequest.from_row(row) if row else None


def next_queued(engine: sa.Engine) -> RetrainRequest | None:
    """The queued request that would be started next (the latest window), or None."""
    with engine.connect() as conn:
        return _next_queued(conn)


def in_progress(
    engine: sa.Engine, *, timeout_s: int, now: datetime | None = None
) -> RetrainRequest | None:
    """The run in progress (claimed less than `timeout_s` ago and not ended), or None."""
    now = now or utcnow()
    with engine.connect() as conn:
        active, _ = _split_in_progress(conn, now, timeout_s)
    return active


# --- writing -------------------------------------------------------------------------


def record(
    engine: sa.Engine,
    message: RetrainMessage,
    *,
    message_id: str | None,
    payload: str | None,
    now: datetime | None = None,
) -> bool:
    """Insert a valid request as `received`; False when its id is already in the ledger."""
    check_fits(message)
    now = now or utcnow()
    values = {
        "request_id": message.request_id,
        "status": "received",
        "reason": message.reason,
        "health_check_id": message.health_check_id,
        "model_version": message.model_version,
        "window_start": message.window_start,
        "window_end": message.window_end,
        "message_id": message_id[:128] if message_id else None,
        "payload": None if payload is None else fit_text(payload),
        "created_at": now,
        "updated_at": now,
    }
    return _insert_once(engine, values)


def reject(
    engine: sa.Engine,
    *,
    message_id: str,
    payload: str | None,
    error: str,
    now: datetime | None = None,
) -> str:
    """Record a malformed message as `rejected` (once per message id); return its key."""
    now = now or utcnow()
    key = rejected_key(message_id)
    values = {
        "request_id": key,
        "status": "rejected",
        "message_id": message_id[:128],
        "payload": None if payload is None else fit_text(payload),
        "error": fit_text(error, 4000),
        "created_at": now,
        "updated_at": now,
    }
    _insert_once(engine, values)
    return key


def claim(
    engine: sa.Engine, request_id: str, *, timeout_s: int, now: datetime | None = None
) -> Claim:
    """Claim the trainer for a waiting request, or queue it while another run is in progress.

    A request that is not waiting (already launching, started, ended, rejected or
    superseded) gets `nothing`: that is what makes a repeated delivery start nothing.
    Runs claimed more than `timeout_s` ago that never reported an end are marked failed.
    """
    now = now or utcnow()

    def work(conn: sa.Connection) -> Claim:
        _serialize(conn, now)
        row = _locked_request(conn, request_id)
        if row is None:
            raise LedgerError(f"retrain request {request_id!r} is not in the ledger")
        if row.status not in WAITING:
            return Claim("nothing", row)
        return _claim_or_queue(conn, row, now, timeout_s)

    return _transaction(engine, work)


def claim_next(engine: sa.Engine, *, timeout_s: int, now: datetime | None = None) -> Claim:
    """Claim the trainer for the queued request, when one waits and no run is in progress."""
    now = now or utcnow()

    def work(conn: sa.Connection) -> Claim:
        _serialize(conn, now)
        active, timed_out = _split_in_progress(conn, now, timeout_s)
        _fail_timed_out(conn, timed_out, now, timeout_s)
        stale = tuple(r.request_id for r in timed_out)
        if active is not None:
            return Claim("nothing", None, blocking=active.request_id, timed_out=stale)
        waiting = _next_queued(conn)
        if waiting is None:
            return Claim("nothing", None, timed_out=stale)
        row = _locked_request(conn, waiting.request_id)
        assert row is not None and row.status == "queued"
        return Claim("start", _set_launching(conn, row, now), timed_out=stale)

    return _transaction(engine, work)


def release(
    engine: sa.Engine, request_id: str, *, error: str, now: datetime | None = None
) -> RetrainRequest:
    """Give the trainer back after a start that failed for now: the request is `queued`.

    A redelivery of its message, or `claim_next`, starts it later; `error` says why not now.
    """
    return _change(
        engine,
        request_id,
        from_statuses=("launching",),
        values={"status": "queued", "error": fit_text(error, 4000), "started_at": None},
        now=now,
    )


def mark_started(
    engine: sa.Engine,
    request_id: str,
    *,
    execution_name: str | None,
    log_path: str | None = None,
    now: datetime | None = None,
) -> RetrainRequest:
    """Record that the trainer was started: the execution's name (and the local log file).

    When the trainer already reported its end (a very short run), only the names are kept.
    """
    now = now or utcnow()

    def work(conn: sa.Connection) -> RetrainRequest:
        _serialize(conn, now)
        row = _locked_request(conn, request_id)
        if row is None or row.status not in (*IN_PROGRESS, *ENDED):
            status = row.status if row else "not in the ledger"
            raise LedgerError(f"retrain request {request_id!r} was not being started ({status})")
        values: dict[str, Any] = {
            "execution_name": execution_name,
            "log_path": log_path,
            "updated_at": now,
        }
        if row.status == "launching":
            values["status"] = "started"
        _update(conn, request_id, values)
        return _read(conn, request_id)

    return _transaction(engine, work)


def mark_finished(
    engine: sa.Engine, request_id: str, *, now: datetime | None = None
) -> RetrainRequest | None:
    """The trainer ended well: the request is `finished` and the trainer is free.

    Returns the queued request now waiting to be started (None when none is), so the
    caller can start it (`forecastguard.trigger.start_next`); it is also logged.
    """
    return _end(engine, request_id, "finished", None, now)


def mark_failed(
    engine: sa.Engine, request_id: str, error: str, *, now: datetime | None = None
) -> RetrainRequest | None:
    """The trainer (or its start) failed for good: the request is `failed` with `error`.

    Returns the queued request now waiting to be started, like `mark_finished`.
    """
    return _end(engine, request_id, "failed", error, now)


def mark_dead(
    engine: sa.Engine,
    request_id: str,
    *,
    started_at: datetime | None,
    reason: str,
    now: datetime | None = None,
) -> bool:
    """A `started` run that the launcher found dead: `failed` with `reason`.

    Only when the request is still `started` from the same claim (`started_at`): a run
    that reported its end meanwhile, or was claimed again, is left alone (False).
    """
    now = now or utcnow()

    def work(conn: sa.Connection) -> bool:
        _serialize(conn, now)
        row = _locked_request(conn, request_id)
        if row is None or row.status != "started" or row.started_at != started_at:
            return False
        error = f"run died without reporting its end: {reason}"
        _update(
            conn,
            request_id,
            {
                "status": "failed",
                "error": fit_text(error, 4000),
                "finished_at": now,
                "updated_at": now,
            },
        )
        return True

    marked = _transaction(engine, work)
    if marked:
        log.error("retrain run died", extra={"request_id": request_id, "reason": reason})
    return marked


# --- internals -----------------------------------------------------------------------


def _insert_once(engine: sa.Engine, values: dict[str, Any]) -> bool:
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(retrain_requests).values(**values))
    except sa.exc.IntegrityError:
        if get(engine, values["request_id"]) is None:
            raise  # not the unique key: a real integrity problem
        return False
    return True


def _serialize(conn: sa.Connection, now: datetime) -> None:
    """Take the trainer lock row (creating it when a database lacks it)."""
    updated = conn.execute(
        sa.update(trainer_lock).where(trainer_lock.c.name == LOCK_NAME).values(updated_at=now)
    )
    if updated.rowcount == 0:
        conn.execute(sa.insert(trainer_lock).values(name=LOCK_NAME, updated_at=now))


def _locked_request(conn: sa.Connection, request_id: str) -> RetrainRequest | None:
    row = conn.execute(
        sa.select(retrain_requests)
        .where(retrain_requests.c.request_id == request_id)
        .with_for_update()
    ).first()
    return RetrainRequest.from_row(row) if row else None


def _read(conn: sa.Connection, request_id: str) -> RetrainRequest:
    row = conn.execute(
        sa.select(retrain_requests).where(retrain_requests.c.request_id == request_id)
    ).one()
    return RetrainRequest.from_row(row)


def _update(conn: sa.Connection, request_id: str, values: dict[str, Any]) -> None:
    conn.execute(
        sa.update(retrain_requests)
        .where(retrain_requests.c.request_id == request_id)
        .values(**values)
    )


def _split_in_progress(
    conn: sa.Connection, now: datetime, timeout_s: int
) -> tuple[RetrainRequest | None, list[RetrainRequest]]:
    """The active run (the newest claim younger than the timeout) and the timed-out ones."""
    rows = conn.execute(
        sa.select(retrain_requests)
        .where(retrain_requests.c.status.in_(IN_PROGRESS))
        .order_by(retrain_requests.c.started_at.desc(), retrain_requests.c.id.desc())
    ).all()
    cutoff = now - timedelta(seconds=timeout_s)
    active: RetrainRequest | None = None
    timed_out: list[RetrainRequest] = []
    for request in map(RetrainRequest.from_row, rows):
        if request.started_at is not None and request.started_at >= cutoff and active is None:
            active = request
        elif request.started_at is None or request.started_at < cutoff:
            timed_out.append(request)
    return active, timed_out


def _fail_timed_out(
    conn: sa.Connection, timed_out: list[RetrainRequest], now: datetime, timeout_s: int
) -> None:
    for request in timed_out:
        error = (
            f"timed out: no end reported within TRAINER_TIMEOUT_S={timeout_s}s of its start "
            f"at {request.started_at}; presumed dead"
        )
        _update(
            conn,
            request.request_id,
            {"status": "failed", "error": error, "finished_at": now, "updated_at": now},
        )
        log.error(
            "retrain run timed out",
            extra={"request_id": request.request_id, "timeout_s": timeout_s},
        )


def _next_queued(conn: sa.Connection) -> RetrainRequest | None:
    c = retrain_requests.c
    row = conn.execute(
        sa.select(retrain_requests)
        .where(c.status == "queued")
        .order_by(c.window_end.desc(), c.created_at.desc(), c.id.desc())
        .limit(1)
    ).first()
    return RetrainRequest.from_row(row) if row else None


def _set_launching(conn: sa.Connection, row: RetrainRequest, now: datetime) -> RetrainRequest:
    _update(
        conn,
        row.request_id,
        {"status": "launching", "started_at": now, "finished_at": None, "updated_at": now},
    )
    if row.window_end is not None:
        # Queued requests whose window this run also covers need no run of their own.
        c = retrain_requests.c
        covered = conn.execute(
            sa.select(c.request_id).where(
                c.status == "queued",
                c.request_id != row.request_id,
                c.window_end <= row.window_end,
            )
        ).scalars()
        for request_id in covered.all():
            _update(
                conn,
                request_id,
                {
                    "status": "superseded",
                    "error": f"superseded by {row.request_id}",
                    "updated_at": now,
                },
            )
    return _read(conn, row.request_id)


def _claim_or_queue(
    conn: sa.Connection, row: RetrainRequest, now: datetime, timeout_s: int
) -> Claim:
    active, timed_out = _split_in_progress(conn, now, timeout_s)
    _fail_timed_out(conn, timed_out, now, timeout_s)
    stale = tuple(r.request_id for r in timed_out)
    if active is None:
        return Claim("start", _set_launching(conn, row, now), timed_out=stale)
    # Another run is in progress: keep one queued request, the one with the latest window
    # (ties: the later arrival); the others are superseded by it.
    _update(conn, row.request_id, {"status": "queued", "updated_at": now})
    c = retrain_requests.c
    queued = conn.execute(
        sa.select(c.id, c.request_id, c.window_end, c.created_at).where(c.status == "queued")
    ).all()
    keep = max(queued, key=lambda r: (r.window_end or date.min, r.created_at, r.id))
    for other in queued:
        if other.request_id != keep.request_id:
            _update(
                conn,
                other.request_id,
                {
                    "status": "superseded",
                    "error": f"superseded by {keep.request_id}",
                    "updated_at": now,
                },
            )
    return Claim("queued", _read(conn, row.request_id), blocking=active.request_id, timed_out=stale)


def _change(
    engine: sa.Engine,
    request_id: str,
    *,
    from_statuses: tuple[str, ...],
    values: dict[str, Any],
    now: datetime | None,
) -> RetrainRequest:
    now = now or utcnow()

    def work(conn: sa.Connection) -> RetrainRequest:
        _serialize(conn, now)
        row = _locked_request(conn, request_id)
        if row is None or row.status not in from_statuses:
            status = row.status if row else "not in the ledger"
            raise LedgerError(
                f"retrain request {request_id!r} is {status}, not {' or '.join(from_statuses)}"
            )
        _update(conn, request_id, {**values, "updated_at": now})
        return _read(conn, request_id)

    return _transaction(engine, work)


def _end(
    engine: sa.Engine, request_id: str, status: str, error: str | None, now: datetime | None
) -> RetrainRequest | None:
    now = now or utcnow()

    def work(conn: sa.Connection) -> RetrainRequest | None:
        _serialize(conn, now)
        row = _locked_request(conn, request_id)
        if row is None:
            raise LedgerError(f"retrain request {request_id!r} is not in the ledger")
        late = row.status == "failed" and (row.error or "").startswith("timed out")
        if row.status in ENDED and not late:
            if row.status != status:
                raise LedgerError(f"retrain request {request_id!r} already {row.status}")
            return _next_queued(conn)  # a repeated report: nothing changes
        if row.status not in IN_PROGRESS and not late:
            raise LedgerError(f"retrain request {request_id!r} is {row.status}, not running")
        text = error
        if late:
            note = f"ended after being presumed dead ({row.error})"
            text = f"{error}; {note}" if error else note
        _update(
            conn,
            request_id,
            {
                "status": status,
                "error": None if text is None else fit_text(text, 4000),
                "finished_at": now,
                "updated_at": now,
            },
        )
        return _next_queued(conn)

    waiting = _transaction(engine, work)
    log.info("retrain run ended", extra={"request_id": request_id, "status": status})
    if waiting is not None:
        log.warning(
            "a queued retrain request waits for the trainer",
            extra={"request_id": waiting.request_id, "ended": request_id},
        )
    return waiting


def _retryable(exc: sa.exc.OperationalError) -> bool:
    code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
    # MySQL: 1213 deadlock, 1205 lock wait timeout; SQLite: database is locked.
    return code in (1213, 1205) or "database is locked" in str(exc.orig)


def _transaction(engine: sa.Engine, work: Callable[[sa.Connection], _T], attempts: int = 5) -> _T:
    """Run `work` in one transaction, again when the database reports a lock conflict."""
    for attempt in range(attempts):
        try:
            with engine.begin() as conn:
                return work(conn)
        except sa.exc.OperationalError as exc:
            if attempt == attempts - 1 or not _retryable(exc):
                raise
            time.sleep(0.05 * 2**attempt)
        except sa.exc.IntegrityError:
            # Two first uses raced to create the lock row: the loser tries again.
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
