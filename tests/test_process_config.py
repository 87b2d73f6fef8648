"""The configuration of the processes (fleetscope.processes.config): flags over the TOML file over
the defaults, and every refusal naming its field. The processes themselves run for real in
test_nats.py, test_fleet.py and the serve-based tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetscope.model.errors import InputError
from fleetscope.processes.config import DEFAULT_BUS, agent_config, fleet_config, serve_config

from .conftest import free_port


def test_flag_over_file_over_default(tmp_path: Path) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text('bus = "nats://top:4222"\nstore = "sqlite:///top.db"\nbuffer = "8MiB"\n'
                      '[agent]\nhostname = "from-file"\nlabels = { rack = "r1", tier = "web" }\n'
                      '[api]\nstore = "postgresql://db/api"\nnats_token = "t0"\n')
    agent = agent_config(config=config, label=["tier=db"], nats={"user": "u"})
    assert agent.bus_url == "nats://top:4222"  # a top-level key applies to every section
    assert agent.hostname == "from-file" and agent.buffer_bytes == 8 << 20
    assert agent.labels == {"rack": "r1", "tier": "db"}  # --label beats the file's
    assert agent.nats["user"] == "u" and agent.nats["token"] is None
    api = fleet_config("api", config=config, bus="nats://flag:4222", port=7171)
    assert (api.bus_url, api.store_url, api.nats["token"], api.port) == (
        "nats://flag:4222", "postgresql://db/api", "t0", 7171)
    assert fleet_config("aggregator", config=config).store_url == "sqlite:///top.db"
    assert agent_config().bus_url == DEFAULT_BUS and agent_config().buffer_bytes == 64 << 20


@pytest.mark.parametrize(("text", "field"), [
    ("bus = ", "config"), ("agent = 3", "config"), ("[agent]\nlabels = 5", "config"),
    ("[agent]\nbuffer = \"lots\"", "buffer"), ("[agent]\nstatsd = \"x:y\"", "statsd"),
    ("[agent]\nscrape = [\"ftp://x\"]", "scrape"), ("[agent]\ningest_max_keys = 0", "ingest-max-keys"),
])
def test_agent_config_refusals_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(text)
    with pytest.raises(InputError) as info:
        agent_config(config=config)
    assert info.value.field == field


def test_fleet_processes_need_a_store_and_a_readable_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is required") as info:
        fleet_config("aggregator")
    assert info.value.field == "store"
    with pytest.raises(InputError) as info:
        fleet_config("api", config=tmp_path / "missing.toml", store="sqlite:///x.db")
    assert info.value.field == "config" and "missing.toml" in info.value.message


def test_serve_config(tmp_path: Path) -> None:
    port = free_port()
    config = serve_config(data_dir=tmp_path, port=port, history="second=1d", flush_every=2,
                          scrape=["http://127.0.0.1:9100/metrics,5"])
    assert config.port == port and config.history is not None
    assert config.history.retention["second"] == 86400 and config.history.flush_every == 2
    assert config.history.retention["hour"] == 365 * 86400  # the defaults for the tiers not given
    assert [(t.url, t.interval) for t in config.ingest.scrape] == [("http://127.0.0.1:9100/metrics", 5.0)]
    for kwargs, field in (({"port": 0}, "port"), ({"flush_every": 0}, "flush-every"),
                          ({"history": "second=1x"}, "history.second"),
                          ({"statsd": "1", "statsd_prefix": "a b"}, "statsd-prefix")):
        with pytest.raises(InputError) as info:
            serve_config(data_dir=tmp_path, **{"port": free_port(), **kwargs})
        assert info.value.field == field, (kwargs, info.value)


def test_the_public_url_of_alert_links(tmp_path: Path) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text('store = "sqlite:///x.db"\n[aggregator]\npublic_url = "https://fleet.example.com/"\n')
    assert fleet_config("aggregator", config=config).public_url == "https://fleet.example.com"
    assert fleet_config("aggregator", config=config, public_url="http://10.0.0.1:7070").public_url == (
        "http://10.0.0.1:7070")  # the flag over the file
    assert fleet_config("aggregator", store="sqlite:///x.db", public_url=None).public_url == ""
    assert serve_config(data_dir=tmp_path, port=free_port(),
                        public_url="https://me.example/fs").public_url == "https://me.example/fs"
    for bad in ("fleet.example.com", "ftp://x", "https://x/?q=1"):
        with pytest.raises(InputError) as info:
            fleet_config("aggregator", store="sqlite:///x.db", public_url=bad)
        assert info.value.field == "public-url"
