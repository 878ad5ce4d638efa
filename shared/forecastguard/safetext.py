"""Product data is hostile input: text from the retailer's files, made safe for each place
it is shown (docs/security.md, "What product data may contain").

- `invisible_characters`: the characters an id may not contain (Unicode categories Cc,
  Cf, Zl, Zp: control characters, zero-width and bidirectional marks, line and paragraph
  separators); `forecastguard.sales_io` refuses a row whose id has any.
- `terminal_safe`: text for a terminal, every such character and every other unprintable
  one shown as an escape (`\\x1b`, `\\u200b`), so an id cannot clear the screen or pose
  as another id.
- `csv_cell` / `csv_text`: CSV for spreadsheets, text cells that start like a formula
  (`=`, `+`, `-`, `@`, tab, carriage return) prefixed with `'` (the OWASP rule); numbers
  in numeric columns stay numbers.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import pandas as pd

REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def invisible_characters(text: str) -> list[str]:
    """The characters of `text` in a refused category, as `U+200B (Cf)` (first of each)."""
    found: dict[str, str] = {}
    for ch in text:
        category = unicodedata.category(ch)
        if category in REFUSED_CATEGORIES and ch not in found:
            found[ch] = f"U+{ord(ch):04X} ({category})"
    return list(found.values())


def terminal_safe(text: object) -> str:
    """`text` with every control, format, separator or unprintable character escaped."""
    out = []
    for ch in str(text):
        if ch.isprintable() and unicodedata.category(ch) not in REFUSED_CATEGORIES:
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def csv_cell(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula gets a leading `'`."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(frame: pd.DataFrame, *, index: bool = False) -> str:
    """`frame.to_csv(index=index)` with its text cells (and text index) made formula-safe.

    Only text columns are touched: `-3.2` in a numeric column is a number, not a formula.
    Lines end in CRLF (RFC 4180), so a cell holding a lone carriage return is quoted too.
    """
    safe = frame.copy()
    for column in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[column]):
            safe[column] = safe[column].map(csv_cell)
    if index and not pd.api.types.is_numeric_dtype(safe.index):
        safe.index = safe.index.map(csv_cell)
    safe.columns = [csv_cell(str(c)) for c in safe.columns]
    return safe.to_csv(index=index, lineterminator="\r\n")
