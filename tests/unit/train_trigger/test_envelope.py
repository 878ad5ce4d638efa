"""Unwrapping a Pub/Sub CloudEvent's data: the message id and the message's bytes."""

from __future__ import annotations

import base64

import pytest

from forecastguard.messages import MessageError
from forecastguard.trigger import message_data_of, message_id_of


def envelope(**message) -> dict:
    return {"message": message, "subscription": "projects/p/subscriptions/s"}


def test_the_message_id_comes_from_the_envelope_then_the_event():
    assert message_id_of("ce-1", envelope(messageId="m-1")) == "m-1"
    assert message_id_of("ce-1", envelope(message_id="m-2")) == "m-2"
    assert message_id_of("ce-1", envelope()) == "ce-1"
    anonymous = message_id_of(None, {"odd": True})
    assert anonymous.startswith("sha256:") and anonymous == message_id_of(None, {"odd": True})


def test_the_data_is_decoded_from_base64():
    data = base64.b64encode(b'{"a": 1}').decode()
    assert message_data_of(envelope(data=data)) == b'{"a": 1}'
    assert message_data_of(f'{{"message": {{"data": "{data}"}}}}') == b'{"a": 1}'


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"no": "message"}, "no Pub/Sub 'message' object"),
        (["a", "list"], "no Pub/Sub 'message' object"),
        (envelope(), "has no data"),
        (envelope(data=""), "has no data"),
        (envelope(data="not base64!"), "not valid base64"),
        (b"\xff not json", "not a Pub/Sub JSON envelope"),
    ],
)
def test_a_broken_envelope_is_named(data, problem):
    with pytest.raises(MessageError, match=problem):
        message_data_of(data)
