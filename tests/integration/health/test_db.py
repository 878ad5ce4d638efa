"""The health check against real databases (SQLite and MariaDB): read, store, run."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from forecastguard.config import Settings
from forecastguard.db.schema import health_check_products, health_checks
from forecastguard.health import window as window_module
from forecastguard.health.check import HealthParams, compute_health
from forecastguard.health.service import HealthService
from forecastguard.health.store import store_result
from forecastguard.health.window import WindowData, load_residuals, load_window
from tests.integration.health.synthetic import frames, synthetic_window, write

AS_OF = date(2026, 5, 30)


def test_load_window_reads_what_was_written(engine: sa.Engine) -> None:
    data = synthetic_window(25, AS_OF, seed=1)
    sales_frame, predictions_frame = frames(data)
    # A product with sales but no forecasts, and forecasts of another model version.
    extra = pd.DataFrame({"product_id": "Z-no-forecast", "sale_date": [AS_OF], "units_sold": [3.0]})
    write(engine, pd.concat([sales_frame, extra]), predictions_frame)
    window = load_window(engine, AS_OF, 30)
    assert list(window.products) == [*data.products, "Z-no-forecast"]
    mine = window.codes < 25
    np.testing.assert_array_equal(window.codes[mine], data.codes)
    np.testing.assert_array_equal(window.day[mine], data.day)
    np.testing.assert_allclose(window.units[mine], data.units)
    np.testing.assert_allclose(window.predicted[mine], data.predicted, rtol=1e-14)
    assert np.isnan(window.predicted[~mine]).all()
    assert window.model_versions == ("m1",) and window.current_version == "m1"
    assert window.same_model_reference()[:25].all()
    assert window.last_sale_date == AS_OF
    # The same statistics as on the arrays themselves.
    from_db = compute_health(window, HealthParams())
    direct = compute_health(data, HealthParams())
    assert from_db.n_products == 25 and from_db.avg_rmse == pytest.approx(direct.avg_rmse)
    # Numbers come back with 15 significant digits: the same p-values up to rounding.
    for column in ("drift_pvalue", "ks_pvalue"):
        np.testing.assert_allclose(from_db.products[column], direct.products[column], rtol=1e-9)
    assert from_db.products["drift"].tolist() == direct.products["drift"].tolist()


def _same_window(a: WindowData, b: WindowData) -> None:
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype, name
            np.testing.assert_array_equal(x, y, err_msg=name)  # NaN == NaN here
        else:
            assert x == y, name


def test_load_window_reads_the_same_at_once_or_in_turn(engine: sa.Engine, monkeypatch) -> None:
    # Issue 23: the forecasts of the reference's days, of the window's and the intervals
    # are read on their own connections while the sales are. Versions change within the
    # window (m0 then m1) and the reference has two for one product (m2 then m0); some
    # forecasts have intervals, one is not a number.
    data = synthetic_window(30, AS_OF, seed=5, history=90)
    sales_frame, predictions_frame = frames(data)
    day = pd.to_datetime(predictions_frame["target_date"])
    predictions_frame.loc[day < pd.Timestamp("2026-05-10"), "model_version"] = "m0"
    predictions_frame.loc[
        (predictions_frame["product_id"] == data.products[7]) & (day < pd.Timestamp("2026-03-01")),
        "model_version",
    ] = "m2"
    band = (day >= pd.Timestamp(data.window_start)) & (predictions_frame.index % 3 > 0)
    predictions_frame["predicted_p10"] = np.where(
        band, predictions_frame["predicted_units"] - 2, None
    )
    predictions_frame["predicted_p90"] = np.where(
        band, predictions_frame["predicted_units"] + 2, None
    )
    write(engine, sales_frame, predictions_frame)
    if engine.dialect.name == "sqlite":  # SQLite keeps text in a REAL column (issue 14)
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE predictions SET predicted_units = 'abc' "
                    "WHERE product_id = :p AND target_date = :d"
                ),
                {"p": data.products[3], "d": data.window_start.isoformat()},
            )
    at_once = load_window(engine, AS_OF, 30, 90)
    monkeypatch.setattr(window_module, "READ_WORKERS", 0)
    in_turn = load_window(engine, AS_OF, 30, 90)
    _same_window(at_once, in_turn)
    # The forecasts' text parsed a few products at a time reads the same.
    monkeypatch.setattr(window_module, "_PARSE_PRODUCTS", 4)
    _same_window(at_once, load_window(engine, AS_OF, 30, 90))
    assert at_once.model_versions == ("m0", "m1") and at_once.current_version == "m1"
    assert at_once.reference_versions[7] == frozenset({"m0", "m2"})
    assert at_once.reference_versions[0] == frozenset({"m0"})
    assert at_once.lower is not None and np.isfinite(at_once.lower).sum() > 0
    if engine.dialect.name == "sqlite":
        assert at_once.bad_values == ((str(data.products[3]), "predictions", 1),)


def test_current_version_without_its_query_is_the_queried_one(engine: sa.Engine) -> None:
    # The window forecast by one version: that one, not queried (the query looks up each
    # of the newest day's rows); by two: the newest made forecast of the newest day. The
    # query's answer is the same either way; the pivot splits the products in two.
    data = synthetic_window(12, AS_OF, seed=9, history=30)
    sales_frame, predictions_frame = frames(data)
    write(engine, sales_frame, predictions_frame)
    window = load_window(engine, AS_OF, 30, 30)
    start = window.window_start
    with engine.connect() as conn:
        queried = window_module._current_version(conn, {"a", "b"}, start, AS_OF)
        assert window.current_version == queried == "m1"
        assert window_module._current_version(conn, {"m1"}, start, AS_OF) == "m1"
        pivot = window_module._product_pivot(conn, start, AS_OF)
        assert pivot == sorted(data.products)[6]
        with engine.begin() as writer:
            writer.execute(
                sa.text(
                    "UPDATE predictions SET model_version = 'm2', created_at = :t "
                    "WHERE product_id = :p AND target_date = :d"
                ),
                {"p": data.products[2], "d": AS_OF.isoformat(), "t": "2030-01-01 00:00:00"},
            )
    again = load_window(engine, AS_OF, 30, 30)
    assert again.model_versions == ("m1", "m2") and again.current_version == "m2"


def test_load_window_reads_in_turn_on_one_shared_connection() -> None:
    # SQLite in memory: one connection for everything (the reads cannot overlap).
    from forecastguard.db.migrate import upgrade

    memory = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool)
    upgrade(memory)
    assert not window_module._concurrent(memory)
    data = synthetic_window(8, AS_OF, seed=6)
    write(memory, *frames(data))
    window = load_window(memory, AS_OF, 30)
    np.testing.assert_allclose(window.predicted, data.predicted, rtol=1e-14)
    assert window.model_versions == ("m1",) and window.same_model_reference().all()


def test_sqlite_years_of_history_are_skipped_with_statistics(tmp_path, monkeypatch) -> None:
    # Years of sales before the days the check reads: with the planner's statistics,
    # gathered by the first check, SQLite skip-scans the primary key (product, day) for
    # the range of days instead of reading every row; the window read is the same either
    # way, and a file the check cannot write is read without them.
    from forecastguard.db.engine import make_engine
    from forecastguard.db.migrate import upgrade

    path = tmp_path / "years.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    data = synthetic_window(12, AS_OF, seed=8, history=90)
    sales_frame, predictions_frame = frames(data)
    older = pd.date_range(end=pd.Timestamp(data.hist_start) - pd.Timedelta(days=1), periods=400)
    old_sales = pd.DataFrame(
        [(p, d.date(), 1.0) for p in data.products for d in older],
        columns=["product_id", "sale_date", "units_sold"],
    )
    old_forecasts = old_sales.rename(
        columns={"sale_date": "target_date", "units_sold": "predicted_units"}
    ).assign(model_version="m0", created_at=pd.Timestamp("2025-01-01"))
    write(
        engine,
        pd.concat([old_sales, sales_frame]),
        pd.concat([old_forecasts, predictions_frame]),
    )
    query = sa.text(
        "EXPLAIN QUERY PLAN SELECT product_id, count(*) FROM sales "
        "WHERE sale_date BETWEEN :a AND :b GROUP BY product_id"
    )
    span = {"a": data.hist_start.isoformat(), "b": AS_OF.isoformat()}
    with engine.connect() as conn:
        assert "ANY(product_id)" not in str(conn.execute(query, span).all())
    with_statistics = load_window(engine, AS_OF, 30, 90)
    with engine.connect() as conn:
        tables = set(conn.execute(sa.text("SELECT tbl FROM sqlite_stat1")).scalars())
        assert {"sales", "predictions"} <= tables
        assert "ANY(product_id)" in str(conn.execute(query, span).all())
    np.testing.assert_allclose(with_statistics.units, data.units)
    np.testing.assert_allclose(with_statistics.predicted, data.predicted, rtol=1e-14)
    monkeypatch.setattr(window_module, "_sqlite_statistics", lambda conn: False)
    _same_window(with_statistics, load_window(engine, AS_OF, 30, 90))
    monkeypatch.undo()
    engine.dispose()
    with sa.create_engine(f"sqlite:///{path}").begin() as conn:
        conn.execute(sa.text("DROP TABLE sqlite_stat1"))
    path.chmod(0o444)
    read_only = make_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        _same_window(with_statistics, load_window(read_only, AS_OF, 30, 90))
    finally:
        read_only.dispose()


def test_forecast_reads_keep_off_the_date_index_on_mariadb(engine: sa.Engine) -> None:
    # With years of older forecasts MariaDB's planner took the date index for the range of
    # days (57 s against 8.4 s for the primary-key scan, docs/benchmarks.md): the forecast
    # reads tell it not to, on the dialect the check really runs on.
    write(engine, *frames(synthetic_window(5, AS_OF, seed=9)))
    statements: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        load_window(engine, AS_OF, 30, 90)
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    reads = [s for s in statements if "FROM predictions" in s and "group_concat" in s]
    # MySQL reads the forecasts and the window's intervals of all the days at once, in two
    # halves of the products (each a range of the primary key: no row is read twice);
    # SQLite reads the reference's days and the window's apart.
    mysql = engine.dialect.name in {"mysql", "mariadb"}
    assert len(reads) == 2
    if mysql:
        halves = sorted(("product_id <" in s, "product_id >=" in s) for s in reads)
        assert halves == [(False, True), (True, False)]  # in either order (concurrent)
    hinted = ["IGNORE INDEX (ix_predictions_target_date)" in s for s in reads]
    assert all(hinted) if mysql else not any(hinted)


def test_load_window_without_sales_finds_the_last_sale(engine: sa.Engine) -> None:
    old = pd.DataFrame({"product_id": ["A"], "sale_date": [date(2025, 1, 5)], "units_sold": [1.0]})
    write(engine, old)
    window = load_window(engine, AS_OF, 30)
    assert len(window.products) == 0 and window.last_sale_date == date(2025, 1, 5)
    result = compute_health(window, HealthParams())
    assert result.reason_kinds == ["empty", "stale"]


def test_holdout_residuals_by_model_version(engine: sa.Engine) -> None:
    data = synthetic_window(12, AS_OF, seed=2)
    sales_frame, predictions_frame = frames(data, predictions_from=data.window_start)
    rng = np.random.default_rng(3)
    residuals = pd.DataFrame(
        {
            "model_version": np.repeat(["m1", "m0"], 12 * 20),
            "product_id": np.tile(np.repeat(data.products, 20), 2),
            "target_date": np.tile(pd.date_range("2025-12-01", periods=20).date, 24),
            "error": rng.normal(0, 2, 480),
        }
    )
    write(engine, sales_frame, predictions_frame, residuals)
    window = load_window(engine, AS_OF, 30)
    codes, errors = load_residuals(engine, "m1", window.products)
    assert len(codes) == 240 and np.bincount(codes).tolist() == [20] * 12
    mine = residuals[residuals["model_version"] == "m1"].sort_values(["product_id", "target_date"])
    got = pd.DataFrame({"c": codes, "e": errors}).sort_values(["c", "e"])
    np.testing.assert_allclose(
        np.sort(got["e"].to_numpy()), np.sort(mine["error"].to_numpy()), rtol=1e-14
    )
    service = HealthService(Settings.from_env({}), engine=engine)
    result = service.run(AS_OF, 30)
    assert result.references == {"previous_window": 0, "before_drift": 0, "holdout": 12, "none": 0}


def test_store_is_one_transaction(engine: sa.Engine) -> None:
    data = synthetic_window(30, AS_OF, seed=4)
    result = compute_health(data, HealthParams())
    result.check_id, result.checked_at = "c" * 36, pd.Timestamp("2026-05-31T06:00").to_pydatetime()
    store_result(engine, result)
    with engine.connect() as conn:
        row = conn.execute(sa.select(health_checks)).one()
        products = conn.execute(sa.select(health_check_products)).all()
    assert row.healthy == result.healthy and len(products) == 30
    assert json.loads(row.result_json)["n_products"] == 30
    # A failure among the product rows (a duplicate product) leaves nothing behind.
    broken = replace(result, check_id="d" * 36)
    broken.products = pd.concat([result.products, result.products.iloc[:1]])
    _fails_and_leaves_one_check(engine, broken)


def _fails_and_leaves_one_check(engine: sa.Engine, broken) -> None:
    """Storing `broken` (a duplicate product) fails and leaves the one stored check of 30
    products as it was."""
    with pytest.raises(sa.exc.IntegrityError):
        store_result(engine, broken)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(health_checks)).scalar() == 1
        count = sa.select(sa.func.count()).select_from(health_check_products)
        assert conn.execute(count).scalar() == 30


def test_store_in_several_statements_is_one_transaction(engine: sa.Engine, monkeypatch) -> None:
    # On MariaDB the product rows go as several INSERTs, the next written while the last
    # is sent (store._insert_literal_rows): every row is stored, and a failing statement
    # in the middle (a duplicate product) leaves nothing behind.
    from forecastguard.health import store as store_module

    monkeypatch.setattr(store_module, "_LITERAL_ROWS", 7)
    data = synthetic_window(30, AS_OF, seed=4)
    result = compute_health(data, HealthParams())
    result.check_id, result.checked_at = "c" * 36, pd.Timestamp("2026-05-31T06:00").to_pydatetime()
    store_result(engine, result)
    with engine.connect() as conn:
        query = sa.select(health_check_products).order_by(health_check_products.c.product_id)
        stored = pd.read_sql(query, conn)
    assert stored["product_id"].tolist() == result.products["product_id"].tolist()
    assert stored["rmse"].tolist() == result.products["rmse"].tolist()
    broken = replace(result, check_id="d" * 36)
    broken.products = pd.concat(
        [result.products.iloc[:10], result.products.iloc[9:10], result.products.iloc[10:]]
    )
    _fails_and_leaves_one_check(engine, broken)


def test_service_run_stores_and_writes_metrics(engine: sa.Engine, tmp_path) -> None:
    data = synthetic_window(40, AS_OF, seed=5, drift_share=0.25, drift_factor=2.0)
    write(engine, *frames(data))
    sink = tmp_path / "metrics.jsonl"
    service = HealthService(Settings.from_env({}, metrics_sink=str(sink)), engine=engine)
    result = service.run(AS_OF, 30)
    assert not result.healthy and "drift" in result.reason_kinds
    assert result.outputs["metrics"]["written"]
    assert result.outputs["retrain"]["skipped"] == "RETRAIN_TOPIC is not set"
    lines = [json.loads(line) for line in sink.read_text().splitlines()]
    by_metric = pd.Series([line["metric"] for line in lines]).value_counts()
    prefix = "custom.googleapis.com/forecastguard/"
    assert by_metric[prefix + "product_rmse"] == 40 and by_metric[prefix + "healthy"] == 1
    with engine.connect() as conn:
        stored = conn.execute(sa.select(health_checks)).one()
        drifted = conn.execute(
            sa.select(sa.func.count())
            .select_from(health_check_products)
            .where(health_check_products.c.drift.is_(True))
        ).scalar()
    assert stored.id == result.check_id and not stored.healthy
    assert json.loads(stored.reasons) == result.reasons
    assert drifted == int(result.products["drift"].sum()) >= 5


def test_model_versions_of_the_window(engine: sa.Engine) -> None:
    data = synthetic_window(4, AS_OF, seed=7)
    sales_frame, predictions_frame = frames(data)
    late = predictions_frame["target_date"] >= date(2026, 5, 20)
    predictions_frame.loc[late, "model_version"] = "m2"
    write(engine, sales_frame, predictions_frame)
    window = load_window(engine, AS_OF, 30)
    assert window.model_versions == ("m1", "m2") and window.current_version == "m2"
    assert not window.same_model_reference().any()


def test_after_a_retrain_the_holdout_is_the_reference(engine: sa.Engine) -> None:
    data = synthetic_window(8, AS_OF, seed=6)
    sales_frame, predictions_frame = frames(data)
    before = predictions_frame["target_date"] < data.window_start
    predictions_frame.loc[before, "model_version"] = "old"
    predictions_frame.loc[~before, "model_version"] = "new"
    residuals = pd.DataFrame(
        {
            "model_version": "new",
            "product_id": np.repeat(data.products[:5], 10),
            "target_date": np.tile(pd.date_range("2026-01-01", periods=10).date, 5),
            "error": np.random.default_rng(0).normal(0, 2, 50),
        }
    )
    write(engine, sales_frame, predictions_frame, residuals)
    window = load_window(engine, AS_OF, 30)
    assert window.current_version == "new" and window.model_versions == ("new",)
    assert set(window.reference_versions) == {frozenset({"old"})}
    result = HealthService(Settings.from_env({}), engine=engine).run(AS_OF, 30)
    assert result.references == {"previous_window": 0, "before_drift": 0, "holdout": 5, "none": 3}


def test_units_and_forecasts_read_back_as_written(engine: sa.Engine) -> None:
    # Whole numbers take SQLite's integer text; the others its 15 significant digits.
    units = [7.0, 0.0, 2.5, 0.1 + 0.2, 123456789.0, 2.0**52, 1e20, 3.0]
    days = pd.date_range(end=pd.Timestamp(AS_OF), periods=len(units)).date
    sales_frame = pd.DataFrame({"product_id": "A", "sale_date": days, "units_sold": units})
    predictions_frame = pd.DataFrame(
        {
            "product_id": "A",
            "target_date": days[::2],
            "predicted_units": [1.0, 1 / 3, -2.25, 9.87654321e-5],
            "model_version": "m1",
            "created_at": pd.Timestamp("2026-04-01 06:00"),
        }
    )
    write(engine, sales_frame, predictions_frame)
    window = load_window(engine, AS_OF, 30)
    np.testing.assert_allclose(window.units, units, rtol=1e-14)
    expected = np.full(len(units), np.nan)
    expected[::2] = predictions_frame["predicted_units"]
    np.testing.assert_allclose(window.predicted, expected, rtol=1e-14)
    assert window.day.tolist() == list(range(59 - len(units) + 1, 60))


def test_forecasts_and_intervals_read_back_exactly_on_mariadb(engine: sa.Engine) -> None:
    # MySQL sends forecasts and bounds as two integers (window._exact: a fixed point
    # number or mantissa and exponent): every double comes back bit for bit, zero,
    # subnormals, powers of two and their neighbours, both forms' edges included. SQLite gives 15 significant digits (bounds to 1e-4 units).
    values = [
        0.0,
        1.0,
        1 / 3,
        -2.25,
        0.1 + 0.2,
        9.87654321e-5,
        np.nextafter(2.0, 0.0),
        np.nextafter(2.0, 4.0),
        2.0**-1022,
        5e-324,
        -3e-310,
        1.7976931348623157e308,
        2.0**60 + 2.0**8,
        123456.78901234567,
        # The fixed point form's edges (1 <= |value * 2**10| < 2**52) and negatives.
        2.0**-10,
        np.nextafter(2.0**-10, 0.0),
        np.nextafter(2.0**-10, 1.0),
        -(2.0**-10),
        2.0**42,
        np.nextafter(2.0**42, 0.0),
        -np.nextafter(2.0**42, 0.0),
        -(2.0**42),
        -0.7,
        -1000.123456789,
        np.nextafter(7.0, 8.0),
        4.999999999999999,
    ]
    assert len(values) <= 30  # the window's days
    days = pd.date_range(end=pd.Timestamp(AS_OF), periods=len(values)).date
    sales_frame = pd.DataFrame({"product_id": "A", "sale_date": days, "units_sold": 1.0})
    predictions_frame = pd.DataFrame(
        {
            "product_id": "A",
            "target_date": days,
            "predicted_units": values,
            "model_version": "m1",
            "created_at": pd.Timestamp("2026-04-01 06:00"),
            "predicted_p10": values[::-1],
            "predicted_p90": values,
        }
    )
    write(engine, sales_frame, predictions_frame)
    window = load_window(engine, AS_OF, 30)
    if engine.dialect.name == "sqlite":  # 15 digits of DBL_MAX read back as infinity
        ok = np.abs(values) < 1e308
        np.testing.assert_allclose(window.predicted[ok], np.array(values)[ok], rtol=1e-14)
        return
    assert window.predicted.tolist() == values
    assert window.lower.tolist() == values[::-1]
    assert window.upper.tolist() == values
    assert not window.bad_values


def test_stored_product_rows_read_back_as_computed(engine: sa.Engine) -> None:
    # On MariaDB the rows go as literal INSERTs (store._insert_literal_rows): ids that
    # need quoting and floats at the edges of a double read back as computed.
    data = synthetic_window(8, AS_OF, seed=4)
    result = compute_health(data, HealthParams())
    result.check_id, result.checked_at = "c" * 36, pd.Timestamp("2026-05-31T06:00").to_pydatetime()
    ids = ["it's", 'say "hi"', "back\\slash", "100%s", "%(x)s", "ünï", "new\nline", "?"]
    edges = [0.1 + 0.2, 1e-310, 1.7976931348623157e308, np.nan, -2.5, 1e22, 7.0, np.inf]
    products = result.products.copy()
    products["product_id"] = ids
    products["rmse"] = edges
    products.loc[0, "reference"] = "o'k"
    result.products = products
    store_result(engine, result)
    with engine.connect() as conn:
        got = pd.read_sql(sa.select(health_check_products), conn).set_index("product_id")
    got = got.loc[ids]
    expected = [None if not np.isfinite(v) else v for v in edges]
    assert [None if pd.isna(v) else v for v in got["rmse"]] == expected
    assert got["reference"].iloc[0] == "o'k"
    assert got["drift"].astype(bool).tolist() == products["drift"].astype(bool).tolist()
    assert got["n"].tolist() == products["n"].tolist()
