"""The retrain publisher: Pub/Sub on Google Cloud, or an HTTP push of the same CloudEvent.

`RETRAIN_TOPIC=projects/P/topics/T` publishes with google-cloud-pubsub. An `http://` (or
`https://`) URL posts the CloudEvent that Eventarc would deliver for that Pub/Sub
message (type google.cloud.pubsub.topic.v1.messagePublished, structured JSON format) to
the train_trigger function served by functions-framework — the local chain.
"""

from __future__ import annotations

import base64
import re
import threading
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from forecastguard.config import ConfigError, Settings
from forecastguard.messages import RetrainMessage

PUBSUB_EVENT_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"
_TOPIC = re.compile(r"^projects/[^/]+/topics/[^/]+$")
LOCAL_TOPIC = "projects/local/topics/retrain-requests"


class PublishError(RuntimeError):
    """The retrain message could not be delivered."""


class RetrainPublisher(Protocol):
    """Delivers a retrain message; returns the message id."""

    def publish(self, message: RetrainMessage) -> str:
        """Publish the message and wait until it is accepted."""
        ...


def _attributes(message: RetrainMessage) -> dict[str, str]:
    return {"request_id": message.request_id, "schema_version": str(message.schema_version)}


class PubSubPublisher:
    """Publishes to a Pub/Sub topic with google-cloud-pubsub (client created once, lazily)."""

    def __init__(self, topic: str, client: Any = None, *, timeout_s: float = 60.0) -> None:
        if not _TOPIC.match(topic):
            raise ConfigError(f"RETRAIN_TOPIC must be projects/P/topics/T, got {topic!r}")
        self.topic = topic
        self.timeout_s = timeout_s
        self._client = client
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The PublisherClient, created on first use."""
        with self._lock:
            if self._client is None:
                from google.cloud import pubsub_v1

                self._client = pubsub_v1.PublisherClient()
            return self._client

    def publish(self, message: RetrainMessage) -> str:
        """Publish; the data is the message's JSON, the request id is also an attribute."""
        future = self.client.publish(self.topic, message.to_json(), **_attributes(message))
        try:
            return str(future.result(timeout=self.timeout_s))
        except Exception as exc:
            raise PublishError(f"publishing to {self.topic} failed: {exc}") from exc


def pubsub_cloudevent(
    message: RetrainMessage, topic: str = LOCAL_TOPIC, *, message_id: str | None = None
) -> tuple[dict[str, str], bytes]:
    """(headers, body) of the structured-mode CloudEvent Eventarc delivers for a message."""
    return pubsub_cloudevent_for(
        message.to_json(), topic, attributes=_attributes(message), message_id=message_id
    )


def pubsub_cloudevent_for(
    data: bytes,
    topic: str,
    *,
    attributes: dict[str, str] | None = None,
    message_id: str | None = None,
) -> tuple[dict[str, str], bytes]:
    """(headers, body) of the Pub/Sub push CloudEvent carrying `data` on `topic`."""
    from cloudevents.conversion import to_structured
    from cloudevents.http import CloudEvent

    message_id = message_id or uuid.uuid4().hex
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    event = CloudEvent(
        {
            "type": PUBSUB_EVENT_TYPE,
            "source": f"//pubsub.googleapis.com/{topic}",
            "id": message_id,
            "time": now,
            "datacontenttype": "application/json",
        },
        {
            "message": {
                "data": base64.b64encode(data).decode("ascii"),
                "attributes": attributes or {},
                "messageId": message_id,
                "message_id": message_id,
                "publishTime": now,
                "publish_time": now,
            },
            "subscription": topic.replace("/topics/", "/subscriptions/") + "-push",
        },
    )
    return to_structured(event)


class HttpPushPublisher:
    """Posts the Pub/Sub CloudEvent of the message to a local function's URL."""

    def __init__(self, url: str, *, topic: str = LOCAL_TOPIC, timeout_s: float = 30.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"RETRAIN_TOPIC URL must start with http:// or https://, got {url!r}")
        self.url = url
        self.topic = topic
        self.timeout_s = timeout_s
        self._session: Any = None

    def publish(self, message: RetrainMessage) -> str:
        """Push the event; a non-2xx answer or no answer raises `PublishError`."""
        import requests

        if self._session is None:
            self._session = requests.Session()
        message_id = uuid.uuid4().hex
        headers, body = pubsub_cloudevent(message, self.topic, message_id=message_id)
        try:
            response = self._session.post(
                self.url, data=body, headers=headers, timeout=self.timeout_s
            )
        except requests.RequestException as exc:
            raise PublishError(f"pushing the retrain event to {self.url} failed: {exc}") from exc
        if not 200 <= response.status_code < 300:
            raise PublishError(
                f"{self.url} answered {response.status_code} to the retrain event: "
                f"{response.text[:200]}"
            )
        return message_id


def make_publisher(settings: Settings, client: Any = None) -> RetrainPublisher | None:
    """The publisher `RETRAIN_TOPIC` names, or None when it is unset."""
    topic = settings.retrain_topic
    if not topic:
        return None
    if topic.startswith(("http://", "https://")):
        project = settings.gcp_project or "local"
        return HttpPushPublisher(topic, topic=f"projects/{project}/topics/retrain-requests")
    return PubSubPublisher(topic, client)
