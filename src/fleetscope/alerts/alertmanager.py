"""Notifications to Prometheus Alertmanager, through its v2 API.

One POST of a JSON list to ``{url}/api/v2/alerts`` carries a batch of alerts (Alertmanager's
``postableAlerts``)::

    [{"labels": {"alertname": "HighCPU", "severity": "critical", "key": "web1", ...},
      "annotations": {"summary": "...", "description": "...", "value": "0.97", "threshold": "0.9"},
      "startsAt": "2024-05-01T10:00:00.000Z", "endsAt": "2024-05-01T10:04:00.000Z",
      "generatorURL": "https://fleetscope.example.com/?inst=3&t=1714557600"}]

Alertmanager identifies an alert by its label set, so every notification of one alert (rule
and key) carries the same labels. A **firing** alert's ``endsAt`` is a validity, not an end:
now plus a few resend intervals (Prometheus' own notifier sends ``4 x`` its resend delay).
As long as fleetscope keeps re-sending the alert stays active; if fleetscope dies, Alertmanager
resolves it by itself once ``endsAt`` passes instead of paging forever. A **resolved** alert
carries its real ``endsAt`` (in the past), and Alertmanager marks it resolved at once.

Label and annotation values are strings; an empty label is left out (in Prometheus' data model
an empty label is the same as no label). Alertmanager answers 200 with an empty body; 400 names
a bad alert (and will not change on a retry); it keeps the valid alerts of such a batch all the
same, though the notifier counts the whole batch as given up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime

import httpx

from fleetscope.model.alerts import RESOLVED, Notification

API_PATH = "/api/v2/alerts"


def rfc3339(when: float) -> str:
    """``when`` (epoch seconds) as Alertmanager's time format, e.g. ``2024-05-01T10:00:00.000Z``."""
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def number(x: float | None) -> str:
    """A value or threshold as an annotation: 6 significant digits; ``no data`` for None/NaN."""
    return "no data" if x is None or math.isnan(x) else f"{x:.6g}"


def link(base_url: str, path: str) -> str:
    """The absolute address of the dashboard ``path`` (an absolute ``path`` is kept as it is)."""
    if path.startswith(("http://", "https://")):
        return path
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def alert(n: Notification, base_url: str, now: float, validity: float) -> dict:
    """One postable alert for ``n``; a firing one is valid until ``now + validity``."""
    labels = {str(k): str(v) for k, v in n.labels.items() if v is not None and str(v) != ""}
    labels.setdefault("alertname", f"rule_{n.rule_id}")
    annotations = {"summary": n.summary, "description": n.description,
                   "value": number(n.value), "threshold": number(n.threshold)}
    resolved_at = n.ends_at if n.ends_at is not None else n.at
    ends = resolved_at if n.status == RESOLVED else now + validity
    return {"labels": labels, "annotations": {k: v for k, v in annotations.items() if v},
            "startsAt": rfc3339(n.starts_at), "endsAt": rfc3339(max(ends, n.starts_at)),
            "generatorURL": link(base_url, n.url)}


def payload(notifications: Iterable[Notification], base_url: str, now: float, validity: float) -> list[dict]:
    """The body of one POST: one alert per fingerprint, the latest notification of each (a
    firing and its resolve in one batch are the resolve: Alertmanager needs only the last state)."""
    latest: dict[str, Notification] = {}
    for n in notifications:
        latest.pop(n.fingerprint, None)  # keep the order of the last occurrence
        latest[n.fingerprint] = n
    return [alert(n, base_url, now, validity) for n in latest.values()]


async def post(client: httpx.AsyncClient, url: str, notifications: list[Notification], base_url: str, *,
               now: float, validity: float, timeout: float, auth: httpx.Auth | None = None) -> None:
    """POST ``notifications`` to the Alertmanager at ``url`` (its base address); raises
    ``httpx.HTTPError`` (``HTTPStatusError`` for an answer other than 2xx)."""
    body = payload(notifications, base_url, now, validity)
    response = await client.post(url.rstrip("/") + API_PATH, json=body, timeout=timeout, auth=auth)
    response.raise_for_status()
