"""The report email is optional on Google Cloud: without the SMTP password (which only a
person can provide) Terraform sets no SMTP_HOST and the trainer runs, skipping the email
and saying why in its log and in the run's email record."""

from __future__ import annotations

import logging

from forecastguard.config import Settings
from tests.infra.hcl import load
from trainer.report.emailer import SmtpConfig, build_message, send


def _message():
    return build_message(
        sender="bot@example.com",
        recipients=("ops@example.com",),
        subject="forecastguard: model v1 promoted",
        text="report",
        html="<p>report</p>",
    )


def test_terraform_sets_no_smtp_host_without_the_password() -> None:
    tf = load()
    assert tf.variables["smtp_password_secret"]["default"] == ""
    assert tf.locals["email_enabled"] == (
        '${var.smtp_password_secret != "" && length(var.report_recipients) > 0}'
    )
    assert tf.local_map("trainer_env")["SMTP_HOST"] == '${local.email_enabled ? var.smtp_host : ""}'


def test_the_trainer_skips_the_email_and_says_why(caplog) -> None:
    # What the trainer's settings are on Google Cloud without the password: SMTP_HOST empty.
    settings = Settings.from_env({"SMTP_HOST": "", "REPORT_RECIPIENTS": "ops@example.com"})
    cfg = SmtpConfig.from_settings(settings)
    with caplog.at_level(logging.WARNING):
        outcome = send(cfg, _message())
    assert outcome.skipped and not outcome.sent
    assert "SMTP_HOST not set" in outcome.error
    assert outcome.to_dict()["error"] == outcome.error, "the run's email.json says why"
    assert any("report email off" in r.getMessage() for r in caplog.records)


def test_missing_names_every_absent_setting() -> None:
    assert SmtpConfig(host=None).missing == ["SMTP_HOST", "REPORT_RECIPIENTS"]
    assert SmtpConfig(host="smtp.example.com", recipients=("a@example.com",)).missing == []
