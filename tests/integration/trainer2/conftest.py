"""Fixtures for the trainer's integration tests: an in-process gcp-storage-emulator."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def gcs_emulator() -> Iterator[str]:
    """A gcp-storage-emulator on a free local port (in memory); yields its endpoint URL."""
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="fg-artifacts")
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture()
def gcs_client(gcs_emulator):
    """The real google-cloud-storage client pointed at the emulator, anonymous."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(
        project="forecastguard-test",
        client_options={"api_endpoint": gcs_emulator},
        credentials=AnonymousCredentials(),
    )
