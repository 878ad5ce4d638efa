"""Parse and validate the parameters of a check request: {as_of, window_days}."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

MAX_WINDOW_DAYS = 366


class BadRequest(ValueError):
    """The request's parameters are malformed or out of range; the text names the problem."""


def parse_check_params(
    params: Mapping[str, Any] | None, today: date
) -> tuple[date | None, int | None]:
    """(as_of, window_days) from a JSON object or query string; None where not given.

    as_of is a YYYY-MM-DD date not after `today`; window_days an integer 1..366
    (a string of digits is accepted, from a query string). Unknown keys are refused.
    """
    if params is None:
        return None, None
    if not isinstance(params, Mapping):
        raise BadRequest(f"the body must be a JSON object, got {type(params).__name__}")
    unknown = sorted(set(params) - {"as_of", "window_days"})
    if unknown:
        raise BadRequest(
            f"unknown parameter(s): {', '.join(unknown)} (expected as_of, window_days)"
        )
    as_of = params.get("as_of")
    window_days = params.get("window_days")
    parsed_as_of: date | None = None
    if as_of is not None:
        if not isinstance(as_of, str):
            raise BadRequest(f"as_of must be a date YYYY-MM-DD, got {as_of!r}")
        try:
            parsed_as_of = date.fromisoformat(as_of)
        except ValueError:
            raise BadRequest(f"as_of must be a date YYYY-MM-DD, got {as_of!r}") from None
        if parsed_as_of > today:
            raise BadRequest(f"as_of {parsed_as_of} is in the future (today is {today})")
    parsed_days: int | None = None
    if window_days is not None:
        if isinstance(window_days, str) and window_days.strip().isdigit():
            window_days = int(window_days)
        if isinstance(window_days, bool) or not isinstance(window_days, int):
            raise BadRequest(f"window_days must be an integer, got {window_days!r}")
        if not 1 <= window_days <= MAX_WINDOW_DAYS:
            raise BadRequest(
                f"window_days must be between 1 and {MAX_WINDOW_DAYS}, got {window_days}"
            )
        parsed_days = window_days
    return parsed_as_of, parsed_days
