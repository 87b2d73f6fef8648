"""CloudAPI's transformations: post-processing of the keys of a discrete decomposition by an
IP-valued field, asked for when a value is read (``?transformations=reversedns``).

As Cloud Analytics had them (its aggregator's ``transforms/reversedns.js`` and
``geolocate.js``, and the API's documentation):

* DescribeAnalytics lists each one as ``{"label": ..., "fields": [...]}`` (the fields whose
  values it transforms, :data:`mapping.IP_FIELDS` here);
* an instrumentation's ``transformations`` are those whose fields it is decomposed by;
* a value asked with ``transformations`` carries ``{"transformations": {name: {key: result}}}``
  beside ``value``, for the keys of that value only: ``reversedns`` maps a key to its names
  (``["host.example"]``), answered from a cache, pending lookups absent
  (:mod:`.reversedns`); ``geolocate`` maps a key to ``{"latitude", "longitude", ...}``;
* a transformation that does not exist, or that the instrumentation does not support, is
  refused (``InvalidArgument``).

``geolocate`` exists only when a GeoIP database (MaxMind's format, read by ``maxminddb``) is
configured (``--geoip-db``): none is shipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fleetscope.api.cloudapi.errors import invalid
from fleetscope.api.cloudapi.mapping import IP_FIELDS
from fleetscope.api.cloudapi.reversedns import ReverseDns, canonical_address, parse_server

SYSTEM, OFF = "system", "off"  # --reverse-dns: the system's resolvers, or no reversedns at all
REVERSEDNS = "reversedns"
GEOLOCATE = "geolocate"
LABELS = {GEOLOCATE: "geolocate IP addresses", REVERSEDNS: "reverse dns IP addresses lookup"}


class GeoIp:
    """Lookups in a MaxMind database (GeoLite2/GeoIP2 City or Country, or one of the same
    layout), answered in the original's shape (its ``ca-geo.js``): ``latitude`` and ``longitude``
    always (an address without them is absent), ``country_code``, ``continent_code``,
    ``country``, ``region``, ``city``, ``postal_code``, ``metro_code`` when the record has them."""

    def __init__(self, path: Path) -> None:
        import maxminddb

        try:
            self._reader = maxminddb.open_database(str(path))
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise ValueError(f"cannot read the GeoIP database {path}: {exc}") from None
        self.path = path

    def locate(self, keys: Iterable[str]) -> dict[str, dict]:
        out = {}
        for key in keys:
            address = canonical_address(key)
            if address is None:
                continue
            try:
                found = _shape(self._reader.get(address))
            except ValueError:  # an IPv6 address asked of an IPv4-only database
                continue
            if found:
                out[key] = found
        return out

    def close(self) -> None:
        self._reader.close()


def _shape(record: Any) -> dict | None:
    if not isinstance(record, dict):
        return None
    location = record.get("location") or {}
    if not isinstance(location.get("latitude"), (int, float)) or \
            not isinstance(location.get("longitude"), (int, float)):
        return None
    out: dict = {"latitude": location["latitude"], "longitude": location["longitude"]}
    country, continent = record.get("country") or {}, record.get("continent") or {}
    subdivisions = record.get("subdivisions") or [{}]
    for name, value in (("country_code", country.get("iso_code")), ("continent_code", continent.get("code")),
                        ("country", _english(country)), ("region", _english(subdivisions[0])),
                        ("city", _english(record.get("city") or {})),
                        ("postal_code", (record.get("postal") or {}).get("code")),
                        ("metro_code", location.get("metro_code"))):
        if value is not None:
            out[name] = value
    return out


def _english(part: dict) -> str | None:
    names = part.get("names") if isinstance(part, dict) else None
    return names.get("en") if isinstance(names, dict) else None


class Transforms:
    """The transformations this server offers: ``reversedns`` unless ``rdns`` is None (DNS
    switched off), ``geolocate`` when a GeoIP database is open."""

    def __init__(self, rdns: ReverseDns | None = None, geoip: GeoIp | None = None) -> None:
        self.rdns, self.geoip = rdns, geoip

    def offered(self) -> list[str]:
        return [name for name, on in ((GEOLOCATE, self.geoip), (REVERSEDNS, self.rdns)) if on is not None]

    def describe(self) -> dict:
        """DescribeAnalytics' ``transformations``."""
        return {name: {"label": LABELS[name], "fields": sorted(IP_FIELDS)} for name in self.offered()}

    def for_decomposition(self, fields: Iterable[str]) -> dict:
        """An instrumentation's ``transformations``: those over a field it is decomposed by."""
        if not IP_FIELDS & set(fields):
            return {}
        return self.describe()

    def check(self, requested: list[str], supported: dict) -> list[str]:
        """``requested`` (the ``transformations`` parameter) if every one exists and the
        instrumentation supports it (``supported``: its ``transformations``)."""
        offered = self.offered()
        for name in requested:
            if name not in offered:
                raise invalid(f"transformations: requested non-existent transformation {name!r} "
                              f"(this server offers {', '.join(offered) or 'none'})")
            if name not in supported:
                raise invalid(f"transformations: requested incompatible transformation {name!r} (it "
                              f"transforms {', '.join(sorted(IP_FIELDS))}, which this instrumentation "
                              "is not decomposed by)")
        return list(dict.fromkeys(requested))

    def apply(self, requested: list[str], keys: Iterable[str]) -> dict:
        """``{name: {key: result}}`` for the keys of one answer."""
        keys = list(keys)
        out: dict = {}
        for name in requested:
            if name == REVERSEDNS and self.rdns is not None:
                out[name] = self.rdns.names(keys)
            elif name == GEOLOCATE and self.geoip is not None:
                out[name] = self.geoip.locate(keys)
        return out

    def apply_each(self, requested: list[str], key_lists: list[Iterable[str]]) -> list[dict]:
        """:meth:`apply` for several values of one answer (``ndatapoints``), as one call, so
        that one request starts no more lookups than :attr:`ReverseDns.per_call`."""
        key_lists = [list(keys) for keys in key_lists]
        done = self.apply(requested, dict.fromkeys(k for keys in key_lists for k in keys))
        return [{name: {k: found[k] for k in keys if k in found} for name, found in done.items()}
                for keys in key_lists]

    def close(self) -> None:
        if self.rdns is not None:
            self.rdns.close()
        if self.geoip is not None:
            self.geoip.close()


def from_settings(reverse_dns: str = SYSTEM, geoip_db: str | None = None) -> Transforms:
    """The transformations of ``--reverse-dns`` (``system``, ``off``, or a server's
    ``HOST[:PORT]``, several comma-separated) and ``--geoip-db`` (a MaxMind database file);
    ValueError with the reason for a bad one."""
    text = reverse_dns.strip()
    if text == OFF:
        rdns = None
    elif text == SYSTEM:
        rdns = ReverseDns()
    else:
        rdns = ReverseDns([parse_server(part) for part in text.split(",") if part.strip()] or None)
    return Transforms(rdns, GeoIp(Path(geoip_db)) if geoip_db else None)
