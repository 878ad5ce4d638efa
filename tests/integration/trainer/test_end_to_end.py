"""A tiny end-to-end training on SQLite: database ▸ prepare ▸ train ▸ correct ▸ evaluate ▸ forecast."""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from forecastguard.db.engine import make_engine
from forecastguard.db.schema import promotions, sales
from forecastguard.db.upsert import upsert_rows
from forecastguard.synth import generate_sales
from trainer.config import ModelParams, TrainConfig
from trainer.data.features import FeaturePipeline
from trainer.data.load import load_promotions, load_sales
from trainer.data.prepare import prepare
from trainer.judge.evaluate import evaluate
from trainer.models.bias import correction_effect, fit_bias_correction
from trainer.models.lstm import forecast_next, predict_split, train

pytestmark = pytest.mark.slow


@pytest.fixture
def engine_with_sales(sqlite_url: str):
    frame = generate_sales(4, "2023-01-02", "2023-10-31", seed=7)
    # Drop zero-sales days, as some sources do: the quality stage must find and refill them.
    kept = frame[frame["units_sold"] > 0]
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        upsert_rows(
            conn,
            sales,
            [
                {
                    "product_id": r.product_id,
                    "sale_date": r.date.date(),
                    "units_sold": float(r.units_sold),
                }
                for r in kept.itertuples()
            ],
        )
        upsert_rows(
            conn,
            promotions,
            [
                {"product_id": r.product_id, "promo_date": r.date.date()}
                for r in frame[frame["on_promotion"].astype(bool)].itertuples()
            ],
        )
    yield engine
    engine.dispose()


def test_tiny_training_end_to_end(engine_with_sales, tmp_path: Path) -> None:
    engine = engine_with_sales
    long = load_sales(engine)
    assert long["product_id"].nunique() == 4
    cfg = TrainConfig(
        epochs=2, patience=1, batch_size=64, min_observations=10, val_days=28, test_days=28
    )
    params = ModelParams(units=8, lookback=14, embedding_dim=2)
    prepared = prepare(long, cfg)
    report = prepared.quality.to_dict()
    assert (
        report["totals"]["gap_days"] + report["totals"]["closure_days"] > 0
    )  # dropped zeros refilled

    trained = train(prepared, params, cfg, fairness=True)
    assert 1 <= trained.epochs_run <= 2
    assert set(trained.history) >= {"loss", "val_loss", "val_rmsse", "val_disparity"}
    assert len(trained.fairness_history["epochs"]) == trained.epochs_run
    assert len(trained.fairness_history["epochs"][0]["weights"]) == 4
    assert math.isfinite(trained.val_metrics["rmsse"])

    val = predict_split(trained.model, prepared, "val")
    test = predict_split(trained.model, prepared, "test")
    assert len(test) == 4 * 28 and test["predicted"].ge(0).all()
    assert test["target_date"].min() > val["target_date"].max()
    correction = fit_bias_correction(val, cfg.bias_shrinkage)
    effect = correction_effect(test, correction)
    assert set(effect) == {"before", "after"}

    result = evaluate(correction.apply(test), prepared)
    metrics = json.loads(json.dumps(result.metrics))
    assert set(metrics["model"]) == {"rmse", "mae", "rmsse", "bias"}
    assert set(metrics["baselines"]) >= {"seasonal_naive", "moving_average"}
    assert metrics["n_products"] == 4 and metrics["horizon"] == 28
    assert set(metrics["fairness"]) >= {"disparity_p90_over_median", "worst_decile_rmsse"}
    assert len(result.per_product) == 4

    # Saved and reloaded, the model and pipeline forecast the same next 28 days.
    forecast = forecast_next(trained.model, prepared.pipeline, long, cfg, params)
    assert len(forecast) == 4 * 28
    assert forecast["target_date"].min() == long["date"].max() + np.timedelta64(1, "D")
    prepared.pipeline.save(tmp_path)
    trained.model.save(tmp_path / "model.keras")
    model = keras.models.load_model(tmp_path / "model.keras")
    again = forecast_next(model, FeaturePipeline.load(tmp_path), long, cfg)
    np.testing.assert_allclose(again["predicted_units"], forecast["predicted_units"], rtol=1e-5)

    # A product launched after training is forecast as an unknown product.
    newcomer = long[long["product_id"] == "P0001"].tail(60).assign(product_id="NEW")
    with_new = forecast_next(model, prepared.pipeline, pd.concat([long, newcomer]), cfg)
    assert with_new[with_new["product_id"] == "NEW"]["predicted_units"].notna().sum() == 28

    # Promotions planned in the table for the forecast days reach the model.
    future = forecast["target_date"].unique()
    with engine.begin() as conn:
        upsert_rows(
            conn, promotions, [{"product_id": "P0001", "promo_date": d.date()} for d in future]
        )
    promos = load_promotions(engine)
    promoted = forecast_next(trained.model, prepared.pipeline, long, cfg, params, promotions=promos)
    changed = (
        (promoted["predicted_units"] - forecast["predicted_units"])
        .abs()
        .groupby(promoted["product_id"])
        .max()
    )
    assert changed["P0001"] > 1e-6
