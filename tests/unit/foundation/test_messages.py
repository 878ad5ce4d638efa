import json
from datetime import date

import pytest

from forecastguard.messages import MessageError, RetrainMessage, make_request_id

GOOD = {
    "schema_version": 1,
    "request_id": "9f2c0a",
    "reason": "avg_rmse 21.4 > 18.0",
    "health_check_id": "hc-1",
    "model_version": "m-1",
    "window_start": "2026-05-01",
    "window_end": "2026-05-30",
}


def test_round_trip_and_unknown_fields_ignored():
    msg = RetrainMessage.from_json(json.dumps({**GOOD, "extra": [1, 2]}).encode())
    assert msg.window_end == date(2026, 5, 30) and msg.model_version == "m-1"
    assert RetrainMessage.from_json(msg.to_json()) == msg


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (b"\xff\xfe", "UTF-8 JSON"),
        (b"not json", "UTF-8 JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({**GOOD, "schema_version": 2}), "schema_version"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "request_id"}), "request_id"),
        (json.dumps({**GOOD, "request_id": "has space"}), "request_id"),
        (json.dumps({**GOOD, "reason": " "}), "reason"),
        (json.dumps({**GOOD, "window_end": "2026-13-01"}), "window_end"),
        (json.dumps({**GOOD, "window_start": "2026-06-01"}), "after window_end"),
        (json.dumps({**GOOD, "model_version": 3}), "model_version"),
    ],
)
def test_malformed_messages_name_the_problem(data, named):
    with pytest.raises(MessageError, match=named):
        RetrainMessage.from_json(data)


def test_request_id_is_stable_and_distinguishes_windows():
    a = make_request_id(date(2026, 5, 30), "m-1", ["rmse", "drift"])
    assert a == make_request_id(date(2026, 5, 30), "m-1", ["drift", "rmse"])
    assert a != make_request_id(date(2026, 5, 31), "m-1", ["rmse", "drift"])
    assert a != make_request_id(date(2026, 5, 30), "m-2", ["rmse", "drift"])
