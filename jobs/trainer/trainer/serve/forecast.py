"""Serving: which forecaster serves, and its next H days for every product in `predictions`.

The served forecaster has a *kind* (`KINDS`), recorded in `model_registry.kind` and in
`champion.json`:

- `lstm`: the trained network of a sealed run (its model, feature pipeline and bias
  correction under `model/`);
- `baseline:seasonal_naive`, `baseline:moving_average`: a baseline computed from the
  sales history with the settings (`params.json`'s train_config) of the run that made it
  champion. A baseline is the fallback champion when no trained model has beaten it.

`load_forecaster` is the one place that turns a kind and its run into a `Forecaster`;
`Forecaster.forecast(sales, promotions)` gives the next `horizon` days. A new kind (a
LightGBM, a blend) adds a constant to `KINDS`, a class with `kind`, `model_version`
and `forecast`, and an entry in `LOADERS`.

A partitioned champion (issue 26) is forecast partition by partition
(`forecast_partitions`): each partition's products' sales read, forecast by its member
(loaded then) and written, one at a time, so memory follows a partition, not the
catalogue; each task of the job takes its own partitions.

Idempotent: rows whose forecast and model version are already stored are left alone
(their `created_at` too), so running it twice on the same data changes nothing. "The
same forecast" allows float noise: TensorFlow on CPU (oneDNN) may differ in the last
float32 digits between processes.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecastguard.db.schema import predictions
from forecastguard.db.upsert import upsert_rows
from forecastguard.logs import get_logger, timed
from forecastguard.storage import ArtifactStore
from trainer.serve.artifacts import (
    PARAMS,
    ChampionPointer,
    ModelBundle,
    download_run,
    load_model_bundle,
    read_champion,
)

log = get_logger(__name__)

SAME_RTOL = 1e-5  # float32 noise between processes, far below a unit sold
SAME_ATOL = 1e-4


LSTM = "lstm"
LIGHTGBM = "lightgbm"  # the run's LightGBM (trainer.models.gbm), issue 16
BLEND = "blend"  # debiased LSTM and LightGBM of the run (the share chosen on validation)
BASELINE_PREFIX = "baseline:"
SEASONAL_NAIVE = "baseline:seasonal_naive"
MOVING_AVERAGE = "baseline:moving_average"
# Issue 26: one forecaster per partition of the catalogue, listed in the run's
# partitions.json (`PartitionedForecaster`).
PARTITIONED = "partitioned"
PARTITIONS_FILE = "partitions.json"
KINDS = (LSTM, LIGHTGBM, BLEND, SEASONAL_NAIVE, MOVING_AVERAGE, PARTITIONED)
TRAINED_KINDS = (LSTM, LIGHTGBM, BLEND)


def baseline_kind(name: str) -> str:
    """The kind of the baseline `name` ("moving_average" -> "baseline:moving_average")."""
    kind = f"{BASELINE_PREFIX}{name}"
    if kind not in KINDS:
        raise ValueError(f"{name!r} is not a servable baseline (kinds: {', '.join(KINDS)})")
    return kind


def is_baseline(kind: str) -> bool:
    """Whether `kind` is a baseline (computed from the sales history, no trained model)."""
    return kind.startswith(BASELINE_PREFIX)


def describe_kind(kind: str) -> str:
    """Words for a kind in the report, email and demo ("the moving average baseline")."""
    if is_baseline(kind):
        return f"the {kind.removeprefix(BASELINE_PREFIX).replace('_', ' ')} baseline"
    return {
        LSTM: "the trained LSTM",
        LIGHTGBM: "the trained LightGBM",
        BLEND: "the blend of the trained LSTM and LightGBM",
        PARTITIONED: "one model per partition of the catalogue",
    }.get(kind, f"the {kind} model")


class Forecaster(Protocol):
    """A servable forecaster: `forecast` gives (product_id, target_date, predicted_units)
    for the `horizon` days after the last sales day, for every product listed then."""

    kind: str
    model_version: str

    def forecast(
        self, sales: pd.DataFrame, promotions: pd.DataFrame | None = None
    ) -> pd.DataFrame: ...


@dataclass(frozen=True)
class LstmForecaster:
    """The trained network of a run, bias-corrected as it was evaluated."""

    bundle: ModelBundle
    kind: str = LSTM
    intervals: Any = None  # trainer.models.intervals.IntervalCalibration (None: no interval)

    @property
    def model_version(self) -> str:
        """The run's model version."""
        return self.bundle.model_version

    def forecast(self, sales: pd.DataFrame, promotions: pd.DataFrame | None = None) -> pd.DataFrame:
        """The network's next `horizon` days, bias-corrected (and their quantiles)."""
        from trainer.models.lstm import forecast_next

        b = self.bundle
        raw = forecast_next(b.model, b.pipeline, sales, b.cfg, b.params, promotions)
        return _with_intervals(b.correction.apply(raw, column="predicted_units"), self.intervals)


def _with_intervals(frame: pd.DataFrame, intervals: Any) -> pd.DataFrame:
    """`frame` with its quantile columns when the forecaster has a calibration."""
    return frame if intervals is None else intervals.apply(frame, column="predicted_units")


@dataclass(frozen=True)
class BaselineForecaster:
    """Seasonal naive or moving average from the sales history (`evaluate.baseline_forecasts`,
    the same function that scored it on the test window)."""

    kind: str
    model_version: str
    cfg: Any  # trainer.config.TrainConfig: horizon, moving_average_days, quality rules
    intervals: Any = None  # trainer.models.intervals.IntervalCalibration (None: no interval)

    def __post_init__(self) -> None:
        if not is_baseline(self.kind) or self.kind not in KINDS:
            raise ValueError(f"{self.kind!r} is not a baseline kind")

    def forecast(self, sales: pd.DataFrame, promotions: pd.DataFrame | None = None) -> pd.DataFrame:
        """The baseline's next `horizon` days for every product listed on the last day."""
        from trainer.data.features import build_panel
        from trainer.data.load import DataError
        from trainer.data.quality import check_quality
        from trainer.judge.evaluate import baseline_forecasts

        cfg = self.cfg
        clean = check_quality(sales, cfg).clean
        last = clean["date"].max()
        panel = build_panel(clean, end=last + pd.Timedelta(days=cfg.horizon))
        origin = len(panel.calendar) - cfg.horizon
        series = np.flatnonzero(panel.listed[:, origin - 1])
        if not series.size:
            raise DataError("no product is listed on the last sales day: nothing to forecast")
        name = self.kind.removeprefix(BASELINE_PREFIX)
        values = baseline_forecasts(
            panel.units,
            series,
            np.full(series.size, origin),
            cfg.horizon,
            cfg.moving_average_days,
        )[name]
        products = np.array([panel.product_ids[s] for s in series], dtype=object)
        dates = panel.calendar[origin:]
        frame = pd.DataFrame(
            {
                "product_id": np.repeat(products, cfg.horizon),
                "target_date": np.tile(dates.to_numpy(), series.size),
                "predicted_units": values.reshape(-1),
            }
        )
        return _with_intervals(frame, self.intervals)


def _run_train_config(store: ArtifactStore, run_id: str, workdir: Path) -> Any:
    from trainer.config import TrainConfig

    download_run(store, run_id, workdir, names=[PARAMS])
    params = json.loads((workdir / PARAMS).read_text())
    return TrainConfig.from_dict(params["train_config"])


def _run_intervals(store: ArtifactStore, run_id: str, workdir: Path, kind: str) -> Any:
    """Kind `kind`'s interval calibration of a run (None for runs from before intervals)."""
    from trainer.models.challenger import load_intervals
    from trainer.models.intervals import INTERVALS

    download_run(store, run_id, workdir, names=[f"model/{INTERVALS}"])
    return load_intervals(workdir / "model", kind)


def _load_lstm(store: ArtifactStore, pointer: ChampionPointer, workdir: Path) -> Forecaster:
    bundle = load_model_bundle(store, pointer.run_id, workdir)
    return LstmForecaster(bundle, intervals=_run_intervals(store, pointer.run_id, workdir, LSTM))


def _load_baseline(store: ArtifactStore, pointer: ChampionPointer, workdir: Path) -> Forecaster:
    cfg = _run_train_config(store, pointer.run_id, workdir)
    intervals = _run_intervals(store, pointer.run_id, workdir, pointer.kind)
    return BaselineForecaster(pointer.kind, pointer.model_version, cfg, intervals)


def _load_trained(store: ArtifactStore, pointer: ChampionPointer, workdir: Path) -> Forecaster:
    from trainer.models.challenger import load_trained

    return load_trained(store, pointer.run_id, pointer.kind, workdir)


@dataclass(frozen=True)
class PartitionedForecaster:
    """One forecaster per partition (issue 26): a product is forecast by its partition's.

    `products` maps each product trained on to its partition; a product first seen later
    is assigned by the saved `partitioning` (its group's hash range). A product whose
    group has no partition gets no forecast (logged), as no model was trained for it.

    Members are loaded when a partition's products are first forecast, not all at once,
    and one is kept at a time (`member`): forecasting partition by partition
    (`forecast_partitions`) holds one partition's model and sales, whatever the
    catalogue. A trained member that cannot be loaded is replaced, for its partition
    only, by the best baseline of its run (logged as an error), as `run_forecast` does
    for a whole champion.
    """

    model_version: str
    partitioning: Any  # trainer.run.partitions.Partitioning
    entries: dict[str, ChampionPointer]  # partition name -> what serves it
    products: dict[str, str]  # product id -> partition name
    load_member: Callable[[str], Forecaster]  # partition name -> its loaded forecaster
    kind: str = PARTITIONED
    _cache: dict[tuple[str, str], Forecaster] = field(default_factory=dict, repr=False)

    def member(self, name: str) -> Forecaster:
        """Partition `name`'s forecaster (loaded now unless it is the one kept)."""
        entry = self.entries[name]
        key = (entry.run_id, entry.kind)  # a model kept by several partitions loads once
        if key not in self._cache:
            self._cache.clear()
            self._cache[key] = self.load_member(name)
        return self._cache[key]

    def assignment(self, product_ids: list[str]) -> dict[str, str]:
        """Each product's partition (those of unknown groups left out, logged)."""
        from trainer.run.partitions import PartitionError

        out = {p: self.products[p] for p in product_ids if p in self.products}
        for pid in (p for p in product_ids if p not in self.products):
            try:
                out.update(self.partitioning.assign([pid]))
            except PartitionError as exc:
                log.warning("product without a partition: no forecast", extra={"error": str(exc)})
        return out

    def groups(self, product_ids: list[str]) -> dict[str, list[str]]:
        """Partition name -> its products among `product_ids` (sorted; partitions in
        order, those without products left out)."""
        where = self.assignment(sorted(str(p) for p in product_ids))
        out: dict[str, list[str]] = {name: [] for name in sorted(self.entries)}
        for pid, name in where.items():
            out.setdefault(name, []).append(pid)
        return {name: ids for name, ids in out.items() if ids}

    def forecast(self, sales: pd.DataFrame, promotions: pd.DataFrame | None = None) -> pd.DataFrame:
        """Each partition's forecaster on its products' sales, the frames concatenated."""
        frames = []
        for name, mine in self.groups(list(sales["product_id"].astype(str).unique())).items():
            part = sales[sales["product_id"].isin(mine)]
            promos = None if promotions is None else promotions[promotions["product_id"].isin(mine)]
            frames.append(self.member(name).forecast(part, promos))
        if not frames:
            raise ValueError("no product of the sales belongs to a partition of this champion")
        return pd.concat(frames, ignore_index=True)


def read_partitions(store: ArtifactStore, run_id: str, workdir: Path) -> dict[str, Any]:
    """A partitioned run's partitions.json (hash checked)."""
    download_run(store, run_id, workdir, names=[PARTITIONS_FILE])
    return json.loads((workdir / PARTITIONS_FILE).read_text())


def _load_partitioned(store: ArtifactStore, pointer: ChampionPointer, workdir: Path) -> Forecaster:
    """The partitions and what serves each, read and checked now; the members' models
    are loaded when their partition is forecast (`PartitionedForecaster.member`)."""
    from trainer.run.partitions import Partitioning

    doc = read_partitions(store, pointer.run_id, workdir)
    entries: dict[str, ChampionPointer] = {}
    for name, entry in doc["entries"].items():
        member = ChampionPointer.from_entry(entry)
        if member.kind == PARTITIONED:
            raise ValueError(f"partition {name} names another partitioned run: not servable")
        if member.kind not in LOADERS:
            raise ValueError(f"partition {name} has unknown kind {member.kind!r}")
        entries[name] = member

    def load_member(name: str) -> Forecaster:
        member = entries[name]
        where = workdir / f"{name}-{member.kind}"
        return _load_or_baseline(
            store,
            member,
            where,
            where,
            "a partition's model could not be loaded: its run's baseline serves it",
            partition=name,
        )

    products = {p: name for name, ids in doc["products"].items() for p in ids}
    return PartitionedForecaster(
        pointer.model_version,
        Partitioning.from_dict(doc["partitioning"]),
        entries,
        products,
        load_member,
    )


LOADERS: dict[str, Callable[[ArtifactStore, ChampionPointer, Path], Forecaster]] = {
    LSTM: _load_lstm,
    LIGHTGBM: _load_trained,
    BLEND: _load_trained,
    SEASONAL_NAIVE: _load_baseline,
    MOVING_AVERAGE: _load_baseline,
    PARTITIONED: _load_partitioned,
}


def load_forecaster(
    store: ArtifactStore, pointer: ChampionPointer, workdir: str | Path
) -> Forecaster:
    """The forecaster `pointer` names, loaded from its sealed run (hashes checked)."""
    loader = LOADERS.get(pointer.kind)
    if loader is None:
        raise ValueError(
            f"champion {pointer.model_version} has unknown kind {pointer.kind!r} "
            f"(known: {', '.join(LOADERS)})"
        )
    Path(workdir).mkdir(parents=True, exist_ok=True)
    return loader(store, pointer, Path(workdir))


class NoChampion(RuntimeError):
    """Forecast mode found no champion to forecast with."""


@dataclass(frozen=True)
class ForecastResult:
    """What forecast mode did."""

    model_version: str
    products: int
    days: int
    first_date: str
    last_date: str
    written: int
    unchanged: int
    kind: str = LSTM
    # Forecast partition by partition (`forecast_partitions`): each partition's figures
    # (or its error), and the partitions that failed.
    partitions: dict[str, Any] | None = None
    failed: list[str] | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable form (without the partition fields of a whole forecast)."""
        return {
            k: v
            for k, v in self.__dict__.items()
            if v is not None or k not in ("partitions", "failed")
        }


INTERVAL_COLUMNS = ("p10", "p50", "p90")  # stored as predictions.predicted_p10, ...


def _same_band(stored: tuple[Any, ...], new: np.ndarray) -> bool:
    old = np.array([np.nan if v is None else float(v) for v in stored])
    return bool(np.allclose(old, new, rtol=SAME_RTOL, atol=SAME_ATOL, equal_nan=True))


def write_forecasts(
    engine: sa.Engine,
    forecasts: pd.DataFrame,
    model_version: str,
    *,
    now: datetime | None = None,
) -> tuple[int, int]:
    """Upsert (product_id, target_date, predicted_units) rows; returns (written, unchanged).

    The frame's interval columns `p10`, `p50`, `p90` (`trainer.models.intervals`), when present,
    go to `predicted_p10/_p50/_p90` (NULL without them). A row already holding the same
    values (within `SAME_RTOL` relative or `SAME_ATOL` units) from the same model
    version is not rewritten.
    """
    missing = {"product_id", "target_date", "predicted_units"} - set(forecasts.columns)
    if missing:
        raise ValueError(f"forecast frame lacks column(s) {sorted(missing)}")
    values = forecasts["predicted_units"].to_numpy(float)
    if not np.isfinite(values).all():
        bad = forecasts.loc[~np.isfinite(values), "product_id"].unique()[:5]
        raise ValueError(f"non-finite forecasts for product(s) {list(bad)}: nothing written")
    bands = np.column_stack(
        [
            forecasts[q].to_numpy(float) if q in forecasts.columns else np.full(len(values), np.nan)
            for q in INTERVAL_COLUMNS
        ]
    )
    if np.isinf(bands).any():
        raise ValueError("infinite forecast quantiles: nothing written")
    created = (now or datetime.now(UTC)).replace(tzinfo=None)
    frame = pd.DataFrame(
        {
            "product_id": forecasts["product_id"].astype(str),
            "target_date": pd.to_datetime(forecasts["target_date"]).dt.date,
            "predicted_units": values,
        }
    )
    with engine.begin() as conn:
        stored = conn.execute(
            sa.select(
                predictions.c.product_id,
                predictions.c.target_date,
                predictions.c.predicted_units,
                predictions.c.model_version,
                predictions.c.predicted_p10,
                predictions.c.predicted_p50,
                predictions.c.predicted_p90,
            ).where(
                predictions.c.target_date.between(
                    frame["target_date"].min(), frame["target_date"].max()
                ),
                predictions.c.product_id.in_(sorted(frame["product_id"].unique())),
            )
        ).all()
        old = {(p, d): (v, m, (q10, q50, q90)) for p, d, v, m, q10, q50, q90 in stored}
        rows = []
        for p, d, v, q in zip(
            frame["product_id"], frame["target_date"], values, bands, strict=True
        ):
            prev = old.get((p, d))
            same = prev and np.isclose(prev[0], v, rtol=SAME_RTOL, atol=SAME_ATOL)
            if same and prev[1] == model_version and _same_band(prev[2], q):
                continue
            rows.append(
                {
                    "product_id": p,
                    "target_date": d,
                    "predicted_units": float(v),
                    "model_version": model_version,
                    "created_at": created,
                    **{
                        f"predicted_{c}": None if np.isnan(x) else float(x)
                        for c, x in zip(INTERVAL_COLUMNS, q, strict=True)
                    },
                }
            )
        upsert_rows(conn, predictions, rows)
    return len(rows), len(frame) - len(rows)


def forecast_with(
    engine: sa.Engine, forecaster: Forecaster | ModelBundle, *, bigquery: Any = None
) -> ForecastResult:
    """Forecast with a loaded forecaster (a `ModelBundle` serves as an LSTM) and write
    the predictions under its model version; with `bigquery` (a
    `forecastguard.bigquery.BigQueryTarget`, from BIGQUERY_URL) to its `predictions`
    table too (issue 24)."""
    from trainer.data.load import load_promotions, load_sales

    if isinstance(forecaster, ModelBundle):
        forecaster = LstmForecaster(forecaster)
    version = forecaster.model_version
    with timed(
        log, "stage forecast", stage="forecast", model_version=version, kind=forecaster.kind
    ) as out:
        sales = load_sales(engine)
        promos = load_promotions(engine)
        frame = forecaster.forecast(sales, promos)
        written, unchanged = write_forecasts(engine, frame, version)
        if bigquery is not None:
            from forecastguard.bigquery import upsert_predictions

            out["bigquery_merged"] = upsert_predictions(bigquery, frame, version)
        dates = pd.to_datetime(frame["target_date"])
        result = ForecastResult(
            model_version=version,
            products=int(frame["product_id"].nunique()),
            days=int(dates.nunique()),
            first_date=str(dates.min().date()),
            last_date=str(dates.max().date()),
            written=written,
            unchanged=unchanged,
            kind=forecaster.kind,
        )
        out.update(result.to_dict())
    return result


def _promotions_of(engine: sa.Engine, products: list[str]) -> pd.DataFrame:
    """The promoted days (future ones too) of `products` only, read in chunks as
    `load_sales(products=...)` reads the sales."""
    from forecastguard.db.schema import promotions

    query = sa.select(promotions.c.product_id, promotions.c.promo_date.label("date"))
    rows: list[Any] = []
    with engine.connect() as conn:
        for i in range(0, len(products), 1000):
            chunk = products[i : i + 1000]
            rows += conn.execute(query.where(promotions.c.product_id.in_(chunk))).all()
    frame = pd.DataFrame(rows, columns=["product_id", "date"])
    frame["product_id"] = frame["product_id"].astype(str)
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


def forecast_partitions(
    engine: sa.Engine,
    forecaster: Forecaster,
    groups: dict[str, list[str]],
    *,
    bigquery: Any = None,
) -> ForecastResult:
    """Forecast `groups` (partition name -> its products) one after the other: each
    reads only its products' sales and promotions, is forecast (a `PartitionedForecaster`
    loads that partition's model only) and written, then released, so memory follows
    the largest group, not the catalogue (issue 26). A group that fails is logged and
    named in the result; the others are still forecast. Written under the forecaster's
    model version, like `forecast_with`."""
    from trainer.data.load import load_sales

    version = forecaster.model_version
    parts: dict[str, Any] = {}
    dates: list[pd.Timestamp] = []
    for name, ids in groups.items():
        try:
            with timed(
                log,
                "stage forecast partition",
                stage="forecast",
                partition=name,
                products=len(ids),
                model_version=version,
            ) as out:
                frame = forecaster.forecast(
                    load_sales(engine, products=ids), _promotions_of(engine, ids)
                )
                written, unchanged = write_forecasts(engine, frame, version)
                if bigquery is not None:
                    from forecastguard.bigquery import upsert_predictions

                    out["bigquery_merged"] = upsert_predictions(bigquery, frame, version)
                days = pd.to_datetime(frame["target_date"])
                dates += [days.min(), days.max()]
                parts[name] = {
                    "products": int(frame["product_id"].nunique()),
                    "days": int(days.nunique()),
                    "written": written,
                    "unchanged": unchanged,
                }
                out.update(parts[name])
                del frame
        except Exception as exc:
            error = f"{type(exc).__name__}: {str(exc)[:500]}"
            log.error(
                "a partition's forecast failed: the others go on",
                extra={"partition": name, "model_version": version, "error": error},
                exc_info=True,
            )
            parts[name] = {"products": 0, "error": error}
    done = [p for p in parts.values() if "error" not in p]
    return ForecastResult(
        model_version=version,
        products=sum(p["products"] for p in done),
        days=max((p["days"] for p in done), default=0),
        first_date=str(min(dates).date()) if dates else "",
        last_date=str(max(dates).date()) if dates else "",
        written=sum(p["written"] for p in done),
        unchanged=sum(p["unchanged"] for p in done),
        kind=forecaster.kind,
        partitions=parts,
        failed=[n for n, p in parts.items() if "error" in p],
    )


def _load_or_baseline(
    store: ArtifactStore,
    pointer: ChampionPointer,
    where: Path,
    fallback_dir: Path,
    message: str,
    **labels: str,
) -> Forecaster:
    """`pointer`'s forecaster loaded into `where`; a trained model that cannot be loaded
    is logged (`message`, `labels`) and its run's best baseline serves instead (a
    baseline that cannot be loaded raises)."""
    try:
        return load_forecaster(store, pointer, where)
    except Exception as exc:
        if is_baseline(pointer.kind):
            raise
        fallback = _fallback_baseline(store, pointer, fallback_dir)
        log.error(
            message,
            extra={
                **labels,
                "model_version": pointer.model_version,
                "error": f"{type(exc).__name__}: {exc}",
                "serving": fallback.kind,
            },
        )
        return fallback


def _fallback_baseline(store: ArtifactStore, pointer: ChampionPointer, workdir: Path) -> Forecaster:
    """The best baseline of the champion's run (by its metrics.json), with its settings."""
    from trainer.config import TrainConfig
    from trainer.serve.artifacts import run_key

    name = "seasonal_naive"
    try:
        base = store.read_json(run_key(pointer.run_id, "metrics.json"))["baselines"]
        ranked = sorted(
            (base[n]["rmsse"], n) for n in ("seasonal_naive", "moving_average") if n in base
        )
        name = ranked[0][1]
    except Exception as exc:
        log.warning("champion's metrics unreadable; seasonal naive", extra={"error": str(exc)})
    try:
        cfg = _run_train_config(store, pointer.run_id, workdir / "fallback")
    except Exception as exc:
        log.warning("champion's settings unreadable; defaults", extra={"error": str(exc)})
        cfg = TrainConfig()
    kind = baseline_kind(name)
    try:
        intervals = _run_intervals(store, pointer.run_id, workdir / "fallback", kind)
    except Exception as exc:
        log.warning("champion's intervals unreadable; none", extra={"error": str(exc)})
        intervals = None
    return BaselineForecaster(kind, kind, cfg, intervals)


def run_forecast(
    engine: sa.Engine,
    store: ArtifactStore,
    *,
    workdir: str | Path | None = None,
    bigquery: Any = None,
    task_index: int = 0,
    task_count: int = 1,
) -> ForecastResult:
    """`--mode forecast`: forecast with the champion named by champion.json, of any kind.

    A trained champion that cannot be loaded is replaced, for this forecast, by the best
    baseline of its run (logged as an error; the registry is not changed: the next
    training run registers a fallback champion).

    A partitioned champion is forecast partition by partition (`forecast_partitions`),
    task `task_index` of `task_count` taking partitions i mod `task_count`, as training
    does; a partition that fails is logged, the others are forecast, then the task
    fails (`ForecastFailed`: Cloud Run retries it; rows already written stay unchanged).
    Any other champion is forecast whole by task 0 (the other tasks have nothing to do).
    """
    pointer = read_champion(store)
    if pointer is None:
        raise NoChampion(f"no champion at {store.key_uri('champion.json')}: run --mode train first")
    with tempfile.TemporaryDirectory(prefix="fg-champion-") as tmp:
        where = Path(workdir or tmp)
        forecaster = _load_or_baseline(
            store,
            pointer,
            where / "champion",
            where,
            "champion could not be loaded: a baseline serves",
        )
        if isinstance(forecaster, PartitionedForecaster):
            return _forecast_own_partitions(engine, forecaster, task_index, task_count, bigquery)
        if task_index > 0:
            log.info(
                "forecast mode: task 0 forecasts this champion, this task has nothing to do",
                extra={"task_index": task_index, "kind": forecaster.kind},
            )
            return ForecastResult(forecaster.model_version, 0, 0, "", "", 0, 0, forecaster.kind)
        return forecast_with(engine, forecaster, bigquery=bigquery)


class ForecastFailed(RuntimeError):
    """Forecast mode: some partitions could not be forecast (the others were written)."""


def _forecast_own_partitions(
    engine: sa.Engine,
    forecaster: PartitionedForecaster,
    task_index: int,
    task_count: int,
    bigquery: Any,
) -> ForecastResult:
    """The products of this task's partitions of the champion (every product with sales
    has one; new products by their hash), forecast partition by partition."""
    from trainer.data.load import load_product_ids
    from trainer.run.partitions import partitions_of_task

    mine = set(partitions_of_task(sorted(forecaster.entries), task_index, task_count))
    groups = {n: ids for n, ids in forecaster.groups(load_product_ids(engine)).items() if n in mine}
    result = forecast_partitions(engine, forecaster, groups, bigquery=bigquery)
    if result.failed:
        raise ForecastFailed(
            f"partition(s) {', '.join(result.failed)} not forecast "
            f"({result.products} products of {len(groups)} partition(s) were): "
            + "; ".join(f"{n}: {result.partitions[n]['error']}" for n in result.failed[:3])
        )
    return result
