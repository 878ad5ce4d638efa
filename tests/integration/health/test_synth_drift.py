"""Detection of injected drift on realistic synthetic sales (forecastguard.synth), end to end
through the database: seasonality, holidays, promotions and over-dispersed noise."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from forecastguard.config import Settings
from forecastguard.health.service import HealthService
from forecastguard.synth import generate_predictions, generate_sales, inject_drift
from forecastguard.synth.output import write_database

AS_OF = date(2026, 5, 30)


@pytest.fixture(scope="module")
def store_sales():
    sales = generate_sales(300, "2026-03-01", AS_OF, seed=5)
    predictions = generate_predictions(sales, start="2026-04-01", seed=5)
    return sales, predictions


# A doubled level moves the errors of most products; the drift test keeps its false
# alarms down under serial dependence, at a price: 11 of the 30 doubled products are
# found here with the interval null of MIN_DRIFT_EFFECT 0.5 (issue 23; 20 with point
# nulls; 8 with issue 13's phi margin). A tripled spread of low-volume negative-binomial
# sales is skewed, and the robust (Brown-Forsythe) scale test finds none of it in 30
# days: no false alarms is all this case can ask (docs/health.md, power).
@pytest.mark.parametrize(
    ("kind", "magnitude", "recall"), [("level_shift", 1.0, 0.2), ("variance_change", 3.0, 0.0)]
)
def test_injected_drift_is_found_in_the_drifted_products(
    engine: sa.Engine, store_sales, kind: str, magnitude: float, recall: float
) -> None:
    sales, predictions = store_sales
    drifted_sales, drifted = inject_drift(
        sales, share=0.1, start="2026-05-01", kind=kind, seed=3, magnitude=magnitude
    )
    write_database(engine, drifted_sales, predictions)
    result = HealthService(Settings.from_env({}), engine=engine).run(AS_OF, 30)
    flagged = set(result.products.loc[result.products["drift"], "product_id"])
    if recall:
        assert result.drift_detected and "drift" in result.reason_kinds
    assert len(flagged & set(drifted)) >= recall * len(drifted), (len(flagged), len(drifted))
    assert len(flagged - set(drifted)) <= max(2, len(flagged) // 10)


def test_no_drift_no_alarm(sqlite_url: str, store_sales) -> None:
    from forecastguard.db.engine import make_engine

    engine = make_engine(sqlite_url)
    write_database(engine, *store_sales)
    result = HealthService(Settings.from_env({}), engine=engine).run(AS_OF, 30)
    assert not result.drift_detected, result.reasons
    assert result.references["previous_window"] == result.n_tested > 250
    engine.dispose()
