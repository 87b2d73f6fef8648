"""Alert rules, receivers and notifications: what an alert is, before anything evaluates or sends it.

A **rule** watches one instrumentation. Its condition (the ``when`` text, as the CLI's
``--when`` takes it) is one of::

    value > 0.9                 the value (a breakdown's total; a distribution's count)
    each key > 0.9              every key of a breakdown: one alert per key, the key as a label
    key "nginx" > 0.9           one key of a breakdown
    p99 > 200ms                 a percentile of a distribution (p50, p99.9, ...); also per key
    avg > 10ms                  the average of a distribution;  each key avg > 10ms
    no data for 30s             no value at all for that long (every source silent)
    sources < expected          fewer sources reported a slot than were expected

with ``>``, ``>=``, ``<`` or ``<=`` and a number or quantity in the unit of what is compared
(``200ms`` for a latency, ``80%`` for a percentage). Around it: ``for`` (how long the condition
must hold before the alert fires), ``clear`` (hysteresis: a firing ``> 0.9`` alert clears only
when the value is at or below ``clear``) and ``clear_for`` (how long it must stay clear), an
active ``window`` (days of the week and hours in a time zone: outside it nothing fires and
what fires resolves), ``severity``, ``labels``, ``summary``/``description`` texts with
``{value}``, ``{key}``, ``{threshold}``, ``{metric}`` and ``{instrumentation}`` substituted, a
``repeat`` interval and the names of the ``receivers`` to tell.

A **receiver** is a named destination: Prometheus Alertmanager (v2 API), a webhook (JSON
signed with HMAC-SHA256) or e-mail over SMTP. Its secrets (webhook secret, SMTP password) are
kept in the store and shown masked.

A **notification** is one state change (or repeat) of one alert, as the receivers get it.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fleetscope.model import values
from fleetscope.model.errors import InputError
from fleetscope.model.instrumentation import Instrumentation
from fleetscope.model.series import DataPoint
from fleetscope.model.types import Type, parse_duration, parse_quantity

# What a condition compares.
VALUE, PERCENTILE, AVERAGE, NO_DATA, SOURCES = "value", "percentile", "average", "nodata", "sources"
# Which keys: the whole value, every key of a breakdown, or one key.
WHOLE, EACH, ONE = "whole", "each", "one"
OPERATORS = {">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}
SEVERITIES = ("info", "warning", "critical")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RECEIVER_KINDS = ("alertmanager", "webhook", "email")
SECRET_SETTINGS = ("secret", "password")  # receiver settings never shown in full
MASK = "********"
MAX_TEXT = 1024  # characters of a summary or description
MAX_LABELS = 32
MAX_RECEIVERS = 16
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,127}")
NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")
TEMPLATE_FIELDS = frozenset({"value", "key", "threshold", "metric", "instrumentation", "rule", "severity"})
MAX_DURATION = 7 * 86400  # of ``for``, ``clear_for`` and ``no data for``
MAX_REPEAT = 30 * 86400

_CONDITION = re.compile(
    r"""\s*(?:(?P<each>each(?:\s+key)?)|key\s+(?:"(?P<qkey>[^"]*)"|(?P<key>\S+)))?\s*
    (?P<what>value|avg|average|p(?P<q>\d+(?:\.\d+)?))?\s*
    (?P<op>>=|<=|>|<)\s*(?P<threshold>\S+)\s*""", re.X)
_NO_DATA = re.compile(r"\s*no\s*data(?:\s+for)?\s+(?P<duration>\S+)\s*")
_SOURCES = re.compile(r"\s*sources\s*<\s*expected\s*")


class Condition(NamedTuple):
    """A parsed ``when``: what is compared, over which keys, how, with what."""

    what: str  # VALUE, PERCENTILE, AVERAGE, NO_DATA or SOURCES
    keys: str = WHOLE  # WHOLE, EACH or ONE
    key: str | None = None  # the key, for ONE
    quantile: float | None = None  # 0..1, for PERCENTILE
    op: str = ">"
    threshold: float = 0.0  # in the compared unit; seconds for NO_DATA

    def holds(self, observed: float) -> bool:
        return OPERATORS[self.op](float(observed), self.threshold)

    def cleared(self, observed: float | None, clear: float) -> bool:
        """Whether ``observed`` is clear of the condition with hysteresis at ``clear``: at or
        below it for ``>``/``>=`` (at or above for ``<``/``<=``); no observation is clear."""
        if observed is None or math.isnan(observed):
            return True
        return observed <= clear if self.op in (">", ">=") else observed >= clear


def parse_condition(text: object, inst: Instrumentation, numeric_unit: Type | None,
                    field: str = "when") -> Condition:
    """``text`` as a :class:`Condition` on ``inst`` (whose numeric field, if any, has
    ``numeric_unit``); InputError naming ``field`` with the reason."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(field, "is required, e.g. 'value > 0.9', 'each key > 100', 'p99 > 200ms'")
    if len(text) > MAX_TEXT:
        raise InputError(field, f"at most {MAX_TEXT} characters")
    lowered = text.strip()
    if m := _NO_DATA.fullmatch(lowered):
        seconds = parse_duration(m["duration"], field)
        if not 1 <= seconds <= MAX_DURATION:
            raise InputError(field, f"no data for: between 1 s and {MAX_DURATION} s")
        return Condition(NO_DATA, threshold=float(seconds))
    if _SOURCES.fullmatch(lowered):
        return Condition(SOURCES, op=">", threshold=0.0)  # compares the sources missing
    m = _CONDITION.fullmatch(lowered)
    if m is None:
        raise InputError(field, f"{text!r} is not a condition such as 'value > 0.9', 'each key > 100', "
                         "'key \"nginx\" > 1', 'p99 > 200ms', 'avg > 10ms', 'no data for 30s' or "
                         "'sources < expected'")
    keys = EACH if m["each"] else ONE if (m["qkey"] is not None or m["key"]) else WHOLE
    key = m["qkey"] if m["qkey"] is not None else m["key"]
    if keys != WHOLE and inst.discrete is None:
        raise InputError(field, f"instrumentation {inst.id} has no breakdown by a discrete field: "
                         "no keys to compare")
    what, quantile = VALUE, None
    if m["q"] is not None:
        what, quantile = PERCENTILE, round(float(m["q"]) / 100, 9)
        if not 0 < quantile < 1:
            raise InputError(field, f"p{m['q']}: a percentile is between p0 and p100, exclusive")
    elif m["what"] in ("avg", "average"):
        what = AVERAGE
    if what != VALUE and inst.numeric is None:
        raise InputError(field, f"instrumentation {inst.id} has no distribution (no numeric field in its "
                         "decomposition): a percentile or average needs one")
    unit = numeric_unit if what != VALUE and numeric_unit is not None else Type.from_json(inst.unit)
    threshold = parse_quantity(m["threshold"], unit, field)
    if not math.isfinite(threshold):
        raise InputError(field, f"{m['threshold']!r} is not a finite number")
    return Condition(what, keys, key, quantile, m["op"], threshold)


def observe(cond: Condition, value: values.Value | None, shape: str) -> dict[str, float]:
    """What ``cond`` compares in one slot's ``value``: ``{key: number}`` ("" for the whole
    value). A key without data is absent; ``(other)`` is not a key of its own."""
    if value is None:
        return {}
    if cond.keys == WHOLE:
        parts = {"": _whole(value, shape)}
    else:
        items = value.items() if isinstance(value, dict) else ()
        parts = {k: v for k, v in items if k != values.OTHER and (cond.keys == EACH or k == cond.key)}
    out = {}
    for key, part in parts.items():
        number = _measure(cond, part)
        if number is not None and not math.isnan(number):
            out[key] = number
    return out


def observe_point(cond: Condition, point: DataPoint, shape: str) -> dict[str, float]:
    """What ``cond`` compares in one final slot: :func:`observe` of its value, or for
    ``sources < expected`` the number of expected sources that did not report."""
    if cond.what == SOURCES:
        return {"": float(max(point.expected - point.nsources, 0))}
    return observe(cond, point.value, shape)


def _whole(value: values.Value, shape: str) -> values.Value:
    if shape == values.DISCRETE:
        return values.total(value, shape)
    if shape == values.DISCRETE_HISTOGRAM:  # one distribution of every key's values
        acc = values.empty(values.HISTOGRAM)
        for h in value.values():
            acc = values.merge_into(acc, h, values.HISTOGRAM)
        return acc
    return value


def _measure(cond: Condition, part) -> float | None:
    if isinstance(part, int | float):
        return float(part) if cond.what == VALUE else None
    if cond.what == PERCENTILE:
        return part.quantile(cond.quantile)
    if cond.what == AVERAGE:
        return part.mean()
    return float(part.count)


# -- active windows -------------------------------------------------------------------------------


class Window(NamedTuple):
    """When a rule is active: on ``days`` from ``start`` to ``end`` (minutes after midnight;
    ``end`` before ``start`` runs past midnight) in time zone ``tz``."""

    days: tuple[str, ...] = DAYS
    start: int = 0
    end: int = 24 * 60
    tz: str = "UTC"

    def active(self, when: float) -> bool:
        local = datetime.fromtimestamp(when, ZoneInfo(self.tz))
        minute = local.hour * 60 + local.minute
        day = DAYS[local.weekday()]
        if self.start <= self.end:
            return day in self.days and self.start <= minute < self.end
        if minute >= self.start:
            return day in self.days
        yesterday = DAYS[(local.weekday() - 1) % 7]  # the part after midnight belongs to the day before
        return yesterday in self.days and minute < self.end

    def to_json(self) -> dict:
        return {"days": list(self.days), "start": f"{self.start // 60:02d}:{self.start % 60:02d}",
                "end": f"{self.end // 60:02d}:{self.end % 60:02d}", "tz": self.tz}


def parse_window(obj: object, field: str = "window") -> Window | None:
    """``{"days": ["mon", ...], "start": "08:00", "end": "18:00", "tz": "Europe/Berlin"}`` (every
    part optional) or None for always; InputError naming ``field.part``."""
    if obj is None:
        return None
    if not isinstance(obj, Mapping):
        raise InputError(field, "must be an object {days, start, end, tz}")
    unknown = set(obj) - {"days", "start", "end", "tz"}
    if unknown:
        raise InputError(f"{field}.{sorted(unknown)[0]}", "unknown (days, start, end, tz)")
    days = obj.get("days", list(DAYS))
    if isinstance(days, str):
        days = [d.strip() for d in days.split(",") if d.strip()]
    if not isinstance(days, list) or not days:
        raise InputError(f"{field}.days", "must name at least one day (mon, tue, ... sun)")
    for d in days:
        if not isinstance(d, str) or d.lower()[:3] not in DAYS:
            raise InputError(f"{field}.days", f"{d!r} is not a day (mon, tue, wed, thu, fri, sat, sun)")
    tz = obj.get("tz", "UTC")
    try:
        if not isinstance(tz, str) or not tz:
            raise ValueError
        ZoneInfo(tz)
    except (ValueError, ZoneInfoNotFoundError):
        raise InputError(f"{field}.tz", f"{tz!r} is not a time zone (e.g. 'UTC', 'Europe/Berlin')") from None
    start = _minute(obj.get("start", "00:00"), f"{field}.start")
    end = _minute(obj.get("end", "24:00"), f"{field}.end")
    if start == end:
        raise InputError(f"{field}.end", "the window is empty: end equals start")
    ordered = tuple(d for d in DAYS if d in {x.lower()[:3] for x in days})
    return Window(ordered, start, end, tz)


def _minute(text: object, field: str) -> int:
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text) if isinstance(text, str) else None
    if m is None or int(m[2]) >= 60 or int(m[1]) * 60 + int(m[2]) > 24 * 60:
        raise InputError(field, f"{text!r} is not a time of day such as '08:30' (00:00 to 24:00)")
    return int(m[1]) * 60 + int(m[2])


# -- rules ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """An alert rule, as stored."""

    id: int
    inst_id: int
    when: str  # the condition as written
    condition: Condition
    tenant: str | None = None  # the instrumentation's tenant: a rule sees only its data
    name: str = ""
    for_: int = 0  # seconds the condition must hold before firing
    clear: float | None = None  # hysteresis threshold (None: the condition's own threshold)
    clear_for: int = 0  # seconds it must stay clear before resolving
    window: Window | None = None
    severity: str = "warning"
    labels: dict = field(default_factory=dict)
    summary: str = ""
    description: str = ""
    repeat: int = 0  # seconds between repeated notifications while firing (0: never)
    receivers: tuple[str, ...] = ()
    created: float = 0.0

    @property
    def clear_threshold(self) -> float:
        return self.condition.threshold if self.clear is None else self.clear

    def active(self, when: float) -> bool:
        return self.window is None or self.window.active(when)

    def text(self, template: str, *, value: float | None, key: str, metric: str) -> str:
        """``template`` with the alert's fields substituted (unknown fields are left as written)."""
        shown = "no data" if value is None else f"{value:.6g}"
        fields = {"value": shown, "key": key, "threshold": f"{self.condition.threshold:.6g}",
                  "metric": metric, "instrumentation": str(self.inst_id), "rule": self.name or str(self.id),
                  "severity": self.severity}
        return string.Formatter().vformat(template, (), _Leave(fields))

    def to_json(self) -> dict:
        d = asdict(self)
        d["condition"] = self.condition._asdict()
        d["for"] = d.pop("for_")
        d["window"] = self.window.to_json() if self.window else None
        d["receivers"] = list(self.receivers)
        return d

    @classmethod
    def from_json(cls, obj: Mapping) -> Rule:
        """Rebuild from :meth:`to_json` output (trusted: written by fleetscope itself)."""
        w = obj.get("window")
        window = None if w is None else Window(tuple(w["days"]), _minute(w["start"], "start"),
                                               _minute(w["end"], "end"), w["tz"])
        return cls(obj["id"], obj["inst_id"], obj["when"], Condition(**obj["condition"]), obj.get("tenant"),
                   obj.get("name", ""), obj.get("for", 0), obj.get("clear"), obj.get("clear_for", 0),
                   window, obj.get("severity", "warning"), dict(obj.get("labels", {})),
                   obj.get("summary", ""), obj.get("description", ""), obj.get("repeat", 0),
                   tuple(obj.get("receivers", ())), obj.get("created", 0.0))


class _Leave(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


RULE_FIELDS = frozenset({"instrumentation", "when", "name", "for", "clear", "clear_for", "window", "severity",
                         "labels", "summary", "description", "repeat", "receivers"})


def parse_rule(body: object, inst: Instrumentation, numeric_unit: Type | None, rule_id: int = 0,
               created: float = 0.0) -> Rule:
    """A create (or full replace) body as a :class:`Rule` on ``inst``; InputError naming the field."""
    if not isinstance(body, Mapping):
        raise InputError(None, "the body must be a JSON object")
    unknown = set(body) - RULE_FIELDS
    if unknown:
        raise InputError(sorted(unknown)[0], f"unknown field (fields: {', '.join(sorted(RULE_FIELDS))})")
    cond = parse_condition(body.get("when"), inst, numeric_unit)
    for_ = _seconds(body.get("for", 0), "for", MAX_DURATION)
    clear_for = _seconds(body.get("clear_for", 0), "clear_for", MAX_DURATION)
    repeat = _seconds(body.get("repeat", 0), "repeat", MAX_REPEAT)
    if 0 < repeat < 60:
        raise InputError("repeat", "at least 60 s (or 0: never)")
    clear = _clear(body.get("clear"), cond, inst, numeric_unit)
    severity = body.get("severity", "warning")
    if severity not in SEVERITIES:
        raise InputError("severity", f"must be one of {', '.join(SEVERITIES)}")
    name = body.get("name", "")
    if not isinstance(name, str) or len(name) > 128:
        raise InputError("name", "must be a text of at most 128 characters")
    return Rule(rule_id, inst.id, body["when"].strip(), cond, inst.tenant, name, for_, clear, clear_for,
                parse_window(body.get("window")), severity, _labels(body.get("labels", {})),
                _template(body.get("summary", ""), "summary"),
                _template(body.get("description", ""), "description"), repeat,
                _receiver_names(body.get("receivers", [])), created)


def _seconds(value: object, field: str, most: int) -> int:
    seconds = parse_duration(value, field) if not isinstance(value, float) or value.is_integer() else -1
    if not 0 <= seconds <= most:
        raise InputError(field, f"must be a duration from 0 to {most} s, e.g. '1m'")
    return seconds


def _clear(value: object, cond: Condition, inst: Instrumentation, numeric_unit: Type | None) -> float | None:
    if value is None:
        return None
    if cond.what in (NO_DATA, SOURCES):
        raise InputError("clear", f"a {cond.what} condition has no threshold to clear at")
    unit = numeric_unit if cond.what != VALUE and numeric_unit is not None else Type.from_json(inst.unit)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InputError("clear", "must be a number or a quantity such as '150ms'")
    clear = parse_quantity(str(value), unit, "clear") if isinstance(value, str) else float(value)
    if not math.isfinite(clear):
        raise InputError("clear", "must be a finite number")
    above = cond.op in (">", ">=")
    if (above and clear > cond.threshold) or (not above and clear < cond.threshold):
        side = "at or below" if above else "at or above"
        raise InputError("clear", f"must be {side} the threshold {cond.threshold:g} (hysteresis)")
    return clear


def _labels(obj: object) -> dict[str, str]:
    if not isinstance(obj, Mapping) or len(obj) > MAX_LABELS:
        raise InputError("labels", f"must be an object of at most {MAX_LABELS} name: text pairs")
    for k, v in obj.items():
        if not isinstance(k, str) or not LABEL_NAME.fullmatch(k):
            raise InputError("labels", f"{k!r} is not a label name (letters, digits and _)")
        if not isinstance(v, str) or len(v) > MAX_TEXT:
            raise InputError(f"labels.{k}", f"must be a text of at most {MAX_TEXT} characters")
    return dict(obj)


def _template(text: object, field: str) -> str:
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise InputError(field, f"must be a text of at most {MAX_TEXT} characters")
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as e:
        raise InputError(field, f"not a template: {e} (write {{{{ for a brace)") from None
    unknown = names - TEMPLATE_FIELDS
    if unknown:
        raise InputError(field, f"{{{sorted(unknown)[0]}}} is not a field "
                         f"({', '.join('{' + n + '}' for n in sorted(TEMPLATE_FIELDS))})")
    return text


def _receiver_names(obj: object) -> tuple[str, ...]:
    if isinstance(obj, str):
        obj = [obj]
    if not isinstance(obj, list) or len(obj) > MAX_RECEIVERS:
        raise InputError("receivers", f"must be a list of at most {MAX_RECEIVERS} receiver names")
    for name in obj:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise InputError("receivers", f"{name!r} is not a receiver name")
    return tuple(dict.fromkeys(obj))


# -- receivers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Receiver:
    """A named destination of notifications; ``settings`` depend on the ``kind``:

    - ``alertmanager``: ``url`` (Alertmanager's base address, e.g. http://am:9093), ``timeout``
    - ``webhook``: ``url``, ``secret`` (HMAC-SHA256 key; optional), ``timeout``
    - ``email``: ``host``, ``port``, ``starttls`` (bool), ``username``, ``password``, ``sender``,
      ``to`` (a list of addresses), ``timeout``
    """

    name: str
    kind: str
    settings: dict
    tenant: str | None = None  # a tenant's rules send only to its own receivers
    created: float = 0.0

    def to_json(self, masked: bool = True) -> dict:
        settings = {k: (MASK if masked and k in SECRET_SETTINGS and v else v)
                    for k, v in self.settings.items()}
        return {"name": self.name, "kind": self.kind, "settings": settings, "tenant": self.tenant,
                "created": self.created}

    @classmethod
    def from_json(cls, obj: Mapping) -> Receiver:
        return cls(obj["name"], obj["kind"], dict(obj["settings"]), obj.get("tenant"),
                   obj.get("created", 0.0))


_RECEIVER_SETTINGS = {
    "alertmanager": {"url": str, "timeout": float},
    "webhook": {"url": str, "secret": str, "timeout": float},
    "email": {"host": str, "port": int, "starttls": bool, "username": str, "password": str,
              "sender": str, "to": list, "timeout": float},
}
_REQUIRED = {"alertmanager": ("url",), "webhook": ("url",), "email": ("host", "sender", "to")}
DEFAULT_TIMEOUT = 5.0
MAX_TIMEOUT = 60.0


def parse_receiver(body: object, tenant: str | None, created: float = 0.0,
                   previous: Receiver | None = None) -> Receiver:
    """A receiver body ``{"name", "kind", "settings": {...}}``; a masked secret keeps the
    ``previous`` one (so a listed receiver can be sent back changed). InputError naming the field."""
    if not isinstance(body, Mapping):
        raise InputError(None, "the body must be a JSON object")
    unknown = set(body) - {"name", "kind", "settings"}
    if unknown:
        raise InputError(sorted(unknown)[0], "unknown field (name, kind, settings)")
    name = body.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InputError("name", "must be 1-63 lower-case letters, digits, '_' or '-', "
                         "starting with a letter")
    kind = body.get("kind")
    if kind not in RECEIVER_KINDS:
        raise InputError("kind", f"must be one of {', '.join(RECEIVER_KINDS)}")
    settings = body.get("settings", {})
    if not isinstance(settings, Mapping):
        raise InputError("settings", "must be an object")
    allowed = _RECEIVER_SETTINGS[kind]
    out: dict = {}
    for k, v in settings.items():
        where = f"settings.{k}"
        if k not in allowed:
            raise InputError(where, f"unknown for a {kind} receiver ({', '.join(allowed)})")
        out[k] = _setting(v, allowed[k], where)
        if k in SECRET_SETTINGS and v == MASK:
            if previous is None or k not in previous.settings:
                raise InputError(where, "is masked: send the secret itself")
            out[k] = previous.settings[k]
    for k in _REQUIRED[kind]:
        if k not in out:
            raise InputError(f"settings.{k}", f"is required for a {kind} receiver")
    if "url" in out and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", out["url"]):
        raise InputError("settings.url", "must be an http:// or https:// address")
    if "to" in out and not (0 < len(out["to"]) <= 50 and all(isinstance(a, str) and _ADDRESS.fullmatch(a)
                                                             for a in out["to"])):
        raise InputError("settings.to", "must be a list of 1 to 50 e-mail addresses")
    if "sender" in out and not _ADDRESS.fullmatch(out["sender"]):
        raise InputError("settings.sender", "must be an e-mail address")
    if "port" in out and not 1 <= out["port"] <= 65535:
        raise InputError("settings.port", "must be a port number (1-65535)")
    if "timeout" in out and not 0 < out["timeout"] <= MAX_TIMEOUT:
        raise InputError("settings.timeout", f"must be between 0 and {MAX_TIMEOUT:g} seconds")
    return Receiver(name, kind, out, tenant, created)


_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+")


def _setting(value: object, kind: type, where: str) -> object:
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind in (str, bool, list) and isinstance(value, kind) and not (kind is str and len(value) > MAX_TEXT):
        return value
    wanted = {str: "a text", float: "a number", int: "a whole number", bool: "true or false", list: "a list"}
    raise InputError(where, f"must be {wanted[kind]}")


# -- alerts and notifications --------------------------------------------------------------------------------

FIRING, RESOLVED = "firing", "resolved"


class Notification(NamedTuple):
    """One alert's state change (or repeat), as every receiver of its rule is told it."""

    rule_id: int
    inst_id: int
    tenant: str | None
    key: str  # "" for a rule on the whole value
    status: str  # FIRING or RESOLVED
    severity: str
    labels: dict  # the rule's labels plus alertname, instrumentation, metric, severity and key
    summary: str
    description: str
    value: float | None  # what was observed (None: no data)
    threshold: float
    starts_at: float  # when it fired
    ends_at: float | None  # when it resolved
    at: float  # the slot time of this change
    url: str  # path of the dashboard at that time, e.g. "/?inst=3&t=1700000000"
    repeat: bool = False  # a reminder while firing, not a change

    @property
    def fingerprint(self) -> str:
        """The same for every notification of one alert (rule and key)."""
        return f"{self.rule_id}/{self.key}"

    def to_json(self) -> dict:
        return self._asdict()


class AlertState(NamedTuple):
    """One alert (a rule and a key) that is pending or firing."""

    rule_id: int
    key: str  # "" for a rule on the whole value
    state: str  # "pending" or "firing"
    since: float  # pending: when the condition started to hold; firing: when it fired
    value: float | None  # the last value observed
    clear_since: float | None = None  # firing, clear of the condition since then
    last_sent: float = 0.0  # when receivers were last told (firing or a repeat)
    active_since: float | None = None  # firing: when the condition started to hold

    def to_json(self) -> dict:
        return self._asdict()
