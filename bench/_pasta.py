"""The real pasta data for the trainer benchmarks, read in place (never copied)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "shared", ROOT / "jobs" / "trainer"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

# In ../shared beside the checkout (read-only reference material); PASTA_CSV overrides.
_DEFAULT = ROOT.parent / "shared" / "data" / "pasta_sales_uci611" / "hierarchical_sales_data.csv"
PASTA_CSV = Path(os.environ.get("PASTA_CSV", _DEFAULT))


def pasta_path() -> Path:
    """The pasta CSV; exits with a clear message when it is absent."""
    if not PASTA_CSV.is_file():
        sys.exit(f"pasta data not found at {PASTA_CSV} (set PASTA_CSV to its path)")
    return PASTA_CSV
