"""The report email: SMTP with STARTTLS (Gmail: smtp.gmail.com:587 and an app password).

`build_message` makes a multipart message (plain text, HTML with the plots inline,
attachments); `send` delivers it and never raises: a failed send is logged and comes
back as an `EmailOutcome` with the error, so the run and its artifacts are not lost.
"""

from __future__ import annotations

import mimetypes
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from forecastguard.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to send; built from `Settings` by `from_settings`."""

    host: str | None
    port: int = 587
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = True
    sender: str | None = None
    recipients: tuple[str, ...] = ()
    timeout_s: float = 30.0
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> SmtpConfig:
        """Read SMTP_* and REPORT_* settings (a `forecastguard.config.Settings`)."""
        values = {
            "host": settings.smtp_host,
            "port": settings.smtp_port,
            "user": settings.smtp_user,
            "password": settings.smtp_password,
            "starttls": settings.smtp_starttls,
            "sender": settings.report_from or settings.smtp_user,
            "recipients": tuple(settings.report_recipients),
        }
        values.update(overrides)
        return cls(**values)

    @property
    def configured(self) -> bool:
        """Whether there is a server and at least one recipient."""
        return bool(self.host and self.recipients)

    @property
    def missing(self) -> list[str]:
        """The settings the email still lacks (empty when it is configured)."""
        return [
            name
            for name, value in (("SMTP_HOST", self.host), ("REPORT_RECIPIENTS", self.recipients))
            if not value
        ]


@dataclass(frozen=True)
class Attachment:
    """One attached file."""

    filename: str
    data: bytes

    @property
    def mime(self) -> tuple[str, str]:
        """(maintype, subtype) guessed from the file name."""
        guessed, _ = mimetypes.guess_type(self.filename)
        maintype, _, subtype = (guessed or "application/octet-stream").partition("/")
        return maintype, subtype


@dataclass(frozen=True)
class EmailOutcome:
    """What happened to the email (kept with the run's records)."""

    sent: bool
    recipients: tuple[str, ...]
    subject: str
    attempted_at: str
    error: str | None = None
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return {
            "sent": self.sent,
            "skipped": self.skipped,
            "recipients": list(self.recipients),
            "subject": self.subject,
            "attempted_at": self.attempted_at,
            "error": self.error,
        }


def build_message(
    *,
    sender: str,
    recipients: tuple[str, ...],
    subject: str,
    text: str,
    html: str,
    inline_images: dict[str, bytes] | None = None,
    attachments: list[Attachment] | tuple[Attachment, ...] = (),
) -> EmailMessage:
    """A multipart/mixed message: text and HTML alternatives, then the attachments.

    Each `src="<name>"` in `html` whose name is a key of `inline_images` is rewritten
    to a `cid:` reference and the image is embedded as a related part.
    """
    if not recipients:
        raise ValueError("an email needs at least one recipient (REPORT_RECIPIENTS)")
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    msg.set_content(text)
    cids = {name: make_msgid()[1:-1] for name in (inline_images or {})}
    for name, cid in cids.items():
        html = html.replace(f'src="{name}"', f'src="cid:{cid}"')
    msg.add_alternative(html, subtype="html")
    html_part = msg.get_payload()[-1]
    for name, cid in cids.items():
        maintype, subtype = Attachment(name, b"").mime
        html_part.add_related(
            (inline_images or {})[name],
            maintype=maintype,
            subtype=subtype,
            cid=f"<{cid}>",
            filename=name,
        )
    for att in attachments:
        maintype, subtype = att.mime
        msg.add_attachment(att.data, maintype=maintype, subtype=subtype, filename=att.filename)
    return msg


def send(cfg: SmtpConfig, msg: EmailMessage) -> EmailOutcome:
    """Deliver `msg` to `cfg.recipients`; never raises.

    STARTTLS is required when `cfg.starttls` (the server must offer it); login happens
    only over TLS, or when `starttls` is explicitly off (a local relay).
    """
    now = datetime.now(UTC).isoformat(timespec="seconds")
    subject = str(msg["Subject"] or "")
    if not cfg.configured:
        # Email is optional (on Google Cloud it stays off until someone provides the SMTP
        # password): say so plainly, in the log and in the run's email record.
        reason = (
            f"report email off: {' and '.join(cfg.missing)} not set; "
            "the report is only in the run's artifacts"
        )
        log.warning(reason)
        return EmailOutcome(False, cfg.recipients, subject, now, reason, skipped=True)
    try:
        with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s) as smtp:
            smtp.ehlo()
            if cfg.starttls:
                smtp.starttls(context=cfg.ssl_context or ssl.create_default_context())
                smtp.ehlo()
            if cfg.user:
                smtp.login(cfg.user, cfg.password or "")
            refused = smtp.send_message(
                msg, from_addr=cfg.sender or cfg.user, to_addrs=list(cfg.recipients)
            )
    except (smtplib.SMTPException, OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.error(
            "report email failed",
            extra={"smtp_host": cfg.host, "smtp_port": cfg.port, "error": error},
        )
        return EmailOutcome(False, cfg.recipients, subject, now, error)
    if refused:
        error = f"refused recipients: {sorted(refused)}"
        log.warning("report email partly refused", extra={"error": error})
        return EmailOutcome(True, cfg.recipients, subject, now, error)
    log.info("report email sent", extra={"recipients": list(cfg.recipients)})
    return EmailOutcome(True, cfg.recipients, subject, now)
