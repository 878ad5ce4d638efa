"""Structured logging: one JSON object per line with `severity` (what Cloud Logging reads)."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line; extra fields given to the logger are kept."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger": record.name,
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", stream: Any = None) -> None:
    """Send forecastguard's logs (and the root logger's) as JSON lines to stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries that narrate routine work at INFO: keep their warnings only.
    for noisy in ("alembic", "urllib3", "google", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> logging.Logger:
    """The logger for a module; pass structured fields with `extra={...}`."""
    return logging.getLogger(name)


@contextlib.contextmanager
def timed(logger: logging.Logger, message: str, **fields: Any) -> Iterator[dict[str, Any]]:
    """Log `message` with `duration_s` when the block ends (with `failed` if it raised).

    The yielded dict may be filled with more fields to log at the end.
    """
    extra = dict(fields)
    start = time.perf_counter()
    try:
        yield extra
    except BaseException:
        extra["duration_s"] = round(time.perf_counter() - start, 4)
        logger.error(f"{message} failed", extra=extra)
        raise
    extra["duration_s"] = round(time.perf_counter() - start, 4)
    logger.info(message, extra=extra)
