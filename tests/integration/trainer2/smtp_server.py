"""An in-test SMTP server (aiosmtpd) with STARTTLS and login, and a self-signed cert."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Inbox:
    """Messages received by the handler, with the envelope and the TLS state."""

    messages: list[dict[str, Any]] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(
            {
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "content": envelope.original_content or envelope.content,
                "tls": session.ssl is not None,
                "authenticated": session.authenticated,
            }
        )
        return "250 Message accepted"


def authenticator(user: str, password: str):
    """An aiosmtpd authenticator that accepts exactly `user`/`password`."""

    def check(server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode() == user and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False)  # handled=False: the server replies 535

    return check


def start_server(
    folder: Path, user: str, password: str
) -> tuple[Controller, Inbox, ssl.SSLContext]:
    """Start aiosmtpd on a free port with STARTTLS required for login; returns the
    controller, the inbox and a client SSL context that trusts the server's cert."""
    cert, key = self_signed_cert(folder)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    inbox = Inbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=_free_port(),
        tls_context=server_ctx,
        require_starttls=True,
        authenticator=authenticator(user, password),
        auth_require_tls=True,
        auth_exclude_mechanism=["LOGIN"],  # PLAIN only: one auth exchange per login
    )
    controller.start()
    client_ctx = ssl.create_default_context(cafile=str(cert))
    return controller, inbox, client_ctx


def start_trainer_smtp(folder: Path) -> tuple[Controller, Inbox, Any]:
    """`start_server` with the login the trainer tests use, and the trainer's `SmtpConfig`
    for it (STARTTLS, sender bot@example.com, one recipient ops@example.com)."""
    from trainer.report.emailer import SmtpConfig

    controller, inbox, client_ctx = start_server(folder, "bot@example.com", "app-pass")
    smtp = SmtpConfig(
        host="127.0.0.1",
        port=controller.port,
        user="bot@example.com",
        password="app-pass",
        sender="bot@example.com",
        recipients=("ops@example.com",),
        ssl_context=client_ctx,
    )
    return controller, inbox, smtp
