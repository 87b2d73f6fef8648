"""The audit log: every change, with who made it, when, from where and what.

Routes call :func:`audit` after a change succeeded. The actor is named by its token's name
and id (never the token); the detail is the change as the API received it, minus secrets.
"""

from __future__ import annotations

import logging
from typing import Any

from fleetscope.model.access import Caller

log = logging.getLogger(__name__)


def audit(svc: Any, caller: Caller, action: str, target: str, detail: dict | None = None) -> None:
    """Record one change made by ``caller`` (``action`` such as ``instrumentation.create``)."""
    svc.control.store.add_audit(caller.who, caller.address, action, target, detail or {})
    log.info("audit: %s from %s: %s %s", caller.who, caller.address or "-", action, target)
