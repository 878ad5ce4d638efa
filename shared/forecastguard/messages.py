"""The retrain message (DESIGN.md §4): Pub/Sub data, UTF-8 JSON; unknown fields ignored."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

SCHEMA_VERSION = 1
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
# The dates forecastguard accepts from outside: sales data before 2000 or after 2100 is a
# mistake (and year 1 overflows date arithmetic).
MIN_DATE = date(2000, 1, 1)
MAX_DATE = date(2100, 12, 31)


def strict_date(value: Any, name: str, error: type[ValueError] = ValueError) -> date:
    """`value` as a date, only when it is a `YYYY-MM-DD` string from MIN_DATE to MAX_DATE.

    Raises `error` naming `name` otherwise (Python's own parser also takes `20260530` or
    `2026-W22-6`, which no caller means).
    """
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise error(f"{name} must be a date YYYY-MM-DD, got {_short(value)}")
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise error(f"{name} must be a date YYYY-MM-DD, got {_short(value)}") from None
    if not MIN_DATE <= parsed <= MAX_DATE:
        raise error(f"{name} must be between {MIN_DATE} and {MAX_DATE}, got {value}")
    return parsed


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...(truncated)"


class MessageError(ValueError):
    """A message does not follow its schema; the text says which field and why."""


@dataclass(frozen=True)
class RetrainMessage:
    """A request to retrain the model, published when a health check is unhealthy."""

    request_id: str
    reason: str
    window_start: date
    window_end: date
    health_check_id: str | None = None
    model_version: str | None = None
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        """The message's Pub/Sub data: UTF-8 JSON with ISO dates."""
        body = asdict(self)
        body["window_start"] = self.window_start.isoformat()
        body["window_end"] = self.window_end.isoformat()
        return json.dumps(body, sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str | dict[str, Any]) -> RetrainMessage:
        """Parse and validate a message; raise `MessageError` naming the first problem."""
        if isinstance(data, dict):
            body = data
        else:
            try:
                text = data.decode("utf-8") if isinstance(data, bytes) else data
                body = json.loads(text)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise MessageError(f"message data is not UTF-8 JSON: {exc}") from None
            except (ValueError, RecursionError) as exc:  # a 5,000-digit number, deep nesting
                raise MessageError(f"message data is not usable JSON: {exc}") from None
        if not isinstance(body, dict):
            raise MessageError(f"message data must be a JSON object, got {type(body).__name__}")
        version = body.get("schema_version")
        if version != SCHEMA_VERSION:
            raise MessageError(f"schema_version must be {SCHEMA_VERSION}, got {_short(version)}")
        request_id = body.get("request_id")
        if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
            raise MessageError(
                "request_id must be 1-128 characters of letters, digits and ._:-, "
                f"got {_short(request_id)}"
            )
        reason = body.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise MessageError("reason must be a non-empty string")
        start = _date_field(body, "window_start")
        end = _date_field(body, "window_end")
        if start > end:
            raise MessageError(f"window_start {start} is after window_end {end}")
        optional = {}
        for name in ("health_check_id", "model_version"):
            value = body.get(name)
            if value is not None and not isinstance(value, str):
                raise MessageError(f"{name} must be a string or null, got {_short(value)}")
            optional[name] = value
        return cls(request_id, reason.strip(), start, end, **optional)


def _date_field(body: dict[str, Any], name: str) -> date:
    return strict_date(body.get(name), name, MessageError)


def make_request_id(window_end: date, model_version: str | None, reasons: Iterable[str]) -> str:
    """The idempotency key: the same window, model and reasons give the same id."""
    key = json.dumps(
        [window_end.isoformat(), model_version or "", sorted(reasons)], separators=(",", ":")
    )
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
