"""A stand-in for `python -m trainer --mode train`: records its arguments and environment
to the JSON file named by its first argument, then reports its end to the ledger as the
real trainer does (`forecastguard.retrain.mark_finished`)."""

from __future__ import annotations

import json
import os
import sys

from forecastguard import retrain
from forecastguard.db.engine import make_engine

NAMES = ("REQUEST_ID", "REASON", "HEALTH_CHECK_ID", "WINDOW_START", "WINDOW_END")


def main() -> None:
    out, *args = sys.argv[1:]
    seen = {name: os.environ.get(name) for name in (*NAMES, "DATABASE_URL", "ARTIFACT_URI")}
    with open(out, "w") as f:
        json.dump({"args": args, "env": seen, "names": sorted(os.environ)}, f)
    print("fake trainer ran for", os.environ["REQUEST_ID"], flush=True)
    engine = make_engine(os.environ["DATABASE_URL"])
    retrain.mark_finished(engine, os.environ["REQUEST_ID"])
    engine.dispose()


if __name__ == "__main__":
    main()
