"""Request parameters, bearer-token checks, and the readable report."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from types import SimpleNamespace

import numpy as np
import pytest

from forecastguard.auth import Authenticator, bearer_token
from forecastguard.health.check import HealthParams, compute_health
from forecastguard.health.params import BadRequest, parse_check_params
from forecastguard.health.render import effect_text, to_json, to_text, worst_first
from tests.integration.health.synthetic import synthetic_window

TODAY = date(2026, 6, 1)


def test_parse_check_params_accepts_good_values() -> None:
    assert parse_check_params(None, TODAY) == (None, None)
    assert parse_check_params({}, TODAY) == (None, None)
    assert parse_check_params({"as_of": "2026-05-30", "window_days": 14}, TODAY) == (
        date(2026, 5, 30),
        14,
    )
    assert parse_check_params({"window_days": "7"}, TODAY) == (None, 7)  # query string


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([1, 2], "JSON object"),
        ({"as_of": "30/05/2026"}, "as_of must be a date"),
        ({"as_of": 20260530}, "as_of must be a date"),
        ({"as_of": "2026-06-02"}, "in the future"),
        ({"window_days": 0}, "between 1 and 366"),
        ({"window_days": 400}, "between 1 and 366"),
        ({"window_days": 2.5}, "window_days must be an integer"),
        ({"window_days": True}, "window_days must be an integer"),
        ({"as_off": "2026-05-30"}, "unknown parameter"),
    ],
)
def test_parse_check_params_names_the_problem(body: object, problem: str) -> None:
    with pytest.raises(BadRequest, match=problem):
        parse_check_params(body, TODAY)  # type: ignore[arg-type]


def test_bearer_token_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer") is None
    assert bearer_token(None) is None


def test_authenticator_token_and_id_token() -> None:
    seen: list[str] = []

    def verify(token: str) -> dict:
        seen.append(token)
        if token != "good-id-token":
            raise ValueError("bad signature")
        return {"aud": "x", "email": "ok@p.iam.gserviceaccount.com", "email_verified": True}

    auth = Authenticator("s3cret", verify, allowed_callers=["ok@p.iam.gserviceaccount.com"])
    assert auth.allows("Bearer s3cret")
    assert auth.allows("Bearer good-id-token")
    assert not auth.allows("Bearer s3cret2")
    assert not auth.allows("s3cret")
    assert not auth.allows(None)
    assert seen == ["good-id-token", "s3cret2"]


def test_authenticator_closed_unless_open_on_purpose() -> None:
    assert not Authenticator().allows("Bearer anything")
    assert Authenticator(allow_unauthenticated=True).allows(None)
    # A configured token wins over ALLOW_UNAUTHENTICATED.
    assert not Authenticator("t", allow_unauthenticated=True).allows(None)


def test_report_lists_worst_products_first() -> None:
    data = synthetic_window(200, date(2026, 5, 30), seed=2, drift_share=0.05, drift_factor=2.0)
    result = compute_health(data, HealthParams())
    ordered = worst_first(result.products)
    assert ordered["drift"].iloc[0] and not ordered["drift"].iloc[-1]
    drifted = ordered[ordered["drift"]]
    assert list(drifted["rmsse"]) == sorted(drifted["rmsse"], reverse=True)
    text = to_text(result, top=5)
    assert text.startswith("model UNHEALTHY")
    assert f"worst 5 of {result.n_products} products" in text
    table = text.splitlines()
    header = table.index(f"worst 5 of {result.n_products} products:") + 1
    assert table[header].split() == [
        "product", "n", "rmse", "rmsse", "bias", "drift", "effect", "q", "ref"
    ]  # fmt: skip
    first = table[header + 1]
    worst = ordered.iloc[0]
    assert first.startswith(worst["product_id"])
    assert f" {worst['drift_kind']} " in first and "too low" in first  # level shifts upward
    assert f"{worst['drift_qvalue']:.2g}" in first and "ks_" not in text
    assert max(len(line) for line in table[header:]) <= 120
    parsed = json.loads(to_json(result))
    assert parsed["healthy"] is False and len(parsed["products"]) == 200


def _row(kind: str | None, shift: float, shift_sd: float, ratio: float) -> SimpleNamespace:
    return SimpleNamespace(
        drift_kind=kind, bias_shift=shift, bias_shift_sd=shift_sd, spread_ratio=ratio
    )


@pytest.mark.parametrize(
    ("row", "text"),
    [
        # errors are actual - predicted: a positive shift means forecasts fell short
        (_row("level", 12.34, 2.14, 1.1), "12.3 too low (2.1 sd)"),
        (_row("level", -4.0, -1.0, 0.9), "4 too high (1 sd)"),
        (_row("scale", 0.2, 0.1, 2.04), "spread x2"),
        (_row("scale", 0.0, 0.0, 0.55), "spread x0.55"),
        (_row("shape", 0.5, 0.3, 1.2), "+0.3 sd, spread x1.2"),
        (_row(None, -0.1, -0.05, 1.04), "-0.05 sd, spread x1"),
        (_row(None, float("nan"), float("nan"), float("nan")), "-"),
    ],
)
def test_effect_in_the_table(row: SimpleNamespace, text: str) -> None:
    assert effect_text(row) == text


def test_long_product_ids_are_cut_to_keep_the_table_narrow() -> None:
    data = synthetic_window(30, date(2026, 5, 30), seed=4)
    long_ids = np.array([f"store-0042/department-frozen/{p}" for p in data.products], object)
    result = compute_health(replace(data, products=long_ids), HealthParams())
    table = to_text(result, top=30).splitlines()
    start = table.index(f"worst 30 of {result.n_products} products:") + 1
    assert all(len(line) <= 120 for line in table[start:])
    assert table[start + 1].startswith("store-0042/departme~ ")
