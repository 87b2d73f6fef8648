"""Notifications to a webhook: a signed JSON POST.

The body (UTF-8 JSON, ``Content-Type: application/json``)::

    {"version": 1, "receiver": "oncall", "sent": 1714557601.25,
     "notifications": [{"rule_id": 4, "inst_id": 3, "tenant": null, "key": "web1",
                        "status": "firing", "severity": "critical", "labels": {...},
                        "summary": "...", "description": "...", "value": 0.97, "threshold": 0.9,
                        "starts_at": 1714557600.0, "ends_at": null, "at": 1714557600.0,
                        "url": "/?inst=3&t=1714557600", "repeat": false,
                        "fingerprint": "4/web1", "link": "https://fleetscope.example.com/?inst=3&t=..."}]}

``version`` changes only when a field changes meaning or goes away (new fields may appear).
Headers:

- ``X-Fleetscope-Timestamp``: ``sent``, the time of this attempt (epoch seconds), also inside
  the body so that the signature covers it: a receiver can refuse old (replayed) requests.
- ``X-Fleetscope-Signature: sha256=<hex>``: HMAC-SHA256 of the exact body bytes with the
  receiver's secret, when it has one. To check it (Python)::

      expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
      ok = hmac.compare_digest(expected, request.headers["X-Fleetscope-Signature"])

Any 2xx answer is success; anything else is a failed attempt (retried unless it is a 4xx other
than 408/425/429, which a retry will not change).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math

import httpx

from fleetscope.alerts.alertmanager import link
from fleetscope.model.alerts import Notification

VERSION = 1
SIGNATURE_HEADER = "X-Fleetscope-Signature"
TIMESTAMP_HEADER = "X-Fleetscope-Timestamp"
SIGNATURE_SCHEME = "sha256="


def sign(body: bytes, secret: str) -> str:
    """The signature header's value for ``body``: ``sha256=`` and the hex HMAC-SHA256."""
    return SIGNATURE_SCHEME + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def body(notifications: list[Notification], receiver: str, base_url: str, sent: float) -> bytes:
    """The JSON body for ``notifications`` (non-finite numbers become null: JSON has none)."""
    items = []
    for n in notifications:
        d = n.to_json()
        d["value"] = _finite(n.value)
        d["threshold"] = _finite(n.threshold)
        d["fingerprint"] = n.fingerprint
        d["link"] = link(base_url, n.url)
        items.append(d)
    doc = {"version": VERSION, "receiver": receiver, "sent": sent, "notifications": items}
    return json.dumps(doc, separators=(",", ":"), default=str, allow_nan=False).encode()


def headers(payload: bytes, secret: str | None, sent: float) -> dict[str, str]:
    out = {"Content-Type": "application/json", TIMESTAMP_HEADER: repr(sent)}
    if secret:
        out[SIGNATURE_HEADER] = sign(payload, secret)
    return out


async def post(client: httpx.AsyncClient, url: str, notifications: list[Notification], *, receiver: str,
               secret: str | None, base_url: str, now: float, timeout: float,
               auth: httpx.Auth | None = None) -> None:
    """POST ``notifications`` to ``url``; raises ``httpx.HTTPError`` (``HTTPStatusError`` for an
    answer other than 2xx)."""
    sent = round(now, 3)
    payload = body(notifications, receiver, base_url, sent)
    response = await client.post(url, content=payload, headers=headers(payload, secret, sent),
                                 timeout=timeout, auth=auth)
    response.raise_for_status()


def _finite(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None
