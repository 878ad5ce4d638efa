"""A global LightGBM on the LSTM's features, trained beside it (direct, all 28 steps).

One row per (window, forecast step): the window's last day of sequence features (units,
lags, rolling statistics, calendar, promotion — already scaled by the feature
pipeline), the value of the same weekday in the window's last week, the window's level
(mean standardised units of the 28 days before the origin), the product's mean and
std, the step's known features (calendar, holidays, promotion, last year's value, the
step) and the product as a categorical feature. The target is the step's standardised
units (absolute, not relative to the level: trees split on the level instead).

It is an ensemble over training-history lengths (`TrainConfig.gbm_history_days`,
default the last 364, 546, 728 and 1,092 days): one booster each, the forecast their
mean. Training rows come from the training windows whose origins lie in the member's
history (every `stride`-th origin, so the rows stay within `max_rows`); boosting stops
early on the validation days, with windows from an origin every `val_origin_every` days
(5 origins over 56 days instead of the split's 2) and a patience of 100 rounds. The rows
and bins are built once, as one LightGBM `Dataset` over the union of the members' rows;
each member trains on a `subset()` of it (the same rows it had on its own; the bin
boundaries come from the union's sample instead of the member's), so the rows are laid
out and binned once instead of once per member. One
booster on all history stopped after 30–200 rounds at learning rate 0.05, a noisy
choice, and trailed the experiments' reference LightGBM (last 728 days) at 10-08 by
0.02 RMSSE; the ensemble is ahead of the reference at all six backtest cutoffs
(docs/experiments.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from forecastguard.logs import get_logger, timed

if TYPE_CHECKING:
    import lightgbm as lgb

    from trainer.data.features import FeaturePipeline
    from trainer.data.windowing import Windows
    from trainer.types import Prepared

log = get_logger(__name__)

PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.05,
    "num_leaves": 63,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
}
MODEL_FILE = "lightgbm_{}.txt"  # one per ensemble member
META_FILE = "lightgbm.json"
TAIL_FILE = "lightgbm_tail_{}.txt"  # one per tail level
TAIL_PIPELINE_FILE = "lightgbm_tail_pipeline.joblib"  # `GBMForecaster.tail_pipeline`
# Quantile boosters for the interval's tails (issue 27: conformalised quantile regression,
# calibrated in trainer.models.intervals on the validation days they did not train on):
# one per level on the training rows of the member nearest `TAIL_HISTORY_DAYS`, a fixed
# number of rounds (no early stopping: validation calibrates them), fewer leaves and half
# the rows per round, so they cost a fraction of the point ensemble. Served from issue
# 27's fifth pass at P10/P50/P90 (with `intervals.DEFAULT_TAIL_FLOOR` and
# `intervals.BLEND_MEDIAN_POINT`: docs/trainer.md, "the fifth pass") to its eighth; off
# since the ninth (), when `trainer.models.quantile`'s boosters, trained on all the
# sales and conformalised on their last days, became the LightGBM kinds' tails
# (`challenger.QUANTILE_INTERVALS`). The backtest turns these on with `--trainer-tails`.
TAIL_LEVELS: tuple[float, ...] = ()
TAIL_HISTORY_DAYS = 728
TAIL_ROUNDS = 100
TAIL_MAX_ROWS = 300_000  # the tails' rows: every k-th window of the member's beyond this
# refit the tails with the members on every day (as served), the shifts validation gave
# the held-out tails kept; False: serve the held-out tails (calibrated as they are)
TAIL_REFIT = True
TAIL_PARAMS: dict[str, Any] = {
    "objective": "quantile",
    "learning_rate": 0.1,
    "num_leaves": 31,
    "bagging_fraction": 0.5,
}


def row_names(feature_names: tuple[str, ...], known_names: tuple[str, ...]) -> list[str]:
    """Column names of `rows` for a pipeline's sequence and known feature names."""
    return [
        *(f"last_{n}" for n in feature_names),
        "same_weekday_last_week",
        "level",
        "product_mean",
        "product_std",
        *(f"known_{n}" for n in known_names),
        "product",
    ]


def rows(w: Windows, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(N * H, features) float32 rows of windows `w` (window-major, then step)."""
    n, lookback, _ = w.x.shape
    horizon = w.known.shape[1]
    step = np.arange(horizon)
    weekday_back = lookback - 7 + (step % 7)  # same weekday within the last 7 input days
    same = w.x[:, np.clip(weekday_back, 0, lookback - 1), 0]  # (N, H), scaled units
    stats = np.column_stack([w.level, np.log1p(mean), np.log1p(std)])
    cols = [
        np.repeat(w.x[:, -1, :], horizon, axis=0),
        same.reshape(-1, 1),
        np.repeat(stats, horizon, axis=0),
        w.known.reshape(n * horizon, -1),
        np.repeat(w.product, horizon)[:, None],
    ]
    # Written column block by column block into the float32 result: no float64 copy of
    # all the rows (the values are the same as concatenating and casting).
    out = np.empty((n * horizon, sum(c.shape[1] for c in cols)), dtype=np.float32)
    start = 0
    for c in cols:
        out[:, start : start + c.shape[1]] = c
        start += c.shape[1]
    return out


def _targets(w: Windows) -> np.ndarray:
    return (w.y + w.level[:, None]).reshape(-1)


@dataclass
class GBMMember:
    """One booster of the ensemble: trained on the windows of its last `history_days`."""

    booster: lgb.Booster
    rounds: int  # boosting rounds that predict (validation's choice; 0: all of them)
    history_days: int  # training origins within this many days of the data's end (0: all)

    def predict_z(self, x: np.ndarray) -> np.ndarray:
        """Standardised forecasts of feature rows `x`."""
        return np.asarray(self.booster.predict(x, num_iteration=self.rounds or None), dtype=float)


@dataclass
class GBMForecaster:
    """A LightGBM ensemble (one member per training-history length) and its column names.

    The forecast is the members' mean: the same global model trained on the last 364,
    546, 728 and 1,092 days (`TrainConfig.gbm_history_days`). Recent history follows a
    changed level or mix; longer history knows more seasons; averaging them hedges
    between the two (measured in docs/experiments.md).
    """

    members: list[GBMMember]
    names: list[str]
    # level -> quantile booster of the interval's tail (`TAIL_LEVELS`; empty: none)
    tails: dict[float, GBMMember] = field(default_factory=dict)
    # the tails' own feature pipeline (`trainer.models.quantile`'s boosters: their rows
    # come from it, not from the members'); None: the members' pipeline
    tail_pipeline: FeaturePipeline | None = None

    @property
    def rounds(self) -> list[int]:
        """Each member's boosting rounds."""
        return [m.rounds for m in self.members]

    @property
    def history_days(self) -> list[int]:
        """Each member's training-history length in days (0: all)."""
        return [m.history_days for m in self.members]

    def predict_z(self, w: Windows, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        """(N, H) standardised forecasts of windows `w` (the members' mean)."""
        x = rows(w, mean, std)
        z = np.mean([m.predict_z(x) for m in self.members], axis=0)
        return z.reshape(len(w), -1)

    def predict_units(
        self, w: Windows, pipeline: FeaturePipeline, products: list[str]
    ) -> np.ndarray:
        """(N, H) forecasts in units for windows `w` of `products`."""
        mean, std = pipeline.series_stats(products)
        return pipeline.inverse_target(self.predict_z(w, mean, std), products)

    def predict_tails(
        self, w: Windows, pipeline: FeaturePipeline, products: list[str]
    ) -> dict[float, np.ndarray]:
        """`{level: (N, H) units}` of the tail boosters for windows `w` (empty: none)."""
        if not self.tails:
            return {}
        mean, std = pipeline.series_stats(products)
        x = rows(w, mean, std)
        return {
            a: pipeline.inverse_target(m.predict_z(x).reshape(len(w), -1), products)
            for a, m in self.tails.items()
        }

    def save(self, directory: str | Path) -> list[Path]:
        """Write each member's booster (LightGBM's text format) and the metadata."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        files, meta = [], []
        for i, m in enumerate(self.members):
            name = MODEL_FILE.format(i)
            m.booster.save_model(str(d / name), num_iteration=m.rounds or None)
            files.append(d / name)
            meta.append({"file": name, "rounds": m.rounds, "history_days": m.history_days})
        tails = []
        for i, (a, m) in enumerate(sorted(self.tails.items())):
            name = TAIL_FILE.format(i)
            m.booster.save_model(str(d / name), num_iteration=m.rounds or None)
            files.append(d / name)
            tails.append(
                {"file": name, "level": a, "rounds": m.rounds, "history_days": m.history_days}
            )
        doc: dict[str, Any] = {"names": self.names, "members": meta, "tails": tails}
        if self.tail_pipeline is not None:
            import joblib

            joblib.dump(self.tail_pipeline, d / TAIL_PIPELINE_FILE)
            files.append(d / TAIL_PIPELINE_FILE)
            doc["tail_pipeline"] = TAIL_PIPELINE_FILE
        (d / META_FILE).write_text(json.dumps(doc))
        return [*files, d / META_FILE]

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """Inverse of `save` (also reads a single-booster model saved before ensembles)."""
        import lightgbm as lgb

        d = Path(directory)
        meta = json.loads((d / META_FILE).read_text())
        entries = meta.get("members") or [{"file": "lightgbm.txt", "history_days": 0}]
        members = [
            GBMMember(
                booster=lgb.Booster(model_file=str(d / e["file"])),
                rounds=int(e.get("rounds", 0)),  # saved truncated to them (0: unknown)
                history_days=int(e.get("history_days", 0)),
            )
            for e in entries
        ]
        tails = {
            float(e["level"]): GBMMember(
                booster=lgb.Booster(model_file=str(d / e["file"])),
                rounds=int(e.get("rounds", 0)),
                history_days=int(e.get("history_days", 0)),
            )
            for e in meta.get("tails", [])
        }
        pipeline = None
        if meta.get("tail_pipeline"):
            import joblib

            from trainer.data.features import FeaturePipeline

            pipeline = joblib.load(d / meta["tail_pipeline"])  # a file this run wrote
            if not isinstance(pipeline, FeaturePipeline):
                raise TypeError(f"{d}: {meta['tail_pipeline']} holds {type(pipeline).__name__}")
        return cls(members=members, names=list(meta["names"]), tails=tails, tail_pipeline=pipeline)


def member_mask(
    w: Windows, end: int, days: int, horizon: int, max_rows: int
) -> tuple[np.ndarray, int]:
    """(mask of `w`, stride): the windows whose origins lie within `days` days before `end`
    (0: all), then every `stride`-th of their origins (the latest always kept) so the
    rows stay within `max_rows`."""
    return origin_mask(w.origin, end, days, horizon, max_rows)


def origin_mask(
    origin: np.ndarray, end: int, days: int, horizon: int, max_rows: int
) -> tuple[np.ndarray, int]:
    """`member_mask` of windows given by their origins alone (before any is gathered)."""
    recent = origin >= end - days if days else np.ones(len(origin), dtype=bool)
    origins = np.unique(origin[recent])
    stride = max(1, int(np.ceil(int(recent.sum()) * horizon / max_rows)))
    return recent & np.isin(origin, origins[::-1][::stride]), stride


def _shared_rows(
    prepared: Prepared,
    w: Windows,
    masks: list[np.ndarray],
    names: list[str],
    params: dict[str, Any],
) -> tuple[lgb.Dataset, list[np.ndarray]]:
    """One constructed training `Dataset` over the union of `masks`' windows, and each
    mask's row indices in it (a window's `horizon` rows, window-major)."""
    union = np.logical_or.reduce(masks)
    horizon = prepared.cfg.horizon
    position = np.cumsum(union) - 1  # each window's index among the union's windows
    indices = [
        (position[m][:, None] * horizon + np.arange(horizon)[None, :]).ravel().astype(np.int32)
        for m in masks
    ]
    full = _training_set(prepared, w.subset(union), names, params=params)
    return full.construct(), indices


def history_lengths(w: Windows, end: int, wanted: tuple[int, ...]) -> list[int]:
    """The distinct training-history lengths of `wanted` on windows `w` that end at `end`:
    a length that reaches back past the first origin is all history (0), and a length
    that repeats another's windows is dropped (short data: one member, not four copies)."""
    first = int(w.origin.min())
    out: list[int] = []
    for days in wanted:
        days = 0 if not days or end - days <= first else int(days)
        if days not in out:
            out.append(days)
    return out


def _dataset(prepared: Prepared, w: Windows, names: list[str], **kw: Any) -> lgb.Dataset:
    import lightgbm as lgb

    from trainer.models.lstm import _window_stats

    mean, std = _window_stats(prepared, w)
    return lgb.Dataset(
        rows(w, mean, std), label=_targets(w), feature_name=names, free_raw_data=True, **kw
    )


def _training_set(prepared: Prepared, w: Windows, names: list[str], **kw: Any) -> lgb.Dataset:
    """Training rows of windows `w`: each window's weight on its steps, the product a category."""
    weight = np.repeat(w.weight, prepared.cfg.horizon)
    return _dataset(prepared, w, names, weight=weight, categorical_feature=["product"], **kw)


def _booster_params(seed: int, num_threads: int, params: dict[str, Any] | None) -> dict[str, Any]:
    return {**PARAMS, "seed": seed, "num_threads": num_threads, **(params or {})}


def train_gbm(
    prepared: Prepared,
    *,
    seed: int = 0,
    max_rows: int = 600_000,
    rounds: int = 1000,
    early_stopping: int = 100,
    num_threads: int = 2,
    params: dict[str, Any] | None = None,
    tail_levels: tuple[float, ...] | None = None,
) -> GBMForecaster:
    """One member per training-history length (`cfg.gbm_history_days`), each trained on
    its training windows (thinned to `max_rows` rows) and stopped early on validation;
    and the interval's tail boosters (`tail_levels`, default `TAIL_LEVELS`)."""
    import lightgbm as lgb

    tail_levels = TAIL_LEVELS if tail_levels is None else tail_levels

    from trainer.models.fairness import validation_windows

    names = row_names(prepared.feature_names, prepared.known_names)
    val = validation_windows(prepared, prepared.cfg.val_origin_every)
    lengths = history_lengths(prepared.train, prepared.train_end, prepared.cfg.gbm_history_days)
    picks = [
        member_mask(prepared.train, prepared.train_end, days, prepared.cfg.horizon, max_rows)
        for days in lengths
    ]
    with timed(log, "stage lightgbm rows", stage="lightgbm_rows") as out:
        full, indices, tail_rows, tail_days = _member_and_tail_rows(
            prepared,
            prepared.train,
            prepared.train_end,
            [m for m, _ in picks],
            lengths,
            names,
            _booster_params(seed, num_threads, params),
        )
        dval = _dataset(prepared, val, names, reference=full)
        out.update(rows=int(full.num_data()), members=len(lengths))
    members = []
    for i, days in enumerate(lengths):
        stride = picks[i][1]
        with timed(log, "stage lightgbm", stage="lightgbm", history_days=days) as out:
            dtrain = full.subset(indices[i])
            booster = lgb.train(
                _booster_params(seed + i, num_threads, params),
                dtrain,
                num_boost_round=rounds,
                valid_sets=[dval],
                callbacks=[lgb.early_stopping(early_stopping, verbose=False)],
            )
            best = int(booster.best_iteration) or booster.current_iteration()
            out.update(rows=int(dtrain.num_data()), origin_stride=stride, best_iteration=best)
        members.append(GBMMember(booster=booster, rounds=best, history_days=days))
    tails = train_tails(
        full, tail_rows, tail_days, seed, num_threads, tail_levels, prepared.cfg.horizon
    )
    return GBMForecaster(members=members, names=names, tails=tails)


def _member_and_tail_rows(
    prepared: Prepared,
    w: Windows,
    end: int,
    masks: list[np.ndarray],
    lengths: list[int],
    names: list[str],
    params: dict[str, Any],
) -> tuple[lgb.Dataset, list[np.ndarray], np.ndarray, int]:
    """`_shared_rows` of the members' `masks` of windows `w` (which end at day `end`), and
    the rows the interval's tails train on: the real windows (`real_windows`) of the
    member `tail_member` picks among the members' history `lengths`, and that member's
    history in days."""
    pick = tail_member(lengths, all_days=end - int(w.origin.min()))
    full, indices = _shared_rows(prepared, w, [*masks, real_windows(w, masks[pick])], names, params)
    return full, indices[:-1], indices[-1], lengths[pick]


def tail_member(lengths: list[int], all_days: int) -> int:
    """The member whose training history is nearest `TAIL_HISTORY_DAYS`; the all-history
    member (length 0) counts as the `all_days` its windows span. (Counted as unbounded,
    a short history's all-history member of ~700 days lost to the 546-day one.)"""
    span = [d if d else all_days for d in lengths]
    return int(np.argmin([abs(d - TAIL_HISTORY_DAYS) for d in span]))


def real_windows(w: Windows, mask: np.ndarray) -> np.ndarray:
    """`mask` without the windows of synthetic (augmented) series, unless that leaves none.

    The tails learn the spread of real sales: a synthetic series takes a random point
    between neighbouring days, which leaves about 2/3 of a day's variance (independent
    days; its noise, 0.1 of the product's sd, adds 1/100), so its windows would teach the
    quantile boosters a narrower spread for exactly the sparse products
    (`trainer.data.augment`). The point ensemble keeps them."""
    real = mask & ~np.asarray(w.synthetic, dtype=bool)
    return real if real.any() else mask


def train_tails(
    full: lgb.Dataset,
    rows: np.ndarray,
    history_days: int,
    seed: int,
    num_threads: int,
    levels: tuple[float, ...] = TAIL_LEVELS,
    horizon: int = 1,
) -> dict[float, GBMMember]:
    """A quantile booster per level in `levels` on `rows` of the point ensemble's
    `Dataset` (no second feature build): the real windows of the member whose history
    (`history_days`) is nearest `TAIL_HISTORY_DAYS` (`tail_member`, `real_windows`),
    every k-th of them, `horizon` rows each, beyond `TAIL_MAX_ROWS` rows;
    `TAIL_ROUNDS` rounds with `TAIL_PARAMS`."""
    import lightgbm as lgb

    if not levels:
        return {}
    chosen = np.asarray(rows).reshape(-1, horizon)
    chosen = chosen[:: max(1, int(np.ceil(chosen.size / TAIL_MAX_ROWS)))].ravel()
    tails = {}
    for a in levels:
        with timed(log, "stage lightgbm tails", stage="lightgbm_tails", level=a) as out:
            dtrain = full.subset(chosen)
            params = {**_booster_params(seed, num_threads, TAIL_PARAMS), "alpha": float(a)}
            booster = lgb.train(params, dtrain, num_boost_round=TAIL_ROUNDS)
            out.update(rows=int(dtrain.num_data()), rounds=TAIL_ROUNDS, history_days=history_days)
        tails[float(a)] = GBMMember(booster=booster, rounds=TAIL_ROUNDS, history_days=history_days)
    return tails


def refit_windows(
    prepared: Prepared, history_days: list[int], max_rows: int
) -> tuple[Windows, list[tuple[np.ndarray, int]]]:
    """The refit's windows and each member's (mask, origin stride) over them.

    The same rows as masking `Prepared.refit_windows(through="test")` (the windows over
    every day) with `member_mask`, but only the windows some member trains on are
    gathered: each member's rows are thinned to `max_rows`, while all the windows of a
    large partition need not fit in memory (they grow with products x days)."""
    from trainer.data.windowing import gather_windows, origins_every, window_pairs

    cfg, a = prepared.cfg, prepared.arrays
    end = len(prepared.panel.calendar)
    origins = origins_every(cfg.lookback, end, cfg.train_stride, cfg.horizon)
    s_idx, o_idx = window_pairs(a, origins, cfg.lookback, cfg.horizon)
    picks = [origin_mask(o_idx, end, days, cfg.horizon, max_rows) for days in history_days]
    union = np.logical_or.reduce([mask for mask, _ in picks])
    every_day = gather_windows(
        a, s_idx[union], o_idx[union], cfg.lookback, cfg.horizon, prepared.panel.synthetic
    )
    return every_day, [(mask[union], stride) for mask, stride in picks]


def refit_gbm(
    prepared: Prepared,
    heldout: GBMForecaster,
    *,
    seed: int = 0,
    max_rows: int = 600_000,
    num_threads: int = 2,
    params: dict[str, Any] | None = None,
) -> GBMForecaster:
    """The same ensemble refitted on windows over every day (train + validation + test):
    each member on its last `history_days` days, with the boosting rounds validation
    chose for it (no early stopping: nothing is held out). Its figures are `heldout`'s;
    it is what gets served, `val_days + test_days` days fresher."""
    import lightgbm as lgb

    lengths = [m.history_days for m in heldout.members]
    every_day, picks = refit_windows(prepared, lengths, max_rows)
    full, indices, tail_rows, tail_days = _member_and_tail_rows(
        prepared,
        every_day,
        len(prepared.panel.calendar),
        [mask for mask, _ in picks],
        lengths,
        heldout.names,
        _booster_params(seed, num_threads, params),
    )
    members = []
    for i, m in enumerate(heldout.members):
        stride = picks[i][1]
        rounds = max(1, m.rounds or m.booster.current_iteration())
        with timed(log, "stage lightgbm refit", stage="lightgbm_refit") as out:
            dtrain = full.subset(indices[i])
            booster = lgb.train(
                _booster_params(seed + i, num_threads, params), dtrain, num_boost_round=rounds
            )
            out.update(
                rows=int(dtrain.num_data()),
                origin_stride=stride,
                rounds=rounds,
                history_days=m.history_days,
            )
        members.append(GBMMember(booster=booster, rounds=rounds, history_days=m.history_days))
    tails = heldout.tails
    if TAIL_REFIT and tails:  # refitted like the members: the same rows' history, rounds
        tails = train_tails(
            full,
            tail_rows,
            tail_days,
            seed,
            num_threads,
            tuple(sorted(tails)),
            prepared.cfg.horizon,
        )
    return GBMForecaster(members=members, names=heldout.names, tails=tails)
