"""A shift that persists stays flagged (issue 23): the reference never includes the days
of an open drift episode, the episode is reported as persisting, and episodes are kept
per served model in `health_drift_episodes`."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from forecastguard.db.migrate import upgrade
from forecastguard.health.check import HealthParams, compute_health, needs_holdout
from forecastguard.health.episodes import load_episodes, record_episodes
from forecastguard.health.render import to_text
from forecastguard.health.window import WindowData, with_episodes

AS_OF = date(2026, 5, 30)
DAYS = 30
N = 300
SHIFTED = np.arange(10)


def _errors(ref_days: int, seed: int = 4) -> np.ndarray:
    """AR(1) (phi 0.3) errors, sd 4, of `ref_days` + DAYS days; the first 10 products'
    forecasts fall 3 sd short from the start of the last 2 * DAYS days on."""
    rng = np.random.default_rng(seed)
    total = ref_days + DAYS
    shocks = rng.standard_normal((N, total))
    x = np.empty_like(shocks)
    x[:, 0] = shocks[:, 0]
    for j in range(1, total):
        x[:, j] = 0.3 * x[:, j - 1] + math.sqrt(1 - 0.09) * shocks[:, j]
    errors = 4.0 * x
    errors[SHIFTED, total - 2 * DAYS :] += 12.0
    return errors


def _window(errors: np.ndarray, ref_days: int | None = None) -> WindowData:
    n, total = errors.shape
    hist = total - DAYS
    return WindowData(
        as_of=AS_OF,
        window_days=DAYS,
        history_days=hist,
        products=np.array([f"P{i:04d}" for i in range(n)], dtype=object),
        codes=np.repeat(np.arange(n, dtype=np.int64), total),
        day=np.tile(np.arange(total, dtype=np.int64), n),
        units=(100.0 + errors).ravel(),
        predicted=np.full(n * total, 100.0),
        model_versions=("m1",),
        current_version="m1",
        last_sale_date=AS_OF,
        reference_days=ref_days,
    )


def _episodes(data: WindowData) -> pd.DataFrame:
    """The first check (one window earlier) flagged the shifted products."""
    since = data.window_start - timedelta(days=DAYS)
    return pd.DataFrame(
        {
            "product_id": data.products[SHIFTED],
            "since": [since] * len(SHIFTED),
            "checks": [1] * len(SHIFTED),
            "first_as_of": [data.window_start - timedelta(days=1)] * len(SHIFTED),
        }
    )


def _holdout(seed: int = 9) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return np.repeat(np.arange(N), 28), 4.0 * rng.standard_normal(N * 28)


def test_the_previous_window_forgets_a_persisting_shift() -> None:
    data = _window(_errors(DAYS))
    result = compute_health(data, HealthParams(rmse_threshold=1e9))
    assert not result.products.loc[SHIFTED, "drift"].any()  # judged against itself


def test_an_open_episode_keeps_the_shift_out_of_the_reference() -> None:
    data = with_episodes(_window(_errors(DAYS)), _episodes(_window(_errors(DAYS))))
    assert needs_holdout(data, 7)  # nothing left before the episode: the holdout judges
    result = compute_health(data, HealthParams(rmse_threshold=1e9), _holdout())
    rows = result.products.loc[SHIFTED]
    assert rows["drift"].all() and rows["persisting"].all()
    assert (rows["reference"] == "holdout").all()
    assert (rows["drift_checks"] == 2).all()
    since = data.window_start - timedelta(days=DAYS)
    assert (rows["drift_since"] == since).all()
    assert (rows["drift_days"] == (AS_OF - since).days + 1).all()
    others = result.products.drop(index=SHIFTED)
    assert not others["persisting"].any() and others["drift"].sum() <= 1
    assert result.summary()["persisting"] == 10
    text = next(r for r in result.reasons if r.startswith("forecast errors drifted"))
    assert "persisting: flagged by 2 checks in a row, 60 days since" in text
    table = to_text(result, top=12)
    assert "level+" in table and "holdout" in table  # the CLI marks a persisting drift


def test_a_longer_reference_judges_against_the_days_before_the_episode() -> None:
    errors = _errors(3 * DAYS)
    data = _window(errors, ref_days=3 * DAYS)
    data = with_episodes(data, _episodes(data))
    assert not needs_holdout(data, 7)
    result = compute_health(data, HealthParams(rmse_threshold=1e9))
    rows = result.products.loc[SHIFTED]
    assert rows["drift"].all() and (rows["reference"] == "before_drift").all()
    assert (result.products.drop(index=SHIFTED)["reference"] == "previous_window").all()


@pytest.fixture
def engine(tmp_path) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'fg.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


def _checked(flags: dict[str, bool | None]) -> pd.DataFrame:
    """A check's product rows: True flagged, False tested and passed, None not tested."""
    return pd.DataFrame(
        {
            "product_id": list(flags),
            "drift": [bool(v) for v in flags.values()],
            "drift_kind": ["level" if v else None for v in flags.values()],
            "drift_pvalue": [np.nan if v is None else 0.5 for v in flags.values()],
        }
    )


def test_episodes_open_continue_and_close_per_model(engine: sa.Engine) -> None:
    day = date(2026, 5, 1)
    with engine.begin() as conn:
        record_episodes(
            conn,
            model_version="m1",
            as_of=day,
            window_start=day - timedelta(days=29),
            products=_checked({"A": True, "B": True, "C": False}),
        )
    first = load_episodes(engine, "m1").set_index("product_id")
    assert sorted(first.index) == ["A", "B"] and (first["checks"] == 1).all()
    assert first.loc["A", "since"] == day - timedelta(days=29)
    later = day + timedelta(days=14)
    for _ in range(2):  # a re-run of the same check counts once
        with engine.begin() as conn:
            record_episodes(
                conn,
                model_version="m1",
                as_of=later,
                window_start=later - timedelta(days=29),
                products=_checked({"A": True, "B": False, "C": None}),
            )
    second = load_episodes(engine, "m1").set_index("product_id")
    assert list(second.index) == ["A"]  # B passed a check: its episode is closed
    assert second.loc["A", "checks"] == 2 and second.loc["A", "since"] == first.loc["A", "since"]
    assert load_episodes(engine, "m2").empty and load_episodes(engine, None).empty
