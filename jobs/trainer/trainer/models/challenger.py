"""The challenger's training stages: LSTM with and without DRO, bias correction, LightGBM,
the choice of the served forecaster, and the figures of the report — each figure out of
sample or named otherwise.

`train_challenger(prepared, params, cfg)`:

1. **LSTM with group DRO** and **the same LSTM plain** (same seed, data, epochs cap and
   early stopping on the validation loss), both on the training windows only. There is
   no refit of the LSTM on train + validation (it did not help in the backtest, and a
   refit would make every validation figure in-sample and leave the bias offsets fitted
   on another model than the one they correct).
2. **Bias offsets** fitted on the DRO LSTM's validation forecasts from origins every
   `val_origin_every` days (`trainer.models.bias`: mean-based, empirical-Bayes shrinkage).
3. **LightGBM** on the same features (`trainer.models.gbm`), training windows only: an
   ensemble of one booster per training-history length (`cfg.gbm_history_days`).
4. **The choice**, on the validation windows: the debiased LSTM (its validation score
   with offsets *cross-fitted*: each validation window corrected by offsets fitted on
   the other windows, so the score is out of sample for the offsets too), LightGBM and
   their blend (the LSTM's share, ¼ or ½, chosen on the same windows); the lowest mean
   per-product RMSSE is served. (The best baseline
   is the promotion rule's fallback, `trainer.judge.promotion`.) Validation also picked each
   model's epoch / boosting rounds, so the chosen one's validation score is mildly
   optimistic; the test window, used for nothing above, gives the reported figures.
5. **LightGBM refit** (`cfg.gbm_refit`, on by default) when the chosen forecaster uses
   LightGBM: the same booster settings refitted on windows over every day, test days
   included, with the boosting rounds validation chose (`trainer.models.gbm.refit_gbm`). It is
   what gets served (and saved, and explained): `val_days + test_days` (112 by default)
   days fresher than its held-out twin, which it otherwise equals. Every validation and
   test figure is the held-out twin's (the refit has none of its own: nothing is left
   to score it on), and the report says so. Measured in the six-cutoff backtest
   (`docs/experiments.md`).
6. **Figures**: the test evaluation of the chosen forecaster, every candidate's
   validation and test scores, the fairness comparison (DRO vs plain LSTM, both
   uncorrected: one difference) and the bias effect (the DRO LSTM before and after its
   offsets: one difference).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from forecastguard.logs import get_logger, timed
from trainer.judge.evaluate import Evaluation, disparity, evaluate
from trainer.models.bias import BiasCorrection, correction_effect, fit_bias_correction
from trainer.models.intervals import (
    IntervalCalibration,
    coverage_summary,
    fit_intervals,
    tail_column,
    with_blend_tails,
)

if TYPE_CHECKING:
    from trainer.config import ModelParams, TrainConfig
    from trainer.models.gbm import GBMForecaster
    from trainer.types import Prepared, Trained

log = get_logger(__name__)

LSTM = "lstm"
LIGHTGBM = "lightgbm"
BLEND = "blend"
CANDIDATES = (LSTM, LIGHTGBM, BLEND)
BLEND_WEIGHT = 0.5  # the LSTM's share of the blend when none was chosen (older runs)
BLEND_WEIGHTS = (0.25, 0.5)  # the LSTM's shares the blend may take, chosen on validation
# The LightGBM kinds' intervals come from `trainer.models.quantile` (conformalised
# quantile boosters on all the sales; issue 27's ninth pass), unless the LightGBM has
# tails of its own (`trainer.models.gbm.TAIL_LEVELS`, off by default: the fifth pass's
# method, which the backtest can still turn on with `--trainer-tails`).
QUANTILE_INTERVALS = True


@dataclass
class Challenger:
    """What the challenger's training produced (the served forecaster is `kind`)."""

    kind: str
    lstm: Trained  # with group DRO (served as `lstm` and in the blend)
    # the same network without DRO (the fairness comparison); None where it was skipped
    plain: Trained | None
    gbm: GBMForecaster  # the served LightGBM: the refit when there is one
    correction: BiasCorrection  # for the DRO LSTM
    blend_weight: float
    lstm_test_raw: pd.DataFrame  # the DRO LSTM's test forecasts before its offsets
    test: pd.DataFrame  # the served forecaster's test forecasts
    evaluation: Evaluation  # of `test`
    candidates: dict[str, dict[str, float]]  # kind -> validation and test scores
    validation: dict[str, Any]  # the served forecaster's validation figures
    # {"with group DRO": figures, "without": figures, or {"skipped": why}}
    fairness_compare: dict[str, dict[str, Any]]
    fairness_evaluations: dict[str, Evaluation]
    bias_effect: dict[str, Any]
    gbm_heldout: GBMForecaster | None = None  # the LightGBM the figures are of, if refitted
    extra: dict[str, Any] = field(default_factory=dict)
    # kind (candidates and "baseline:<name>") -> interval calibration (validation residuals)
    intervals: dict[str, IntervalCalibration] = field(default_factory=dict)
    # kind -> test coverage of the 80 % interval and its interval score (`coverage_summary`)
    interval_test: dict[str, dict[str, Any]] = field(default_factory=dict)


def _scores(frame: pd.DataFrame, prepared: Prepared) -> dict[str, float]:
    """Mean and worst-decile per-product RMSSE of a forecast frame."""
    err2 = (frame["actual"] - frame["predicted"]) ** 2
    mse = err2.groupby(frame["product_id"]).mean().reindex(list(prepared.products))
    rmsse = np.sqrt(mse.to_numpy() / prepared.scale)
    d = disparity(rmsse, list(prepared.products))
    return {"rmsse": d["mean_rmsse"], "worst_decile_rmsse": d["worst_decile_rmsse"]}


def cross_fitted(raw: pd.DataFrame, shrinkage: float) -> pd.DataFrame:
    """Each origin's forecasts corrected by offsets fitted on the other origins' residuals.

    With a single origin the frame is returned uncorrected.
    """
    origins = raw["origin_date"].unique()
    if len(origins) < 2:
        return raw
    parts = []
    for origin in origins:
        mine = raw["origin_date"] == origin
        parts.append(fit_bias_correction(raw[~mine], shrinkage).apply(raw[mine]))
    return pd.concat(parts).loc[raw.index]


def blend(lstm: pd.DataFrame, gbm: pd.DataFrame, weight: float) -> pd.DataFrame:
    """`weight * lstm + (1 - weight) * gbm` on the same rows (same windows, same order)."""
    if (
        len(lstm) != len(gbm)
        or not (lstm["product_id"].to_numpy() == gbm["product_id"].to_numpy()).all()
    ):
        raise ValueError("blend: the two forecast frames are not on the same rows")
    out = lstm.copy()
    out["predicted"] = (
        weight * lstm["predicted"].to_numpy() + (1 - weight) * gbm["predicted"].to_numpy()
    )
    return with_blend_tails(out, gbm, "predicted")


def blend_weight(lstm: pd.DataFrame, gbm: pd.DataFrame, prepared: Prepared) -> float:
    """The LSTM's share in `BLEND_WEIGHTS` whose blend has the lowest validation mean
    RMSSE (ties: the larger share). LightGBM is usually the stronger of the two, so an
    even blend can be worse than it; a quarter keeps the diversity at less cost."""
    scored = [(_scores(blend(lstm, gbm, w), prepared)["rmsse"], -w, w) for w in BLEND_WEIGHTS]
    return min(scored)[2]


def gbm_frame(
    gbm: GBMForecaster, prepared: Prepared, split: str, *, every: int | None = None
) -> pd.DataFrame:
    """LightGBM's forecasts of a split's windows as a `predict_split` frame (`every`:
    validation origins every `every` days, as `predict_split`)."""
    from trainer.models.fairness import validation_windows
    from trainer.models.lstm import _ids, windows_frame

    w = prepared.windows(split)
    if every is not None and split == "val":
        w = validation_windows(prepared, every)
    products = _ids(prepared, w)
    frame = windows_frame(prepared, w, gbm.predict_units(w, prepared.pipeline, products))
    tails = gbm.predict_tails(w, prepared.pipeline, products)  # the interval's (issue 27)
    return frame.assign(**{tail_column(a): v.reshape(-1) for a, v in tails.items()})


def naive_scales(prepared: Prepared) -> dict[str, float]:
    """Each product's naive scale (RMS one-day change of its training series)."""
    return dict(zip(prepared.products, np.sqrt(prepared.scale).tolist(), strict=True))


BASELINE_INTERVALS: dict[str, Any] = {"level_power": 0.0, "zero_mass": False}


def calibrate_intervals(
    prepared: Prepared,
    cfg: TrainConfig,
    frames: dict[str, pd.DataFrame],
    baseline_options: Mapping[str, Any] | None = None,
) -> dict[str, IntervalCalibration]:
    """An interval calibration per forecaster from its validation forecasts `frames`
    (out of sample: models trained on the training days only), plus the servable
    baselines' from their forecasts of the same validation windows.

    The candidates get `fit_intervals`' defaults; the baselines `baseline_options`
    (default `BASELINE_INTERVALS`: a fixed scale and no zero mass — on the pasta data's
    six cutoffs, `bench/interval_bench.py`, their coverage was 0.78-0.80 that way and
    0.85-0.86 with the level factor and the zero mass, at a larger interval score: a
    repeated last week or a moving average says little about tomorrow's level)."""
    from trainer.judge.evaluate import SERVABLE_BASELINES, baseline_forecasts
    from trainer.models.fairness import validation_windows
    from trainer.models.lstm import windows_frame

    w = validation_windows(prepared, cfg.val_origin_every)
    base = baseline_forecasts(
        prepared.panel.units, w.series, w.origin, cfg.horizon, cfg.moving_average_days
    )
    frames = dict(frames) | {
        f"baseline:{name}": windows_frame(prepared, w, base[name]) for name in SERVABLE_BASELINES
    }
    naive = naive_scales(prepared)
    base_opts = BASELINE_INTERVALS if baseline_options is None else baseline_options
    return {
        kind: fit_intervals(
            frame,
            naive,
            levels=cfg.interval_levels,
            shrinkage=cfg.interval_shrinkage,
            **(base_opts if kind.startswith("baseline:") else {}),
        )
        for kind, frame in frames.items()
    }


def interval_coverage(
    intervals: dict[str, IntervalCalibration],
    test: dict[str, pd.DataFrame],
    evaluation: Evaluation,
) -> dict[str, dict[str, Any]]:
    """Each forecaster's test coverage of its 10–90 interval (and interval score): the
    candidates' from `test`, the baselines' from the evaluation's baseline forecasts."""
    frames = dict(test)
    if evaluation.baseline_predictions is not None:
        points = evaluation.baseline_predictions
        for kind in intervals:
            name = kind.removeprefix("baseline:")
            if kind.startswith("baseline:") and name in points:
                frames[kind] = points.rename(columns={name: "predicted"})
    out = {}
    for kind, frame in frames.items():
        cal = intervals.get(kind)
        if cal is None or not {0.1, 0.9} <= set(cal.levels):
            continue
        out[kind] = coverage_summary(cal.apply(frame))
    return out


def choose(val_scores: dict[str, dict[str, float]]) -> str:
    """The candidate with the lowest validation mean RMSSE (ties: `CANDIDATES` order)."""
    finite = [(s["rmsse"], CANDIDATES.index(k), k) for k, s in val_scores.items()]
    finite = [f for f in finite if np.isfinite(f[0])]
    if not finite:
        raise ValueError("no candidate has a finite validation RMSSE")
    return min(finite)[2]


def available_cpus(cgroup: str = "/sys/fs/cgroup/cpu.max") -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota
    (a container's vCPU limit), at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        with open(cgroup) as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def _with_quantile_model(
    gbm: GBMForecaster,
    intervals: dict[str, IntervalCalibration],
    sales: pd.DataFrame,
    cfg: TrainConfig,
    num_threads: int,
) -> tuple[GBMForecaster, dict[str, Any] | None, pd.DataFrame | None]:
    """`gbm` with `trainer.models.quantile`'s boosters as its tails (and their pipeline),
    and the LightGBM kinds' `intervals` serving them (in place); the quantile model's
    held-out coverage (`coverage_summary`) and band (`QuantileModel.heldout`), both None
    when it could not be conformalised."""
    from dataclasses import replace

    from trainer.models.gbm import GBMMember
    from trainer.models.quantile import Recipe, fit_quantile_model

    with timed(log, "stage quantile model", stage="quantile_model") as out:
        cpu = time.process_time()
        recipe = Recipe(num_threads=num_threads)  # its own seed: the figures measured
        try:
            model = fit_quantile_model(sales, cfg, levels=cfg.interval_levels, recipe=recipe)
        except ValueError as exc:  # too little data for its windows: the model stands
            log.warning(
                "quantile model not trained: the residual intervals serve",
                extra={"error": str(exc)},
            )
            return gbm, None, None
        out.update(
            levels=list(model.levels),
            widening=list(model.widening),
            cpu_s=round(time.process_time() - cpu, 2),  # this process's, all its threads
        )
    if not model.widening:
        log.warning("quantile model not conformalised: the residual intervals serve")
        return gbm, None, None
    tails = {
        a: GBMMember(booster=b, rounds=recipe.rounds, history_days=recipe.train_days)
        for a, b in model.boosters.items()
    }
    for kind in (LIGHTGBM, BLEND):
        intervals[kind] = model.calibration(intervals[kind])
    held = None if model.heldout is None else coverage_summary(model.heldout)
    return replace(gbm, tails=tails, tail_pipeline=model.pipeline), held, model.heldout


def held_band(
    test: pd.DataFrame, band: pd.DataFrame | None, quantiles: tuple[str, ...]
) -> pd.DataFrame:
    """The served kind's test forecasts `test` (its `quantiles` columns) with the
    interval that was judged: with the quantile model's held-out `band` (its P10 and
    P90), those on the rows it has (the last horizon of days) and no quantile elsewhere,
    nor a P50 (no held-out booster forecast them); else as it is."""
    if band is None:
        return test
    cols = [c for c in quantiles if c in band.columns]
    keys = ["product_id", "target_date"]
    got = test[keys].merge(band[[*keys, *cols]], on=keys, how="left")
    return test.assign(**{c: got[c].to_numpy() if c in cols else np.nan for c in quantiles})


def tail_forecasts(
    gbm: GBMForecaster,
    w: Any,
    pipeline: Any,
    products: list[str],
    sales: pd.DataFrame,
    cfg: TrainConfig,
    promotions: pd.DataFrame | None = None,
) -> dict[float, np.ndarray]:
    """`{level: (N, H) units}` of `gbm`'s tails for the forecast windows `w` of
    `products` (`forecast_windows` of `pipeline`): from those windows, or, for tails
    with a pipeline of their own (`trainer.models.quantile`), from that pipeline's
    windows of the same sales, in `products`' order (NaN where it has no window)."""
    from trainer.models.lstm import forecast_windows
    from trainer.models.quantile import uncrossed

    if gbm.tail_pipeline is None:
        return gbm.predict_tails(w, pipeline, products)
    own, theirs, _ = forecast_windows(gbm.tail_pipeline, sales, cfg, cfg.lookback, promotions)
    # uncrossed before the widening, as `quantile.predict_quantiles` (the reference) does
    tails = uncrossed(gbm.predict_tails(own, gbm.tail_pipeline, theirs))
    at = {p: i for i, p in enumerate(theirs)}
    pick = np.array([at.get(p, -1) for p in products])
    return {
        a: np.where((pick >= 0)[:, None], v[np.clip(pick, 0, None)], np.nan)
        for a, v in tails.items()
    }


def task_threads(environ: Mapping[str, str] | None = None, cpus: int | None = None) -> int:
    """LightGBM's threads for this task (issue 26). On Cloud Run (`CLOUD_RUN_JOB` set)
    each task has its own vCPUs: all of them. Local task processes (the launcher's
    `CLOUD_RUN_TASK_COUNT` without `CLOUD_RUN_JOB`) share the machine: its CPUs divided
    by the tasks, at least 1 (more threads than cores only spin: 7x the CPU measured,
    docs/scale.md)."""
    env = os.environ if environ is None else environ
    cpus = available_cpus() if cpus is None else max(1, cpus)
    if env.get("CLOUD_RUN_JOB"):
        return cpus
    try:
        tasks = max(1, int(env.get("CLOUD_RUN_TASK_COUNT") or 1))
    except ValueError:
        tasks = 1
    return max(1, cpus // tasks)


def train_challenger(
    prepared: Prepared,
    params: ModelParams,
    cfg: TrainConfig,
    *,
    kinds: tuple[str, ...] = CANDIDATES,
    gbm_threads: int | None = None,
    always_refit: bool = False,
    fairness_comparison: bool | str = True,
    lstm: Trained | None = None,
) -> Challenger:
    """Train the candidates, choose the served one on validation, evaluate on test.

    Every candidate is trained and scored; the served one is chosen among `kinds` (the
    kinds the serving side can load). With `cfg.gbm_refit`, LightGBM is refitted on every
    day when the chosen kind uses it (or always, with `always_refit`: the backtest
    forecasts every candidate). LightGBM trains with `gbm_threads` threads, by default
    the task's CPUs (`task_threads`).

    `fairness_comparison`: True trains the LSTM a second time without group DRO, for the
    report's comparison (`fairness_compare`, `fairness_evaluations["without"]`). A string
    skips it and says why (issue 26: a partitioned run's partitions have no report of
    their own, the second LSTM was half the LSTMs' CPU there): `plain` is then None,
    `fairness_compare["without"]` is `{"skipped": why}` and `fairness_evaluations` has
    only "with".

    `lstm`: the group-DRO LSTM already trained on `prepared` with `params` and `cfg` (the
    best tuning trial's, `TuningResult.best_model`: a trial trains exactly what is
    trained here, with the same seed), used instead of training it again.
    """
    if not fairness_comparison:
        raise ValueError("fairness_comparison must be True or the reason it is skipped")
    if lstm is not None and (lstm.params != params or not lstm.fairness):
        raise ValueError("lstm must be a group-DRO LSTM trained with params")
    gbm_threads = gbm_threads or task_threads()
    unknown = set(kinds) - set(CANDIDATES)
    if not kinds or unknown:
        raise ValueError(f"kinds must be a non-empty subset of {CANDIDATES}, got {kinds}")
    from trainer.models.gbm import refit_gbm, train_gbm
    from trainer.models.lstm import (
        predict_split,
        train,
    )

    with timed(log, "stage lstm", stage="lstm"):
        if lstm is None:
            dro = train(prepared, params, cfg, fairness=True)
        else:
            dro = lstm
            log.info("group-DRO LSTM: the best tuning trial's", extra={"params": params.to_dict()})
        compare = fairness_comparison is True
        plain = train(prepared, params, cfg, fairness=False) if compare else None
    with timed(log, "stage bias correction", stage="bias"):
        val_every = predict_split(dro.model, prepared, "val", every=cfg.val_origin_every)
        correction = fit_bias_correction(val_every, cfg.bias_shrinkage)
    gbm = train_gbm(prepared, seed=cfg.seed, num_threads=gbm_threads)

    val_lstm_raw = predict_split(dro.model, prepared, "val")
    val = {
        LSTM: cross_fitted(val_lstm_raw, cfg.bias_shrinkage),
        LIGHTGBM: gbm_frame(gbm, prepared, "val"),
    }
    weight = blend_weight(val[LSTM], val[LIGHTGBM], prepared)
    val[BLEND] = blend(val[LSTM], val[LIGHTGBM], weight)
    test_lstm_raw = predict_split(dro.model, prepared, "test")
    test = {LSTM: correction.apply(test_lstm_raw), LIGHTGBM: gbm_frame(gbm, prepared, "test")}
    test[BLEND] = blend(test[LSTM], test[LIGHTGBM], weight)
    with timed(log, "stage intervals", stage="intervals"):
        # calibrated on validation origins every `val_origin_every` days (the LSTM's
        # offsets cross-fitted), judged on the test windows
        val_cal = {LSTM: cross_fitted(val_every, cfg.bias_shrinkage)}
        val_cal[LIGHTGBM] = gbm_frame(gbm, prepared, "val", every=cfg.val_origin_every)
        val_cal[BLEND] = blend(val_cal[LSTM], val_cal[LIGHTGBM], weight)
        intervals = calibrate_intervals(prepared, cfg, val_cal)
    candidates = {
        k: {f"val_{n}": v for n, v in _scores(val[k], prepared).items()}
        | {f"test_{n}": v for n, v in _scores(test[k], prepared).items()}
        for k in CANDIDATES
    }
    kind = choose({k: {"rmsse": candidates[k]["val_rmsse"]} for k in kinds})
    log.info("served forecaster chosen on validation", extra={"kind": kind, **candidates[kind]})

    served_gbm = gbm
    uses_gbm = always_refit or kind != LSTM  # the served kind, or every kind, needs LightGBM
    if cfg.gbm_refit and uses_gbm:
        served_gbm = refit_gbm(prepared, gbm, seed=cfg.seed, num_threads=gbm_threads)

    quantile_test = quantile_band = None
    if QUANTILE_INTERVALS and uses_gbm and not gbm.tails and prepared.sales is not None:
        served_gbm, quantile_test, quantile_band = _with_quantile_model(
            served_gbm, intervals, prepared.sales, cfg, gbm_threads
        )
    evaluation = evaluate(test[kind], prepared)
    interval_test = interval_coverage(intervals, test, evaluation)
    if quantile_test is not None:  # the quantile model's own held-out figure
        interval_test |= {LIGHTGBM: quantile_test, BLEND: quantile_test}
    log.info("interval coverage on test", extra={"kind": kind, **interval_test.get(kind, {})})
    val_eval = evaluate(val[kind], prepared)
    validation = {
        "kind": kind,
        "rmsse": val_eval.metrics["model"]["rmsse"],
        "rmse": val_eval.metrics["model"]["rmse"],
        "bias": val_eval.metrics["model"]["bias"],
        "disparity_p90_over_median": val_eval.metrics["fairness"]["disparity_p90_over_median"],
        "worst_decile_rmsse": val_eval.metrics["fairness"]["worst_decile_rmsse"],
        "note": (
            "out of sample for the weights (trained on the training days only) and, for "
            "the LSTM, for the bias offsets (cross-fitted over the validation origins); "
            "the same windows chose the epoch and the boosting rounds"
        ),
    }
    ev_dro = evaluate(test_lstm_raw, prepared)
    fairness_evaluations = {"with": ev_dro}
    fairness_compare: dict[str, dict[str, Any]] = {
        "with group DRO": ev_dro.metrics["fairness"] | {"rmsse": ev_dro.metrics["model"]["rmsse"]},
    }
    if plain is not None:
        ev_plain = evaluate(predict_split(plain.model, prepared, "test"), prepared)
        fairness_evaluations["without"] = ev_plain
        fairness_compare["without"] = ev_plain.metrics["fairness"] | {
            "rmsse": ev_plain.metrics["model"]["rmsse"]
        }
    else:
        fairness_compare["without"] = {"skipped": str(fairness_comparison)}
    return Challenger(
        kind=kind,
        lstm=dro,
        plain=plain,
        gbm=served_gbm,
        correction=correction,
        blend_weight=weight,
        lstm_test_raw=test_lstm_raw,
        test=held_band(
            intervals[kind].apply(test[kind]),
            quantile_band if kind != LSTM else None,
            intervals[kind].columns,
        ),
        evaluation=evaluation,
        candidates=candidates,
        validation=validation,
        fairness_compare=fairness_compare,
        fairness_evaluations=fairness_evaluations,
        bias_effect=correction_effect(test_lstm_raw, correction),
        gbm_heldout=gbm if served_gbm is not gbm else None,
        intervals=intervals,
        interval_test=interval_test,
    )


def forecast_served(
    kind: str,
    *,
    model: Any,
    params: ModelParams,
    correction: BiasCorrection,
    gbm: GBMForecaster | None,
    blend_weight: float,
    pipeline: Any,
    sales: pd.DataFrame,
    cfg: TrainConfig,
    promotions: pd.DataFrame | None = None,
    intervals: IntervalCalibration | None = None,
) -> pd.DataFrame:
    """The next `cfg.horizon` days of forecaster `kind` (product_id, target_date,
    predicted_units): the debiased LSTM, LightGBM or their blend; with `intervals`, a
    column per quantile level too ("p10", "p50", "p90")."""
    from trainer.models.lstm import (
        forecast_next,
        forecast_windows,
        future_frame,
    )

    if kind not in CANDIDATES:
        raise ValueError(f"unknown trained forecaster kind {kind!r} (known: {CANDIDATES})")
    if kind != LSTM and gbm is None:
        raise ValueError(f"kind {kind!r} needs the LightGBM model, which is missing")
    lstm = frame = None
    if kind in (LSTM, BLEND):
        raw = forecast_next(model, pipeline, sales, cfg, params, promotions)
        lstm = frame = correction.apply(raw, column="predicted_units")
    if kind in (LIGHTGBM, BLEND):
        w, products, dates = forecast_windows(pipeline, sales, cfg, cfg.lookback, promotions)
        assert gbm is not None
        frame = future_frame(products, dates, gbm.predict_units(w, pipeline, products))
        tails = tail_forecasts(gbm, w, pipeline, products, sales, cfg, promotions)
        frame = frame.assign(**{tail_column(a): v.reshape(-1) for a, v in tails.items()})
    if kind == BLEND:
        assert lstm is not None and frame is not None
        merged = lstm.merge(frame, on=["product_id", "target_date"], suffixes=("_lstm", "_gbm"))
        merged["predicted_units"] = (
            blend_weight * merged["predicted_units_lstm"]
            + (1 - blend_weight) * merged["predicted_units_gbm"]
        )
        gbm_point = merged.drop(columns="predicted_units").rename(
            columns={"predicted_units_gbm": "predicted_units"}
        )
        frame = with_blend_tails(
            merged[["product_id", "target_date", "predicted_units"]],
            gbm_point,
            "predicted_units",
            # the quantile model's P50 serves as it is (its calibration: no mixing)
            median_point=0.0 if gbm.tail_pipeline is not None else None,
        )
    assert frame is not None
    if intervals is None:  # no calibration: no tails either
        return frame.drop(columns=[c for c in frame.columns if c.startswith("tail_")])
    return intervals.apply(frame, column="predicted_units")


GBM_META = "blend.json"  # under model/: the blend weight (LightGBM files: trainer.models.gbm)


@dataclass(frozen=True)
class TrainedForecaster:
    """A served `lightgbm` or `blend` (or `lstm`) forecaster of a run (the serving
    `Forecaster` protocol of `trainer.serve.forecast`): the run's bundle and its LightGBM."""

    kind: str
    bundle: Any  # trainer.serve.artifacts.ModelBundle
    gbm: GBMForecaster | None
    blend_weight: float = BLEND_WEIGHT
    intervals: IntervalCalibration | None = None  # None: a run from before intervals

    @property
    def model_version(self) -> str:
        """The run's model version."""
        return self.bundle.model_version

    def forecast(self, sales: pd.DataFrame, promotions: pd.DataFrame | None = None) -> pd.DataFrame:
        """The next `horizon` days (product_id, target_date, predicted_units)."""
        b = self.bundle
        return forecast_served(
            self.kind,
            model=b.model,
            params=b.params,
            correction=b.correction,
            gbm=self.gbm,
            blend_weight=self.blend_weight,
            pipeline=b.pipeline,
            sales=sales,
            cfg=b.cfg,
            promotions=promotions,
            intervals=self.intervals,
        )


def save_gbm(writer: Any, gbm: GBMForecaster, blend_weight: float, workdir: Any) -> list[str]:
    """Write the LightGBM model and the blend weight under the run's `model/`."""
    from pathlib import Path

    local = Path(workdir) / "gbm"
    names = [writer.put_file(f"model/{p.name}", p) for p in gbm.save(local)]
    names.append(writer.put_json(f"model/{GBM_META}", {"blend_weight": blend_weight}))
    return names


def save_intervals(writer: Any, intervals: dict[str, IntervalCalibration]) -> str:
    """Write every forecaster's interval calibration (`model/intervals.json`)."""
    from trainer.models.intervals import INTERVALS

    return writer.put_json(f"model/{INTERVALS}", {k: v.to_dict() for k, v in intervals.items()})


def load_trained(store: Any, run_id: str, kind: str, workdir: Any) -> TrainedForecaster:
    """A sealed run's forecaster of `kind` (its bundle, LightGBM and blend weight)."""
    import json
    from pathlib import Path

    from trainer.models.gbm import GBMForecaster
    from trainer.serve.artifacts import load_model_bundle

    bundle = load_model_bundle(store, run_id, workdir)
    local = Path(workdir) / "model"
    gbm = None
    weight = BLEND_WEIGHT
    if kind != LSTM:
        gbm = GBMForecaster.load(local)
        weight = float(json.loads((local / GBM_META).read_text())["blend_weight"])
    return TrainedForecaster(
        kind=kind,
        bundle=bundle,
        gbm=gbm,
        blend_weight=weight,
        intervals=load_intervals(local, kind),
    )


def load_intervals(model_dir: Any, kind: str) -> IntervalCalibration | None:
    """Kind `kind`'s interval calibration from a downloaded run's `model/intervals.json`
    (None for a run made before intervals, or without one for that kind)."""
    import json
    from pathlib import Path

    from trainer.models.intervals import INTERVALS

    path = Path(model_dir) / INTERVALS
    if not path.exists():
        return None
    data = json.loads(path.read_text()).get(kind)
    return IntervalCalibration.from_dict(data) if data else None


def score_trained(forecaster: TrainedForecaster, prepared: Prepared) -> pd.DataFrame:
    """A run's forecaster on `prepared`'s test windows (its own feature pipeline)."""
    from dataclasses import replace

    from trainer.data.windowing import make_windows
    from trainer.models.lstm import _ids, predict_split, windows_frame

    b = forecaster.bundle
    horizon = prepared.cfg.horizon
    if b.cfg.horizon != horizon:
        raise ValueError(f"its horizon is {b.cfg.horizon} days, not {horizon}")
    arrays = b.pipeline.transform(prepared.panel)

    def windows(lookback: int) -> Any:
        return make_windows(
            arrays,
            np.unique(prepared.test.origin),
            lookback,
            horizon,
            series=np.unique(prepared.test.series),
        )

    lstm = None
    if forecaster.kind in (LSTM, BLEND):
        replica = replace(
            prepared, pipeline=b.pipeline, arrays=arrays, test=windows(b.params.lookback)
        )
        lstm = b.correction.apply(predict_split(b.model, replica, "test"))
        if forecaster.kind == LSTM:
            return lstm
    if forecaster.gbm is None:
        raise ValueError(f"kind {forecaster.kind!r} needs the LightGBM model, which is missing")
    w = windows(b.cfg.lookback)
    gbm = windows_frame(prepared, w, forecaster.gbm.predict_units(w, b.pipeline, _ids(prepared, w)))
    if forecaster.kind == LIGHTGBM:
        return gbm
    assert lstm is not None
    key = ["product_id", "target_date"]
    merged = lstm.merge(gbm[[*key, "predicted"]], on=key, suffixes=("", "_gbm"))
    merged["predicted"] = (
        forecaster.blend_weight * merged["predicted"]
        + (1 - forecaster.blend_weight) * merged["predicted_gbm"]
    )
    return merged.drop(columns="predicted_gbm")
