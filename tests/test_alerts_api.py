"""Alerts end to end on a real `fleetscope serve` with tokens: a rule made through the API on
a real workload (a CPU-burning process of its own name) fires to a signed webhook, shows in
/api/v1/alerts and the history, and resolves when the load stops; roles and two tenants see
and touch only what is theirs."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from PIL import Image

from tests.alertmanager import active, running_alertmanager
from tests.conftest import Server, free_port, wait_for
from tests.webhook import SECRET, Webhook

API = "/api/v1"
BURNER = "alertburn"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("alerts"), free_port(), auth=True).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def admin(server: Server) -> httpx.Client:
    with httpx.Client(base_url=server.url + API, timeout=10,
                      headers={"authorization": f"Bearer {server.token('alert-admin')}"}) as client:
        yield client


def client(server: Server, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url + API, timeout=10, headers={"authorization": f"Bearer {token}"})


def burner(tmp_path: Path, name: str = BURNER) -> subprocess.Popen:
    """A busy shell loop whose process name (the name it was executed by) is ``name``."""
    exe = tmp_path / name
    exe.symlink_to("/bin/sh")
    return subprocess.Popen([str(exe), "-c", "while :; do :; done"])


def test_a_rule_fires_to_a_signed_webhook_and_resolves_when_the_load_stops(
        server: Server, admin: httpx.Client, tmp_path: Path) -> None:
    hook = Webhook()
    made = admin.post("/alerts/receivers", json={"name": "hook", "kind": "webhook",
                                                 "settings": {"url": hook.url, "secret": SECRET}})
    assert made.status_code == 201, made.text
    assert made.json()["settings"]["secret"] == "********", "secrets are shown masked"
    inst = admin.post("/instrumentations", json={"metric": "proc.cpu",
                                                 "predicate": f'execname == "{BURNER}"'}).json()
    rule = admin.post("/alerts/rules", json={
        "instrumentation": inst["id"], "when": "value > 0.5", "for": "2s", "clear": 0.2,
        "severity": "critical", "receivers": ["hook"], "labels": {"team": "ops"},
        "summary": "{metric} at {value} CPU-s/s"})
    assert rule.status_code == 201, rule.text
    rule_id = rule.json()["id"]
    proc = burner(tmp_path)
    try:
        wait_for(lambda: hook.statuses() == ["firing"], 30)  # the webhook hears it fire
        fired = hook.got[0]
        assert fired["labels"]["team"] == "ops" and fired["labels"]["severity"] == "critical"
        assert fired["rule_id"] == rule_id and fired["value"] > 0.5
        assert fired["summary"].startswith("proc.cpu at ")
        now = admin.get("/alerts").json()
        assert [a["rule_id"] for a in now["firing"]] == [rule_id]
    finally:
        proc.kill()
        proc.wait()
    wait_for(lambda: hook.statuses() == ["firing", "resolved"], 30)  # it resolves when the load stops
    assert hook.bad_signatures == 0
    assert admin.get("/alerts").json()["firing"] == []
    events = admin.get("/alerts/history").json()["events"]
    assert [e["status"] for e in events if e["rule_id"] == rule_id] == ["resolved", "firing"]

    # Both deliveries are counted (saved every few seconds by the process that delivers them).
    def delivered() -> dict | None:
        hook_row = {r["name"]: r for r in admin.get("/alerts/receivers").json()["receivers"]}["hook"]
        return hook_row["delivery"] if (hook_row["delivery"] or {}).get("sent") == 2 else None

    counters = wait_for(delivered, 30)
    assert counters["failed_attempts"] == 0 and counters["pending"] == 0
    exposition = httpx.get(server.url + "/metrics", headers=admin.headers).text
    assert 'fleetscope_alert_notifications_total{receiver="hook",outcome="sent"} 2\n' in exposition
    assert "# TYPE fleetscope_alert_notifications_total counter" in exposition


def test_roles_and_tenants_see_and_touch_only_their_own(server: Server, admin: httpx.Client) -> None:
    for name, scope in (("red", 'container == "red-1"'), ("blue", 'container == "blue-1"')):
        assert admin.post("/tenants", json={"name": name, "scope": scope}).status_code == 201
    tokens = {t: admin.post("/tokens", json={"name": f"{t}-op", "role": "operator",
                                             "tenant": t}).json()["token"] for t in ("red", "blue")}
    viewer = admin.post("/tokens", json={"name": "alert-viewer", "role": "viewer"}).json()["token"]
    ops_inst = admin.post("/instrumentations", json={"metric": "cpu.usage"}).json()
    with client(server, tokens["red"]) as red, client(server, tokens["blue"]) as blue, \
            client(server, viewer) as view:
        red_inst = red.post("/instrumentations", json={"metric": "container.cpu"}).json()
        pager = {"name": "pager", "kind": "webhook", "settings": {"url": "http://127.0.0.1:9/"}}
        assert red.post("/alerts/receivers", json=pager).status_code == 201
        red_rule = red.post("/alerts/rules", json={"instrumentation": red_inst["id"], "when": "value > 1",
                                                   "receivers": ["pager"]})
        assert red_rule.status_code == 201, red_rule.text
        # Another tenant's instrumentation, rule and receiver look like ones that do not exist.
        foreign = blue.post("/alerts/rules", json={"instrumentation": red_inst["id"], "when": "value > 1"})
        assert foreign.status_code == 422 and foreign.json()["error"]["field"] == "instrumentation"
        blue_inst = blue.post("/instrumentations", json={"metric": "container.cpu"}).json()
        theirs = blue.post("/alerts/rules", json={"instrumentation": blue_inst["id"], "when": "value > 1",
                                                  "receivers": ["pager"]})
        assert theirs.status_code == 422 and theirs.json()["error"]["field"] == "receivers"
        assert blue.get(f"/alerts/rules/{red_rule.json()['id']}").status_code == 404
        assert blue.delete(f"/alerts/rules/{red_rule.json()['id']}").status_code == 404
        assert blue.get("/alerts/rules").json()["rules"] == []
        assert blue.get("/alerts/receivers").json()["receivers"] == []
        ops = admin.post("/alerts/rules", json={"instrumentation": ops_inst["id"], "when": "value > 1e9"})
        assert ops.status_code == 201
        assert [r["id"] for r in red.get("/alerts/rules").json()["rules"]] == [red_rule.json()["id"]]
        assert {r["id"] for r in admin.get("/alerts/rules").json()["rules"]} >= {
            red_rule.json()["id"], ops.json()["id"]}, "operators see every tenant's rules"
        # A viewer reads but does not write.
        assert view.get("/alerts/rules").status_code == 200
        refused = view.post("/alerts/rules", json={"instrumentation": ops_inst["id"], "when": "value > 1"})
        assert refused.status_code == 403
        # Bad rules name the field and change nothing.
        before = admin.get("/alerts/rules").json()["rules"]
        for body, field in (({"instrumentation": ops_inst["id"], "when": "p99 > 1"}, "when"),
                            ({"instrumentation": ops_inst["id"], "when": "value > 1",
                              "window": {"tz": "Nowhere/Land"}}, "window.tz"),
                            ({"instrumentation": ops_inst["id"], "when": "value > 1", "for": "1x"}, "for"),
                            ({"instrumentation": 2**62, "when": "value > 1"}, "instrumentation")):
            bad = admin.post("/alerts/rules", json=body)
            assert bad.status_code == 422 and bad.json()["error"]["field"] == field, (body, bad.text)
        assert admin.get("/alerts/rules").json()["rules"] == before
        # A receiver in use is not deleted from under its rules.
        assert red.delete("/alerts/receivers/pager").status_code == 409
        # Delivery counters of the operators' receivers are not a tenant's to see.
        assert "alert_notifications" not in red.get(server.url + "/metrics").text


def test_the_cli_makes_and_lists_rules(server: Server, admin: httpx.Client) -> None:
    inst = admin.post("/instrumentations", json={"metric": "cpu.usage"}).json()
    env = {**os.environ, "FLEETSCOPE_TOKEN": admin.headers["authorization"].split()[1]}
    exe = str(Path(os.environ.get("VIRTUAL_ENV", ".venv")) / "bin" / "fleetscope")
    exe = exe if os.path.exists(exe) else "fleetscope"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([exe, *args, "--url", server.url], capture_output=True, text=True, env=env,
                              timeout=60)

    made = cli("alert", "create", str(inst["id"]), "--when", "value > 1000", "--for", "1m",
               "--hours", "08:00-18:00", "--tz", "Europe/Berlin", "--days", "mon,tue")
    assert made.returncode == 0, made.stderr
    rule_id = int(made.stdout.split()[2].rstrip(":"))
    rule = admin.get(f"/alerts/rules/{rule_id}").json()
    assert rule["for"] == 60 and rule["window"] == {"days": ["mon", "tue"], "start": "08:00", "end": "18:00",
                                                    "tz": "Europe/Berlin"}
    listed = cli("alert", "list")
    assert listed.returncode == 0 and "value > 1000" in listed.stdout
    bad = cli("alert", "create", str(inst["id"]), "--when", "value >> 3")
    assert bad.returncode != 0 and "when" in bad.stderr
    assert cli("alerts").returncode == 0


class Mailbox:
    """aiosmtpd handler keeping every message."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


def test_a_real_alertmanager_and_a_mail_server_hear_of_a_real_workload(
        server: Server, admin: httpx.Client, tmp_path: Path) -> None:
    """The issue's end-to-end case: a CPU-burning process makes a rule fire; Alertmanager shows
    the alert in its own API and sees it resolved when the load stops; an e-mail per change
    carries the panel around that moment."""
    mailbox = Mailbox()
    smtpd = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtpd.start()
    name = "alertburn2"
    try:
        with running_alertmanager(tmp_path) as am:
            for body in ({"name": "am", "kind": "alertmanager", "settings": {"url": am}},
                         {"name": "mail", "kind": "email", "settings": {
                             "host": "127.0.0.1", "port": smtpd.port, "starttls": False,
                             "sender": "fleetscope@example.test",
                             "to": ["ops@example.test"]}}):
                assert admin.post("/alerts/receivers", json=body).status_code == 201
            inst = admin.post("/instrumentations", json={"metric": "proc.cpu",
                                                         "predicate": f'execname == "{name}"'}).json()
            made = admin.post("/alerts/rules", json={
                "instrumentation": inst["id"], "when": "value > 0.5", "clear": 0.1, "for": "2s",
                "name": "BurnerBusy",
                "receivers": ["am", "mail"], "summary": "{metric} busy: {value}"})
            assert made.status_code == 201, made.text
            proc = burner(tmp_path, name)
            try:
                alert = wait_for(lambda: active(am, "BurnerBusy", ""), 30)
                assert alert["labels"]["instrumentation"] == str(inst["id"])
                assert alert["labels"]["metric"] == "proc.cpu"
                assert alert["annotations"]["summary"].startswith("proc.cpu busy: ")
                assert alert["generatorURL"].startswith(server.url + "/?from=")
            finally:
                proc.kill()
                proc.wait()
            wait_for(lambda: active(am, "BurnerBusy", "") is None, 30)
            wait_for(lambda: len(mailbox.messages) == 2, 30)
    finally:
        smtpd.stop()
    subjects = [m["Subject"] for m in mailbox.messages]
    assert subjects[0].startswith("[FIRING] proc.cpu busy") and subjects[1].startswith("[RESOLVED]")
    for message, mark in zip(mailbox.messages, [(200, 30, 30), (40, 150, 60)], strict=True):
        [png] = [a.get_content() for a in message.iter_attachments()]
        image = Image.open(io.BytesIO(png)).convert("RGB")
        assert image.size == (640, 240)
        # The burner's CPU is drawn (the line's blue), and the change is marked (red, then green).
        colours = {colour for _, colour in image.getcolors(maxcolors=640 * 240)}
        assert (33, 102, 172) in colours and mark in colours
