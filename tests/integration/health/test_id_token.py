"""Google ID tokens, verified for real by google-auth against certificates served locally."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

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


@pytest.fixture(scope="module")
def signer_and_certs_url():
    private, cert = _key_and_cert()
    certs = json.dumps({KID: cert.decode()}).encode()

    class Certs(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(certs)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Certs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield crypt.RSASigner.from_string(private, KID), f"http://127.0.0.1:{server.server_port}/certs"
    server.shutdown()
    server.server_close()


def _token(signer, **claims: object) -> str:
    now = int(time.time())
    payload = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "sub": "1234567890",
        "email": "scheduler@demo-project.iam.gserviceaccount.com",
        "iat": now,
        "exp": now + 600,
        **claims,
    }
    return jwt.encode(signer, payload).decode()


def test_google_id_tokens_through_the_function(
    filled_engine, signer_and_certs_url, monkeypatch
) -> None:
    signer, certs_url = signer_and_certs_url
    monkeypatch.setattr(forecastguard.auth, "GOOGLE_CERTS_URL", certs_url)
    use_service(filled_engine, health_api_token=None, health_audience=AUDIENCE)
    client = app("health_http", "http").test_client()

    def status(token: str) -> int:
        return client.post(
            "/model/health",
            json={"as_of": "2026-05-30"},
            headers={"Authorization": f"Bearer {token}"},
        ).status_code

    assert status(_token(signer)) == 200
    assert status(_token(signer, aud="https://elsewhere.example")) == 401
    assert status(_token(signer, iss="https://evil.example")) == 401
    assert status(_token(signer, exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)) == 401
    other_private, _ = _key_and_cert()
    assert status(_token(crypt.RSASigner.from_string(other_private, KID))) == 401
    assert status("not.a.jwt") == 401
