"""The artifact store's gs:// path through the real client against gcp-storage-emulator."""

from __future__ import annotations

import http.server
import threading

import pytest
import requests

from forecastguard.storage import ArtifactNotFound, open_store


def test_gcs_roundtrip_list_and_child(gcs_client, tmp_path):
    store = open_store("gs://fg-artifacts/prod", client=gcs_client)
    store.write_json("runs/r1/metrics.json", {"rmse": 1.25})
    store.write_bytes("runs/r1/plot.png", b"\x89PNG")
    store.write_text("runs/r10/other.txt", "not r1")
    assert store.read_json("runs/r1/metrics.json") == {"rmse": 1.25}
    assert store.list("runs/r1") == ["runs/r1/metrics.json", "runs/r1/plot.png"]
    run = store.child("runs/r1")
    assert run.list() == ["metrics.json", "plot.png"]
    assert run.key_uri("plot.png") == "gs://fg-artifacts/prod/runs/r1/plot.png"
    assert store.exists("runs/r1/plot.png") and not store.exists("runs/r1/none")
    with pytest.raises(ArtifactNotFound, match="gs://fg-artifacts/prod/runs/r1/none"):
        run.read_bytes("none")
    blob = gcs_client.bucket("fg-artifacts").get_blob("prod/runs/r1/metrics.json")
    assert blob.content_type == "application/json"

    src = tmp_path / "m"
    (src / "d").mkdir(parents=True)
    (src / "d" / "w.bin").write_bytes(b"w" * 1000)
    run.upload_dir("model", src)
    run.download_dir("model", tmp_path / "back")
    assert (tmp_path / "back" / "d" / "w.bin").read_bytes() == b"w" * 1000


class _FlakyProxy(http.server.BaseHTTPRequestHandler):
    """Forwards to the emulator, answering 503 to the first `failures` uploads."""

    upstream = ""
    failures = 0
    uploads_seen = 0

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith("/upload/"):
            type(self).uploads_seen += 1
            if type(self).uploads_seen <= type(self).failures:
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        headers = {
            k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
        }
        resp = requests.request(
            self.command, self.upstream + self.path, headers=headers, data=body, timeout=10
        )
        self.send_response(resp.status_code)
        for key, value in resp.headers.items():
            if key.lower() not in (
                "content-length",
                "transfer-encoding",
                "connection",
                "content-encoding",
            ):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(resp.content)))
        self.end_headers()
        self.wfile.write(resp.content)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

    def log_message(self, *args) -> None:
        pass


def test_gcs_uploads_are_retried_after_a_503(gcs_emulator):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    _FlakyProxy.upstream, _FlakyProxy.failures, _FlakyProxy.uploads_seen = gcs_emulator, 2, 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FlakyProxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = storage.Client(
            project="forecastguard-test",
            client_options={"api_endpoint": f"http://127.0.0.1:{server.server_port}"},
            credentials=AnonymousCredentials(),
        )
        store = open_store("gs://fg-artifacts/flaky", client=client)
        store.write_json("runs/r1/manifest.json", {"ok": True})
        assert _FlakyProxy.uploads_seen == 3  # two 503s, then the upload went through
        assert store.read_json("runs/r1/manifest.json") == {"ok": True}
    finally:
        server.shutdown()
        server.server_close()
