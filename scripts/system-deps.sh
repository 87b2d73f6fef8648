#!/usr/bin/env bash
# Install the system packages the test suite needs, only when they are missing.
set -euo pipefail
need=()
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
# A real Prometheus scrapes `fleetscope serve` in tests/test_exposition.py.
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
# A real Prometheus Alertmanager receives alert notifications in tests/test_alert_receivers.py.
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
# Debian's chromium, driven by Playwright in tests/test_browser.py (no browser download).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# PostgreSQL: the store tests run against a real server (they create and drop their own database).
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
# A real QEMU process for tests/test_vm.py (software emulation; boots nothing).
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
# libvirt's headers to build libvirt-python (its test driver, test:///default, is in libvirt0).
{ command -v pkg-config >/dev/null 2>&1 && pkg-config --exists libvirt; } || need+=(libvirt-dev pkg-config)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages: ${need[*]} (run as root or install them)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
# Start PostgreSQL when it is installed but not running (no systemd in containers).
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  for version in $(ls /etc/postgresql 2>/dev/null); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
fi
