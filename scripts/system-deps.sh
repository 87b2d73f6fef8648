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
# sysstat (sadc, sadf, iostat, mpstat) and procps (vmstat) make the logs tests/test_imports.py
# imports; the server reads sysstat data files through sadf.
command -v sadf >/dev/null 2>&1 || need+=(sysstat)
command -v vmstat >/dev/null 2>&1 || need+=(procps)
# Apache Bench (ab -g: one row per request) makes the load-test log tests/test_import_events.py imports.
command -v ab >/dev/null 2>&1 || need+=(apache2-utils)
# node and npm run the original Cloud Analytics client (node-smartdc 8.1) in tests/test_cloudapi.py;
# ssh-keygen and ssh-agent make and hold the keys it signs with.
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v ssh-agent >/dev/null 2>&1 || need+=(openssh-client)
# dnsmasq serves the PTR records (and a slow answer) behind CloudAPI's reversedns transformation in
# tests/test_cloudapi_transforms.py (dnsmasq-base: the program, no service started).
command -v dnsmasq >/dev/null 2>&1 || need+=(dnsmasq-base)
# A real QEMU process for tests/test_vm.py (software emulation; boots nothing).
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
# libvirt's headers to build libvirt-python (its test driver, test:///default, is in libvirt0).
{ command -v pkg-config >/dev/null 2>&1 && pkg-config --exists libvirt; } || need+=(libvirt-dev pkg-config)
# Real guests for tests/test_podman.py and tests/test_libvirtd.py, installed without their
# recommends (no dnsmasq, no default network, no extra runtimes): podman with runc (crun refuses
# hybrid cgroups), busybox-static for the containers' root filesystem and the guest's initramfs,
# libvirtd (started by the test itself).
lean=()
command -v podman >/dev/null 2>&1 || lean+=(podman)
command -v runc >/dev/null 2>&1 || lean+=(runc)
dpkg -s busybox-static >/dev/null 2>&1 || lean+=(busybox-static)
command -v libvirtd >/dev/null 2>&1 || lean+=(libvirt-daemon-system)
if [ $((${#need[@]} + ${#lean[@]})) -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages: ${need[*]} ${lean[*]} (run as root or install them)" >&2
    exit 1
  fi
  apt-get update -qq
  [ ${#need[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  [ ${#lean[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${lean[@]}"
fi
# The libvirt test's guest kernel: Debian's cloud kernel image, unpacked from its package file
# (not installed) into a directory the tests own.
kernels=/var/cache/fleetscope-test/kernel
if [ "$(id -u)" -eq 0 ] && ! compgen -G "$kernels/boot/vmlinuz-*" >/dev/null; then
  pick() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
  pkg=$(pick)
  [ -n "$pkg" ] || { apt-get update -qq; pkg=$(pick); }
  mkdir -p "$kernels"
  (cd "$kernels" && apt-get download -q "$pkg" 2>/dev/null \
     && dpkg-deb --fsys-tarfile "$pkg"_*.deb | tar -x --wildcards './boot/vmlinuz-*' && rm -f "$pkg"_*.deb)
fi
# node-smartdc 8.1.0 (the last release with the sdc-*instrumentation commands) from the npm registry,
# into a directory the tests own (tests/test_cloudapi.py installs it there too when it is missing).
smartdc=/var/cache/fleetscope-test/smartdc-8.1.0
if [ "$(id -u)" -eq 0 ] && [ ! -f "$smartdc/node_modules/smartdc/package.json" ] && command -v npm >/dev/null 2>&1; then
  mkdir -p "$smartdc"
  npm install --silent --no-audit --no-fund --prefix "$smartdc" smartdc@8.1.0 >/dev/null || true
fi
# Start PostgreSQL when it is installed but not running (no systemd in containers).
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  for version in $(ls /etc/postgresql 2>/dev/null); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
fi
