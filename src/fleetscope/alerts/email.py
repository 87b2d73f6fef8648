"""Notifications by e-mail: one message per notification, over SMTP, with a picture of the panel.

Settings of an ``email`` receiver: ``host``, ``port`` (default 587 with STARTTLS, 25 without;
465 is SMTPS, TLS from the first byte, as RFC 8314 has it), ``starttls`` (default true: the
connection is upgraded before anything else is said, and the server's certificate is checked),
``username`` and ``password`` (AUTH, after STARTTLS; smtplib picks PLAIN or LOGIN, whichever the
server offers), ``sender``, ``to`` (a list), ``timeout`` (seconds per network operation).

The message: subject ``[FIRING] <summary or alertname> (<key>)`` (``[RESOLVED]`` ...), a
plain-text body with the value, threshold, times, labels and the dashboard link, and the
panel around the moment it fired as ``panel.png`` when a renderer drew one.

Why the standard library's blocking ``smtplib`` rather than an asyncio client: no new
dependency for a path that sends a few messages per state change, and smtplib's STARTTLS and
AUTH are the most used there are. :mod:`fleetscope.alerts.deliver` runs :func:`send` in a
thread of the receiver's own (one per e-mail receiver), so a slow mail server ties up neither
the event loop nor the shared default executor. The price: an attempt cannot be cancelled
half-way, only bounded by the socket ``timeout`` of each operation.
"""

from __future__ import annotations

import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from fleetscope.alerts.alertmanager import link, number
from fleetscope.model.alerts import DEFAULT_TIMEOUT, FIRING, Notification

SMTPS_PORT = 465  # implicit TLS (RFC 8314)
SUBMISSION_PORT = 587  # STARTTLS
SMTP_PORT = 25
MAX_SUBJECT = 200  # characters; mail clients cut long subjects anyway
IMAGE_NAME = "panel.png"


def subject(n: Notification) -> str:
    """``[FIRING] High CPU on web1 (web1)``; the alertname when there is no summary; no key part
    for a rule on the whole value."""
    title = " ".join((n.summary or str(n.labels.get("alertname") or f"rule {n.rule_id}")).split())
    text = f"[{n.status.upper()}] {title}" + (f" ({n.key})" if n.key else "")
    return text if len(text) <= MAX_SUBJECT else text[: MAX_SUBJECT - 1] + "…"


def text(n: Notification, base_url: str) -> str:
    """The plain-text body."""
    lines = [f"{n.status.upper()}: {n.summary or n.labels.get('alertname', '')}".rstrip(), ""]
    if n.repeat:
        lines += ["Reminder: still firing.", ""]
    if n.description:
        lines += [n.description, ""]
    rows = [("Alert", str(n.labels.get("alertname", f"rule {n.rule_id}"))), ("Key", n.key or "(whole value)"),
            ("Severity", n.severity), ("Value", number(n.value)), ("Threshold", number(n.threshold)),
            ("Started", _when(n.starts_at))]
    if n.status != FIRING:
        rows.append(("Resolved", _when(n.ends_at if n.ends_at is not None else n.at)))
    rows.append(("Dashboard", link(base_url, n.url)))
    lines += [f"{name + ':':<11}{value}" for name, value in rows]
    if n.labels:
        lines += ["", "Labels:"] + [f"  {k} = {v}" for k, v in sorted(n.labels.items())]
    return "\n".join(lines) + "\n"


def message(n: Notification, settings: dict, base_url: str, image: bytes | None) -> EmailMessage:
    """The message for ``n`` from the receiver's ``settings``, with ``image`` (PNG) attached."""
    msg = EmailMessage()
    msg["Subject"] = subject(n)
    msg["From"] = settings["sender"]
    msg["To"] = ", ".join(settings["to"])
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid("fleetscope", domain=settings["sender"].rpartition("@")[2] or None)
    msg["X-Fleetscope-Fingerprint"] = n.fingerprint
    msg["X-Fleetscope-Status"] = n.status
    msg.set_content(text(n, base_url))
    if image:
        msg.add_attachment(image, maintype="image", subtype="png", filename=IMAGE_NAME)
    return msg


def send(settings: dict, msg: EmailMessage, *, context: ssl.SSLContext | None = None) -> None:
    """Send ``msg`` over SMTP as ``settings`` say (blocking). Raises ``smtplib.SMTPException``
    or ``OSError``; the password never appears in what it raises or logs (debug output is off)."""
    context = context or ssl.create_default_context()
    starttls = settings.get("starttls", True)
    port = settings.get("port") or (SUBMISSION_PORT if starttls else SMTP_PORT)
    timeout = settings.get("timeout", DEFAULT_TIMEOUT)
    if port == SMTPS_PORT:
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(settings["host"], port, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(settings["host"], port, timeout=timeout)
    with smtp:
        smtp.ehlo()
        if starttls and port != SMTPS_PORT:
            smtp.starttls(context=context)  # SMTPNotSupportedError when the server does not offer it
            smtp.ehlo()
        if settings.get("username"):
            smtp.login(settings["username"], settings.get("password", ""))
        refused = smtp.send_message(msg, settings["sender"], list(settings["to"]))
    if refused:  # some recipients took it: success, but say who did not
        raise PartlyRefused(refused)


class PartlyRefused(smtplib.SMTPException):
    """The server took the message for some recipients and refused others (not retried: the
    ones that took it would get it twice)."""

    def __init__(self, refused: dict) -> None:
        self.refused = refused
        super().__init__("refused: " + ", ".join(f"{a} ({code})" for a, (code, _) in refused.items()))


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
