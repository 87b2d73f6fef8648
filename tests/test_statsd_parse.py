"""The StatsD line parser: every form it accepts, every reason it refuses, and a fuzz."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetscope.sources.statsd_parse import MAX_NAME, BadLine, Event, parse_line, parse_packet


@pytest.mark.parametrize(("line", "event"), [
    ("hits:1|c", Event("hits", "c", (1.0,), 1.0, ())),
    ("hits:2|c|@0.5", Event("hits", "c", (2.0,), 0.5, ())),
    ("web.req-time:12.5|ms|#route:/api,status:200",
     Event("web_req_time", "ms", (12.5,), 1.0, (("route", "/api"), ("status", "200")))),
    ("lat;route=/x;dc=eu:3:4:5|h", Event("lat", "h", (3.0, 4.0, 5.0), 1.0, (("dc", "eu"), ("route", "/x")))),
    ("q:7|d|@1|#a:b|c:container|T1700000000", Event("q", "d", (7.0,), 1.0, (("a", "b"),))),
    ("temp:-3|g", Event("temp", "g", (-3.0,), 1.0, (), True)),
    ("temp:+3|g", Event("temp", "g", (3.0,), 1.0, (), True)),
    ("temp:21|g", Event("temp", "g", (21.0,), 1.0, ())),
    ("users:alice|s", Event("users", "s", ("alice",), 1.0, ())),
    ("x:1|c|#flag", Event("x", "c", (1.0,), 1.0, (("flag", ""),))),
    ("9lives:1|c|#hostname:h,value:v", Event("_9lives", "c", (1.0,), 1.0,
                                             (("tag_hostname", "h"), ("tag_value", "v")))),
])
def test_parses(line: str, event: Event) -> None:
    assert parse_line(line) == event


@pytest.mark.parametrize(("line", "reason"), [
    ("hits", "syntax"),
    ("hits|c", "syntax"),
    ("hits:|c", "syntax"),
    ("hits:1|x", "type"),
    ("hits:one|c", "value"),
    ("hits:nan|ms", "value"),
    ("hits:inf|c", "value"),
    ("lat:-1|ms", "value"),
    ("g:1:2|g", "value"),
    ("hits:1|c|@2", "rate"),
    ("hits:1|c|@0", "rate"),
    ("hits:1|c|@x", "rate"),
    ("hits:1|c|zzz", "syntax"),
    ("x" * (MAX_NAME + 1) + ":1|c", "name"),
    (":1|c", "name"),
    ("a;b:1|c", "tags"),
    ("a:1|c|#" + "k" * 100 + ":v", "tags"),
    ("a:1|c|#k:" + "v" * 300, "tags"),
    ("a:1|c|#" + ",".join(f"k{i}:v" for i in range(40)), "tags"),
    ("a:" + "1" * 5000 + "|c", "too_long"),
])
def test_refuses_with_a_reason(line: str, reason: str) -> None:
    with pytest.raises(BadLine) as err:
        parse_line(line)
    assert err.value.reason == reason


def test_packet_counts_bad_lines_and_keeps_good_ones() -> None:
    events, bad = parse_packet(b"a:1|c\n\nb:x|c\r\nc:2|ms\n\xff\xfe:1|c\nd|g")
    assert [e.name for e in events] == ["a", "c", "__"]
    assert bad == ["value", "syntax"]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_bytes_never_raise(data: bytes) -> None:
    events, _bad = parse_packet(data)
    for e in events:
        assert e.name and len(e.name) <= MAX_NAME
        assert 0 < e.rate <= 1


_PIECES = st.sampled_from(["a", "b.c", ":", "|", "@", "#", ",", ";", "=", "1", "-2.5", "c", "ms", "g",
                           "h", "d", "s", "@0.1", "e9", "nan", "\n", " ", "T1", "c:", "é", "\x00"])


@settings(max_examples=600, deadline=None)
@given(st.lists(_PIECES, max_size=25).map("".join))
def test_fuzz_near_statsd_never_raises(line: str) -> None:
    try:
        e = parse_line(line)
    except BadLine as exc:
        assert exc.reason in {"too_long", "syntax", "name", "type", "value", "rate", "tags"}
    else:
        assert e.type in {"c", "g", "ms", "h", "d", "s"}
