"""Schemathesis (property-based testing from the OpenAPI document) against a real `fleetscope
serve` with authentication on, once with an admin token and once with none: no 5xx, no status,
header, content type or body the document does not declare, no write answered without a
token (the `ignored_auth` check), invalid data refused, and the stateful phase following the
document's links (create, read, change, delete).

Left out, with the reason:
- the `positive_data_acceptance` check: some rules cannot be said in JSON Schema (a retention
  of at least the granularity, a duration string within bounds, a predicate over the metric's
  own fields), so a schema-valid body can still be refused with a 422 naming the field;
- the `coverage` phase: Schemathesis 4.32 fails inside Hypothesis when it describes its own
  filters there (an error of the tool, before any request is sent);
- the event streams (`/stream`): an answer that never ends, which the tool would wait on; they
  are tested in tests/test_api.py and tests/test_tenants.py.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, free_port

RUN = ["--checks", "all", "--exclude-checks", "positive_data_acceptance",
       "--phases", "examples,fuzzing,stateful", "--max-examples", "15", "--workers", "1",
       "--exclude-path-regex", "/stream", "--seed", "20261207", "--suppress-health-check", "all"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # The fuzzer sends bad tokens on purpose; the per-address failure limit would end the run.
    srv = Server(tmp_path_factory.mktemp("fuzz"), free_port(), ["--auth-failures", "100000"],
                 auth=True).start()
    yield srv
    srv.stop()


def schemathesis(server: Server, *extra: str) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).parent / "schemathesis")
    return subprocess.run([exe, "run", server.url + "/api/v1/openapi.json", *RUN, *extra],
                          capture_output=True, text=True, timeout=600, cwd=server.data_dir)


@pytest.mark.timeout(900)
def test_the_api_keeps_its_document_with_a_token(server: Server) -> None:
    out = schemathesis(server, "-H", f"Authorization: Bearer {server.token('fuzzer')}")
    assert out.returncode == 0, out.stdout[-6000:]
    assert " passed" in out.stdout and "generated" in out.stdout
    assert "Traceback" not in server.log.read_text()


@pytest.mark.timeout(900)
def test_the_api_keeps_its_document_without_a_token(server: Server) -> None:
    out = schemathesis(server)
    assert out.returncode == 0, out.stdout[-6000:]
    assert "Traceback" not in server.log.read_text()
