"""Parse and validate the parameters of a check request: {as_of, window_days}."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from forecastguard.messages import strict_date

MAX_WINDOW_DAYS = 366
# A JSON request is a flat object of two fields: anything nested deeper is refused before
# Python's parser could recurse into it.
MAX_JSON_DEPTH = 8
_DIGITS = re.compile(r"^[0-9]{1,4}$")


class BadRequest(ValueError):
    """The request's parameters are malformed or out of range; the text names the problem."""


def parse_json(data: bytes | str, what: str = "the body") -> Any:
    """Decode UTF-8 JSON; `BadRequest` for invalid, too deep or unparseable numbers."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise BadRequest(f"{what} is not UTF-8") from None
    if _depth(text) > MAX_JSON_DEPTH:
        raise BadRequest(f"{what} is nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # e.g. a number of more than 4,300 digits
        raise BadRequest(f"{what} is not usable JSON: {str(exc)[:120]}") from None


def _depth(text: str) -> int:
    """The deepest nesting of [ and { outside strings (an upper bound is enough)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_check_params(
    params: Mapping[str, Any] | None, today: date
) -> tuple[date | None, int | None]:
    """(as_of, window_days) from a JSON object or query string; None where not given.

    as_of is a `YYYY-MM-DD` date from 2000-01-01 up to `today`; window_days an integer
    1..366 (a string of ASCII digits is accepted, from a query string). Unknown keys
    are refused.
    """
    if params is None:
        return None, None
    if not isinstance(params, Mapping):
        raise BadRequest(f"the body must be a JSON object, got {type(params).__name__}")
    unknown = sorted(str(k)[:40] for k in set(params) - {"as_of", "window_days"})
    if unknown:
        raise BadRequest(
            f"unknown parameter(s): {', '.join(unknown[:5])} (expected as_of, window_days)"
        )
    as_of = params.get("as_of")
    window_days = params.get("window_days")
    parsed_as_of: date | None = None
    if as_of is not None:
        parsed_as_of = strict_date(as_of, "as_of", BadRequest)
        if parsed_as_of > today:
            raise BadRequest(f"as_of {parsed_as_of} is in the future (today is {today})")
    parsed_days: int | None = None
    if window_days is not None:
        if isinstance(window_days, str) and _DIGITS.match(window_days.strip()):
            window_days = int(window_days.strip())
        if isinstance(window_days, bool) or not isinstance(window_days, int):
            shown = repr(window_days)
            shown = shown if len(shown) <= 40 else shown[:40] + "...(truncated)"
            raise BadRequest(f"window_days must be an integer, got {shown}")
        if not 1 <= window_days <= MAX_WINDOW_DAYS:
            shown = str(window_days) if abs(window_days) < 10**12 else "a huge number"
            raise BadRequest(f"window_days must be between 1 and {MAX_WINDOW_DAYS}, got {shown}")
        parsed_days = window_days
    return parsed_as_of, parsed_days
