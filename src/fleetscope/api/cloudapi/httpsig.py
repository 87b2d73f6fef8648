"""HTTP Signature authentication, as CloudAPI did it (draft-cavage-http-signatures, the
``http-signature`` module's ``parseRequest``):

    Authorization: Signature keyId="/acme/keys/aa:bb:..",algorithm="rsa-sha256",
                   headers="date",signature="<base64>"

``keyId`` names the account and the key's fingerprint (MD5 as node-smartdc sends it, or
``SHA256:...``); ``headers`` lists what was signed (default ``date``; ``(request-target)`` is
``get /acme/analytics``), one ``name: value`` line each. The ``date`` header must be signed
and within :data:`CLOCK_SKEW` seconds of the server's clock (http-signature's default, which
CloudAPI kept). HTTP Basic and bearer tokens are refused on these routes.

Replays. A signature over ``date`` alone does not cover the method or the path, so within the
skew window a captured one could be sent again, for another request too. :class:`ReplayGuard`
remembers the signatures of changes (POST, PUT, DELETE) for twice the window: each is good
for one change only (a change that was refused does not count).
Reads are not limited: node-smartdc signs every request of a second with the
same signature (RSA and Ed25519 signatures are deterministic), and a script that lists, then
deletes, within one second must work. So a signature seen on the wire could still make one
change within the window if its owner made none with it: serve CloudAPI clients over HTTPS (as
CloudAPI itself required), and prefer clients that sign ``(request-target)`` too. The memory is
per process: behind a balancer, a change's signature is refused again only by the API server
that saw it.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import NamedTuple

from fastapi import Request

from fleetscope.api.cloudapi.errors import CloudApiError, unauthorized
from fleetscope.model import sshkeys
from fleetscope.model.access import Caller, TokenInfo
from fleetscope.model.errors import InputError

CLOCK_SKEW = 300  # seconds: http-signature's parseRequest default (clockSkew: 300)
MAX_AUTHORIZATION = 8192
REMEMBERED_SIGNATURES = 200_000  # the replay guard forgets the oldest past this
SAFE_METHODS = frozenset({"GET", "HEAD"})
REQUEST_TARGET = "(request-target)"
MY = "my"  # CloudAPI's alias for the signer's own account: /my/analytics
_PARAM = re.compile(r'\s*([A-Za-z]+)\s*=\s*"([^"]*)"\s*(,|$)')
_KEY_ID = re.compile(r"^/([^/]+)/keys/([^/]+)$")
_HEADER_NAME = re.compile(r"^(\(request-target\)|[a-z0-9-]+)$")


class Signature(NamedTuple):
    """The parameters of an ``Authorization: Signature ...`` header."""

    login: str  # the account the key belongs to (from keyId)
    fingerprint: str  # normalised (sshkeys.normalise_fingerprint)
    algorithm: str  # "rsa-sha256", ...
    headers: tuple[str, ...]  # lower-case names, in signing order
    signature: bytes


def parse_authorization(header: str | None) -> Signature:
    """The signature parameters of an Authorization header; :class:`CloudApiError` (401) naming
    what is wrong otherwise."""
    if not header:
        raise unauthorized('a signed request is needed: Authorization: Signature keyId="/LOGIN/keys/'
                           'FINGERPRINT",algorithm="rsa-sha256",headers="date",signature="..." '
                           "(node-smartdc: SDC_ACCOUNT, SDC_KEY_ID)")
    if len(header) > MAX_AUTHORIZATION:
        raise unauthorized("the Authorization header is too long")
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() == "basic":
        raise unauthorized("HTTP Basic authentication is not accepted: sign requests with an SSH key "
                           "registered to the account (HTTP Signature)")
    if scheme.lower() != "signature":
        raise unauthorized(f"the {scheme!r} scheme is not accepted here: use HTTP Signature "
                           "(Authorization: Signature keyId=...)")
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if m is None:
            raise unauthorized(f"malformed Signature parameters at column {pos + 1}: "
                               'expected name="value" pairs separated by commas')
        name = m.group(1)
        if name in params:
            raise unauthorized(f"the Signature parameter {name!r} is given twice")
        params[name] = m.group(2)
        pos = m.end()
    for needed in ("keyId", "algorithm", "signature"):
        if not params.get(needed):
            raise unauthorized(f"the Signature parameter {needed!r} is missing")
    found = _KEY_ID.match(params["keyId"])
    if found is None:
        raise unauthorized('keyId must be "/LOGIN/keys/FINGERPRINT" (sub-users are not supported)')
    try:
        fingerprint = sshkeys.normalise_fingerprint(found.group(2))
    except ValueError as exc:
        raise unauthorized(f"keyId: {exc}") from None
    names = tuple(params.get("headers", "date").lower().split())
    if not names or any(not _HEADER_NAME.match(n) for n in names):
        raise unauthorized("headers must list header names separated by spaces")
    if "date" not in names:
        raise unauthorized("the signature must cover the date header (headers=\"date\")")
    try:
        signature = base64.b64decode(params["signature"], validate=True)
    except (binascii.Error, ValueError):
        raise unauthorized("the signature is not base64") from None
    return Signature(found.group(1), fingerprint, params["algorithm"].lower(), names, signature)


def signing_string(method: str, target: str, headers: Mapping[str, str], names: tuple[str, ...]) -> str:
    """What the client signed: one ``name: value`` line per signed header (draft-cavage)."""
    lines = []
    for name in names:
        if name == REQUEST_TARGET:
            lines.append(f"{REQUEST_TARGET}: {method.lower()} {target}")
            continue
        value = headers.get(name)
        if value is None:
            raise unauthorized(f"the signed header {name!r} is not in the request")
        lines.append(f"{name}: {value}")
    return "\n".join(lines)


def check_date(value: str | None, now: float, skew: float = CLOCK_SKEW) -> None:
    """The request's ``date`` is within ``skew`` seconds of ``now``; 401 otherwise."""
    if not value:
        raise unauthorized("the date header is missing")
    try:
        sent = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        raise unauthorized("the date header is not an HTTP date "
                           "(e.g. Tue, 08 Dec 2026 00:43:26 GMT)") from None
    if abs(now - sent) > skew:
        raise unauthorized(f"the date header is {now - sent:+.0f} s from the server's clock "
                           f"(at most {skew} s "
                           "either way): check the client's clock")


class ReplayGuard:
    """Remembers the signatures of changes for twice the clock skew; a second change with one of
    them is refused (see the module docstring for why reads are not limited)."""

    def __init__(self, window: float = 2 * CLOCK_SKEW, limit: int = REMEMBERED_SIGNATURES) -> None:
        self.window, self.limit = window, limit
        self._seen: OrderedDict[bytes, float] = OrderedDict()  # signature -> when it made a change
        self._lock = threading.Lock()

    def check(self, signature: bytes, method: str, now: float) -> None:
        if method in SAFE_METHODS:
            return
        with self._lock:
            while self._seen:
                oldest, when = next(iter(self._seen.items()))
                if when > now - self.window and len(self._seen) <= self.limit:
                    break
                del self._seen[oldest]
            if signature in self._seen:
                raise unauthorized("this signature made a change already (a replayed request): "
                                   "sign each change anew")
            self._seen[signature] = now

    def release(self, signature: bytes) -> None:
        """Forget a change's signature whose change was refused (nothing changed: it may be sent
        again, as a client retrying after a 409 or a 404 would)."""
        with self._lock:
            self._seen.pop(signature, None)


class SignatureAuth:
    """Turns signed requests into callers of the account's tenant, over the store's keys."""

    def __init__(self, store, limiter) -> None:
        self.store = store
        self.limiter = limiter  # the API's failure limiter (api/auth.py), shared with tokens
        self.replays = ReplayGuard()

    def caller(self, request: Request, login: str) -> tuple[Caller, bytes]:
        """The caller a signed request stands for, and its signature (for :meth:`ReplayGuard.release`)."""
        address = request.client.host if request.client else ""
        now = time.time()
        try:
            self.limiter.check(address, now)
        except InputError as exc:
            raise CloudApiError(429, "RequestThrottled", exc.message) from None
        try:
            return self._caller(request, login, address, now)
        except CloudApiError as exc:
            if exc.status == 401:
                self.limiter.failed(address, now)
            raise

    def _caller(self, request: Request, login: str, address: str, now: float) -> tuple[Caller, bytes]:
        sig = parse_authorization(request.headers.get("authorization"))
        check_date(request.headers.get("date"), now)
        key = self.store.account_key(sig.login, sig.fingerprint)
        if key is None:
            raise unauthorized(f"no key {sig.fingerprint} is registered to account {sig.login!r}")
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        query = request.scope.get("query_string") or b""
        target = raw_path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
        text = signing_string(request.method, target, request.headers, sig.headers)
        if not sshkeys.verify(key.public_key, sig.algorithm, text.encode(), sig.signature):
            raise unauthorized(f"the signature does not verify with key {sig.fingerprint} "
                               f"({sig.algorithm} over "
                               f"{' '.join(sig.headers)})")
        tenant = self.store.get_tenant(key.login)
        if tenant is None:
            raise unauthorized(f"account {key.login!r} no longer exists")
        if login not in (MY, key.login):
            raise CloudApiError(403, "NotAuthorized", f"the key of account {key.login!r} may not act for "
                                f"account {login!r}")
        self.replays.check(sig.signature, request.method, now)
        token = TokenInfo(key.id, f"{key.login} key {key.name}", key.role, key.login, "sshkey", key.created,
                          None, None)
        return Caller(key.role, tenant, token, address), sig.signature
