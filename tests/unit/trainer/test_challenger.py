"""The challenger's stages: LightGBM beside the LSTM, cross-fitted offsets, the choice."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.support.trainer_config import small_config
from tests.unit.trainer.helpers import make_sales
from trainer.config import ModelParams, TrainConfig
from trainer.models.challenger import BLEND, CANDIDATES, LIGHTGBM, LSTM, blend, choose, cross_fitted

CFG = small_config(
    epochs=2,
    val_origin_every=7,
    gbm_history_days=(60, 0),  # a two-member LightGBM ensemble: the last 60 days and all
)


def test_cross_fitted_offsets_never_see_their_own_origin() -> None:
    rows = []
    for origin, shift in (("2020-01-01", 10.0), ("2020-01-08", 0.0)):
        for p in ("A", "B", "C", "D"):
            rows.append(
                pd.DataFrame(
                    {
                        "product_id": p,
                        "origin_date": pd.Timestamp(origin),
                        "target_date": pd.date_range(origin, periods=7),
                        "actual": 5.0 + shift + np.arange(7) % 2,
                        "predicted": 5.0,
                    }
                )
            )
    raw = pd.concat(rows, ignore_index=True)
    out = cross_fitted(raw, 0.0)  # no shrinkage: the other origin's mean residual
    first = out["origin_date"] == pd.Timestamp("2020-01-01")
    # origin 1 is corrected by origin 2's mean residual (0.43) and vice versa (10.43)
    np.testing.assert_allclose(out.loc[first, "predicted"], 5.0 + 3 / 7)
    np.testing.assert_allclose(out.loc[~first, "predicted"], 15.0 + 3 / 7)
    single = raw[first]
    assert cross_fitted(single, 0.0) is single  # one origin: nothing to cross-fit


def test_blend_and_choice() -> None:
    a = pd.DataFrame({"product_id": ["x", "y"], "predicted": [2.0, 4.0], "actual": [1.0, 1.0]})
    b = a.assign(predicted=[4.0, 0.0])
    np.testing.assert_allclose(blend(a, b, 0.5)["predicted"], [3.0, 2.0])
    with pytest.raises(ValueError, match="same rows"):
        blend(a, b.iloc[::-1], 0.5)
    assert choose({LSTM: {"rmsse": 0.7}, LIGHTGBM: {"rmsse": 0.6}, BLEND: {"rmsse": 0.65}}) == (
        LIGHTGBM
    )
    assert choose({LSTM: {"rmsse": 0.6}, BLEND: {"rmsse": 0.6}}) == LSTM  # ties: order


def test_the_blend_weight_is_the_validated_share() -> None:
    from types import SimpleNamespace

    from trainer.models.challenger import BLEND_WEIGHTS, blend_weight

    prepared = SimpleNamespace(products=("x", "y"), scale=np.array([1.0, 1.0]))
    truth = pd.DataFrame({"product_id": ["x", "y"] * 4, "actual": [2.0, 4.0] * 4})
    good = truth.assign(predicted=truth["actual"] + [0.1, -0.1] * 4)
    poor = truth.assign(predicted=truth["actual"] + 2.0)
    assert blend_weight(poor, good, prepared) == min(BLEND_WEIGHTS)  # LightGBM better
    assert blend_weight(good, poor, prepared) == max(BLEND_WEIGHTS)  # the LSTM better
    with pytest.raises(ValueError, match="finite"):
        choose({LSTM: {"rmsse": float("nan")}})


@pytest.fixture(scope="module")
def challenger():
    from trainer.data.prepare import prepare
    from trainer.models.challenger import train_challenger

    sales = make_sales(3, 200)
    prepared = prepare(sales, CFG)
    params = ModelParams(units=4, lookback=14)
    return sales, prepared, params, train_challenger(prepared, params, CFG, gbm_threads=1)


def _serving(challenger) -> dict:
    """`forecast_served`'s arguments for the fixture's challenger (but the kind and the
    interval calibration)."""
    sales, prepared, params, ch = challenger
    return dict(
        model=ch.lstm.model,
        params=params,
        correction=ch.correction,
        gbm=ch.gbm,
        blend_weight=ch.blend_weight,
        pipeline=prepared.pipeline,
        sales=sales,
        cfg=CFG,
    )


@pytest.mark.slow
def test_challenger_scores_every_candidate_out_of_sample(challenger) -> None:
    _, prepared, _, ch = challenger
    assert ch.kind in CANDIDATES
    assert set(ch.candidates) == set(CANDIDATES)
    for scores in ch.candidates.values():
        assert all(np.isfinite(v) for v in scores.values())
    best = min(CANDIDATES, key=lambda k: (ch.candidates[k]["val_rmsse"], CANDIDATES.index(k)))
    assert ch.kind == best
    assert ch.validation["rmsse"] == pytest.approx(ch.candidates[ch.kind]["val_rmsse"])
    assert ch.evaluation.metrics["model"]["rmsse"] == pytest.approx(
        ch.candidates[ch.kind]["test_rmsse"]
    )
    # the fairness comparison differs in DRO only (both uncorrected, same windows)
    assert set(ch.fairness_compare) == {"with group DRO", "without"}
    assert ch.correction.prior_var is not None
    assert set(ch.correction.offsets) == set(prepared.products)


@pytest.mark.slow
def test_every_kind_forecasts_the_next_horizon_and_lightgbm_round_trips(
    challenger, tmp_path
) -> None:
    from trainer.models.challenger import forecast_served
    from trainer.models.gbm import TAIL_LEVELS, GBMForecaster, train_gbm
    from trainer.models.lstm import _ids

    sales, prepared, params, ch = challenger
    frames = {}
    for kind in CANDIDATES:
        frames[kind] = forecast_served(kind, **_serving(challenger)).sort_values(
            ["product_id", "target_date"], ignore_index=True
        )
        assert len(frames[kind]) == 3 * CFG.horizon
        assert (frames[kind]["predicted_units"] >= 0).all()
    np.testing.assert_allclose(
        frames[BLEND]["predicted_units"],
        ch.blend_weight * frames[LSTM]["predicted_units"]
        + (1 - ch.blend_weight) * frames[LIGHTGBM]["predicted_units"],
        rtol=1e-6,
    )
    files = ch.gbm.save(tmp_path)
    # a text model per member and per quantile level (issue 27: the quantile model's
    # boosters are the served tails), their feature pipeline, the metadata
    assert TAIL_LEVELS == ()  # the members' own tails: off by default
    assert sorted(ch.gbm.tails) == sorted(CFG.interval_levels)
    assert ch.gbm.tail_pipeline is not None
    assert len(files) == len(ch.gbm.members) + len(CFG.interval_levels) + 2
    loaded = GBMForecaster.load(tmp_path)
    assert loaded.history_days == ch.gbm.history_days
    assert loaded.tail_pipeline is not None
    # the reloaded model serves the same interval
    kw = _serving(challenger) | {"intervals": ch.intervals[LIGHTGBM]}
    served = forecast_served(LIGHTGBM, **kw)
    again_served = forecast_served(LIGHTGBM, **(kw | {"gbm": loaded}))
    pd.testing.assert_frame_equal(served, again_served)
    assert served[["p10", "p50", "p90"]].notna().all().all()
    # the quantile tails at other levels: a text model per level, reloaded
    tailed = train_gbm(prepared, num_threads=1, rounds=20, tail_levels=(0.1, 0.9))
    files = tailed.save(tmp_path / "tails")
    assert len(files) == len(tailed.members) + 2 + 1
    again = GBMForecaster.load(tmp_path / "tails")
    assert sorted(again.tails) == [0.1, 0.9]
    ids = _ids(prepared, prepared.test)
    mine = tailed.predict_tails(prepared.test, prepared.pipeline, ids)
    np.testing.assert_allclose(
        again.predict_tails(prepared.test, prepared.pipeline, ids)[0.9], mine[0.9]
    )
    assert (mine[0.1] <= mine[0.9] + 1e-9).mean() > 0.9  # quantile boosters, mostly ordered
    # a champion saved before ensembles (one lightgbm.txt) still loads, as one member
    old = tmp_path / "single"
    old.mkdir()
    first = ch.gbm.members[0]
    first.booster.save_model(str(old / "lightgbm.txt"), num_iteration=first.rounds)
    (old / "lightgbm.json").write_text(json.dumps({"names": ch.gbm.names, "best_iteration": 0}))
    single = GBMForecaster.load(old)
    assert single.history_days == [0] and len(single.members) == 1
    w = prepared.test
    mean, std = prepared.pipeline.series_stats([prepared.panel.product_ids[s] for s in w.series])
    np.testing.assert_allclose(loaded.predict_z(w, mean, std), ch.gbm.predict_z(w, mean, std))
    with pytest.raises(ValueError, match="unknown trained forecaster"):
        forecast_served(
            "arima",
            model=ch.lstm.model,
            params=params,
            correction=ch.correction,
            gbm=None,
            blend_weight=0.5,
            pipeline=prepared.pipeline,
            sales=sales,
            cfg=CFG,
        )


@pytest.mark.slow
def test_a_sealed_runs_lightgbm_and_blend_load_and_score_as_trained(challenger, tmp_path) -> None:
    from forecastguard.storage import open_store
    from trainer.models.challenger import load_trained, save_gbm, score_trained
    from trainer.serve.artifacts import ModelBundle, RunWriter, save_model_bundle

    _, prepared, params, ch = challenger
    store = open_store(f"file://{tmp_path / 'artifacts'}")
    writer = RunWriter(store, "run-1")
    bundle = ModelBundle(
        model=ch.lstm.model,
        pipeline=prepared.pipeline,
        cfg=CFG,
        params=params,
        correction=ch.correction,
        model_version="v1",
        run_id="run-1",
    )
    save_model_bundle(writer, bundle, tmp_path / "bundle")
    save_gbm(writer, ch.gbm, ch.blend_weight, tmp_path / "bundle")
    writer.seal(model_version="v1")
    lstm_want = ch.correction.apply(ch.lstm_test_raw).sort_values(["product_id", "target_date"])
    for kind in (LIGHTGBM, BLEND, LSTM):
        trained = load_trained(store, "run-1", kind, tmp_path / f"load-{kind}")
        assert trained.kind == kind and trained.model_version == "v1"
        got = score_trained(trained, prepared).sort_values(["product_id", "target_date"])
        assert len(got) == len(ch.lstm_test_raw)
        assert np.isfinite(got["predicted"]).all()
        if kind == LSTM:
            np.testing.assert_allclose(
                got["predicted"], lstm_want["predicted"], rtol=1e-4, atol=1e-4
            )
    # A reloaded run scores what the served forecaster forecasts (with the LightGBM refit,
    # when there is one); the reported test figures are the held-out twin's.
    from trainer.models.challenger import blend, gbm_frame

    def frame_of(gbm):
        if ch.kind == LSTM:
            return lstm_want
        g = gbm_frame(gbm, prepared, "test").sort_values(["product_id", "target_date"])
        return g if ch.kind == LIGHTGBM else blend(lstm_want, g, ch.blend_weight)

    chosen = load_trained(store, "run-1", ch.kind, tmp_path / "chosen")
    again = score_trained(chosen, prepared).sort_values(["product_id", "target_date"])
    np.testing.assert_allclose(
        again["predicted"], frame_of(ch.gbm)["predicted"], rtol=1e-4, atol=1e-4
    )
    served = ch.test.sort_values(["product_id", "target_date"])
    twin = ch.gbm_heldout or ch.gbm
    np.testing.assert_allclose(
        served["predicted"], frame_of(twin)["predicted"], rtol=1e-4, atol=1e-4
    )
    if ch.kind != LSTM:  # the refit is served instead of the twin, and is another model
        assert ch.gbm_heldout is not None and ch.gbm is not ch.gbm_heldout


@pytest.mark.slow
def test_every_servable_kind_has_an_interval_calibrated_out_of_sample(challenger, tmp_path) -> None:
    from forecastguard.storage import open_store
    from trainer.models.challenger import forecast_served, load_intervals, save_intervals
    from trainer.serve.artifacts import RunWriter

    sales, prepared, _, ch = challenger
    kinds = {*CANDIDATES, "baseline:seasonal_naive", "baseline:moving_average"}
    assert set(ch.intervals) == kinds
    for cal in ch.intervals.values():
        assert cal.levels == CFG.interval_levels and cal.n_residuals > 0
        assert set(cal.scales) <= set(prepared.products)
    # judged on the test windows: the served kind's coverage and every baseline's
    assert kinds <= set(ch.interval_test)
    served = ch.interval_test[ch.kind]
    assert 0.0 <= served["coverage"] <= 1.0 and served["interval_score"] > 0
    assert {"p10", "p50", "p90"} <= set(ch.test.columns)  # holdout.csv carries the band
    # the band judged: the LightGBM kinds' from the quantile model's held-out boosters
    # (the last horizon of days), the LSTM's residual band on every test row
    judged = ch.test[["actual", "p10", "p90"]].notna().all(axis=1)
    assert served["points"] == judged.sum() > 0
    if ch.kind != LSTM:
        held = ch.test[judged]
        assert held["target_date"].nunique() == CFG.horizon
        assert pd.to_datetime(held["target_date"]).max() == pd.to_datetime(sales["date"]).max()
        assert ch.test["p50"].isna().all()  # no held-out P50: none is claimed
    for kind in CANDIDATES:
        frame = forecast_served(kind, intervals=ch.intervals[kind], **_serving(challenger))
        assert (frame["p10"] <= frame["p50"]).all() and (frame["p50"] <= frame["p90"]).all()
        assert (frame["p10"] >= 0).all() and (frame["p90"] > frame["p10"]).any()
    store = open_store(f"file://{tmp_path / 'artifacts'}")
    writer = RunWriter(store, "run-1")
    save_intervals(writer, ch.intervals)
    writer.seal(model_version="v1")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "intervals.json").write_bytes(
        store.read_bytes("runs/run-1/model/intervals.json")
    )
    again = load_intervals(tmp_path / "model", LIGHTGBM)
    assert again == ch.intervals[LIGHTGBM]
    assert load_intervals(tmp_path / "nowhere", LIGHTGBM) is None  # a run from before


@pytest.mark.slow
def test_lightgbm_refit_learns_from_every_day_with_the_validated_rounds(challenger) -> None:
    from trainer.models.gbm import refit_gbm, rows, train_gbm

    _, prepared, _, _ = challenger
    held = train_gbm(prepared, seed=1, num_threads=1)
    refit = refit_gbm(prepared, held, seed=1, num_threads=1)
    assert held.history_days == [60, 0]
    assert refit.rounds == held.rounds and min(held.rounds) >= 1
    assert refit.history_days == held.history_days
    for member, twin in zip(refit.members, held.members, strict=True):
        assert member.booster.current_iteration() == twin.rounds  # no early stopping
    # its windows run through the last day (test days included); the twin's stop earlier
    every = prepared.refit_windows(through="test")
    n_days = len(prepared.panel.calendar)
    assert every.origin.max() + CFG.horizon == n_days
    assert prepared.train.origin.max() + CFG.horizon <= prepared.train_end
    assert prepared.refit_windows().origin.max() + CFG.horizon <= prepared.val_end
    with pytest.raises(ValueError, match="through"):
        prepared.refit_windows(through="train")
    # another model: it has seen the test days
    w = prepared.test
    mean, std = prepared.pipeline.series_stats([prepared.panel.product_ids[s] for s in w.series])
    x = rows(w, mean, std)
    members = np.mean([m.predict_z(x) for m in held.members], axis=0)
    np.testing.assert_allclose(held.predict_z(w, mean, std).reshape(-1), members)  # their mean
    assert not np.allclose(
        refit.predict_units(
            w, prepared.pipeline, [prepared.panel.product_ids[s] for s in w.series]
        ),
        held.predict_units(w, prepared.pipeline, [prepared.panel.product_ids[s] for s in w.series]),
    )


def test_lightgbm_members_are_subsets_of_one_dataset_with_their_own_rows(challenger) -> None:
    from trainer.models.gbm import (
        _booster_params,
        _shared_rows,
        member_mask,
        row_names,
        rows,
    )
    from trainer.models.lstm import _window_stats

    _, prepared, _, _ = challenger
    w, horizon = prepared.train, CFG.horizon
    max_rows = len(w) * horizon // 3  # all history thinned to every third origin
    picks = [member_mask(w, prepared.train_end, d, horizon, max_rows) for d in (60, 0)]
    masks = [m for m, _ in picks]
    assert picks[1][1] > 1 and masks[0].sum() != masks[1].sum()  # thinned, different rows
    names = row_names(prepared.feature_names, prepared.known_names)
    full, indices = _shared_rows(prepared, w, masks, names, _booster_params(0, 1, None))
    union = w.subset(np.logical_or.reduce(masks))
    assert full.num_data() == len(union) * horizon
    x_union = rows(union, *_window_stats(prepared, union))
    for mask, idx in zip(masks, indices, strict=True):
        member = w.subset(mask)
        # the member's rows, in its order, are the rows it would have built on its own
        np.testing.assert_array_equal(x_union[idx], rows(member, *_window_stats(prepared, member)))
        sub = full.subset(idx).construct()
        assert sub.num_data() == len(member) * horizon
        np.testing.assert_allclose(
            sub.get_label(), (member.y + member.level[:, None]).reshape(-1), rtol=1e-6
        )


def test_lightgbm_history_lengths_collapse_on_short_data() -> None:
    from types import SimpleNamespace

    from trainer.models.gbm import history_lengths

    w = SimpleNamespace(origin=np.arange(100, 1000, 2))
    assert history_lengths(w, 1000, (364, 546, 728, 1092)) == [364, 546, 728, 0]
    assert history_lengths(w, 1000, (0, 364)) == [0, 364]
    assert history_lengths(w, 300, (364, 546)) == [0]  # both reach past the first origin
    with pytest.raises(ValueError, match="gbm_history_days"):
        TrainConfig(gbm_history_days=())
    with pytest.raises(ValueError, match="gbm_history_days"):
        TrainConfig(gbm_history_days=(364, -1))


@pytest.mark.slow
def test_a_skipped_fairness_comparison_trains_one_lstm_and_changes_nothing_else(
    challenger,
) -> None:
    """Issue 26: a partitioned run skips the LSTM without group DRO and says why."""
    from trainer.models.challenger import train_challenger

    _, prepared, params, full = challenger
    ch = train_challenger(prepared, params, CFG, gbm_threads=1, fairness_comparison="why")
    assert ch.plain is None and full.plain is not None
    assert set(ch.fairness_evaluations) == {"with"}
    assert ch.fairness_compare == {
        "with group DRO": full.fairness_compare["with group DRO"],
        "without": {"skipped": "why"},
    }
    assert ch.kind == full.kind
    for kind, scores in full.candidates.items():
        assert ch.candidates[kind] == pytest.approx(scores)
    with pytest.raises(ValueError, match="reason it is skipped"):
        train_challenger(prepared, params, CFG, fairness_comparison="")


@pytest.mark.slow
def test_the_lightgbm_kinds_serve_the_quantile_models_cqr(challenger) -> None:
    """Issue 27's ninth pass: the LightGBM kinds' P10/P90 are the quantile model's
    boosters widened by its conformal shifts, the P50 its booster's (whole units for
    count products), whatever the point; the LSTM keeps its residual quantiles."""
    from trainer.models.challenger import forecast_served, tail_forecasts
    from trainer.models.intervals import band_index, whole_units
    from trainer.models.lstm import forecast_windows

    sales, prepared, _, ch = challenger
    kw = _serving(challenger)
    w, products, _ = forecast_windows(prepared.pipeline, sales, CFG, CFG.lookback)
    tails = tail_forecasts(ch.gbm, w, prepared.pipeline, products, sales, CFG)
    assert (tails[0.1] <= tails[0.5]).all() and (tails[0.5] <= tails[0.9]).all()  # uncrossed
    shifts = np.asarray(ch.intervals[LIGHTGBM].tail_shifts)[band_index(np.arange(1, 8))]
    whole = np.isin(products, list(ch.intervals[LIGHTGBM].whole_products))
    for kind in (LIGHTGBM, BLEND):
        cal = ch.intervals[kind]
        assert cal.tail_levels == CFG.interval_levels and cal.median_point == 0.0
        frame = forecast_served(kind, intervals=cal, **kw)
        assert list(products) == sorted(products)
        frame = frame.sort_values(["product_id", "target_date"])
        p10 = np.clip(tails[0.1] + shifts[:, 0], 0, None)
        p90 = tails[0.9] + shifts[:, 2]
        p50 = np.where(whole[:, None], whole_units(tails[0.5]), tails[0.5])
        np.testing.assert_allclose(frame["p10"].to_numpy(), p10.ravel(), atol=1e-9)
        np.testing.assert_allclose(frame["p90"].to_numpy(), p90.ravel(), atol=1e-9)
        np.testing.assert_allclose(frame["p50"].to_numpy(), p50.ravel(), atol=1e-9)
    assert ch.intervals[LSTM].tail_levels == ()
