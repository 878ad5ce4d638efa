"""The report email through a real SMTP server (aiosmtpd) with STARTTLS and login."""

from __future__ import annotations

import email
import email.policy
import socket

import pytest

from tests.integration.trainer2.smtp_server import start_server
from trainer.report.emailer import Attachment, SmtpConfig, build_message, send


@pytest.fixture()
def smtp(tmp_path):
    controller, inbox, client_ctx = start_server(tmp_path, "bot@example.com", "app-pass")
    yield controller, inbox, client_ctx
    controller.stop()


def _message():
    return build_message(
        sender="bot@example.com",
        recipients=("a@example.com", "b@example.com"),
        subject="forecastguard run r1: promoted",
        text="Run r1\nRMSE 1.23",
        html='<h1>Run r1</h1><img src="shap_summary.png">',
        inline_images={"shap_summary.png": b"\x89PNG-shap"},
        attachments=[
            Attachment("per_product.csv", b"product_id,rmse\nP1,1.0\n"),
            Attachment("fairness.png", b"\x89PNG-fair"),
        ],
    )


def test_sends_text_html_inline_plots_and_attachments_over_starttls(smtp):
    controller, inbox, client_ctx = smtp
    cfg = SmtpConfig(
        host="127.0.0.1",
        port=controller.port,
        user="bot@example.com",
        password="app-pass",
        sender="bot@example.com",
        recipients=("a@example.com", "b@example.com"),
        ssl_context=client_ctx,
    )
    outcome = send(cfg, _message())
    assert outcome.sent and outcome.error is None
    [got] = inbox.messages
    assert got["tls"] and got["authenticated"]
    assert got["rcpt_tos"] == ["a@example.com", "b@example.com"]
    msg = email.message_from_bytes(got["content"], policy=email.policy.default)
    assert msg["Subject"] == "forecastguard run r1: promoted"
    assert "RMSE 1.23" in msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",))
    assert "cid:" in html.get_content() and 'src="shap_summary.png"' not in html.get_content()
    inline = [p for p in msg.walk() if p.get("Content-ID")]
    assert [p.get_content() for p in inline] == [b"\x89PNG-shap"]
    files = {p.get_filename(): p.get_content() for p in msg.iter_attachments()}
    assert files["per_product.csv"] == "product_id,rmse\nP1,1.0\n"
    assert files["fairness.png"] == b"\x89PNG-fair"


def test_wrong_password_is_recorded_not_raised(smtp):
    controller, inbox, client_ctx = smtp
    cfg = SmtpConfig(
        host="127.0.0.1",
        port=controller.port,
        user="bot@example.com",
        password="wrong",
        recipients=("a@example.com",),
        ssl_context=client_ctx,
    )
    outcome = send(cfg, _message())
    assert not outcome.sent and "SMTPAuthenticationError" in outcome.error
    assert inbox.messages == []


def test_unreachable_server_is_recorded_not_raised():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = SmtpConfig(host="127.0.0.1", port=port, recipients=("a@example.com",), timeout_s=2)
    outcome = send(cfg, _message())
    assert not outcome.sent and not outcome.skipped
    assert "ConnectionRefusedError" in outcome.error
    assert outcome.to_dict()["recipients"] == ["a@example.com"]


def test_not_configured_is_skipped():
    outcome = send(SmtpConfig(host=None, recipients=()), _message())
    assert outcome.skipped and not outcome.sent
