"""The synthetic sales generator: determinism, realism, drift, forecasts, the CLI."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from scipy import stats

from forecastguard import cli
from forecastguard.db import schema
from forecastguard.sales_io import read_sales_csv
from forecastguard.synth import (
    DEFAULT_MAGNITUDE,
    DRIFT_KINDS,
    SynthParams,
    generate_predictions,
    generate_sales,
    inject_drift,
)

DRIFT_START = pd.Timestamp("2024-04-01")


@pytest.fixture(scope="module")
def two_years() -> pd.DataFrame:
    return generate_sales(40, "2022-01-01", "2023-12-31", seed=11)


@pytest.fixture(scope="module")
def half_year() -> pd.DataFrame:
    return generate_sales(40, "2024-01-01", "2024-06-30", seed=21)


def per_product_rmse(sales: pd.DataFrame, predictions: pd.DataFrame) -> pd.Series:
    joined = sales.merge(
        predictions, left_on=["product_id", "date"], right_on=["product_id", "target_date"]
    )
    error = joined["units_sold"] - joined["predicted_units"]
    return (error**2).groupby(joined["product_id"]).mean() ** 0.5


def product_means(sales: pd.DataFrame) -> pd.Series:
    return sales.groupby("product_id")["units_sold"].mean()


# --- determinism and shape -------------------------------------------------------


def test_same_seed_gives_the_same_frame_and_another_seed_a_different_one() -> None:
    a = generate_sales(15, "2024-01-01", "2024-03-31", seed=3)
    b = generate_sales(15, "2024-01-01", "2024-03-31", seed=3)
    c = generate_sales(15, "2024-01-01", "2024-03-31", seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not a["units_sold"].equals(c["units_sold"])


def test_a_days_values_do_not_depend_on_the_window_asked_for() -> None:
    short = generate_sales(10, "2024-01-01", "2024-02-29", seed=5)
    long = generate_sales(10, "2024-01-01", "2024-03-31", seed=5)
    overlap = long[long["date"] <= "2024-02-29"].reset_index(drop=True)
    pd.testing.assert_frame_equal(short, overlap)
    p_short = generate_predictions(short, start="2024-02-01", seed=1)
    p_long = generate_predictions(long, start="2024-02-01", end="2024-02-29", seed=1)
    pd.testing.assert_frame_equal(p_short, p_long)


def test_frame_is_long_complete_sorted_and_whole_non_negative(half_year) -> None:
    days = pd.date_range("2024-01-01", "2024-06-30")
    assert list(half_year.columns) == [
        "product_id",
        "date",
        "units_sold",
        "on_promotion",
        "expected_units",
    ]
    assert len(half_year) == 40 * len(days)
    assert half_year["product_id"].iloc[0] == "P0001"
    assert half_year["product_id"].is_monotonic_increasing
    assert pd.api.types.is_datetime64_any_dtype(half_year["date"])
    assert half_year["on_promotion"].dtype == bool
    assert not half_year.isna().any().any()
    units = half_year["units_sold"].to_numpy()
    assert (units >= 0).all()
    assert np.array_equal(units, np.round(units))
    assert (half_year["expected_units"] >= 0).all()


def test_product_ids_are_padded_to_sort_in_order() -> None:
    sales = generate_sales(10_000, "2024-01-01", "2024-01-01", seed=0)
    assert sales["product_id"].iloc[[0, -1]].tolist() == ["P00001", "P10000"]


# --- realism ---------------------------------------------------------------------


def test_scales_range_from_intermittent_to_hundreds_a_day(two_years) -> None:
    means = product_means(two_years)
    zero_share = (two_years["units_sold"] == 0).groupby(two_years["product_id"]).mean()
    assert (zero_share > 0.6).sum() >= 2  # intermittent slow sellers
    assert (means > 100).sum() >= 1  # fast sellers
    assert means.median() < 10  # most products are small


def test_counts_are_over_dispersed(two_years) -> None:
    open_days = two_years[two_years["expected_units"] > 0]
    squared = (open_days["units_sold"] - open_days["expected_units"]) ** 2
    index = (
        squared.groupby(open_days["product_id"]).sum()
        / open_days.groupby("product_id")["expected_units"].sum()
    )
    assert index.median() > 1.5  # variance well above the mean (Poisson would give 1)


def test_weekday_profile_is_strong_and_shaped_like_retail(two_years) -> None:
    big = product_means(two_years).loc[lambda m: m > 20].index
    rows = two_years[two_years["product_id"].isin(big) & (two_years["expected_units"] > 0)]
    ratio = rows["units_sold"] / rows.groupby("product_id")["units_sold"].transform("mean")
    weekday = rows["date"].dt.day_of_week
    groups = [ratio[weekday == d].to_numpy() for d in range(7)]
    assert stats.f_oneway(*groups).pvalue < 1e-10
    by_day = ratio.groupby(weekday).mean()
    assert by_day.idxmax() == 5 and by_day.idxmin() == 6  # busy Saturday, quiet Sunday
    total = two_years.groupby("date")["units_sold"].sum()
    assert total.autocorr(7) > total.autocorr(3)


def test_yearly_pattern_repeats_from_one_year_to_the_next(two_years) -> None:
    big = product_means(two_years).loc[lambda m: m > 20].index
    rows = two_years[two_years["product_id"].isin(big)]
    monthly = rows.groupby(
        ["product_id", rows["date"].dt.year.rename("y"), rows["date"].dt.month.rename("m")]
    )["units_sold"].mean()
    corr = [np.corrcoef(monthly[p, 2022], monthly[p, 2023])[0, 1] for p in big]
    assert np.median(corr) > 0.5


def test_store_is_closed_on_holidays_and_busy_just_before(two_years) -> None:
    total = two_years.groupby("date")["units_sold"].sum()
    for closed in ["2022-12-25", "2023-01-01", "2023-04-09", "2023-08-15", "2023-12-26"]:
        assert total[closed] == 0, closed  # Christmas, New Year, Easter, Ferragosto...
    # Friday 2023-12-22 and Saturday 2023-12-23 vs the same weekdays of November.
    november = total["2023-11-01":"2023-11-30"]
    for day in ["2023-12-22", "2023-12-23"]:
        usual = november[november.index.day_of_week == pd.Timestamp(day).day_of_week].mean()
        assert total[day] > 1.3 * usual, day


def test_holidays_follow_the_country_and_the_closure_is_a_parameter() -> None:
    us = generate_sales(5, "2024-07-01", "2024-07-07", seed=1, country="US")
    it = generate_sales(5, "2024-07-01", "2024-07-07", seed=1, country="IT")
    july4 = pd.Timestamp("2024-07-04")
    assert us.loc[us["date"] == july4, "expected_units"].sum() == 0
    assert it.loc[it["date"] == july4, "expected_units"].sum() > 0
    half_open = generate_sales(
        5, "2024-12-25", "2024-12-25", seed=1, params=SynthParams(holiday_factor=0.5)
    )
    assert half_open["expected_units"].gt(0).all()
    with pytest.raises(ValueError, match="no holiday calendar"):
        generate_sales(5, "2024-01-01", "2024-01-02", seed=1, country="XX")


def test_promotions_come_in_weeks_and_raise_sales(two_years) -> None:
    share = two_years["on_promotion"].mean()
    assert 0.05 < share < 0.25
    mean = two_years.groupby(["product_id", "on_promotion"])["units_sold"].mean().unstack()
    assert (mean[True] / mean[False]).median() > 1.3
    # A product's promotion runs Monday to Sunday.
    week = two_years["date"].dt.to_period("W-SUN")
    flags = two_years.groupby(["product_id", week])["on_promotion"].nunique()
    assert (flags == 1).all()
    none = generate_sales(5, "2024-01-01", "2024-03-31", 1, params=SynthParams(promo_share=0))
    assert not none["on_promotion"].any()


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="promo_share"):
        SynthParams(promo_share=1.5)
    with pytest.raises(ValueError, match="dispersion"):
        SynthParams(dispersion=(3.0, 1.0))
    with pytest.raises(ValueError, match="level_sigma"):
        SynthParams(level_sigma=-1)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, "2024-01-01", "2024-01-02", 1), "n_products"),
        ((3, "2024-01-05", "2024-01-02", 1), "before start"),
        ((3, "2024-13-01", "2024-01-02", 1), "start must be a date"),
        ((3, "2024-01-01", "2024-01-02", -1), "seed"),
    ],
)
def test_bad_arguments_are_rejected(args, match) -> None:
    with pytest.raises(ValueError, match=match):
        generate_sales(*args)


# --- drift -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", DRIFT_KINDS)
def test_drift_changes_only_the_chosen_products_from_the_start_day(half_year, kind) -> None:
    drifted, ids = inject_drift(half_year, share=0.25, start=DRIFT_START, kind=kind, seed=4)
    assert len(ids) == 10 and ids == sorted(ids)
    assert set(ids) <= set(half_year["product_id"])
    touched = (half_year["date"] >= DRIFT_START) & half_year["product_id"].isin(ids)
    pd.testing.assert_frame_equal(drifted[~touched], half_year[~touched])
    assert (drifted.loc[touched, "units_sold"] != half_year.loc[touched, "units_sold"]).mean() > 0.5
    units = drifted["units_sold"].to_numpy()
    assert (units >= 0).all() and np.array_equal(units, np.round(units))
    assert drifted["expected_units"].equals(half_year["expected_units"])
    again, same_ids = inject_drift(half_year, share=0.25, start=DRIFT_START, kind=kind, seed=4)
    pd.testing.assert_frame_equal(drifted, again)
    assert same_ids == ids


def _after_vs_expected(frame: pd.DataFrame, ids: list[str]) -> tuple[float, float]:
    rows = frame[frame["product_id"].isin(ids)]
    after = rows["date"] >= DRIFT_START
    ratio = rows.groupby(after)["units_sold"].sum() / rows.groupby(after)["expected_units"].sum()
    return float(ratio[False]), float(ratio[True])


@pytest.mark.parametrize(("magnitude", "factor"), [(1.0, 2.0), (-0.5, 0.5)])
def test_level_shift_moves_the_mean_of_drifted_products(half_year, magnitude, factor) -> None:
    drifted, ids = inject_drift(
        half_year, share=0.25, start=DRIFT_START, kind="level_shift", seed=4, magnitude=magnitude
    )
    before, after = _after_vs_expected(drifted, ids)
    assert before == pytest.approx(1, abs=0.1)
    assert after == pytest.approx(factor, rel=0.1)
    others = sorted(set(half_year["product_id"]) - set(ids))
    assert _after_vs_expected(drifted, others)[1] == pytest.approx(1, abs=0.1)


def _deviation_sd_ratio(frame: pd.DataFrame, ids: list[str]) -> pd.Series:
    rows = frame[frame["product_id"].isin(ids) & (frame["expected_units"] > 2)]
    deviation = rows["units_sold"] - rows["expected_units"]
    sd = deviation.groupby([rows["product_id"], rows["date"] >= DRIFT_START]).std().unstack()
    return sd[True] / sd[False]


@pytest.mark.parametrize(("magnitude", "low", "high"), [(2.5, 1.8, 4.0), (0.4, 0.25, 0.65)])
def test_variance_change_scales_the_spread_not_the_mean(half_year, magnitude, low, high) -> None:
    drifted, ids = inject_drift(
        half_year,
        share=0.25,
        start=DRIFT_START,
        kind="variance_change",
        seed=4,
        magnitude=magnitude,
    )
    assert low < _deviation_sd_ratio(drifted, ids).median() < high
    assert 0.9 < _deviation_sd_ratio(half_year, ids).median() < 1.2  # before the drift
    big = [p for p in ids if half_year.loc[half_year["product_id"] == p, "units_sold"].mean() > 20]
    assert big
    assert _after_vs_expected(drifted, big)[1] == pytest.approx(1, abs=0.15)


def test_seasonality_change_reshapes_the_week_but_keeps_the_level(half_year) -> None:
    drifted, ids = inject_drift(
        half_year, share=0.25, start=DRIFT_START, kind="seasonality_change", seed=4
    )
    rows = drifted[drifted["product_id"].isin(ids) & (drifted["expected_units"] > 0)]
    after = rows["date"] >= DRIFT_START
    keys = [rows["product_id"], after, rows["date"].dt.day_of_week]
    ratio = (
        rows.groupby(keys)["units_sold"].sum() / rows.groupby(keys)["expected_units"].sum()
    ).unstack()
    spread = (ratio.max(axis=1) / ratio.min(axis=1)).unstack()
    big = product_means(half_year).loc[ids].loc[lambda m: m > 5].index
    assert (spread.loc[big, True] > 2.5).all()  # weekday vs expected: far from flat
    assert (spread.loc[big, False] < 1.9).all()
    assert _after_vs_expected(drifted, list(big))[1] == pytest.approx(1, abs=0.15)


def test_drift_share_zero_and_bad_arguments(half_year) -> None:
    same, ids = inject_drift(half_year, share=0, start=DRIFT_START, kind="level_shift")
    assert ids == [] and same.equals(half_year)
    _, one = inject_drift(half_year, share=0.001, start=DRIFT_START, kind="level_shift")
    assert len(one) == 1
    with pytest.raises(ValueError, match="kind"):
        inject_drift(half_year, share=0.2, start=DRIFT_START, kind="sideways")
    with pytest.raises(ValueError, match="share"):
        inject_drift(half_year, share=1.5, start=DRIFT_START, kind="level_shift")
    with pytest.raises(ValueError, match="magnitude"):
        inject_drift(half_year, share=0.2, start=DRIFT_START, kind="level_shift", magnitude=-1)
    with pytest.raises(ValueError, match="magnitude"):
        inject_drift(
            half_year, share=0.2, start=DRIFT_START, kind="seasonality_change", magnitude=1.5
        )


def test_drift_works_on_real_style_frames_without_expected_units(half_year) -> None:
    real = half_year.drop(columns=["expected_units"])
    drifted, ids = inject_drift(real, share=0.5, start=DRIFT_START, kind="level_shift", seed=2)
    rows = drifted["product_id"].isin(ids) & (drifted["date"] >= DRIFT_START)
    assert drifted.loc[rows, "units_sold"].sum() > 1.6 * real.loc[rows, "units_sold"].sum()
    assert drifted.loc[~rows].equals(real.loc[~rows])


# --- forecasts -------------------------------------------------------------------


@pytest.fixture(scope="module")
def store() -> pd.DataFrame:
    return generate_sales(60, "2024-01-01", "2024-06-30", seed=8)


def test_predictions_cover_the_window_and_are_deterministic(store) -> None:
    p = generate_predictions(store, start="2024-06-01", end="2024-06-30", seed=2)
    assert list(p.columns) == ["product_id", "target_date", "predicted_units", "model_version"]
    assert len(p) == 60 * 30
    assert p["target_date"].min() == pd.Timestamp("2024-06-01")
    assert p["target_date"].max() == pd.Timestamp("2024-06-30")
    assert (p["predicted_units"] >= 0).all() and (p["model_version"] == "synthetic-v1").all()
    pd.testing.assert_frame_equal(p, generate_predictions(store, start="2024-06-01", seed=2))
    other = generate_predictions(store, start="2024-06-01", seed=3)
    assert not p["predicted_units"].equals(other["predicted_units"])


def test_healthy_forecasts_stay_well_below_the_rmse_threshold(store) -> None:
    p = generate_predictions(store, start="2024-06-01", end="2024-06-30", seed=2)
    rmse = per_product_rmse(store, p)
    assert 3 < rmse.mean() < 12  # the health check's threshold is 18
    means = product_means(store[store["date"] >= "2024-06-01"])
    top = means.nlargest(6).index
    assert rmse[top].mean() > 25  # fast sellers' errors run in the tens
    assert rmse.drop(top).mean() < 6
    assert rmse[top].sum() > 0.4 * rmse.sum()  # a tenth of the products, ~half the error
    joined = store.merge(p, left_on=["product_id", "date"], right_on=["product_id", "target_date"])
    assert np.corrcoef(joined["units_sold"], joined["predicted_units"])[0, 1] > 0.95


def test_forecasts_miss_a_level_shift_and_a_strong_one_crosses_the_threshold(store) -> None:
    p = generate_predictions(store, start="2024-06-01", end="2024-06-30", seed=2)
    healthy = per_product_rmse(store, p)
    drifted, ids = inject_drift(store, share=0.3, start="2024-06-01", kind="level_shift", seed=1)
    rmse = per_product_rmse(drifted, p)
    assert (rmse[ids] > healthy[ids]).all()
    assert rmse.drop(ids).equals(healthy.drop(ids))
    strong, _ = inject_drift(
        store, share=0.6, start="2024-06-01", kind="level_shift", seed=1, magnitude=1.5
    )
    assert per_product_rmse(strong, p).mean() > 18


def test_predictions_need_the_expected_demand(store) -> None:
    with pytest.raises(ValueError, match="expected_units"):
        generate_predictions(store.drop(columns=["expected_units"]))


# --- performance -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "start", "end"), [(10_000, "2024-01-01", "2024-02-29"), (118, "2014-01-01", "2018-12-31")]
)
def test_generation_is_vectorised_and_fast(n, start, end) -> None:
    began = time.perf_counter()
    sales = generate_sales(n, start, end, seed=1)
    generate_predictions(sales, start=sales["date"].max() - pd.Timedelta(days=29), seed=1)
    inject_drift(
        sales, share=0.3, start=sales["date"].max() - pd.Timedelta(days=14), kind="level_shift"
    )
    assert time.perf_counter() - began < 10  # about 1 s on the 2-core development machine


# --- the command -----------------------------------------------------------------


def test_cli_drift_kinds_match_the_library() -> None:
    assert cli._DRIFT_KINDS == DRIFT_KINDS


def test_cli_writes_long_csv_that_load_sales_reads(tmp_path) -> None:
    out = tmp_path / "sales.csv"
    args = ["synth", "--products", "6", "--start", "2024-01-01", "--end", "2024-02-29"]
    args += ["--seed", "4", "--predictions-from", "2024-02-01", "--out", str(out)]
    args += ["--drift-share", "0.5", "--drift-start", "2024-02-15"]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    assert "drift (level_shift) from 2024-02-15 in 3 products" in result.output
    assert out.read_text().splitlines()[0] == "product_id,date,units,on_promotion"
    frame = read_sales_csv(out)
    assert len(frame.sales) == 6 * 60
    assert frame.promotions is not None and frame.promotions["on_promotion"].any()
    expected, _ = inject_drift(
        generate_sales(6, "2024-01-01", "2024-02-29", 4),
        share=0.5,
        start="2024-02-15",
        kind="level_shift",
        seed=4,
    )
    assert frame.sales["units_sold"].tolist() == expected["units_sold"].tolist()
    forecasts = pd.read_csv(tmp_path / "sales_predictions.csv")
    assert len(forecasts) == 6 * 29


def test_cli_writes_sales_promotions_and_predictions_to_the_database(db_url) -> None:
    args = ["synth", "--products", "5", "--start", "2024-03-01", "--end", "2024-03-31"]
    args += ["--predictions-from", "2024-03-15", "--database-url", db_url]
    runner = CliRunner()
    for _ in range(2):  # running twice changes nothing
        result = runner.invoke(cli.main, args)
        assert result.exit_code == 0, result.output
    sales = generate_sales(5, "2024-03-01", "2024-03-31", 0)
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        counts = {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in (schema.sales, schema.promotions, schema.predictions)
        }
        total = conn.execute(sa.select(sa.func.sum(schema.sales.c.units_sold))).scalar_one()
    engine.dispose()
    assert counts == {
        "sales": 5 * 31,
        "promotions": int(sales["on_promotion"].sum()),
        "predictions": 5 * 17,
    }
    assert total == sales["units_sold"].sum()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--out", "x.csv", "--database-url", "sqlite://"], "not both"),
        (["--out", "x.csv", "--drift-share", "0.2"], "go together"),
        (["--out", "x.csv", "--predictions-from", "2025-01-01"], "between --start and --end"),
        (["--out", "x.csv", "--country", "XX"], "no holiday calendar"),
        (
            [
                *["--out", "x.csv", "--drift-share", "0.2", "--drift-start", "2024-01-02"],
                *["--drift-kind", "seasonality_change", "--drift-magnitude", "2"],
            ],
            "magnitude",
        ),
    ],
)
def test_cli_rejects_bad_combinations(tmp_path, monkeypatch, extra, message) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["synth", "--products", "2", "--start", "2024-01-01", "--end", "2024-01-05", *extra]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 2
    assert message in result.output


def test_cli_help_describes_the_options() -> None:
    result = CliRunner().invoke(cli.main, ["synth", "--help"])
    assert result.exit_code == 0
    for option in ["--products", "--predictions-from", "--drift-kind", "--out", "--database-url"]:
        assert option in result.output
    text = " ".join(result.output.split())
    for kind, magnitude in DEFAULT_MAGNITUDE.items():
        assert f"{kind}:" in text and f"default {magnitude}" in text
