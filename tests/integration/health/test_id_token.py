"""Google ID tokens, verified for real by google-auth against certificates served locally."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

import forecastguard.auth
from tests.integration.health.conftest import app, use_service

AUDIENCE = "https://europe-west1-demo-project.cloudfunctions.net/health"
KID = "test-key-1"
SCHEDULER = "scheduler@demo-project.iam.gserviceaccount.com"
HUMAN = "ops@example.com"


def _key_and_cert() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private, cert.public_bytes(serialization.Encoding.PEM)


class _CertsServer:
    """Serves the certificates (with Cache-Control) and counts the fetches; can stall."""

    def __init__(self, certs: bytes) -> None:
        self.fetches = 0
        self.stall = threading.Event()
        outer = self

        class Certs(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                if outer.stall.is_set():
                    time.sleep(30)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "public, max-age=3600")
                self.end_headers()
                self.wfile.write(certs)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Certs)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/certs"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def signer_and_certs():
    private, cert = _key_and_cert()
    server = _CertsServer(json.dumps({KID: cert.decode()}).encode())
    yield crypt.RSASigner.from_string(private, KID), server
    server.close()


def _token(signer, **claims: object) -> str:
    now = int(time.time())
    payload = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "sub": "1234567890",
        "email": SCHEDULER,
        "email_verified": True,
        "iat": now,
        "exp": now + 600,
        **claims,
    }
    return jwt.encode(signer, payload).decode()


def _client(filled_engine, server, monkeypatch, callers=(SCHEDULER, HUMAN)):
    monkeypatch.setattr(forecastguard.auth, "GOOGLE_CERTS_URL", server.url)
    use_service(
        filled_engine,
        health_api_token=None,
        health_audience=AUDIENCE,
        health_allowed_callers=tuple(callers),
    )
    client = app("health_http", "http").test_client()

    def status(token: str) -> int:
        return client.post(
            "/model/health",
            json={"as_of": "2026-05-30"},
            headers={"Authorization": f"Bearer {token}"},
        ).status_code

    return status


def test_google_id_tokens_through_the_function(
    filled_engine, signer_and_certs, monkeypatch
) -> None:
    signer, server = signer_and_certs
    status = _client(filled_engine, server, monkeypatch)
    assert status(_token(signer)) == 200
    assert status(_token(signer, email=HUMAN.upper())) == 200  # emails compare lower-case
    assert status(_token(signer, aud="https://elsewhere.example")) == 401
    assert status(_token(signer, iss="https://evil.example")) == 401
    assert status(_token(signer, exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)) == 401
    other_private, _ = _key_and_cert()
    assert status(_token(crypt.RSASigner.from_string(other_private, KID))) == 401
    assert status("not.a.jwt") == 401


def test_only_listed_verified_callers_pass(filled_engine, signer_and_certs, monkeypatch, caplog):
    signer, server = signer_and_certs
    status = _client(filled_engine, server, monkeypatch)
    stranger = "anyone@other-project.iam.gserviceaccount.com"
    assert status(_token(signer, email=stranger)) == 401
    assert status(_token(signer, email_verified=False)) == 401
    assert status(_token(signer, email_verified="false")) == 401
    claims_without_email = _token(signer, email=None)
    assert status(claims_without_email) == 401
    refused = [r for r in caplog.records if r.getMessage().startswith("ID token refused")]
    assert any(getattr(r, "caller", None) == stranger for r in refused)


def test_empty_allow_list_refuses_every_id_token(
    filled_engine, signer_and_certs, monkeypatch, caplog
) -> None:
    signer, server = signer_and_certs
    status = _client(filled_engine, server, monkeypatch, callers=())
    assert status(_token(signer)) == 401
    assert any("HEALTH_ALLOWED_CALLERS is empty" in r.getMessage() for r in caplog.records)


def test_certificates_are_cached_and_bogus_tokens_fetch_nothing(
    filled_engine, signer_and_certs, monkeypatch
) -> None:
    signer, server = signer_and_certs
    status = _client(filled_engine, server, monkeypatch)
    for _ in range(50):
        assert status("bogus-token-" + "x" * 40) == 401
    assert server.fetches == 0  # malformed: refused before any fetch
    for _ in range(5):
        assert status(_token(signer)) == 200
    assert server.fetches == 1  # kept for Cache-Control's max-age


def test_a_stalled_certificate_endpoint_is_cut_short(
    filled_engine, signer_and_certs, monkeypatch
) -> None:
    signer, server = signer_and_certs
    server.stall.set()
    status = _client(filled_engine, server, monkeypatch)
    start = time.monotonic()
    assert status(_token(signer)) == 401
    assert time.monotonic() - start < forecastguard.auth.CERTS_FETCH_TIMEOUT_S + 3
    start = time.monotonic()
    for _ in range(5):  # no new fetch right after a failed one: refused at once
        assert status(_token(signer)) == 401
    assert time.monotonic() - start < forecastguard.auth.CERTS_FETCH_TIMEOUT_S
    assert server.fetches == 1
