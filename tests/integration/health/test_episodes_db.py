"""A shift that persists stays flagged through the database (issue 23): the first check
opens the episodes, the second — two weeks later, its previous window half shifted —
judges the products on their errors from before the shift and reports them as
persisting; on SQLite and on MariaDB."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import sqlalchemy as sa

from forecastguard.config import Settings
from forecastguard.health.episodes import load_episodes
from forecastguard.health.service import HealthService
from tests.integration.health.synthetic import frames, synthetic_window, write

FIRST = date(2026, 5, 16)
SECOND = FIRST + timedelta(days=14)
SHIFTED = [f"P{i:03d}" for i in range(8)]


def test_a_persisting_shift_is_flagged_again_as_persisting(engine: sa.Engine) -> None:
    data = synthetic_window(300, SECOND, 30, seed=11, noise=0.05, history=74)
    sales, predictions = frames(data)
    start = FIRST - timedelta(days=29)  # the first check's window: the shift begins
    shifted = sales["product_id"].isin(SHIFTED) & (sales["sale_date"] >= start)
    sales.loc[shifted, "units_sold"] = np.round(sales.loc[shifted, "units_sold"] * 2.2 + 5)
    write(engine, sales, predictions)
    service = HealthService(Settings.from_env({}), engine=engine)

    first = service.run(FIRST, 30)
    flagged = set(first.products.loc[first.products["drift"], "product_id"])
    assert set(SHIFTED) <= flagged
    assert not first.products["persisting"].any()
    episodes = load_episodes(engine, "m1").set_index("product_id")
    assert set(SHIFTED) <= set(episodes.index)
    assert (episodes.loc[SHIFTED, "since"] == start).all()

    second = service.run(SECOND, 30)
    rows = second.products.set_index("product_id").loc[SHIFTED]
    # 16 days of errors from before the shift are left as the reference: most are found.
    again = rows[rows["drift"]]
    assert len(again) >= 6, rows[["drift", "drift_pvalue", "reference"]]
    assert again["persisting"].all() and (again["reference"] == "before_drift").all()
    assert (again["drift_checks"] == 2).all() and (again["drift_since"] == start).all()
    assert second.summary()["persisting"] >= len(again)
    episodes = load_episodes(engine, "m1").set_index("product_id")
    assert (episodes.loc[again.index, "checks"] == 2).all()
    # A product tested and passed closes its episode.
    assert not set(rows.index[~rows["drift"]]) & set(episodes.index)
