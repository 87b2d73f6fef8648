"""`fleetscope api` over HTTPS (--tls-cert/--tls-key), with a certificate authority made in the
test by trustme: clients that trust the CA get answers, the CLI with --ca-cert too, and tokens
are still required."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trustme

from tests.conftest import free_port, stop_process, wait_for


def test_api_serves_https_with_the_given_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(cert_file)
    cert.private_key_pem.write_to_path(key_file)
    ca.cert_pem.write_to_path(ca_file)
    exe = str(Path(sys.executable).parent / "fleetscope")
    store = f"sqlite:///{tmp_path / 'fleet.db'}"
    admin = subprocess.run([exe, "token", "create", "tls-admin", "--role", "admin", "--store", store],
                           capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    port = free_port()
    log = open(tmp_path / "api.log", "wb")  # noqa: SIM115 - closed below
    api = subprocess.Popen([exe, "api", "--bus", f"nats://127.0.0.1:{free_port()}", "--store", store,
                            "--port", str(port), "--tls-cert", str(cert_file), "--tls-key", str(key_file)],
                           stdout=log, stderr=subprocess.STDOUT)
    url = f"https://127.0.0.1:{port}"
    trusted = ssl.create_default_context(cafile=str(ca_file))
    try:
        def up() -> bool:
            try:
                return httpx.get(url + "/healthz", verify=trusted, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 30)
        with pytest.raises(httpx.ConnectError):  # a client that does not trust the CA refuses it
            httpx.get(url + "/healthz", timeout=5)
        with pytest.raises(httpx.HTTPError):  # nothing answers plain HTTP there
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        api_url = url + "/api/v1/instrumentations"
        assert httpx.get(api_url, verify=trusted, timeout=5).status_code == 401
        ok = httpx.get(api_url, verify=trusted, timeout=5,
                       headers={"authorization": f"Bearer {admin}"})
        assert ok.status_code == 200 and ok.json() == {"instrumentations": []}
        listed = subprocess.run([exe, "--token", admin, "--ca-cert", str(ca_file), "inst", "list",
                                 "--url", url],
                                capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        untrusted = subprocess.run([exe, "--token", admin, "inst", "list", "--url", url],
                                   capture_output=True, text=True, timeout=60)
        assert untrusted.returncode == 1 and "certificate" in untrusted.stderr.lower()
    finally:
        stop_process(api)
        log.close()
    assert b"serving at https://" in (tmp_path / "api.log").read_bytes()


def test_half_a_certificate_is_refused(tmp_path: Path) -> None:
    exe = str(Path(sys.executable).parent / "fleetscope")
    (tmp_path / "cert.pem").write_text("x")
    out = subprocess.run([exe, "api", "--store", f"sqlite:///{tmp_path / 'x.db'}", "--tls-cert",
                          str(tmp_path / "cert.pem")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "tls-key" in out.stderr
