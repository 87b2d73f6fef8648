"""Delivery of alert notifications to real receivers (fleetscope.alerts.deliver and its transports).

No mocks: a real Prometheus Alertmanager (Debian's package), a real SMTP server (aiosmtpd, with
STARTTLS and AUTH), and HTTP servers in the test that check what they get independently (the
HMAC with the hmac module, the PNG with Pillow, times with the test's own clock). The notifier
runs on an event loop in a thread of its own, as in a process, and the test calls ``send`` from
the main thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import io
import json
import logging
import ssl
import threading
import time
from datetime import datetime
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from PIL import Image

from fleetscope.alerts.deliver import Notifier
from fleetscope.model.alerts import Notification, Receiver
from tests.alertmanager import active, running_alertmanager
from tests.conftest import free_port, wait_for

BASE_URL = "https://fleetscope.example.test:8443"


def note(status: str = "firing", key: str = "web1", value: float | None = 0.97, rule_id: int = 4,
         alertname: str = "FleetscopeHighCPU", **labels: str) -> Notification:
    started = 1_700_000_000.0
    at = started + (0 if status == "firing" else 120)
    return Notification(
        rule_id=rule_id, inst_id=3, tenant=None, key=key, status=status, severity="critical",
        labels={"alertname": alertname, "instrumentation": "3", "metric": "cpu.usage",
                "severity": "critical", "key": key, "team": "web", **labels},
        summary=f"CPU above 90% on {key}", description=f"cpu.usage of {key} is {value}",
        value=value, threshold=0.9, starts_at=started, ends_at=None if status == "firing" else at, at=at,
        url=f"/?inst=3&t={int(at)}")


class Background:
    """An event loop in a thread, where the notifiers of a test run."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.notifiers: list[Notifier] = []

    def run(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def notifier(self, **kwargs) -> Notifier:
        n = Notifier(BASE_URL, **kwargs)
        self.run(n.start())
        self.notifiers.append(n)
        return n

    def close(self) -> None:
        for n in self.notifiers:
            self.run(n.stop(1.0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def background():
    bg = Background()
    yield bg
    bg.close()


class Hook:
    """An HTTP receiver in a thread: records each request (time, headers, body) and answers
    with ``answer(n)`` for the n-th request (0-based) ; a ``hold`` event makes it slow."""

    def __init__(self, answer=lambda n: 200, hold: threading.Event | None = None) -> None:
        self.requests: list[tuple[float, dict, bytes]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests.append((time.monotonic(), dict(self.headers), body))
                if hold is not None:
                    hold.wait(10)
                status = answer(len(hook.requests) - 1)
                with contextlib.suppress(OSError):  # a client that timed out has gone
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"no" if status >= 300 else b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# -- webhook ---------------------------------------------------------------------------------------


def test_webhook_is_signed_and_retried_with_backoff(background: Background) -> None:
    secret = "hook-secret-5b1e"
    hook = Hook(answer=lambda n: 500 if n < 2 else 200)
    try:
        settings = {"url": hook.url + "/alerts", "secret": secret, "timeout": 2.0}
        receiver = Receiver("hook", "webhook", settings)
        backoff = 0.2
        notifier = background.notifier(attempts=5, backoff=backoff)
        n = note()
        before = time.time()
        notifier.send(n, receiver)
        wait_for(lambda: notifier.stats()["hook"]["sent"] == 1, timeout=10)
        after = time.time()
        stats = notifier.stats()["hook"]
    finally:
        hook.close()

    assert len(hook.requests) == 3
    for _, headers, body in hook.requests:  # every attempt is signed over its own exact bytes
        assert hmac.compare_digest(headers["X-Fleetscope-Signature"], signature(secret, body))
        doc = json.loads(body)
        assert float(headers["X-Fleetscope-Timestamp"]) == doc["sent"]
        assert before <= doc["sent"] <= after
    # exponential backoff: at least 1x, then 2x the base delay between attempts
    times = [t for t, _, _ in hook.requests]
    assert times[1] - times[0] >= backoff * 0.95
    assert times[2] - times[1] >= 2 * backoff * 0.95
    doc = json.loads(hook.requests[-1][2])
    assert doc["version"] == 1 and doc["receiver"] == "hook"
    [got] = doc["notifications"]
    assert {k: got[k] for k in n._fields} == n._asdict()
    assert got["fingerprint"] == "4/web1"
    assert got["link"] == "https://fleetscope.example.test:8443/?inst=3&t=1700000000"
    assert stats["sent"] == 1 and stats["failed_attempts"] == 2
    assert stats["given_up"] == 0 and stats["pending"] == 0 and stats["dropped"] == 0
    assert before <= stats["last_success"] <= after
    assert stats["last_error"].startswith("HTTP 500") and secret not in stats["last_error"]


# -- isolation of a bad receiver ---------------------------------------------------------------


def test_a_down_or_slow_receiver_delays_neither_the_caller_nor_a_healthy_one(
        background: Background, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = ["down-secret-91", "url-pass-37", "slow-secret-22", "smtp-pass-64"]
    release = threading.Event()
    healthy, slow = Hook(), Hook(hold=release)
    receivers = {
        "healthy": Receiver("healthy", "webhook", {"url": healthy.url, "secret": "healthy-secret"}),
        "down": Receiver("down", "webhook", {"url": f"http://alice:{secrets[1]}@127.0.0.1:{free_port()}/x",
                                             "secret": secrets[0], "timeout": 1.0}),
        "slow": Receiver("slow", "webhook", {"url": slow.url, "secret": secrets[2], "timeout": 0.5}),
        "mail": Receiver("mail", "email", {"host": "127.0.0.1", "port": free_port(), "username": "alerts",
                                           "password": secrets[3], "sender": "fs@example.test",
                                           "to": ["ops@example.test"], "timeout": 1.0}),
    }
    queue_size = 16
    try:
        notifier = background.notifier(attempts=10, backoff=5.0, queue_size=queue_size)
        for r in receivers.values():
            notifier.send(note(), r)
        wait_for(lambda: len(healthy.requests) == 1, timeout=3)
        wait_for(lambda: all(notifier.stats()[k]["failed_attempts"] >= 1 for k in ("down", "slow", "mail")),
                 timeout=5)

        # The caller never waits: 100 sends to a receiver that is down (in its backoff now) are
        # queue appends; the queue keeps the newest 16 and counts what it dropped.
        t0 = time.perf_counter()
        for i in range(100):
            notifier.send(note(key=f"k{i}"), receivers["down"])
        assert time.perf_counter() - t0 < 0.5
        down = notifier.stats()["down"]
        assert down["dropped"] == 100 - queue_size and down["pending"] == queue_size + 1

        # ... and the healthy receiver still gets the next one at once
        notifier.send(note("resolved"), receivers["healthy"])
        wait_for(lambda: len(healthy.requests) == 2, timeout=3)
        stats = notifier.stats()
        assert stats["healthy"]["sent"] == 2 and stats["healthy"]["failed_attempts"] == 0
        for k in ("down", "slow", "mail"):
            assert stats[k]["sent"] == 0 and stats[k]["pending"] >= 1 and stats[k]["given_up"] == 0
        assert stats["down"]["last_error"].startswith("cannot connect")
        assert stats["slow"]["last_error"] == "timed out after 0.5 s"
        assert "Connection refused" in stats["mail"]["last_error"]

        # stop() drains what it can within its timeout; a retry due after it is not waited for
        t0 = time.monotonic()
        background.run(notifier.stop(3.0))
        assert time.monotonic() - t0 < 1.5
        assert notifier.stats()["down"]["pending"] == queue_size + 1
    finally:
        release.set()
        healthy.close()
        slow.close()
    assert "attempt failed" in caplog.text  # the failures were logged ...
    shown = caplog.text + json.dumps(notifier.stats())
    for secret in secrets:  # ... and no secret anywhere
        assert secret not in shown


# -- e-mail --------------------------------------------------------------------------------------


class Inbox:
    """aiosmtpd handler: keeps each message with how its session was authenticated."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes, bool]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content,
                              session.ssl is not None))
        return "250 OK"


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_email_over_starttls_with_login_and_the_panel_attached(background: Background,
                                                                mechanism: str) -> None:
    password = "smtp-pass-8c2d"
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    logins: list[tuple[str, bytes, bool]] = []

    def authenticator(server, session, envelope, used, data) -> AuthResult:
        ok = (isinstance(data, LoginPassword) and data.login == b"alerts"
              and data.password == password.encode())
        logins.append((used, data.login, ok))
        return AuthResult(success=ok, handled=False)

    inbox = Inbox()
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
    smtpd = Controller(inbox, hostname="127.0.0.1", port=free_port(), tls_context=server_tls,
                       require_starttls=True, authenticator=authenticator, auth_required=True,
                       auth_exclude_mechanism=[other])
    smtpd.start()
    drawn: dict[str, bytes] = {}

    def render(n: Notification) -> bytes:  # a real PNG whose pixels depend on the notification
        out = io.BytesIO()
        Image.new("RGB", (40, 20), (int(n.value * 255), 0, 0)).save(out, "PNG")
        drawn[n.status] = out.getvalue()
        return drawn[n.status]

    settings = {"host": "127.0.0.1", "port": smtpd.port, "starttls": True, "username": "alerts",
                "password": password, "sender": "fleetscope@example.test",
                "to": ["ops@example.test", "web@example.test"], "timeout": 5.0}
    try:
        notifier = background.notifier(render=render, tls=client_tls, backoff=0.1)
        receiver = Receiver("mail", "email", settings)
        notifier.send(note("firing", value=0.97), receiver)
        notifier.send(note("resolved", value=0.42), receiver)
        wait_for(lambda: len(inbox.messages) == 2, timeout=10)
        # a wrong password is refused (535): given up at once, not retried, and never shown
        wrong = Receiver("wrong", "email", {**settings, "password": "not-the-password-77"})
        notifier.send(note(), wrong)
        wait_for(lambda: notifier.stats()["wrong"]["given_up"] == 1, timeout=10)
        stats = notifier.stats()
    finally:
        smtpd.stop()

    assert [(m, ok) for m, _, ok in logins] == [(mechanism, True), (mechanism, True), (mechanism, False)]
    for (sender, rcpts, raw, tls), status, value, shown in zip(
            inbox.messages, ["firing", "resolved"], [0.97, 0.42], ["FIRING", "RESOLVED"], strict=True):
        assert tls  # STARTTLS came before AUTH and the message
        assert sender == "fleetscope@example.test" and rcpts == ["ops@example.test", "web@example.test"]
        msg = message_from_bytes(raw, policy=policy.default)
        assert msg["Subject"] == f"[{shown}] CPU above 90% on web1 (web1)"
        body = msg.get_body(("plain",)).get_content()
        assert f"Value:     {value}" in body and "Threshold: 0.9" in body
        assert "Started:   2023-11-14 22:13:20 UTC" in body  # 1_700_000_000
        assert ("Resolved:  2023-11-14 22:15:20 UTC" in body) == (status == "resolved")
        assert f"{BASE_URL}/?inst=3&t=" in body
        [attachment] = list(msg.iter_attachments())
        assert attachment.get_content_type() == "image/png"
        png = attachment.get_content()
        assert png == drawn[status]
        assert Image.open(io.BytesIO(png)).getpixel((0, 0)) == (int(value * 255), 0, 0)
    assert stats["mail"]["sent"] == 2 and stats["mail"]["failed_attempts"] == 0
    assert stats["wrong"]["failed_attempts"] == 1 and stats["wrong"]["sent"] == 0
    assert stats["wrong"]["last_error"].startswith("SMTP 535")
    assert "not-the-password-77" not in stats["wrong"]["last_error"]


# -- Prometheus Alertmanager ---------------------------------------------------------------------


@pytest.fixture
def alertmanager(tmp_path: Path):
    with running_alertmanager(tmp_path) as url:
        yield url


def epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def test_alertmanager_keeps_firing_while_resent_and_resolves(background: Background,
                                                             alertmanager: str) -> None:
    resend = 0.5  # the caller re-sends firing alerts every 0.5 s: endsAt = now + 4 x 0.5 s
    name = "FleetscopeHighCPU"
    notifier = background.notifier(resend=resend, backoff=0.2)
    receiver = Receiver("am", "alertmanager", {"url": alertmanager})

    firing = note()
    before = time.time()
    notifier.send(firing, receiver)
    alert = wait_for(lambda: active(alertmanager, name, "web1"), timeout=10)
    assert alert["labels"] == firing.labels  # every value a string already
    assert alert["annotations"] == {"summary": "CPU above 90% on web1",
                                    "description": "cpu.usage of web1 is 0.97",
                                    "value": "0.97", "threshold": "0.9"}
    assert epoch(alert["startsAt"]) == firing.starts_at
    assert alert["generatorURL"] == BASE_URL + firing.url
    first_end = epoch(alert["endsAt"])
    assert before + 4 * resend - 0.01 <= first_end <= time.time() + 4 * resend + 0.01

    # re-sent while firing (as the engine's reminders do): endsAt moves on, so Alertmanager
    # keeps it active past the first endsAt
    def resent_and_active() -> bool:
        notifier.send(firing._replace(repeat=True), receiver)
        a = active(alertmanager, name, "web1")
        return a is not None and epoch(a["endsAt"]) > first_end + resend and time.time() > first_end

    wait_for(resent_and_active, timeout=10, interval=resend)

    notifier.send(note("resolved"), receiver)
    wait_for(lambda: active(alertmanager, name, "web1") is None, timeout=10)

    # an alert that Alertmanager refuses (a label name it does not accept) is given up at once
    notifier.send(note(key="odd", **{"bad-name": "x"}), receiver)
    wait_for(lambda: notifier.stats()["am"]["given_up"] == 1, timeout=10)
    stats = notifier.stats()["am"]
    assert stats["last_error"].startswith("HTTP 400") and stats["failed_attempts"] == 1

    # if fleetscope dies, Alertmanager resolves what it was told is firing by itself (endsAt passes)
    notifier.send(note(key="web2"), receiver)
    wait_for(lambda: active(alertmanager, name, "web2"), timeout=10)
    background.run(notifier.stop(2.0))
    gone = time.monotonic()
    wait_for(lambda: active(alertmanager, name, "web2") is None, timeout=10)
    assert time.monotonic() - gone <= 4 * resend + 2.0
    assert notifier.stats()["am"]["sent"] >= 5  # firing, re-sends, resolved, web2
