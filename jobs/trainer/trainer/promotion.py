"""Champion/challenger promotion, as TFX's "blessing".

Champion and challenger are scored on the same latest test window. The challenger is
promoted when its RMSE is lower than the champion's by more than `rmse_tolerance`
(relative) and its disparity is not worse than the champion's by more than
`disparity_tolerance` (relative). The first model (no usable champion) is promoted when
it beats the seasonal-naive baseline.

A promotion writes, in one transaction, the `model_registry` row (the old champion is
retired) and the new champion's per-product holdout errors into `model_residuals` (the
health check's reference distribution); `champion.json` is written afterwards, and only
for a run whose manifest exists (`artifacts.write_champion`).
"""

from __future__ import annotations

import json
import math
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
from trainer.artifacts import ChampionPointer, write_champion

log = get_logger(__name__)


@dataclass(frozen=True)
class Scores:
    """A model's test-window scores used for the decision."""

    rmse: float
    disparity: float | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.rmse):
            raise ValueError(f"RMSE must be finite, got {self.rmse}")


@dataclass(frozen=True)
class Tolerances:
    """How much better the RMSE must be, how much worse the disparity may be (relative)."""

    rmse: float = 0.0
    disparity: float = 0.10

    def __post_init__(self) -> None:
        if not 0.0 <= self.rmse < 1.0 or self.disparity < 0.0:
            raise ValueError(
                f"tolerances must be 0 <= rmse < 1 and disparity >= 0, got {self.rmse}, "
                f"{self.disparity}"
            )


@dataclass(frozen=True)
class Decision:
    """The promotion decision and why, in words that go into the report and the registry."""

    promote: bool
    reason: str
    against: str  # "champion" | "seasonal_naive"


def decide(
    challenger: Scores,
    champion: Scores | None,
    seasonal_naive: Scores,
    tol: Tolerances = Tolerances(),
    champion_version: str | None = None,
) -> Decision:
    """Compare the challenger with the champion (or, for the first model, seasonal naive)."""
    if champion is None:
        if challenger.rmse < seasonal_naive.rmse:
            return Decision(
                True,
                f"first model: RMSE {challenger.rmse:.4g} beats seasonal naive "
                f"{seasonal_naive.rmse:.4g}",
                "seasonal_naive",
            )
        return Decision(
            False,
            f"first model: RMSE {challenger.rmse:.4g} does not beat seasonal naive "
            f"{seasonal_naive.rmse:.4g}",
            "seasonal_naive",
        )
    name = f"champion {champion_version}" if champion_version else "champion"
    bar = champion.rmse * (1.0 - tol.rmse)
    if not challenger.rmse < bar:
        margin = f" by more than {tol.rmse:.1%}" if tol.rmse else ""
        return Decision(
            False,
            f"RMSE {challenger.rmse:.4g} is not lower than {name}'s {champion.rmse:.4g}{margin}",
            "champion",
        )
    if challenger.disparity is not None and champion.disparity is not None:
        limit = champion.disparity * (1.0 + tol.disparity)
        if challenger.disparity > limit:
            return Decision(
                False,
                f"RMSE {challenger.rmse:.4g} < {champion.rmse:.4g}, but disparity "
                f"{challenger.disparity:.4g} is worse than {name}'s {champion.disparity:.4g} "
                f"beyond the {tol.disparity:.0%} tolerance",
                "champion",
            )
    disparity = (
        f"; disparity {challenger.disparity:.4g} vs {champion.disparity:.4g}"
        if challenger.disparity is not None and champion.disparity is not None
        else ""
    )
    return Decision(
        True,
        f"RMSE {challenger.rmse:.4g} < {name}'s {champion.rmse:.4g}{disparity}",
        "champion",
    )


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
) -> None:
    """Write the decision to the database in one transaction.

    Promoted: the previous champion becomes `retired`, this model's row is `champion`
    and its holdout errors replace any earlier ones in `model_residuals`. Not promoted:
    the row is `rejected` and nothing else changes.
    """
    now = (now or datetime.now(UTC)).replace(tzinfo=None)
    model = metrics.get("model", {})
    row = {
        "model_version": model_version,
        "run_id": run_id,
        "status": "champion" if decision.promote else "rejected",
        "artifact_uri": run_uri,
        "rmse": model.get("rmse"),
        "rmsse": model.get("rmsse"),
        "disparity": metrics.get("fairness", {}).get("disparity_p90_over_median"),
        "metrics_json": json.dumps(metrics, sort_keys=True, default=str),
        "decision_reason": decision.reason,
        "request_id": request_id,
        "created_at": now,
        "promoted_at": now if decision.promote else None,
    }
    residuals = residual_rows(model_version, holdout) if decision.promote else []
    with engine.begin() as conn:
        if decision.promote:
            conn.execute(
                sa.update(model_registry)
                .where(model_registry.c.status == "champion")
                .where(model_registry.c.model_version != model_version)
                .values(status="retired")
            )
            conn.execute(
                sa.delete(model_residuals).where(model_residuals.c.model_version == model_version)
            )
            upsert_rows(conn, model_residuals, residuals)
        upsert_rows(conn, model_registry, [row])
    log.info(
        "promotion recorded",
        extra={
            "model_version": model_version,
            "promoted": decision.promote,
            "reason": decision.reason,
            "residual_rows": len(residuals),
        },
    )


def publish(
    store: ArtifactStore,
    *,
    model_version: str,
    run_id: str,
    run_uri: str,
    scores: Scores,
    now: datetime | None = None,
) -> ChampionPointer:
    """Point `champion.json` at the promoted (sealed) run."""
    pointer = ChampionPointer(
        model_version=model_version,
        run_id=run_id,
        run_uri=run_uri,
        promoted_at=(now or datetime.now(UTC)).isoformat(timespec="seconds"),
        rmse=scores.rmse,
        disparity=scores.disparity,
    )
    write_champion(store, pointer)
    log.info("champion pointer updated", extra={"model_version": model_version})
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
    from trainer.artifacts import read_champion, read_manifest

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
    evaluation: Any  # trainer.evaluate.Evaluation | None
    note: str | None = None

    @property
    def scores(self) -> Scores | None:
        """The champion's scores, when it was evaluated."""
        if self.evaluation is None:
            return None
        m = self.evaluation.metrics
        return Scores(m["model"]["rmse"], m["fairness"]["disparity_p90_over_median"])


def evaluate_champion(
    store: ArtifactStore, prepared: Any, workdir: str | Path
) -> ChampionEvaluation:
    """Score the current champion on exactly the challenger's test windows.

    The champion's own feature pipeline transforms the current panel; its own bias
    correction is applied, as when it serves. A champion that cannot be loaded or
    scored is reported with a note, and the challenger is judged as a first model.
    """
    from trainer.artifacts import IncompleteRun, load_model_bundle, read_champion
    from trainer.pipeline import evaluate, predict_split
    from trainer.windowing import make_windows

    pointer = read_champion(store)
    if pointer is None:
        return ChampionEvaluation(None, None, None)
    try:
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
        evaluation = evaluate(pred, prepared)
    except (IncompleteRun, OSError, ValueError, KeyError, TypeError) as exc:
        note = f"champion {pointer.model_version} could not be evaluated ({exc}); judged as a first model"
        log.warning("champion not evaluated", extra={"error": str(exc)})
        return ChampionEvaluation(pointer.model_version, None, note)
    log.info(
        "champion evaluated",
        extra={"model_version": pointer.model_version, **evaluation.metrics["model"]},
    )
    return ChampionEvaluation(pointer.model_version, evaluation, None)
