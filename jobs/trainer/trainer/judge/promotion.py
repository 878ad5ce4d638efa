"""Champion/challenger promotion, as TFX's "blessing", on one metric: mean per-product RMSSE.

The gate's metric is the mean over products of each product's RMSSE (scale-free: every
product weighs the same, whatever its volume), the figure the evaluation headlines,
the report's tables, `metrics.json` and `model_registry.rmsse` show. Pooled RMSE is
still reported, never judged.

Champion and challenger are scored on the same latest test window. The challenger is
promoted when its mean RMSSE is lower than the champion's by more than
`Tolerances.rmsse` (relative) and its disparity (p90/median of per-product RMSSE) is not
worse than the champion's by more than `Tolerances.disparity` (relative). Data-quality
failures block any promotion.

No usable champion (none yet, or it cannot be loaded or scored): the challenger is
judged by the same rule against the best baseline of the evaluation (seasonal naive or
moving average, lower mean RMSSE on the same window). When it does not pass, that
baseline becomes the champion (`Decision.fallback`, kind `baseline:<name>`) so that
something always serves; a later trained model has to beat it like any champion.

A promotion writes, in one transaction, the `model_registry` row (the old champion is
retired) and the new champion's per-product holdout errors into `model_residuals` (the
health check's reference distribution); `champion.json` is written afterwards, and only
for a run whose manifest exists (`artifacts.write_champion`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from forecastguard.db.schema import model_registry, model_residuals
from forecastguard.db.upsert import upsert_rows
from forecastguard.logs import get_logger
from forecastguard.storage import ArtifactStore
from trainer.serve.artifacts import ChampionPointer, write_champion
from trainer.serve.forecast import BLEND, LIGHTGBM, LSTM, describe_kind, is_baseline

log = get_logger(__name__)

METRIC = "mean_rmsse"  # the promotion metric: mean of the products' RMSSE


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Scores:
    """A forecaster's test-window scores: `rmsse` (mean per-product RMSSE) is judged,
    `disparity` guards fairness, `rmse` (pooled) is only reported."""

    rmsse: float
    disparity: float | None = None
    rmse: float | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.rmsse):
            raise ValueError(f"mean RMSSE must be finite, got {self.rmsse}")

    @classmethod
    def from_metrics(cls, metrics: dict[str, Any]) -> Scores:
        """From an evaluation's metrics (`model.rmsse`, `fairness.disparity_p90_over_median`)."""
        return cls(
            float(metrics["model"]["rmsse"]),
            _finite_or_none(metrics.get("fairness", {}).get("disparity_p90_over_median")),
            _finite_or_none(metrics["model"].get("rmse")),
        )


COVERAGE_BOUNDS = (0.75, 0.85)  # the challenger's test coverage of its 80 % interval
# Standard errors the test coverage must lie beyond a bound to block: a one-sided 5 %
# test on each side (an interval whose true coverage sits exactly on a bound is blocked
# about 1 time in 20; one inside the band less often).
COVERAGE_Z = 1.645


@dataclass(frozen=True)
class Tolerances:
    """How much lower the mean RMSSE must be, how much worse the disparity may be
    (relative), where the test coverage of the 80 % interval must lie, and how many of
    its standard errors (`coverage_z`) it must lie beyond a bound to block."""

    rmsse: float = 0.0
    disparity: float = 0.10
    coverage: tuple[float, float] = COVERAGE_BOUNDS
    coverage_z: float = COVERAGE_Z

    def __post_init__(self) -> None:
        if not 0.0 <= self.rmsse < 1.0 or self.disparity < 0.0:
            raise ValueError(
                f"tolerances must be 0 <= rmsse < 1 and disparity >= 0, got {self.rmsse}, "
                f"{self.disparity}"
            )
        lo, hi = self.coverage
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"coverage bounds must be 0 <= low <= high <= 1, got {self.coverage}")
        if not (math.isfinite(self.coverage_z) and self.coverage_z >= 0.0):
            raise ValueError(f"coverage_z must be finite and >= 0, got {self.coverage_z}")


@dataclass(frozen=True)
class Decision:
    """The promotion decision and why, in words that go into the report and the registry.

    `promote`: the challenger becomes champion. `against`: what it was judged against
    ("champion", or a baseline kind for a first model). `fallback`: the baseline kind
    that becomes champion because there is no usable champion and the challenger was
    not promoted. `interval_blocked`: the interval guard is among the reasons it was not
    (the report says so without reading the words).
    """

    promote: bool
    reason: str
    against: str  # "champion" | "baseline:seasonal_naive" | "baseline:moving_average"
    fallback: str | None = None
    interval_blocked: bool = False

    @property
    def serves(self) -> str:
        """Who serves after this run: "challenger", "champion" or the fallback's kind."""
        if self.promote:
            return "challenger"
        return self.fallback or "champion"


def _judge(challenger: Scores, reference: Scores, name: str, tol: Tolerances) -> tuple[bool, str]:
    """The one rule: lower mean RMSSE by the margin, disparity within its tolerance."""
    bar = reference.rmsse * (1.0 - tol.rmsse)
    if not challenger.rmsse < bar:
        margin = f" by more than {tol.rmsse:.1%}" if tol.rmsse else ""
        return False, (
            f"mean RMSSE {challenger.rmsse:.4g} is not lower than {name}'s "
            f"{reference.rmsse:.4g}{margin}"
        )
    if challenger.disparity is not None and reference.disparity is not None:
        limit = reference.disparity * (1.0 + tol.disparity)
        if challenger.disparity > limit:
            return False, (
                f"mean RMSSE {challenger.rmsse:.4g} < {name}'s {reference.rmsse:.4g}, but "
                f"disparity {challenger.disparity:.4g} is worse than {name}'s "
                f"{reference.disparity:.4g} beyond the {tol.disparity:.0%} tolerance"
            )
        return True, (
            f"mean RMSSE {challenger.rmsse:.4g} < {name}'s {reference.rmsse:.4g}; "
            f"disparity {challenger.disparity:.4g} vs {reference.disparity:.4g}"
        )
    return True, f"mean RMSSE {challenger.rmsse:.4g} < {name}'s {reference.rmsse:.4g}"


def coverage_failure(
    coverage: float | None,
    bounds: tuple[float, float] = COVERAGE_BOUNDS,
    raw: float | None = None,
    se: float | None = None,
    z: float = COVERAGE_Z,
) -> str | None:
    """Why a test coverage of the 80 % interval blocks a promotion (None: it does not;
    a challenger without an interval is not judged on one). `coverage` is the one judged
    (`coverage_summary`'s `coverage_adjusted`), `raw` the share of days inside, named too.

    With its standard error `se` (`coverage_summary`'s `coverage_se`), the interval is
    blocked only when its true coverage is credibly outside `bounds`: the whole of
    `coverage ± z·se` lies below the lower bound (too narrow) or above the upper one
    (too wide), a one-sided test a side. Without one (None, or not finite) the point
    figure is judged against the bounds as it stands."""
    if coverage is None or not math.isfinite(coverage):
        return None
    if not (math.isfinite(z) and z >= 0.0):
        raise ValueError(f"z must be finite and >= 0, got {z}")
    if se is not None and (not math.isfinite(se) or se < 0.0):
        se = None
    margin = z * se if se is not None else 0.0
    lo, hi = bounds
    if coverage + margin >= lo and coverage - margin <= hi:
        return None
    side = "too narrow" if coverage + margin < lo else "too wide"
    inside = (
        f"{raw:.1%} of the test days ({coverage:.1%} allowing for the days whose lower "
        "bound 0 cannot be missed)"
        if raw is not None and math.isfinite(raw) and raw != coverage
        else f"{coverage:.1%} of the test days"
    )
    if se is None:
        return f"its 80 % interval covered {inside}, outside [{lo:.0%}, {hi:.0%}] ({side})"
    return (
        f"its 80 % interval covered {inside}, standard error {se:.1%}: "
        f"{coverage:.1%} ± {z:g} SE = [{coverage - margin:.1%}, {coverage + margin:.1%}] "
        f"lies outside [{lo:.0%}, {hi:.0%}] ({side})"
    )


def band_distance(coverage: float, bounds: tuple[float, float] = COVERAGE_BOUNDS) -> float:
    """How far a coverage lies outside `bounds` (0 inside them)."""
    lo, hi = bounds
    return max(lo - coverage, coverage - hi, 0.0)


def incumbent_no_better(
    coverage: float | None,
    incumbent: float | None,
    bounds: tuple[float, float] = COVERAGE_BOUNDS,
) -> bool:
    """Whether the interval that serves if the challenger is not promoted (`incumbent`,
    its coverage on the same test days, judged the same way) lies at least as far outside
    `bounds` as the challenger's: blocking the challenger would then serve no better
    interval, only a worse point forecast. False when either figure is unknown."""
    if coverage is None or incumbent is None:
        return False
    if not (math.isfinite(coverage) and math.isfinite(incumbent)):
        return False
    return band_distance(incumbent, bounds) >= band_distance(coverage, bounds)


def decide(
    challenger: Scores,
    champion: Scores | None,
    baseline: Scores,
    tol: Tolerances = Tolerances(),
    champion_version: str | None = None,
    *,
    baseline_kind: str = "baseline:seasonal_naive",
    data_quality_failures: Sequence[str] = (),
    interval_coverage: float | None = None,
    interval_coverage_raw: float | None = None,
    interval_coverage_se: float | None = None,
    incumbent_coverage: float | None = None,
) -> Decision:
    """Judge the challenger against the champion or, with no usable champion, the best baseline.

    `baseline` is the best baseline's scores on the same window (kind `baseline_kind`).
    A non-empty `data_quality_failures` (names of failed data-quality checks) blocks the
    promotion, and so does a test coverage of the challenger's 80 % interval
    (`interval_coverage`, the days at a lower bound of 0 allowed for; the share of days
    inside, `interval_coverage_raw`, is named in the reason) credibly outside
    `tol.coverage` (`coverage_failure`: beyond `tol.coverage_z` of its standard error
    `interval_coverage_se`; without one, the figure itself outside the bounds) — unless
    the interval that would serve instead is no better: `incumbent_coverage` (the
    baseline's without a champion, a baseline champion's; None for a model champion,
    whose interval is not scored on the test days) at least as far outside the bounds
    (`incumbent_no_better`); the reason then says so and the interval does not block.
    With no champion, a challenger that is not promoted leaves the baseline as the
    fallback champion.
    """
    failures = [str(f) for f in data_quality_failures if str(f).strip()]
    interval = coverage_failure(
        interval_coverage,
        tol.coverage,
        interval_coverage_raw,
        interval_coverage_se,
        tol.coverage_z,
    )
    # What the challenger is judged against, and what serves if it is not promoted.
    name = (
        describe_kind(baseline_kind)
        if champion is None
        else (f"champion {champion_version}" if champion_version else "champion")
    )
    if interval and incumbent_no_better(interval_coverage, incumbent_coverage, tol.coverage):
        note = (
            f"{interval}, as is {name}'s ({incumbent_coverage:.1%}), which would "
            "serve instead: the interval does not block"
        )
        interval = None
    else:
        note = None
    blocked = interval is not None

    def judged(reference: Scores) -> tuple[bool, str]:
        ok, why = _judge(challenger, reference, name, tol)
        if interval:  # "but" after a passing judgement, "and" after a failing one
            return False, f"{why}, {'but' if ok else 'and'} {interval}"
        return ok, f"{why}; {note}" if note else why

    if champion is None:
        serves = f"{name} ({baseline_kind}) becomes the champion and serves"
        if failures:
            return Decision(
                False,
                f"first model: data-quality checks failed ({', '.join(failures)}); {serves}",
                baseline_kind,
                fallback=baseline_kind,
            )
        ok, why = judged(baseline)
        if ok:
            return Decision(True, f"first model: {why}", baseline_kind)
        return Decision(
            False, f"first model: {why}; {serves}", baseline_kind, baseline_kind, blocked
        )
    if failures:
        return Decision(
            False,
            f"data-quality checks failed ({', '.join(failures)}); {name} keeps serving",
            "champion",
        )
    ok, why = judged(champion)
    return Decision(
        ok, why if ok else f"{why}; {name} keeps serving", "champion", interval_blocked=blocked
    )


@dataclass(frozen=True)
class Fallback:
    """A baseline that becomes champion: its kind (= its model version), its scores
    (the metrics.json `model`/`fairness` shape) and its holdout frame for the residuals."""

    kind: str
    metrics: dict[str, Any]
    holdout: pd.DataFrame

    @property
    def model_version(self) -> str:
        """A baseline is registered under its kind ("baseline:moving_average")."""
        return self.kind


def residual_rows(model_version: str, holdout: pd.DataFrame) -> list[dict[str, Any]]:
    """`model_residuals` rows from a frame of (product_id, target_date, actual, predicted)."""
    missing = {"product_id", "target_date", "actual", "predicted"} - set(holdout.columns)
    if missing:
        raise ValueError(f"holdout frame lacks column(s) {sorted(missing)}")
    frame = holdout.dropna(subset=["actual", "predicted"])
    errors = frame["actual"].astype(float) - frame["predicted"].astype(float)
    dates = pd.to_datetime(frame["target_date"]).dt.date
    return [
        {"model_version": model_version, "product_id": str(p), "target_date": d, "error": float(e)}
        for p, d, e in zip(frame["product_id"], dates, errors, strict=True)
    ]


def _registry_row(
    *,
    model_version: str,
    kind: str,
    run_id: str,
    run_uri: str,
    status: str,
    metrics: dict[str, Any],
    reason: str,
    request_id: str | None,
    now: datetime,
) -> dict[str, Any]:
    model = metrics.get("model", {})
    return {
        "model_version": model_version,
        "run_id": run_id,
        "status": status,
        "kind": kind,
        "artifact_uri": run_uri,
        "rmse": _finite_or_none(model.get("rmse")),
        "rmsse": _finite_or_none(model.get("rmsse")),
        "disparity": _finite_or_none(metrics.get("fairness", {}).get("disparity_p90_over_median")),
        "metrics_json": json.dumps(metrics, sort_keys=True, default=str),
        "decision_reason": reason,
        "request_id": request_id,
        "created_at": now,
        "promoted_at": now if status == "champion" else None,
    }


def _delete_version(conn: sa.Connection, model_version: str) -> None:
    """Delete the `model_residuals` rows stored under `model_version`, in the caller's
    transaction (`_crown`'s, or `_delete_residuals`' own)."""
    conn.execute(sa.delete(model_residuals).where(model_residuals.c.model_version == model_version))


def _crown(conn: sa.Connection, model_version: str, residuals: list[dict[str, Any]]) -> int:
    """Retire the current champion and store `model_version`'s holdout errors
    (`residual_rows`), replacing any stored under that version."""
    conn.execute(
        sa.update(model_registry)
        .where(model_registry.c.status == "champion")
        .where(model_registry.c.model_version != model_version)
        .values(status="retired")
    )
    _delete_version(conn, model_version)
    upsert_rows(conn, model_residuals, residuals)
    return len(residuals)


def record(
    engine: sa.Engine,
    *,
    model_version: str,
    run_id: str,
    run_uri: str,
    metrics: dict[str, Any],
    decision: Decision,
    holdout: pd.DataFrame,
    request_id: str | None = None,
    now: datetime | None = None,
    kind: str = LSTM,
    fallback: Fallback | None = None,
) -> None:
    """Write the decision to the database in one transaction.

    Promoted: the previous champion becomes `retired`, this model's row is `champion`
    and its holdout errors replace any earlier ones in `model_residuals`. Not promoted:
    the row is `rejected`; with a `fallback` (no usable champion) the baseline is
    registered as champion under its kind, with its holdout errors, the same way.
    """
    if fallback is not None and (decision.promote or decision.fallback != fallback.kind):
        raise ValueError(f"fallback {fallback.kind} does not match the decision {decision}")
    now = (now or datetime.now(UTC)).replace(tzinfo=None)
    row = _registry_row(
        model_version=model_version,
        kind=kind,
        run_id=run_id,
        run_uri=run_uri,
        status="champion" if decision.promote else "rejected",
        metrics=metrics,
        reason=decision.reason,
        request_id=request_id,
        now=now,
    )
    crowned = 0
    with engine.begin() as conn:
        if decision.promote:
            crowned = _crown(conn, model_version, residual_rows(model_version, holdout))
        upsert_rows(conn, model_registry, [row])
        if fallback is not None:
            crowned = _crown(
                conn,
                fallback.model_version,
                residual_rows(fallback.model_version, fallback.holdout),
            )
            base_row = _registry_row(
                model_version=fallback.model_version,
                kind=fallback.kind,
                run_id=run_id,
                run_uri=run_uri,
                status="champion",
                metrics=fallback.metrics,
                reason=decision.reason,
                request_id=request_id,
                now=now,
            )
            upsert_rows(conn, model_registry, [base_row])
    log.info(
        "promotion recorded",
        extra={
            "model_version": model_version,
            "promoted": decision.promote,
            "serves": fallback.kind if fallback is not None else decision.serves,
            "reason": decision.reason,
            "residual_rows": crowned,
        },
    )


RESIDUAL_CHUNK_ROWS = 50_000  # rows a residual write sends (and holds) at a time
CARRY_PRODUCTS = 1000  # products an earlier champion's residuals are copied for at a time


@dataclass(frozen=True)
class Carried:
    """An earlier champion's stored holdout errors of `products` (a kept partition's),
    carried into the partitioned champion that replaces it: copied inside the database
    (INSERT ... SELECT), never through the trainer's memory."""

    model_version: str
    products: Sequence[str]


def _residual_tuples(model_version: str, holdout: pd.DataFrame) -> list[tuple]:
    """(model_version, product_id, ISO date, error) of a holdout frame's rows with a
    finite error, as tuples for a bulk insert (the rows `residual_rows` makes)."""
    missing = {"product_id", "target_date", "actual", "predicted"} - set(holdout.columns)
    if missing:
        raise ValueError(f"holdout frame lacks column(s) {sorted(missing)}")
    actual = pd.to_numeric(holdout["actual"], errors="coerce").to_numpy(np.float64)
    predicted = pd.to_numeric(holdout["predicted"], errors="coerce").to_numpy(np.float64)
    errors = actual - predicted
    keep = np.isfinite(errors)
    dates = pd.to_datetime(holdout["target_date"]).to_numpy("datetime64[D]")[keep]
    return list(
        zip(
            [model_version] * int(keep.sum()),
            holdout["product_id"].astype(str).to_numpy()[keep].tolist(),
            np.datetime_as_string(dates, unit="D").tolist(),
            errors[keep].tolist(),
            strict=True,
        )
    )


def _write_chunk(engine: sa.Engine, rows: list[tuple]) -> None:
    """One short transaction: `rows` into `model_residuals`, a row with the same key
    replaced (REPLACE, on SQLite and MySQL/MariaDB) — one DB-API executemany, which
    PyMySQL sends as multi-row statements."""
    with engine.begin() as conn:
        q = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        conn.exec_driver_sql(
            "REPLACE INTO model_residuals (model_version, product_id, target_date, error) "
            f"VALUES ({q}, {q}, {q}, {q})",
            rows,
        )


def _carry(engine: sa.Engine, model_version: str, part: Carried) -> int:
    """Copy `part.model_version`'s residuals of `part.products` under `model_version`
    in the database, `CARRY_PRODUCTS` products a transaction; returns the rows copied."""
    r = model_residuals
    wanted = sorted(set(map(str, part.products)))
    copied = 0
    for i in range(0, len(wanted), CARRY_PRODUCTS):
        select = sa.select(
            sa.literal(model_version, type_=r.c.model_version.type),
            r.c.product_id,
            r.c.target_date,
            r.c.error,
        ).where(
            r.c.model_version == part.model_version,
            r.c.product_id.in_(wanted[i : i + CARRY_PRODUCTS]),
        )
        columns = ["model_version", "product_id", "target_date", "error"]
        with engine.begin() as conn:
            result = conn.execute(sa.insert(r).from_select(columns, select))
            copied += max(result.rowcount or 0, 0)
    return copied


def _delete_residuals(engine: sa.Engine, model_version: str) -> None:
    """Delete `model_version`'s stored residuals in a transaction of their own."""
    with engine.begin() as conn:
        _delete_version(conn, model_version)


def write_residuals(
    engine: sa.Engine,
    model_version: str,
    parts: Iterable[pd.DataFrame | Carried],
    chunk_rows: int = RESIDUAL_CHUNK_ROWS,
) -> int:
    """Store `model_version`'s residuals part by part, memory bounded by one part and one
    chunk, not the catalogue (issue 26: 1M products x 56 holdout days are ~56M rows).

    A part is a holdout frame (product_id, target_date, actual, predicted), written in
    transactions of `chunk_rows` rows (rows without a finite error left out), or a
    `Carried` earlier champion's residuals, copied in the database. `parts` may be a
    generator: each partition's holdout is then read only when its turn comes. Rows
    already stored under `model_version` (a failed earlier attempt's) are deleted
    first. The writes are NOT one transaction: call this before the version is crowned
    (as `record_partitioned` does). On failure the rows written so far are deleted
    (best effort: rows under a version that is not the champion are read by nobody)
    and the error is raised. Returns the rows written."""
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    _delete_residuals(engine, model_version)
    written = 0
    try:
        for part in parts:
            if isinstance(part, Carried):
                if part.model_version == model_version:
                    raise ValueError(f"cannot carry {model_version}'s residuals into itself")
                written += _carry(engine, model_version, part)
                continue
            for start in range(0, len(part), chunk_rows):
                rows = _residual_tuples(model_version, part.iloc[start : start + chunk_rows])
                if rows:
                    _write_chunk(engine, rows)
                written += len(rows)
    except BaseException:
        try:
            _delete_residuals(engine, model_version)
        except Exception as exc:  # the rows stay unread: their version is no champion
            log.error(
                "could not delete a failed gather's residuals",
                extra={"model_version": model_version, "error": str(exc)},
            )
        raise
    return written


def record_partitioned(
    engine: sa.Engine,
    *,
    model_version: str,
    run_id: str,
    run_uri: str,
    metrics: dict[str, Any],
    reason: str,
    residuals: Iterable[pd.DataFrame | Carried],
    request_id: str | None = None,
    now: datetime | None = None,
    chunk_rows: int = RESIDUAL_CHUNK_ROWS,
) -> int:
    """Register a partitioned champion (issue 26). First its residuals — each partition's
    serving model's holdout errors under this version in `model_residuals`, the health
    check's reference for every product — streamed by `write_residuals`; then, in one
    short transaction, the previous champion retired and this row `champion` (kind
    "partitioned"). The champion row never points to a version whose residuals are half
    written: a failure while writing leaves the registry as it was (and deletes the
    rows written). A version that is already the champion (a gather retried after its
    crown committed) has its residuals complete; they are not rewritten. Returns the
    rows written."""
    now = (now or datetime.now(UTC)).replace(tzinfo=None)
    row = _registry_row(
        model_version=model_version,
        kind="partitioned",
        run_id=run_id,
        run_uri=run_uri,
        status="champion",
        metrics=metrics,
        reason=reason,
        request_id=request_id,
        now=now,
    )
    written = 0
    if current_champion_version(engine) != model_version:
        written = write_residuals(engine, model_version, residuals, chunk_rows)
    with engine.begin() as conn:
        conn.execute(
            sa.update(model_registry)
            .where(model_registry.c.status == "champion")
            .where(model_registry.c.model_version != model_version)
            .values(status="retired")
        )
        upsert_rows(conn, model_registry, [row])
    log.info(
        "partitioned champion recorded",
        extra={"model_version": model_version, "residual_rows": written, "reason": reason},
    )
    return written


def publish(
    store: ArtifactStore,
    *,
    model_version: str,
    run_id: str,
    run_uri: str,
    scores: Scores,
    kind: str = LSTM,
    now: datetime | None = None,
) -> ChampionPointer:
    """Point `champion.json` at the new champion (a sealed run; for a baseline, the run
    that made it champion)."""
    pointer = ChampionPointer(
        model_version=model_version,
        run_id=run_id,
        run_uri=run_uri,
        promoted_at=(now or datetime.now(UTC)).isoformat(timespec="seconds"),
        rmse=scores.rmse,
        disparity=scores.disparity,
        kind=kind,
        rmsse=scores.rmsse,
    )
    write_champion(store, pointer)
    log.info("champion pointer updated", extra={"model_version": model_version, "kind": kind})
    return pointer


def current_champion_version(engine: sa.Engine) -> str | None:
    """The model_version whose registry status is `champion`, if any."""
    with engine.connect() as conn:
        return conn.execute(
            sa.select(model_registry.c.model_version).where(model_registry.c.status == "champion")
        ).scalar_one_or_none()


def reconcile_champion(engine: sa.Engine, store: ArtifactStore) -> ChampionPointer | None:
    """Make `champion.json` agree with the registry, which is the truth.

    A run that crashed after its promotion transaction committed but before it wrote
    `champion.json` leaves the pointer naming the previous champion. Both modes call this
    first: the pointer is rewritten for the registry's champion when its run is sealed
    (a manifest exists). Returns the pointer written, or None when nothing changed.
    """
    from trainer.serve.artifacts import read_champion, read_manifest

    with engine.connect() as conn:
        row = (
            conn.execute(sa.select(model_registry).where(model_registry.c.status == "champion"))
            .mappings()
            .first()
        )
    if row is None:
        return None
    current = read_champion(store)
    if current is not None and current.model_version == row["model_version"]:
        return None
    if read_manifest(store, row["run_id"]) is None:
        log.error(
            "registry champion has no sealed run; champion.json left as it is",
            extra={"model_version": row["model_version"], "run_id": row["run_id"]},
        )
        return None
    promoted = row["promoted_at"] or row["created_at"]
    pointer = ChampionPointer(
        model_version=row["model_version"],
        run_id=row["run_id"],
        run_uri=row["artifact_uri"],
        promoted_at=promoted.replace(tzinfo=UTC).isoformat(timespec="seconds"),
        rmse=row["rmse"],
        disparity=row["disparity"],
        kind=row["kind"] or LSTM,
        rmsse=row["rmsse"],
    )
    write_champion(store, pointer)
    log.warning(
        "champion.json repaired to match the registry",
        extra={
            "model_version": pointer.model_version,
            "was": current.model_version if current else None,
        },
    )
    return pointer


@dataclass(frozen=True)
class ChampionEvaluation:
    """The champion scored on the challenger's test window (or why it could not be)."""

    model_version: str | None
    evaluation: Any  # trainer.judge.evaluate.Evaluation | None
    note: str | None = None
    kind: str = LSTM

    @property
    def scores(self) -> Scores | None:
        """The champion's scores, when it was evaluated."""
        if self.evaluation is None:
            return None
        return Scores.from_metrics(self.evaluation.metrics)


CURRENT = "current"  # evaluate_champion's default: the champion champion.json names


def evaluate_champion(
    store: ArtifactStore,
    prepared: Any,
    workdir: str | Path,
    evaluation: Any = None,
    pointer: ChampionPointer | str | None = CURRENT,
) -> ChampionEvaluation:
    """Score the current champion on exactly the challenger's test windows.

    A trained champion: its own feature pipeline transforms the current panel and its
    own bias correction is applied, as when it serves. A baseline champion: its scores
    are the challenger's `evaluation`'s figures for that baseline (same windows, this
    run's settings). A champion that cannot be loaded or scored is reported with a
    note, and the challenger is judged as a first model. `pointer` names another
    champion (a partition's, issue 26; None: there is none) instead of champion.json's.
    """
    from trainer.data.windowing import make_windows
    from trainer.judge.evaluate import baseline_evaluation, evaluate
    from trainer.models.lstm import predict_split
    from trainer.serve.artifacts import IncompleteRun, load_model_bundle, read_champion

    if pointer == CURRENT:
        pointer = read_champion(store)
    if pointer is None or isinstance(pointer, str):
        return ChampionEvaluation(None, None, None)
    try:
        if is_baseline(pointer.kind):
            if evaluation is None:
                raise ValueError("a baseline champion is scored from the challenger's evaluation")
            result = baseline_evaluation(evaluation, pointer.kind.split(":", 1)[1])
        elif pointer.kind == LSTM:
            bundle = load_model_bundle(store, pointer.run_id, workdir)
            horizon = prepared.cfg.horizon
            if bundle.cfg.horizon != horizon:
                raise ValueError(f"its horizon is {bundle.cfg.horizon} days, not {horizon}")
            arrays = bundle.pipeline.transform(prepared.panel)
            test = make_windows(
                arrays,
                np.unique(prepared.test.origin),
                bundle.params.lookback,
                horizon,
                series=np.unique(prepared.test.series),
            )
            replica = replace(prepared, pipeline=bundle.pipeline, arrays=arrays, test=test)
            pred = bundle.correction.apply(predict_split(bundle.model, replica, "test"))
            result = evaluate(pred, prepared)
        elif pointer.kind in (LIGHTGBM, BLEND):
            from trainer.models.challenger import load_trained, score_trained

            trained = load_trained(store, pointer.run_id, pointer.kind, workdir)
            result = evaluate(score_trained(trained, prepared), prepared)
        else:
            raise ValueError(f"its kind {pointer.kind!r} cannot be scored here")
    except (IncompleteRun, OSError, ValueError, KeyError, TypeError) as exc:
        note = (
            f"champion {pointer.model_version} could not be evaluated ({exc}); "
            "judged as a first model"
        )
        log.warning("champion not evaluated", extra={"error": str(exc)})
        return ChampionEvaluation(pointer.model_version, None, note, pointer.kind)
    log.info(
        "champion evaluated",
        extra={
            "model_version": pointer.model_version,
            "kind": pointer.kind,
            **{k: v for k, v in result.metrics["model"].items() if not isinstance(v, dict)},
        },
    )
    return ChampionEvaluation(pointer.model_version, result, None, pointer.kind)
