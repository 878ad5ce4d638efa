"""The backtest harness on tiny data: cutoffs, no look-ahead, metrics, cheap models, report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from experiments.__main__ import main
from experiments.backtest import cutoff_indices, make_task, run_backtest
from experiments.data import DataError, Panel, panel_from_long, read_pasta, synthetic
from experiments.metrics import aggregate, disparity, per_product, scales, worst_decile
from experiments.models import ModelOptions, build_models
from experiments.models.base import Forecast, ForecastTask
from experiments.models.naive import SeasonalNaive
from experiments.models.sarima import Sarima, adf_order
from experiments.report import write_report

pytestmark = pytest.mark.usefixtures("keras_eagerly")

PASTA = Path(__file__).resolve().parents[2].parent / "shared/data/pasta_sales_uci611"


def weekly_panel(n_days: int = 120, n_products: int = 3) -> Panel:
    """Pure weekly patterns (seasonal naive is exact on them), one closed day in the test."""
    dates = pd.date_range("2020-01-01", periods=n_days, freq="D")
    week = np.array([3.0, 4.0, 5.0, 6.0, 9.0, 12.0, 1.0])
    units = np.column_stack([np.resize(week * (j + 1), n_days) for j in range(n_products)])
    units[-3, :] = np.nan  # the store was closed
    promo = np.zeros_like(units)
    promo[-10:, 0] = 1.0
    return Panel(dates, tuple(f"P{j}" for j in range(n_products)), units, promo)


class Spy:
    """Records what the harness shows a model; forecasts the history's mean."""

    name = "spy"

    def __init__(self) -> None:
        self.tasks: list[ForecastTask] = []

    def forecast(self, task: ForecastTask) -> Forecast:
        self.tasks.append(task)
        mean = np.nanmean(task.history.units, axis=0)
        return Forecast(values=np.tile(mean, (task.horizon, 1)))


def test_cutoffs_tile_the_end_of_the_data() -> None:
    assert cutoff_indices(100, 10, 3) == [69, 79, 89]
    assert cutoff_indices(100, 10, 2, step=5) == [84, 89]
    with pytest.raises(ValueError, match="too few"):
        cutoff_indices(50, 10, 4)


def test_models_see_only_the_history_and_future_promotions() -> None:
    panel = weekly_panel()
    spy = Spy()
    partial: list[int] = []
    result = run_backtest(
        panel, [spy], horizon=14, n_cutoffs=2, on_cutoff=lambda r: partial.append(len(r.forecasts))
    )
    assert [t.history.dates[-1] for t in spy.tasks] == result.cutoffs
    assert partial == [14 * 3, 2 * 14 * 3]  # the results so far, after each cutoff
    for task in spy.tasks:
        end = len(task.history.dates)
        assert task.history.units.shape == (end, 3)
        np.testing.assert_array_equal(task.history.units, panel.units[:end])
        assert task.future_dates[0] == task.history.dates[-1] + pd.Timedelta(days=1)
        np.testing.assert_array_equal(task.future_promo, panel.promo[end : end + 14])
    # Test windows do not overlap and end with the data.
    assert result.forecasts["date"].max() == panel.dates[-1]
    assert result.forecasts.groupby(["model", "product_id", "date"]).size().max() == 1


def test_seasonal_naive_is_exact_on_a_weekly_pattern_and_closed_days_are_not_scored() -> None:
    panel = weekly_panel()
    result = run_backtest(panel, [SeasonalNaive()], horizon=14, n_cutoffs=2)
    metrics = per_product(result.forecasts, result.scales)
    assert (metrics["n"] == 2 * 14 - 1).all()  # the closed day is left out
    np.testing.assert_allclose(metrics[["rmse", "mae", "bias", "rmsse"]], 0.0, atol=1e-12)
    # The in-sample seasonal naive is exact too, so MASE's scale is 0: left undefined.
    assert metrics["mase"].isna().all()


def test_metrics_match_hand_computed_values() -> None:
    cutoff = pd.Timestamp("2020-01-10")
    forecasts = pd.DataFrame(
        {
            "model": "m",
            "cutoff": cutoff,
            "product_id": ["a", "a", "a", "b", "b", "b"],
            "date": list(pd.date_range("2020-01-11", periods=3)) * 2,
            "step": [1, 2, 3] * 2,
            "actual": [2.0, 4.0, np.nan, 1.0, 1.0, 1.0],
            "forecast": [1.0, 1.0, 5.0, 1.0, 2.0, 3.0],
        }
    )
    scale_frame = pd.DataFrame(
        {
            "cutoff": cutoff,
            "product_id": ["a", "b"],
            "rmsse_scale": [2.0, 1.0],
            "mase_scale": [1.0, 0.5],
        }
    )
    m = per_product(forecasts, scale_frame).set_index("product_id")
    # a: errors (actual − forecast) 1, 3; b: 0, −1, −2. Bias is mean(forecast − actual).
    assert m.loc["a", "n"] == 2 and m.loc["b", "n"] == 3
    assert m.loc["a", "rmse"] == pytest.approx(np.sqrt(5.0))
    assert m.loc["a", "mae"] == pytest.approx(2.0)
    assert m.loc["a", "bias"] == pytest.approx(-2.0)  # forecasts too low
    assert m.loc["a", "rmsse"] == pytest.approx(np.sqrt(5.0) / 2.0)
    assert m.loc["a", "mase"] == pytest.approx(2.0)
    assert m.loc["b", "bias"] == pytest.approx(1.0)  # forecasts too high
    assert m.loc["b", "mase"] == pytest.approx(2.0)
    timings = pd.DataFrame({"model": ["m"], "cutoff": [cutoff], "wall_s": [1.5], "cpu_s": [1.0]})
    summary = aggregate(m.reset_index(), timings)
    assert summary.loc[0, "rmse"] == pytest.approx((np.sqrt(5.0) + np.sqrt(5.0 / 3.0)) / 2)
    assert summary.loc[0, "wall_s"] == 1.5


def test_scales_start_at_the_first_sale() -> None:
    history = np.array([[0.0, 5.0], [0.0, 5.0], [2.0, 5.0], [4.0, 5.0], [np.nan, 5.0]])
    rmsse_scale, mase_scale = scales(history, season=1)
    # Product 0 from its first sale: 2, 4, 0 (closed day) -> changes 2, -4.
    assert rmsse_scale[0] == pytest.approx(np.sqrt((4 + 16) / 2))
    assert mase_scale[0] == pytest.approx(3.0)
    assert np.isnan(rmsse_scale[1]) and np.isnan(mase_scale[1])  # constant: no scale


def test_disparity_and_worst_decile() -> None:
    rmsse = np.arange(1.0, 11.0)
    assert disparity(rmsse) == pytest.approx(np.percentile(rmsse, 90) / 5.5)
    assert worst_decile(rmsse) == 10.0
    assert disparity(np.ones(5)) == 1.0


def test_adf_chooses_differencing_after_the_weekly_difference() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(10, 1, 400)
    # After the (fixed) weekly difference a random walk is stationary; an I(2) series is not.
    walk = np.cumsum(rng.normal(0, 1, 400))
    integrated_twice = np.cumsum(np.cumsum(rng.normal(0, 1, 400)))
    assert adf_order(noise) == 0
    assert adf_order(walk) == 0
    assert adf_order(integrated_twice) >= 1


def test_lightgbm_rows_are_the_trainers_and_do_not_look_past_the_cutoff() -> None:
    from experiments.models.lgbm import direct_rows
    from trainer.data.features import KNOWN_FEATURES, SEQ_FEATURES
    from trainer.models.gbm import row_names

    panel = weekly_panel(n_days=430, n_products=2)
    task = make_task(panel, 399, 28)

    def rows(last_year: bool = True, future_units: float | None = None):
        p = panel
        if future_units is not None:  # what happens after the cutoff must not matter
            units = panel.units.copy()
            units[400:] = future_units
            p = Panel(panel.dates, panel.products, units, panel.promo)
        return direct_rows(
            make_task(p, 399, 28), train_days=728, origin_stride=5, last_year=last_year
        )

    d = rows()
    # The trainer's own row layout (trainer.models.gbm.rows), built by its feature pipeline.
    assert d.names == row_names(SEQ_FEATURES, (*KNOWN_FEATURES, "horizon_step"))
    assert d.x.shape == (len(d.y), len(d.names)) and len(d.y) % 28 == 0
    assert d.products == ["P0", "P1"] and d.x_future.shape == (2 * 28, len(d.names))
    np.testing.assert_array_equal(d.x_future, rows(future_units=1000.0).x_future)
    np.testing.assert_array_equal(d.x, rows(future_units=1000.0).x)
    assert np.isfinite(d.x).all() and np.isfinite(d.y).all()
    # The horizon's planned promotions reach the forecast rows (P0 is promoted in the
    # data's last 10 days: steps 21..28 of the forecast from day 399 fall among them).
    promo = d.x_future[:, d.names.index("known_promo")].reshape(2, 28)
    np.testing.assert_array_equal(promo[0], task.future_promo[:, 0])
    assert promo[0].sum() == 8 and not promo[1].any()
    # last_year=False drops exactly the last_year column.
    short = rows(last_year=False)
    assert short.names == [n for n in d.names if n != "known_last_year"]
    assert short.x.shape[1] == d.x.shape[1] - 1


def test_lightgbm_forecasts_the_horizon_for_every_product() -> None:
    pytest.importorskip("lightgbm")
    from experiments.models.lgbm import LightGBMGlobal

    panel = weekly_panel(n_days=430, n_products=3)
    task = make_task(panel, 399, 28)
    fc = LightGBMGlobal(num_boost_round=20, num_threads=1).forecast(task)
    assert fc.values.shape == (28, 3)
    assert np.isfinite(fc.values).all() and (fc.values >= 0).all()
    assert fc.notes["train_rows"] > 0 and len(fc.notes["top_features"]) == 5
    assert "fallbacks" not in fc.notes


def test_cheap_models_on_synthetic_data_and_the_report(tmp_path: Path) -> None:
    panel = synthetic(3, start="2017-01-01", end="2018-03-31", seed=3)
    assert panel.units.shape == (455, 3)
    opts = ModelOptions(n_jobs=1, sarima_history_days=70)
    models = build_models(["seasonal_naive", "sarima", "sarima_adf"], opts)
    result = run_backtest(panel.select([0, 1]), models, horizon=7, n_cutoffs=2)
    metrics = per_product(result.forecasts, result.scales)
    assert set(metrics["model"]) == {"seasonal_naive", "sarima", "sarima_adf"}
    assert metrics[["rmse", "mae", "rmsse", "mase"]].notna().all().all()
    summary = aggregate(metrics, result.timings)
    assert summary.set_index("model").loc["sarima", "beats_baseline"] >= 0.0
    for note in result.notes["sarima"]:
        assert note["fallbacks"] == 0 and note["d_counts"] == {"1": 2}
    paths = write_report(
        tmp_path,
        result,
        metrics,
        summary,
        command="python -m experiments --synthetic 3",
        dataset="synthetic",
        context={"k": "v"},
    )
    text = paths["table"].read_text()
    assert "python -m experiments --synthetic 3" in text
    assert all(f"| {m} |" in text for m in ("seasonal_naive", "sarima", "sarima_adf"))
    assert paths["plot"].stat().st_size > 10_000
    data = json.loads(paths["summary"].read_text())
    assert data["horizon"] == 7 and len(data["cutoffs"]) == 2


def test_sarima_tracks_a_seasonal_series_better_than_its_fallback() -> None:
    rng = np.random.default_rng(1)
    n = 200
    dates = pd.date_range("2021-01-01", periods=n, freq="D")
    week = np.array([5.0, 6.0, 7.0, 8.0, 12.0, 15.0, 3.0])
    units = (np.resize(week, n) + rng.normal(0, 0.5, n))[:, None]
    panel = Panel(dates, ("x",), units, np.zeros_like(units))
    task = make_task(panel, n - 29, 28)
    out = Sarima(n_jobs=1, history_days=140).forecast(task)
    assert out.notes["fallbacks"] == 0
    truth = np.resize(week, n)[n - 28 :]
    assert np.sqrt(np.mean((out.values[:, 0] - truth) ** 2)) < 1.0


def test_read_pasta_wide_csv_with_a_closed_day(tmp_path: Path) -> None:
    csv = tmp_path / "hierarchical_sales_data.csv"
    csv.write_text(
        "DATE,QTY_B1_1,QTY_B1_2,PROMO_B1_1,PROMO_B1_2\n"
        "2014-01-02,3,0,0,1\n2014-01-03,4,1,1,0\n2014-01-05,2,2,0,0\n"
    )
    panel = read_pasta(tmp_path)
    assert panel.products == ("B1_1", "B1_2")
    assert list(panel.dates.strftime("%d")) == ["02", "03", "04", "05"]
    assert np.isnan(panel.units[2]).all()
    np.testing.assert_array_equal(panel.promo[:, 0], [0, 1, 0, 0])
    assert len(panel.to_long()) == 6
    assert panel_from_long(panel.to_long()).products == panel.products
    with pytest.raises(DataError, match="not found"):
        read_pasta(tmp_path / "nope.csv")


def test_cli_writes_the_report(tmp_path: Path) -> None:
    code = main(
        ["--synthetic", "2", "--synthetic-start", "2017-06-01", "--synthetic-end", "2018-03-31",
         "--models", "seasonal_naive", "--horizon", "7", "--cutoffs", "2", "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    text = (tmp_path / "results.md").read_text()
    # the summary, the two per-cutoff tables and the three interval tables (issue 27)
    assert text.count("| seasonal_naive |") == 6
    assert "## Per cutoff" in text and "## Intervals (P10/P50/P90)" in text
    assert len(pd.read_csv(tmp_path / "per_product.csv")) == 2
    rows = json.loads((tmp_path / "summary.json").read_text())["per_cutoff"]
    assert len(rows) == 2
    for row in rows:
        assert 0.0 <= row["coverage_80"] <= 1.0 and 0.0 <= row["coverage_80_p10"] <= 1.0
        assert row["wspl"] > 0


def test_interval_scores_coverage_and_wspl_by_hand() -> None:
    from experiments.metrics import interval_scores, pinball

    assert pinball(np.array([3.0]), np.array([1.0]), 0.9)[0] == pytest.approx(1.8)
    assert pinball(np.array([1.0]), np.array([3.0]), 0.9)[0] == pytest.approx(0.2)
    cutoff = pd.Timestamp("2020-01-01")
    forecasts = pd.DataFrame(
        {
            "model": "m",
            "cutoff": cutoff,
            "product_id": ["a", "a", "b", "b"],
            "actual": [1.0, 5.0, 2.0, 2.0],
            "q10": [0.0, 0.0, 1.0, 1.0],
            "q50": [1.0, 1.0, 2.0, 2.0],
            "q90": [2.0, 2.0, 3.0, 3.0],
        }
    )
    scales = pd.DataFrame(
        {
            "cutoff": cutoff,
            "product_id": ["a", "b"],
            "mase_scale": [1.0, 2.0],
            "sales_28": [3.0, 1.0],
        }
    )
    [row] = interval_scores(forecasts, scales).to_dict("records")
    assert row["coverage_80"] == pytest.approx(0.75)
    assert row["coverage_80_p10"] == pytest.approx(0.5 + 0.1 * 0.5)  # np.percentile, 2 products
    # product a, day 1 (y=1): 0.1·1 + 0 + 0.1·1; day 2 (y=5): 0.1·5 + 0.5·4 + 0.9·3
    spl_a = ((0.1 * 1 + 0 + 0.1 * 1) / 3 + (0.1 * 5 + 0.5 * 4 + 0.9 * 3) / 3) / 2 / 1.0
    spl_b = ((0.1 * 1 + 0 + 0.1 * 1) / 3) / 2.0
    assert row["wspl"] == pytest.approx(0.75 * spl_a + 0.25 * spl_b)


def test_seasonal_naive_quantiles_are_ordered_and_empirical() -> None:
    from experiments.models.naive import empirical_quantiles

    rng = np.random.default_rng(0)
    hist = rng.poisson(5.0, size=(400, 3)).astype(float)
    point = np.tile(hist[-7:], (4, 1))
    q = empirical_quantiles(hist, point)
    assert set(q) == {0.1, 0.5, 0.9}
    assert (q[0.1] <= q[0.5]).all() and (q[0.5] <= q[0.9]).all() and (q[0.1] >= 0).all()
    diff = hist[7:] - hist[:-7]
    np.testing.assert_allclose(
        q[0.9][0], np.clip(point[0] + np.quantile(diff[-364:], 0.9, axis=0), 0, None)
    )


@pytest.mark.realdata
@pytest.mark.skipif(not PASTA.is_dir(), reason="pasta data not present")
def test_real_pasta_data_reads_in_place() -> None:
    panel = read_pasta(PASTA)
    assert len(panel.products) == 118
    assert panel.dates[0] == pd.Timestamp("2014-01-02") and panel.dates[-1] == pd.Timestamp(
        "2018-12-31"
    )
    closed = np.isnan(panel.units).all(axis=1)
    assert len(panel.dates) - closed.sum() == 1798


def test_cutoff_dates_are_the_last_visible_days() -> None:
    from experiments.backtest import cutoffs_at

    dates = pd.date_range("2020-01-01", periods=100, freq="D")
    assert cutoffs_at(dates, ["2020-03-01", "2020-02-20"], 10) == [50, 60]
    with pytest.raises(ValueError, match="not a day"):
        cutoffs_at(dates, ["2019-01-01"], 10)
    with pytest.raises(ValueError, match="fewer than 10 days follow"):
        cutoffs_at(dates, ["2020-04-05"], 10)


class Twins:
    """A model whose one fit gives two forecasts (scored as two models)."""

    name = "twin#s1"

    def forecast(self, task: ForecastTask) -> Forecast:
        last = np.nan_to_num(task.history.units[-1])
        values = np.tile(last, (task.horizon, 1))
        return Forecast(values=values, extra={"other#s1": values + 1.0})


class Twins2(Twins):
    name = "twin#s2"

    def forecast(self, task: ForecastTask) -> Forecast:
        out = super().forecast(task)
        return Forecast(values=out.values + 2.0, extra={"other#s2": out.values + 3.0})


def test_extra_forecasts_seeds_per_cutoff_rows_and_paired_comparisons(tmp_path: Path) -> None:
    from experiments.metrics import by_family, cell_rmsse, paired_comparison, per_cutoff

    panel = synthetic(12, start="2017-01-01", end="2018-03-31", seed=3)
    dates = [str(panel.dates[-8].date()), str(panel.dates[-15].date())]
    result = run_backtest(panel, [Twins(), Twins2()], horizon=7, cutoff_dates=dates)
    assert set(result.forecasts["model"]) == {"twin#s1", "twin#s2", "other#s1", "other#s2"}
    rows = per_cutoff(result.forecasts, result.scales)
    assert set(rows["model"]) == {"twin", "other"} and set(rows["seeds"]) == {2}
    assert len(rows) == 4 and list(rows.columns[:5]) == [
        "model",
        "cutoff",
        "rmsse",
        "worst_decile_rmsse",
        "bias",
    ]
    # a family's row is the mean of its seeds' rows
    one = per_product(
        result.forecasts[result.forecasts["cutoff"] == result.cutoffs[0]], result.scales
    )
    seeds = one[one["model"].str.startswith("twin")].groupby("model")["rmsse"].mean()
    first = rows[(rows["model"] == "twin") & (rows["cutoff"] == str(result.cutoffs[0].date()))]
    assert first["rmsse"].iloc[0] == pytest.approx(seeds.mean())
    fam = by_family(per_product(result.forecasts, result.scales))
    assert set(fam["model"]) == {"twin", "other"}
    cells = cell_rmsse(result.forecasts, result.scales)
    cmp = paired_comparison(cells, "other", "twin", n_boot=200)
    assert cmp is not None and cmp["cells"] == 24
    assert cmp["d_rmsse_low"] <= cmp["d_rmsse"] <= cmp["d_rmsse_high"]
    assert cmp["worst_decile_change_low"] <= cmp["worst_decile_change_high"]
    assert paired_comparison(cells, "nope", "twin") is None
    summary = aggregate(fam, result.timings.assign(model=result.timings["model"].str[:4]))
    paths = write_report(
        tmp_path,
        result,
        fam,
        summary,
        command="x",
        dataset="synthetic",
        context={},
        cutoff_rows=rows,
        comparisons=[cmp],
    )
    data = json.loads(paths["summary"].read_text())
    assert {r["model"] for r in data["per_cutoff"]} == {"twin", "other"}
    assert set(data["per_cutoff"][0]) >= {"model", "cutoff", "rmsse", "worst_decile_rmsse", "bias"}
    text = paths["table"].read_text()
    assert "## Per cutoff" in text and "## Paired comparisons" in text
    assert "Fairness goal: not measured" in text


@pytest.mark.slow
def test_the_trainer_model_serves_its_choice_and_scores_every_candidate(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    pytest.importorskip("lightgbm")
    from experiments.models.lstm import OUTPUTS, TrainerForecaster

    panel = synthetic(3, start="2017-06-01", end="2018-03-31", seed=4)
    model = TrainerForecaster(epochs=1, train_stride=14, val_days=14, seed=1, n_jobs=1)
    result = run_backtest(panel, [model], horizon=7, n_cutoffs=1)
    names = set(result.forecasts["model"])
    assert names == {"trainer", *OUTPUTS}
    note = result.notes["trainer"][0]
    assert note["chosen"] in ("lstm", "lightgbm", "blend")
    chosen = {"lstm": "debiased_lstm", "lightgbm": "trainer_lightgbm", "blend": "blend"}
    fc = result.forecasts.pivot_table(
        index=["date", "product_id"], columns="model", values="forecast"
    )
    np.testing.assert_allclose(fc["trainer"], fc[chosen[note["chosen"]]])


def _pasta_csv(folder: Path, days: int = 120) -> Path:
    """A small file in the pasta data's layout: three products with a weekly pattern."""
    rng = np.random.default_rng(3)
    dates = pd.date_range("2018-01-01", periods=days, freq="D")
    frame = pd.DataFrame({"DATE": dates.strftime("%Y-%m-%d")})
    for k, level in enumerate((3.0, 8.0, 20.0), start=1):
        weekly = 1 + 0.4 * np.sin(2 * np.pi * np.arange(days) / 7)
        frame[f"QTY_B1_{k}"] = rng.poisson(level * weekly)
        frame[f"PROMO_B1_{k}"] = (rng.random(days) < 0.1).astype(int)
    path = folder / "hierarchical_sales_data.csv"
    frame.to_csv(path, index=False)
    return path


def test_runs_over_disjoint_cutoffs_merge_into_the_single_run(tmp_path: Path) -> None:
    csv = _pasta_csv(tmp_path)
    common = ["--data", str(csv), "--models", "seasonal_naive", "--horizon", "7"]
    for name, dates in (
        ("a", "2018-03-31"),
        ("b", "2018-04-14"),
        ("both", "2018-03-31,2018-04-14"),
    ):
        args = [*common, "--cutoff-dates", dates, "--out", str(tmp_path / name)]
        assert main([*args, "--keep-forecasts"] if name != "both" else args) == 0
    assert (tmp_path / "a" / "raw" / "forecasts.csv.gz").is_file()
    assert not (tmp_path / "both" / "raw").exists()
    assert (
        main(["--merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m")])
        == 0
    )

    single = json.loads((tmp_path / "both" / "summary.json").read_text())
    merged = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert merged["cutoffs"] == single["cutoffs"] == ["2018-03-31", "2018-04-14"]
    assert merged["per_cutoff"] == single["per_cutoff"]
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "m" / "per_product.csv"),
        pd.read_csv(tmp_path / "both" / "per_product.csv"),
    )
    assert "in 2 processes (merged)" in (tmp_path / "m" / "results.md").read_text()

    with pytest.raises(SystemExit, match="more than one run"):
        main(["--merge", str(tmp_path / "a"), str(tmp_path / "a"), "--out", str(tmp_path / "x")])
    # runs split by models at the same cutoffs merge too (a reference run and a trainer run)
    by_model = ["--data", str(csv), "--horizon", "7", "--cutoff-dates", "2018-03-31,2018-04-14"]
    for name, models in (("n", "seasonal_naive"), ("s", "sarima")):
        out = ["--out", str(tmp_path / name), "--keep-forecasts"]
        assert main([*by_model, "--models", models, *out]) == 0
    assert (
        main(["--merge", str(tmp_path / "n"), str(tmp_path / "s"), "--out", str(tmp_path / "ns")])
        == 0
    )
    joined = json.loads((tmp_path / "ns" / "summary.json").read_text())
    assert joined["cutoffs"] == ["2018-03-31", "2018-04-14"]
    assert {(r["model"], r["cutoff"]) for r in joined["per_cutoff"]} == {
        (m, c) for m in ("seasonal_naive", "sarima") for c in joined["cutoffs"]
    }
    with pytest.raises(SystemExit, match="no raw results"):
        main(["--merge", str(tmp_path / "both"), "--out", str(tmp_path / "x")])
