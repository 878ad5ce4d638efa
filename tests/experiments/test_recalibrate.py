"""experiments.recalibrate: a kept run's trainer quantiles re-derived from its dumps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from experiments.recalibrate import (
    VARIANTS,
    calibrate,
    guard_coverage,
    requantile,
    served_quantiles,
    variants_table,
)
from trainer.models.intervals import fit_intervals

PRODUCTS = ["A", "B"]
CUTOFF = pd.Timestamp("2024-03-31")
DAYS = pd.date_range(CUTOFF + pd.Timedelta(days=1), periods=28)


def _calibration(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for o in range(4):
        origin = pd.Timestamp("2024-01-01") + pd.Timedelta(days=7 * o)
        for p, mean in zip(PRODUCTS, (10.0, 2.0), strict=True):
            step = np.arange(1, 29)
            rows.append(
                pd.DataFrame(
                    {
                        "product_id": p,
                        "target_date": origin + pd.to_timedelta(step - 1, unit="D"),
                        "horizon_step": step,
                        "origin_date": origin,
                        "actual": rng.poisson(mean, 28).astype(float),
                        "predicted": mean,
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def _dump() -> dict:
    served = pd.DataFrame(
        {
            "product_id": np.repeat(PRODUCTS, 28),
            "target_date": np.tile(DAYS, 2),
            "predicted_units": np.repeat([12.0, 1.5], 28),
        }
    )
    kinds = ("lstm", "lightgbm", "blend")
    return {
        "cutoff": str(CUTOFF.date()),
        "chosen": "lightgbm",
        "calibration": {k: _calibration(i) for i, k in enumerate(kinds)},
        "test": {k: _calibration(10 + i) for i, k in enumerate(kinds)},
        "served": {k: served for k in (*kinds, "lightgbm_heldout")},
        "naive": {"A": 3.0, "B": 1.5},
    }


def _forecasts() -> pd.DataFrame:
    rows = []
    for model in ("trainer", "trainer_lightgbm", "seasonal_naive"):
        rows.append(
            pd.DataFrame(
                {
                    "model": model,
                    "cutoff": CUTOFF,
                    "product_id": np.tile(PRODUCTS, 28),
                    "date": np.repeat(DAYS, 2),
                    "actual": 5.0,
                    "forecast": np.tile([12.0, 1.5], 28),
                    "q10": 1.0,
                    "q50": 2.0,
                    "q90": 3.0,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def test_the_trainer_rows_get_the_methods_quantiles_and_the_others_stay() -> None:
    dump = _dump()
    options = {"level_power": 0.0, "zero_mass": False}
    new = requantile(_forecasts(), {dump["cutoff"]: dump}, **options)
    cal = fit_intervals(dump["calibration"]["lightgbm"], dump["naive"], **options)
    expected = cal.apply(dump["served"]["lightgbm"], column="predicted_units")
    for model in ("trainer", "trainer_lightgbm"):  # the chosen kind is LightGBM
        mine = new[new["model"] == model].sort_values(["product_id", "date"])
        want = expected.sort_values(["product_id", "target_date"])
        np.testing.assert_allclose(mine["q10"], want["p10"])
        np.testing.assert_allclose(mine["q90"], want["p90"])
    other = new[new["model"] == "seasonal_naive"]
    assert (other["q10"] == 1.0).all() and (other["q90"] == 3.0).all()
    # with the test split the calibration differs
    wider = served_quantiles(dump, with_test=True, **options)["trainer"]
    assert not np.allclose(wider["p90"], expected["p90"])


def test_a_cutoff_without_its_dump_is_refused() -> None:
    with pytest.raises(ValueError, match="no interval dump"):
        requantile(_forecasts(), {})


def _intermittent(seed: int) -> pd.DataFrame:
    """A calibration frame with one product that sells nothing on half its days."""
    frame = _calibration(seed)
    rng = np.random.default_rng(seed + 100)
    b = frame["product_id"] == "B"
    frame.loc[b, "actual"] = np.where(rng.random(b.sum()) < 0.5, 0.0, frame.loc[b, "actual"])
    return frame


def test_the_lower_rule_variant_misses_the_level_on_its_calibration_rows() -> None:
    frame = pd.concat([_intermittent(s) for s in range(3)], ignore_index=True)
    a = (frame["product_id"] == "A").to_numpy()  # no ties among the missable rows
    frame.loc[a, "actual"] += np.random.default_rng(9).random(a.sum())
    frame = frame.assign(
        origin_date=frame["origin_date"] + pd.to_timedelta(frame.index // 224, "D")
    )
    naive = {"A": 3.0, "B": 1.5}

    def lower_miss(cal: object) -> float:
        q = cal.apply(frame)
        return float(np.mean(q["actual"] < q["p10"]))

    plain = calibrate(frame, naive)
    ruled = calibrate(frame, naive, lower_rule=1.0)
    assert lower_miss(plain) < 0.08  # a P10 at 0 cannot be missed
    assert abs(lower_miss(ruled) - 0.1) < 0.01
    half = calibrate(frame, naive, lower_rule=0.5)
    assert lower_miss(plain) < lower_miss(half) < lower_miss(ruled)


def test_the_zero_threshold_and_lower_power_variants() -> None:
    frame = _intermittent(0)
    naive = {"A": 3.0, "B": 1.5}
    plain = calibrate(frame, naive)
    strict = calibrate(frame, naive, zero_threshold=2.0)
    # the same chance of no sale must now exceed 0.2 to set P10 at 0: the intercept drops
    assert strict.zero_model[0] < plain.zero_model[0]
    assert strict.zero_model[1:] == plain.zero_model[1:]
    mixed = calibrate(frame, naive, lower_power=0.0).apply(frame)
    other = fit_intervals(frame, naive, level_power=0.0).apply(frame)
    upper = plain.apply(frame)
    np.testing.assert_allclose(mixed["p90"], upper["p90"])
    assert (mixed["p10"] <= mixed["p50"]).all() and (mixed["p50"] <= mixed["p90"]).all()
    np.testing.assert_allclose(mixed["p10"], np.minimum(other["p10"], upper["p50"]))


def test_the_variants_table_counts_the_cutoffs_at_or_below_the_reference() -> None:
    rows = pd.DataFrame(
        {
            "variant": ["m", "m", "lightgbm_quantile (reference)", "lightgbm_quantile (reference)"],
            "cutoff": ["2024-01-01", "2024-02-01"] * 2,
            "coverage_80": [0.8, 0.82, 0.7, 0.72],
            "coverage_80_p10": [0.6, 0.7, 0.5, 0.5],
            "wspl": [0.2, 0.3, 0.21, 0.29],
            "guard": [0.84, 0.86, np.nan, np.nan],
            "guard_sd": [0.01, 0.03, np.nan, np.nan],
        }
    )
    table = variants_table(rows)
    assert "| m | 0.2000 | 0.3000 | 0.810 | 0.650 | 0.2500 | 1 of 2 | 0.850 (0.840–0.860; " in table
    assert "within 0.020; outside 1 of 2) |" in table


def test_the_guard_figure_is_the_test_coverage_with_a_bootstrap_error() -> None:
    from trainer.models.intervals import coverage_summary

    dump = _dump()
    coverage, sd = guard_coverage(dump, level_power=0.0, zero_mass=False)
    cal = fit_intervals(
        dump["calibration"]["lightgbm"], dump["naive"], level_power=0.0, zero_mass=False
    )
    assert coverage == pytest.approx(
        coverage_summary(cal.apply(dump["test"]["lightgbm"]))["coverage"]
    )
    assert 0.0 < sd < 0.2


def test_several_runs_are_read_only_for_the_variants_table(tmp_path) -> None:
    from experiments.recalibrate import main

    runs = []
    for name in ("a", "b"):
        raw = tmp_path / name / "raw"
        raw.mkdir(parents=True)
        _forecasts().to_csv(raw / "forecasts.csv.gz", index=False)
        runs.append(str(tmp_path / name))
    with pytest.raises(SystemExit):
        main(["--raw", *runs, "--dumps", str(tmp_path), "--out", str(tmp_path / "new")])


def test_the_cqr_hybrid_takes_the_tails_and_keeps_the_trainers_median() -> None:
    from experiments.recalibrate import cqr_hybrid

    f = _forecasts()
    cqr = f[f["model"] == "trainer"].assign(model="lightgbm_cqr", q10=0.5, q50=9.0, q90=2.5)
    out = cqr_hybrid(pd.concat([f, cqr], ignore_index=True))
    assert (out["model"] == "trainer").all() and len(out) == (f["model"] == "trainer").sum()
    assert (out["q10"] == 0.5).all() and (out["q50"] == 2.0).all()
    assert (out["q90"] == 2.5).all()  # CQR's P90, still above the trainer's P50
    assert cqr_hybrid(f).empty  # no CQR rows: nothing to score


def test_the_median_hybrid_mixes_the_references_p50_inside_the_trainers_band() -> None:
    from experiments.recalibrate import median_hybrid

    f = _forecasts()  # the trainer's P10/P50/P90: 1, 2, 3
    mine = f[f["model"] == "trainer"]
    ref = mine.assign(model="lightgbm_quantile", q10=-5.0, q50=np.tile([2.8, 10.0], 28), q90=99.0)
    both = pd.concat([f, ref], ignore_index=True)
    whole, half = median_hybrid(both, 1.0), median_hybrid(both, 0.5)
    assert len(whole) == len(mine) and (whole["model"] == "trainer").all()
    assert (whole["q10"] == 1.0).all() and (whole["q90"] == 3.0).all()  # its own tails
    # the reference's P50, kept inside the trainer's band (10 -> 3)
    np.testing.assert_allclose(whole["q50"], np.tile([2.8, 3.0], 28))
    np.testing.assert_allclose(half["q50"], np.tile([2.4, 3.0], 28))  # (2 + 2.8) / 2; 6 -> 3
    assert median_hybrid(f, 1.0).empty  # no reference rows: nothing to score


def _tailed_dump() -> dict:
    """`_dump` with LightGBM quantile tails in its frames (issue 27's fourth pass)."""
    dump = _dump()
    for split in ("calibration", "test"):
        gbm = dump[split]["lightgbm"]
        for kind in ("lightgbm", "blend"):  # the blend's moved by its difference (a run
            f = dump[split][kind]  # made before the unmoved tails)
            if kind == "blend":
                f = f.assign(predicted=gbm["predicted"].to_numpy() + 0.5)
            dump[split][kind] = f.assign(
                tail_p10=f["predicted"] - 1.0, tail_p90=f["predicted"] + 1.0
            )
    served = dump["served"]["lightgbm"]
    dump["served_tails"] = served.assign(
        tail_p10=served["predicted_units"] - 1.0, tail_p90=served["predicted_units"] + 1.0
    )
    dump["served"]["blend"] = served.assign(predicted_units=served["predicted_units"] + 2.0)
    return dump


def test_the_tail_variants_use_the_dumps_tails_and_keep_the_residuals_apart() -> None:
    from experiments.recalibrate import served_frame

    dump = _tailed_dump()
    plain = served_quantiles(_dump())
    # without `tails` the tail columns are ignored: the residual quantiles come back
    again = served_quantiles(dump)
    np.testing.assert_allclose(again["trainer"]["p90"], plain["trainer"]["p90"])
    tailed = served_quantiles(dump, tails=True)
    cal = calibrate(dump["calibration"]["lightgbm"], dump["naive"], tails=True)
    assert cal.tail_levels == (0.1, 0.9)
    expected = np.clip(dump["served_tails"]["tail_p90"] + np.array(cal.tail_shifts)[0, 1], 0, None)
    np.testing.assert_allclose(tailed["trainer"]["p90"].iloc[:7], expected.iloc[:7])
    p = tailed["trainer"][["p10", "p50", "p90"]].to_numpy()
    assert (np.diff(p, axis=1) >= 0).all()
    # the blend's served tails: LightGBM's as they are, or moved by its difference (+2)
    moved = served_frame(dump, "blend")
    unmoved = served_frame(dump, "blend", unmoved=True)
    np.testing.assert_allclose(moved["tail_p90"] - unmoved["tail_p90"], 2.0)
    sym = calibrate(
        dump["calibration"]["lightgbm"], dump["naive"], tails=True, tail_mode="symmetric"
    )
    assert all(lo == -hi for lo, hi in sym.tail_shifts)
    raw = calibrate(dump["calibration"]["lightgbm"], dump["naive"], tails=True, tail_mode="raw")
    assert all(s == (0.0, 0.0) for s in raw.tail_shifts)
    assert 0 <= guard_coverage(dump, tails=True)[0] <= 1


def test_the_snap_and_point_median_variants() -> None:
    """`lower_snap`: P10 under the floor served as 0, the rest unchanged; `median_point`
    1: P50 the point (kept between P10 and P90); the options pass through `calibrate`."""
    dump = _tailed_dump()
    frame, naive = dump["calibration"]["lightgbm"], dump["naive"]
    plain = calibrate(frame, naive, tails=True).apply(frame)
    floor = float(plain["p10"].median()) + 1e-9  # half the rows under it
    snapped = calibrate(frame, naive, tails=True, lower_snap=floor).apply(frame)
    under = plain["p10"] < floor
    assert under.mean() > 0.3
    assert (snapped.loc[under, "p10"] == 0).all()
    np.testing.assert_allclose(snapped.loc[~under, "p10"], plain.loc[~under, "p10"])
    np.testing.assert_allclose(snapped[["p50", "p90"]], plain[["p50", "p90"]])
    point = calibrate(frame, naive, tails=True, median_point=1.0).apply(frame)
    expected = np.clip(frame["predicted"].to_numpy(), point["p10"], point["p90"])
    np.testing.assert_allclose(point["p50"], expected)


def test_the_rounded_variant_serves_whole_units() -> None:
    """`round_levels`: those levels rounded half up to whole units, the others unchanged,
    never crossing; a variant of `VARIANTS` names it."""
    dump = _tailed_dump()
    frame, naive = dump["calibration"]["lightgbm"], dump["naive"]
    moved = [c for c in frame.columns if str(c).startswith("tail_") or c == "predicted"]
    frame = frame.assign(**{c: frame[c] + 0.37 for c in moved})  # off whole units
    plain = calibrate(frame, naive, tails=True).apply(frame)
    rounded = calibrate(frame, naive, tails=True, round_levels=(0.5, 0.9)).apply(frame)
    np.testing.assert_allclose(rounded["p10"], plain["p10"])
    p50 = np.maximum(np.floor(plain["p50"] + 0.5), plain["p10"])  # kept from crossing
    np.testing.assert_allclose(rounded["p50"], p50)
    np.testing.assert_allclose(rounded["p90"], np.maximum(np.floor(plain["p90"] + 0.5), p50))
    assert (plain["p90"] != np.round(plain["p90"])).any()  # the rounding changed something
    assert (rounded["p10"] <= rounded["p50"]).all() and (rounded["p50"] <= rounded["p90"]).all()
    assert any("rounded" in name for name in VARIANTS)


def test_the_validation_weights_pick_the_better_of_tail_and_residual_quantile() -> None:
    """`tail_weight` "validation": each tail level's weight of the grid with the lowest
    scaled pinball loss on the calibration rows; tails of pure noise get weight 0 (the
    residual quantiles), and the served quantiles are that average."""
    from experiments.recalibrate import WEIGHT_GRID, _Averaged, _validation_weights
    from trainer.models.intervals import pinball_loss

    dump = _tailed_dump()
    frame, naive = dump["calibration"]["lightgbm"], dump["naive"]
    cal = calibrate(frame, naive, tails=True, tail_weight="validation")
    assert isinstance(cal, _Averaged) and set(cal.weight) == {0.1, 0.9}
    tails = calibrate(frame, naive, tails=True)
    residual = calibrate(frame, naive, tails=False)
    t, r = tails.apply(frame, "predicted"), residual.apply(frame, "predicted")
    scale = frame["product_id"].map(naive).to_numpy()
    for a, col in ((0.1, "p10"), (0.9, "p90")):
        losses = {
            w: np.mean(pinball_loss(frame["actual"], w * t[col] + (1 - w) * r[col], a) / scale)
            for w in WEIGHT_GRID
        }
        assert losses[cal.weight[a]] == pytest.approx(min(losses.values()))
    served = cal.apply(frame, "predicted")
    w90 = cal.weight[0.9]
    expected = np.maximum(w90 * t["p90"] + (1 - w90) * r["p90"], served["p50"])
    np.testing.assert_allclose(served["p90"], expected)
    # tails that know nothing: noise of ±20 units around the point
    rng = np.random.default_rng(3)
    noisy = frame.assign(
        tail_p10=frame["predicted"] - rng.uniform(0, 20, len(frame)),
        tail_p90=frame["predicted"] + rng.uniform(0, 20, len(frame)),
    )
    weights = _validation_weights(
        calibrate(noisy, naive, tails=True), residual, noisy, naive, WEIGHT_GRID
    )
    assert weights == {0.1: 0.0, 0.9: 0.0}
