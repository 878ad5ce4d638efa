"""An in-process gRPC server that records every request, for testing google-cloud clients.

It accepts any method of any service. Each call is recorded as (method, request bytes);
the answer is what was configured for that method: a proto message (or bytes), a
callable taking the request bytes, or a `grpc.StatusCode` to fail with. Point a real
client at it with an explicit transport::

    with GrpcRecorder() as rec:
        rec.respond("/google.pubsub.v1.Publisher/Publish", PublishResponse(message_ids=["1"]))
        channel = grpc.insecure_channel(rec.address)
        client = PublisherClient(transport=PublisherGrpcTransport(channel=channel))
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc


@dataclass(frozen=True)
class RecordedCall:
    """One request that reached the server."""

    method: str
    request: bytes
    metadata: tuple[tuple[str, str], ...]

    def parse(self, message_type: Any) -> Any:
        """Decode the request with a proto-plus or protobuf message class."""
        if hasattr(message_type, "deserialize"):
            return message_type.deserialize(self.request)
        return message_type.FromString(self.request)


Answer = Any  # proto message | bytes | grpc.StatusCode | Callable[[bytes], Any]


def _serialize(answer: Any) -> bytes:
    if isinstance(answer, bytes):
        return answer
    if hasattr(type(answer), "serialize"):
        return type(answer).serialize(answer)
    return answer.SerializeToString()


class GrpcRecorder(grpc.GenericRpcHandler):
    """A recording gRPC server on 127.0.0.1 and a free port; use as a context manager."""

    def __init__(self) -> None:
        self.calls: list[RecordedCall] = []
        self._answers: dict[str, list[Answer]] = {}
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self._server.add_generic_rpc_handlers((self,))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"

    def respond(self, method: str, *answers: Answer) -> None:
        """Answer `method` with these, in turn; the last one repeats."""
        with self._lock:
            self._answers[method] = list(answers)

    def calls_to(self, method: str) -> list[RecordedCall]:
        """The recorded calls of one method (full name, e.g. /google.pubsub.v1.Publisher/Publish)."""
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def channel(self) -> grpc.Channel:
        """A new insecure channel to the server."""
        return grpc.insecure_channel(self.address)

    def service(self, handler_call_details: grpc.HandlerCallDetails):
        method = handler_call_details.method
        metadata = tuple(handler_call_details.invocation_metadata or ())

        def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
            with self._lock:
                self.calls.append(RecordedCall(method, request, metadata))
                queue = self._answers.get(method)
                if not queue:
                    answer: Answer = grpc.StatusCode.UNIMPLEMENTED
                elif len(queue) > 1:
                    answer = queue.pop(0)
                else:
                    answer = queue[0]
            if callable(answer) and not isinstance(answer, grpc.StatusCode):
                answer = answer(request)
            if isinstance(answer, grpc.StatusCode):
                context.abort(answer, f"recorder: {method} answered {answer.name}")
            return _serialize(answer)

        return grpc.unary_unary_rpc_method_handler(unary)

    def __enter__(self) -> GrpcRecorder:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None)
