"""Imported performance logs end to end: files made by the real tools in the test (sysstat's
``sadc``, ``iostat``, ``mpstat``; procps' ``vmstat``), uploaded to a real ``fleetscope serve``
with an operator's token, read back through instrumentations made after the import, and
checked against what the tools printed. Bad files are refused with the file, line and reason
and leave nothing; viewers and tenants see what their role and scope admit.
"""

from __future__ import annotations

import calendar
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, free_port, wait_for

API = "/api/v1"
SADC = "/usr/lib/sysstat/sadc"
CPUS = os.cpu_count() or 1


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None and not os.path.exists(t)]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: `make test` installs them (scripts/system-deps.sh)",
                    pytrace=False)


class Api:
    def __init__(self, server: Server, token: str) -> None:
        self.c = httpx.Client(base_url=server.url, timeout=30, headers={"authorization": f"Bearer {token}"})

    def upload(self, fmt: str, *paths: Path, **fields) -> httpx.Response:
        data = {"format": fmt, **{k: str(v) for k, v in fields.items()}}
        files = [("file", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
        return self.c.post(f"{API}/imports", data=data, files=files)

    def instrument(self, metric: str, decomposition=(), predicate=None) -> int:
        body = {"metric": metric, "decomposition": list(decomposition)}
        if predicate:
            body["predicate"] = predicate
        r = self.c.post(f"{API}/instrumentations", json=body)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def values(self, inst: int, start: int, end: int, duration: int = 1) -> list[dict]:
        r = self.c.get(f"{API}/instrumentations/{inst}/value",
                       params={"start_time": start, "end_time": end, "duration": duration})
        assert r.status_code == 200, r.text
        return r.json()

    def values_once_indexed(self, inst: int, start: int, end: int, duration: int = 1) -> list[dict]:
        """:meth:`values` of a range longer than a read may evaluate over an import whose answer
        is not made yet: refused (422, ``start_time``) until the answer it asked for is made."""
        def ask() -> httpx.Response | None:
            r = self.c.get(f"{API}/instrumentations/{inst}/value",
                           params={"start_time": start, "end_time": end, "duration": duration})
            assert r.status_code == 200 or (r.status_code == 422 and "being indexed" in r.text), r.text
            return r if r.status_code == 200 else None

        return wait_for(ask, timeout=120).json()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, Api]]]:
    server = Server(tmp_path_factory.mktemp("imports"), free_port(), auth=True).start()
    admin = Api(server, server.token("im-admin", "admin"))
    made = admin.c.post(f"{API}/tenants", json={"name": "acme", "scope": 'hostname == "acme-db"'})
    assert made.status_code == 201, made.text
    apis = {"admin": admin, "operator": Api(server, server.token("im-op", "operator")),
            "viewer": Api(server, server.token("im-view", "viewer")),
            "acme": Api(server, server.token("im-acme", "operator", "acme"))}
    yield server, apis
    server.stop()


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real output of the real tools, made once (about 4 s: the tools run side by side)."""
    _need("vmstat", "iostat", "mpstat", SADC, "sadf", "sar")
    d = tmp_path_factory.mktemp("logs")
    env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
    runs = {"vm.txt": ["vmstat", "-t", "1", "5"], "io.txt": ["iostat", "-t", "-x", "1", "3"],
            "mp.txt": ["mpstat", "-P", "ALL", "1", "3"], "sa": [SADC, "-S", "XALL", "1", "4", str(d / "sa")],
            "sar.txt": ["sar", "-u", "ALL", "-r", "-b", "-d", "-n", "DEV", "1", "3"]}
    procs = {}
    for name, cmd in runs.items():
        out = open(d / name, "wb") if name != "sa" else subprocess.DEVNULL  # noqa: SIM115
        procs[name] = (subprocess.Popen(cmd, stdout=out, env=env), out)
    for proc, out in procs.values():
        assert proc.wait(30) == 0
        if out is not subprocess.DEVNULL:
            out.close()
    return {name: d / name for name in runs}


def _vmstat_lines(path: Path) -> list[dict]:
    lines = path.read_text().splitlines()
    names = lines[1].split()[:-1]
    out = []
    for line in lines[2:]:
        p = line.split()
        row = dict(zip(names, map(float, p[:len(names)]), strict=True))
        row["t"] = calendar.timegm(time.strptime(f"{p[-2]} {p[-1]}", "%Y-%m-%d %H:%M:%S"))
        out.append(row)
    return out


def test_vmstat_import_answers_like_the_tool_printed(srv, logs) -> None:
    _, api = srv
    r = api["operator"].upload("vmstat", logs["vm.txt"], host="vm-import", cpus=CPUS)
    assert r.status_code == 201, r.text
    imp = r.json()
    rows = _vmstat_lines(logs["vm.txt"])
    # The first line is since boot: it only marks the start of the first interval.
    assert imp["host"] == "vm-import" and imp["state"] == "ready" and imp["samples"] == len(rows) - 1
    assert imp["start_time"] == rows[0]["t"] and imp["end_time"] == rows[-1]["t"]
    assert [f["name"] for f in imp["files"]] == ["vm.txt"] and imp["interval"] == 1
    # Made after the import: the instrumentation still answers over it.
    mine = {"eq": ["hostname", "vm-import"]}
    cpu = api["operator"].instrument("cpu.usage", ["mode"], mine)
    mem = api["operator"].instrument("memory.used", ["type"], mine)
    span = (imp["start_time"], imp["end_time"])
    got = {p["start_time"]: p["value"] for p in api["viewer"].values(cpu, *span)}
    memory = {p["start_time"]: p["value"] for p in api["viewer"].values(mem, *span)}
    for prev, row in itertools.pairwise(rows):
        t = prev["t"]
        interval = row["t"] - prev["t"]
        for col, mode in (("us", "user"), ("sy", "system"), ("id", "idle"), ("wa", "iowait")):
            assert got[t].get(mode, 0.0) == pytest.approx(row[col] / 100 * CPUS * interval), (t, mode)
        assert memory[t]["free"] == row["free"] * 1024 and memory[t]["cached"] == row["cache"] * 1024
    # PromQL reads the import as it reads live history: CPU seconds per second, by mode, at every
    # second (1 s slots: per second as they are). A mode at 0 % has no key in a second's answer,
    # and no value in PromQL's then (a stale marker), not the second before's.
    for t in sorted(got):
        promql = api["viewer"].c.get("/prometheus/api/v1/query", params={
            "query": f'fleetscope_cpu_usage{{instrumentation="{cpu}"}}', "time": t}).json()
        assert promql["status"] == "success", promql
        modes = {s["metric"]["mode"]: float(s["value"][1]) for s in promql["data"]["result"]}
        assert modes == pytest.approx(got[t]) and modes, t
    # A coarser step sums CPU seconds and averages memory levels.
    whole = api["viewer"].values(cpu, imp["start_time"], imp["end_time"], imp["end_time"] - imp["start_time"])
    assert whole[0]["value"]["user"] == pytest.approx(sum(r["us"] / 100 * CPUS for r in rows[1:]))


def test_sysstat_file_by_sadc_with_host_from_the_file_and_a_heatmap_across_cpus(srv, logs) -> None:
    _, api = srv
    r = api["operator"].upload("sysstat", logs["sa"])
    assert r.status_code == 201, r.text
    imp = r.json()
    assert imp["host"] == os.uname().nodename and imp["samples"] == 3 and imp["interval"] == 1
    assert {"cpu.usage", "memory.used", "disk.ops", "net.bytes", "cpu.utilization"} <= set(imp["metrics"])
    # What sysstat itself prints of the file, read independently (sadf's CSV-like -d format).
    printed = subprocess.run(["sadf", "-d", str(logs["sa"]), "--", "-u", "ALL", "-P", "ALL"], env={
        **os.environ, "LC_ALL": "C"}, capture_output=True, text=True, check=True).stdout.splitlines()
    header = printed[0].lstrip("# ").split(";")
    rows = [dict(zip(header, line.split(";"), strict=True)) for line in printed[1:] if line]
    def t_of(r):
        return calendar.timegm(time.strptime(r["timestamp"], "%Y-%m-%d %H:%M:%S UTC")) - int(r["interval"])

    host = {"eq": ["hostname", imp["host"]]}
    usage = api["operator"].instrument("cpu.usage", ["cpu"], {"and": [host, {"eq": ["mode", "user"]}]})
    span = (imp["start_time"], imp["end_time"])
    got = {p["start_time"]: p["value"] for p in api["viewer"].values(usage, *span)}
    per_cpu = [r for r in rows if r["CPU"] != "-1"]
    assert len(per_cpu) == 3 * CPUS
    for r in per_cpu:
        # Live data of this very host may add to the same seconds: the import's share is at least it.
        assert got.get(t_of(r), {}).get(r["CPU"], 0.0) >= float(r["%usr"]) / 100 * int(r["interval"]) - 1e-9
    # The heatmap of CPU utilisation across CPUs: one count per CPU per column.
    util = api["operator"].instrument("cpu.utilization", ["utilization"], host)
    hm = api["viewer"].c.get(f"{API}/instrumentations/{util}/heatmap", params={
        "start_time": imp["start_time"], "end_time": imp["end_time"], "step": 1, "format": "json"})
    assert hm.status_code == 200, hm.text
    counts = [sum(col) for col in hm.json()["columns"]] if "columns" in hm.json() else None
    pct = api["viewer"].c.get(f"{API}/instrumentations/{util}/average", params={
        "start_time": imp["start_time"], "end_time": imp["end_time"], "duration": 1}).json()
    for r in [r for r in rows if r["CPU"] == "-1"]:
        point = next(p for p in pct if p["start_time"] == t_of(r))
        assert point["count"] == CPUS
        # The mean of the per-CPU busy shares is the all-CPU busy share sysstat printed (buckets: 5 %).
        assert point["average"] == pytest.approx(100 - float(r["%idle"]), rel=0.05, abs=0.5)
    assert counts is None or all(c >= 0 for c in counts)


def test_iostat_and_mpstat_text(srv, logs) -> None:
    _, api = srv
    r = api["operator"].upload("mpstat", logs["mp.txt"], host="mp-host")
    assert r.status_code == 201, r.text
    mp = r.json()
    assert mp["samples"] == 3
    lines = [ln.split() for ln in logs["mp.txt"].read_text().splitlines()]
    report = [p for p in lines if p and p[0][:2].isdigit() and p[1] not in ("CPU", "all")]
    inst = api["operator"].instrument("cpu.usage", ["cpu"], {"and": [{"eq": ["hostname", "mp-host"]},
                                                                    {"eq": ["mode", "user"]}]})
    pts = [p for p in api["viewer"].values(inst, mp["start_time"], mp["end_time"]) if p["value"]]
    printed = sorted(float(p[2]) / 100 for p in report if float(p[2]))  # 0.00 %: no key, as live
    assert sorted(v for p in pts for v in p["value"].values() if v) == pytest.approx(printed)

    r = api["operator"].upload("iostat", logs["io.txt"], host="io-host")
    assert r.status_code == 201, r.text
    io = r.json()
    assert io["samples"] == 2  # three reports, the first since boot
    text = logs["io.txt"].read_text().split("Device")
    heads = text[1].splitlines()[0].split()

    def devices(block: str) -> list[str]:
        lines = block.splitlines()[1:]
        return lines[:lines.index("")] if "" in lines else lines

    later = [dict(zip(["Device", *heads], ln.split(), strict=True))
             for block in text[2:] for ln in devices(block)]
    ops = api["operator"].instrument("disk.ops", ["direction"], {"eq": ["hostname", "io-host"]})
    got = [p["value"] for p in api["viewer"].values(ops, io["start_time"], io["end_time"]) if p["value"]]
    assert sum(v.get("write", 0) for v in got) == pytest.approx(sum(float(d["w/s"]) for d in later), abs=0.05)


def _without_answers(imports: list[dict]) -> list[dict]:
    """The imports without their answers' counts (made in the background meanwhile)."""
    return [{k: v for k, v in i.items() if k != "answers"} for i in imports]


def test_bad_files_are_refused_with_file_line_and_reason_and_leave_nothing(srv, logs, tmp_path) -> None:
    _, api = srv
    before = _without_answers(api["admin"].c.get(f"{API}/imports").json()["imports"])
    vm = logs["vm.txt"].read_bytes()
    cut = tmp_path / "cut.txt"
    cut.write_bytes(vm[:-20])  # truncated mid-line
    r = api["operator"].upload("vmstat", cut, host="bad")
    assert r.status_code == 422 and "cut.txt: line 7:" in r.json()["error"]["message"], r.text
    foreign = tmp_path / "notes.txt"
    foreign.write_text("hello\nworld\n")
    for fmt in ("vmstat", "iostat", "mpstat", "sysstat"):
        r = api["operator"].upload(fmt, foreign, host="bad")
        assert r.status_code == 422 and "notes.txt" in r.json()["error"]["message"], (fmt, r.text)
    half = tmp_path / "sa-half"
    half.write_bytes(logs["sa"].read_bytes()[:3000])
    r = api["operator"].upload("sysstat", half)
    assert r.status_code == 422 and "sa-half" in r.json()["error"]["message"], r.text
    bad_json = tmp_path / "sa.json"
    good = subprocess.run(["sadf", "-j", str(logs["sa"])], capture_output=True, text=True).stdout
    bad_json.write_text(good[: len(good) // 2])
    r = api["operator"].upload("sysstat", bad_json)
    assert r.status_code == 422 and "sa.json: record" in r.json()["error"]["message"], r.text
    assert _without_answers(api["admin"].c.get(f"{API}/imports").json()["imports"]) == before
    # The same content again is a conflict, whatever its name.
    again = tmp_path / "again.txt"
    again.write_bytes(vm)
    r = api["operator"].upload("vmstat", again, host="vm-import")
    assert r.status_code == 409 and "imported already" in r.json()["error"]["message"], r.text
    # Bounded: a body without a length, or over the limit, is refused before it is read.
    r = api["operator"].c.post(f"{API}/imports", content=iter([b"x"]),
                               headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 411


def test_roles_tenants_and_delete(srv, logs, tmp_path) -> None:
    _, api = srv
    f = tmp_path / "acme.txt"
    f.write_bytes(logs["vm.txt"].read_bytes().replace(b"\n", b" \n"))  # other bytes, same figures
    assert api["viewer"].upload("vmstat", f, host="acme-db").status_code == 403
    r = api["operator"].upload("vmstat", f, host="acme-db", cpus=CPUS)
    assert r.status_code == 201, r.text
    imp = r.json()
    listed = api["viewer"].c.get(f"{API}/imports").json()["imports"]
    assert imp["id"] in [i["id"] for i in listed]
    # The tenant sees the operators' imported rows as its scope admits: host acme-db, not vm-import.
    acme = api["acme"].instrument("cpu.usage", ["hostname"])
    start, end = imp["start_time"], imp["end_time"]
    seen = {h for p in api["acme"].values(acme, start, end) if p["value"] for h in p["value"]}
    assert seen == {"acme-db"}
    ops = api["operator"].instrument("cpu.usage", ["hostname"])
    seen_all = {h for p in api["operator"].values(ops, start, end) if p["value"] for h in p["value"]}
    assert {"acme-db", "vm-import"} <= seen_all
    assert api["acme"].c.get(f"{API}/imports").json()["imports"] == []  # not the tenant's import
    assert api["acme"].c.delete(f"{API}/imports/{imp['id']}").status_code == 404
    assert api["viewer"].c.delete(f"{API}/imports/{imp['id']}").status_code == 403
    assert api["operator"].c.delete(f"{API}/imports/{imp['id']}").status_code == 204
    seen = {h for p in api["acme"].values(acme, start, end) if p["value"] for h in p["value"]}
    assert seen == set()
    assert api["operator"].upload("vmstat", f, host="acme-db", cpus=CPUS).status_code == 201  # re-importable


def _cli(server: Server, token: str, *args: str) -> subprocess.CompletedProcess:
    exe = str(Path(os.environ.get("VIRTUAL_ENV", Path(__file__).parents[1] / ".venv")) / "bin" / "fleetscope")
    return subprocess.run([exe, "--token", token, *args, "--url", server.url], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "COLUMNS": "250"})


def test_cli_imports_lists_and_deletes(srv, logs, tmp_path) -> None:
    server, api = srv
    token = server.token("im-cli", "operator")
    f = tmp_path / "cli-vm.txt"
    f.write_bytes(logs["vm.txt"].read_bytes().replace(b"\n", b"\t\n"))  # other bytes, same figures
    done = _cli(server, token, "import", "vmstat", str(f), "--host", "cli-host", "--json")
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    assert made["host"] == "cli-host" and made["samples"] == 4
    listed = _cli(server, token, "imports", "list")
    assert listed.returncode == 0 and "cli-host" in listed.stdout and "cli-vm.txt" in listed.stdout
    # The answers column: serve's default instrumentations read any host's import, and their
    # answers over it are made without a read ("made/to make", all of them in the end).
    def answers_made() -> str | None:
        row = next(line for line in _cli(server, token, "imports", "list").stdout.splitlines()
                   if "cli-vm.txt" in line)
        listing = api["viewer"].c.get(f"{API}/imports/{made['id']}").json()
        shown = listing.get("answers", {"ready": 0, "pending": 0})
        total = shown["ready"] + shown["pending"]
        return row if total and shown["ready"] == total and row.split()[-1] == f"{total}/{total}" else None
    wait_for(answers_made, timeout=60, interval=0.5)
    again = _cli(server, token, "import", "vmstat", str(f), "--host", "cli-host")
    assert again.returncode == 1 and f"imported already as import {made['id']}" in again.stderr
    bad = tmp_path / "bad.txt"
    bad.write_bytes(logs["vm.txt"].read_bytes().replace(b" 0 ", b" x ", 1))
    refused = _cli(server, token, "import", "vmstat", str(bad), "--host", "cli-host")
    assert refused.returncode == 1 and "bad.txt: line 3:" in refused.stderr, refused.stderr
    assert _cli(server, token, "imports", "delete", str(made["id"])).returncode == 0
    assert made["id"] not in [i["id"] for i in api["viewer"].c.get(f"{API}/imports").json()["imports"]]


# -- sar text ---------------------------------------------------------------------------------


def _sar_sections(path: Path) -> list[tuple[int, int, str, dict]]:
    """``(start, interval, key, {column: figure})`` of every row sar printed, read the plain way:
    a header's time starts its section's first interval, each row's time ends it and starts the
    next."""
    lines = path.read_text().splitlines()
    date = lines[0].split()[3]  # MM/DD/YY
    out, header, start, now = [], None, None, None
    for line in lines[1:]:
        p = line.split()
        if not p or p[0] == "Average:":
            continue
        t = calendar.timegm(time.strptime(f"{date} {p[0]}", "%m/%d/%y %H:%M:%S"))
        try:
            float(p[-1])
        except ValueError:
            header, start, now = p[1:], t, t
            continue
        if t != now:
            start, now = now, t
        keyed = header[0] in ("CPU", "DEV", "IFACE")
        row = dict(zip(header[1:] if keyed else header, map(float, p[2:] if keyed else p[1:]), strict=True))
        out.append((start, t - start, p[1] if keyed else "", row))
    return out


def test_sar_text_running_sar_answers_as_sar_printed(srv, logs) -> None:
    """``sar -u ALL -r -b -d -n DEV 1 3``'s own output, imported with --host."""
    _, api = srv
    r = api["operator"].upload("sar-text", logs["sar.txt"], host="sar-live")
    assert r.status_code == 201, r.text
    imp = r.json()
    rows = _sar_sections(logs["sar.txt"])
    assert imp["host"] == "sar-live" and imp["samples"] > 0 and imp["interval"] == 1
    assert imp["start_time"] == min(s for s, *_ in rows)
    assert imp["end_time"] == max(s + i for s, i, *_ in rows)
    host = {"eq": ["hostname", "sar-live"]}
    cpu = api["operator"].instrument("cpu.usage", ["mode"], host)
    mem = api["operator"].instrument("memory.used", ["type"], host)
    disk = api["operator"].instrument("disk.ops", ["disk"], host)
    net = api["operator"].instrument("net.bytes", ["nic"], {"and": [host, {"eq": ["direction", "in"]}]})
    span = (imp["start_time"], imp["end_time"])
    got = {i: {p["start_time"]: p["value"] or {} for p in api["viewer"].values(i, *span)}
           for i in (cpu, mem, disk, net)}
    checked = 0
    for start, interval, key, row in rows:
        if "%usr" in row:  # the all row alone: shares of every CPU
            for col, mode in (("%usr", "user"), ("%sys", "system"), ("%idle", "idle")):
                assert got[cpu][start].get(mode, 0.0) == pytest.approx(row[col] / 100 * CPUS * interval)
        elif "kbmemfree" in row:
            assert got[mem][start]["free"] == row["kbmemfree"] * 1024
            assert got[mem][start]["used"] == row["kbmemused"] * 1024
        elif "rkB/s" in row:
            assert got[disk][start].get(key, 0.0) == pytest.approx(row["tps"] * interval)
        elif "rxkB/s" in row:
            assert got[net][start].get(key, 0.0) == pytest.approx(row["rxkB/s"] * 1024 * interval)
        else:
            continue
        checked += 1
    assert checked >= 3 * 4
    # sar -b's totals are the devices' I/O again: with -d in the file they are not counted.
    assert not any("all" in v for v in got[disk].values())


def test_sar_text_of_a_data_file_one_activity_at_a_time(srv, logs, tmp_path) -> None:
    """``sar -f``'s layout (each activity over the whole file), per CPU, -r and -S (both
    memory.used at the same times: levels not halved), -b without -d (disk all)."""
    _, api = srv
    text = tmp_path / "sar-f.txt"
    with open(text, "wb") as out:
        subprocess.run(["sar", "-f", str(logs["sa"]), "-u", "-P", "ALL", "-r", "-S", "-b", "-q"], stdout=out,
                       env={**os.environ, "LC_ALL": "C", "TZ": "UTC"}, check=True)
    r = api["operator"].upload("sar-text", text, host="sar-file")
    assert r.status_code == 201, r.text
    imp = r.json()
    assert imp["samples"] > 0
    rows = _sar_sections(text)
    host = {"eq": ["hostname", "sar-file"]}
    per_cpu = api["operator"].instrument("cpu.usage", ["cpu"], {"and": [host, {"eq": ["mode", "user"]}]})
    mem = api["operator"].instrument("memory.used", ["type"], host)
    disk = api["operator"].instrument("disk.ops", ["direction"], host)
    util = api["operator"].instrument("cpu.utilization", ["utilization"], host)
    span = (imp["start_time"], imp["end_time"])
    got = {i: {p["start_time"]: p["value"] or {} for p in api["viewer"].values(i, *span)}
           for i in (per_cpu, mem, disk)}
    checked = set()
    for start, interval, key, row in rows:
        if "%user" in row and key != "all":
            assert got[per_cpu][start].get(key, 0.0) == pytest.approx(row["%user"] / 100 * interval)
            checked.add("cpu")
        elif "kbmemfree" in row:
            assert got[mem][start]["free"] == row["kbmemfree"] * 1024
            checked.add("mem")
        elif "kbswpused" in row:
            assert got[mem][start].get("swap", 0.0) == row["kbswpused"] * 1024
            assert "free" in got[mem][start]  # the same time's -r figures beside it, whole
        elif "rtps" in row:
            assert got[disk][start].get("read", 0.0) == pytest.approx(row["rtps"] * interval)
            checked.add("disk")
    assert checked == {"cpu", "mem", "disk"}
    # cpu.utilization: a count per CPU, their mean 100 - %idle as sar printed it.
    avg = {p["start_time"]: p for p in api["viewer"].c.get(f"{API}/instrumentations/{util}/average", params={
        "start_time": span[0], "end_time": span[1], "duration": 1}).json()}
    idle = [(s, row["%idle"]) for s, _, key, row in rows if "%idle" in row and key == "all"]
    for start, pct in idle:
        assert avg[start]["count"] == CPUS
        assert avg[start]["average"] == pytest.approx(100 - pct, rel=0.05, abs=0.5)


def test_sar_text_malformed_is_refused_with_file_line_and_reason(srv, logs, tmp_path) -> None:
    _, api = srv
    before = _without_answers(api["admin"].c.get(f"{API}/imports").json()["imports"])
    lines = logs["sar.txt"].read_text().splitlines(keepends=True)
    figures = next(n for n, ln in enumerate(lines) if ln.split() and ln.split()[1] == "all")
    cases = {
        "cut.txt": ("".join(lines[:figures]) + lines[figures][:30], f"line {figures + 1}: expected"),
        "letter.txt": ("".join(lines[:figures]) + lines[figures].replace(".", "x", 1) + "".join(
            lines[figures + 1:]), f"line {figures + 1}: expected numbers"),
        "headless.txt": (lines[0] + lines[figures], "line 2: not sar output: figures before a column header"),
        "no-banner.txt": ("".join(lines[2:]), "line 1: not sar output: no banner"),
        "words.txt": ("hello world\n", "line 1: not sar output: expected a time"),
    }
    for name, (content, reason) in cases.items():
        f = tmp_path / name
        f.write_text(content)
        r = api["operator"].upload("sar-text", f, host="bad")
        assert r.status_code == 422 and f"{name}: {reason}" in r.json()["error"]["message"], (name, r.text)
    assert _without_answers(api["admin"].c.get(f"{API}/imports").json()["imports"]) == before


# -- CSV --------------------------------------------------------------------------------------


def test_csv_of_sadf_with_a_mapping_answers_as_sadf_printed(srv, logs, tmp_path) -> None:
    """sysstat's own CSV (``sadf -d``: ``;``-separated, a time with ``UTC``) through a mapping:
    columns to a known metric's field (memory.used by type) and to a metric of the CSV's own."""
    _, api = srv
    printed = subprocess.run(["sadf", "-d", str(logs["sa"]), "--", "-r"], env={**os.environ, "LC_ALL": "C"},
                             capture_output=True, text=True, check=True).stdout
    f = tmp_path / "memory.csv"
    f.write_text(printed)
    mapping = {"time_column": "timestamp", "time_format": "%Y-%m-%d %H:%M:%S UTC", "delimiter": ";",
               "metrics": [{"metric": "memory.used", "fields": {"type": "free"}, "columns": ["kbmemfree"],
                            "scale": 1024},
                           {"metric": "sadf.commit", "field": "kind", "columns": ["kbcommit", "%commit"],
                            "unit": "number"}]}
    r = api["operator"].upload("csv", f, host="csv-host", mapping=json.dumps(mapping))
    assert r.status_code == 201, r.text
    imp = r.json()
    header = printed.splitlines()[0].lstrip("# ").split(";")
    rows = [dict(zip(header, ln.split(";"), strict=True)) for ln in printed.splitlines()[1:] if ln]
    t = [calendar.timegm(time.strptime(row["timestamp"], "%Y-%m-%d %H:%M:%S UTC")) for row in rows]
    assert imp["samples"] == len(rows) and imp["start_time"] == t[0] and imp["interval"] == t[1] - t[0]
    assert imp["defined"]["sadf.commit"]["kind"] == "point"
    host = {"eq": ["hostname", "csv-host"]}
    mem = api["operator"].instrument("memory.used", ["type"], host)
    own = api["operator"].instrument("sadf.commit", ["kind"], host)  # a metric the CSV defined
    span = (imp["start_time"], imp["end_time"])
    got = {p["start_time"]: p["value"] for p in api["viewer"].values(mem, *span)}
    mine = {p["start_time"]: p["value"] for p in api["viewer"].values(own, *span)}
    for when, row in zip(t, rows, strict=True):  # a row's time starts the interval it covers
        assert got[when] == {"free": float(row["kbmemfree"]) * 1024}
        assert mine[when] == pytest.approx({k: float(row[k]) for k in ("kbcommit", "%commit")})


def test_csv_through_the_cli_flags_and_a_mapping_file(srv, tmp_path) -> None:
    server, api = srv
    token = server.token("im-csv", "operator")
    f = tmp_path / "run.csv"
    f.write_text("time,login,search,cpu\n2024-03-04T14:00:00Z,12.5,30,50\n2024-03-04T14:00:10Z,,31,60\n"
                 "2024-03-04T14:00:20Z,13,29,70\n")
    done = _cli(server, token, "import", "csv", str(f), "--host", "csv-cli", "--time-column", "time",
                "--metric", "app.latency", "--field", "route", "--column", "login", "--column", "search",
                "--unit", "ms", "--json")
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    t0 = calendar.timegm((2024, 3, 4, 14, 0, 0))
    assert (made["start_time"], made["end_time"], made["samples"]) == (t0, t0 + 30, 3)
    lat = api["operator"].instrument("app.latency", ["route"], {"eq": ["hostname", "csv-cli"]})
    got = {p["start_time"]: p["value"] for p in api["viewer"].values(lat, t0, t0 + 30, 10)}
    assert got == {t0: {"login": 12.5, "search": 30}, t0 + 10: {"search": 31},
                   t0 + 20: {"login": 13, "search": 29}}
    # A mapping file (TOML): CPU percent of the whole host as cpu.usage (an interval metric: seconds).
    other = tmp_path / "cpu.csv"
    other.write_text(f.read_text().replace("12.5", "12.0"))
    toml = tmp_path / "map.toml"
    toml.write_text('time_column = "time"\n[[metrics]]\nmetric = "cpu.usage"\ncolumns = ["cpu"]\n'
                    'fields = { mode = "user" }\nscale = 0.01\n')
    done = _cli(server, token, "import", "csv", str(other), "--host", "csv-cpu", "--mapping", str(toml),
                "--json")
    assert done.returncode == 0, done.stderr
    cpu = api["operator"].instrument("cpu.usage", ["cpu"], {"eq": ["hostname", "csv-cpu"]})
    got = {p["start_time"]: p["value"] for p in api["viewer"].values(cpu, t0, t0 + 30, 10)}
    assert got == {t0: {"all": pytest.approx(5.0)}, t0 + 10: {"all": pytest.approx(6.0)},
                   t0 + 20: {"all": pytest.approx(7.0)}}
    # The flags' mistakes are the server's to name.
    bad = _cli(server, token, "import", "csv", str(f), "--host", "x", "--time-column", "time",
               "--metric", "Nope")
    assert bad.returncode == 1 and "mapping.metrics[0].metric" in bad.stderr, bad.stderr


def test_csv_malformed_and_bad_mappings_are_refused(srv, tmp_path) -> None:
    _, api = srv
    before = _without_answers(api["admin"].c.get(f"{API}/imports").json()["imports"])
    mapping = json.dumps({"time_column": "t", "metrics": [{"metric": "app.qps", "columns": ["qps"],
                                                           "kind": "interval"}]})
    cases = {
        "back.csv": ("t,qps\n100,1\n200,2\n150,3\n", "line 4: the time does not increase"),
        "short.csv": ("t,qps\n100,1\n200\n", "line 3: expected 2 columns as the header, found 1"),
        "word.csv": ("t,qps\n100,1\n200,lots\n", "line 3: column 'qps': not a number: 'lots'"),
        "when.csv": ("t,qps\nyesterday,1\n", "line 2: column 't': not a time: 'yesterday'"),
        "nocol.csv": ("time,qps\n100,1\n", "line 1: no time column 't'"),
        "quote.csv": ('t,qps\n100,"1\n', "line 2: malformed CSV (unexpected end of data)"),
    }
    cases["latin.csv"] = (b"t,qps\n100,1\n200,caf\xe9\n", "line 3: not UTF-8 text")
    for name, (content, reason) in cases.items():
        f = tmp_path / name
        f.write_bytes(content if isinstance(content, bytes) else content.encode())
        r = api["operator"].upload("csv", f, host="bad", mapping=mapping)
        assert r.status_code == 422 and f"{name}: {reason}" in r.json()["error"]["message"], (name, r.text)
    ok = tmp_path / "ok.csv"
    ok.write_text("t,qps\n100,1\n200,2\n")
    for bad, why in ((None, "a csv import needs a mapping"), ("{", "must be JSON"),
                     (json.dumps({"time_column": "t", "metrics": [{"metric": "proc.cpu"}]}),
                      "proc.cpu is a metric of the live sources"),
                     (json.dumps({"time_column": "t",
                                  "metrics": [{"metric": "cpu.usage", "field": "execname"}]}),
                      "cpu.usage has no field 'execname'")):
        fields = {} if bad is None else {"mapping": bad}
        r = api["operator"].upload("csv", ok, host="bad", **fields)
        assert r.status_code == 422 and why in r.json()["error"]["message"], (bad, r.text)
        assert r.json()["error"]["field"] == "mapping"
    r = api["operator"].upload("vmstat", ok, host="bad", mapping=mapping)
    assert r.status_code == 422 and "only a csv import" in r.text
    assert _without_answers(api["admin"].c.get(f"{API}/imports").json()["imports"]) == before


# -- export -----------------------------------------------------------------------------------


def test_export_includes_imported_logs_as_value_does(srv, logs, tmp_path) -> None:
    """CSV and JSON Lines exports over an import's range hold what vmstat printed, as /value."""
    _, api = srv
    f = tmp_path / "vm-export.txt"
    f.write_bytes(logs["vm.txt"].read_bytes().replace(b"\n", b"  \n"))  # other bytes, same figures
    r = api["operator"].upload("vmstat", f, host="vm-export", cpus=CPUS)
    assert r.status_code == 201, r.text
    imp = r.json()
    rows = _vmstat_lines(logs["vm.txt"])
    mem = api["operator"].instrument("memory.used", ["type"], {"eq": ["hostname", "vm-export"]})
    span = {"start_time": imp["start_time"], "end_time": imp["end_time"]}
    got = api["viewer"].c.get(f"{API}/instrumentations/{mem}/export", params={**span, "format": "json"})
    assert got.status_code == 200, got.text
    points = [json.loads(line) for line in got.text.splitlines()]
    values = {p["start_time"]: p["value"] for p in api["viewer"].values(mem, *span.values()) if p["value"]}
    assert {p["start_time"]: p["value"] for p in points} == values
    assert [p["start_time"] for p in points] == [row["t"] for row in rows[:-1]]  # the rows' intervals
    for p, (_, row) in zip(points, itertools.pairwise(rows), strict=True):  # a line ends its interval
        assert p["value"]["free"] == row["free"] * 1024 and p["value"]["cached"] == row["cache"] * 1024
    # CSV in 2 s steps: each step the mean of the two levels in it.
    csv_text = api["viewer"].c.get(f"{API}/instrumentations/{mem}/export", params={**span, "step": 2}).text
    cells = (ln.split(",") for ln in csv_text.splitlines()[1:])
    got = {(int(t), key): float(v) for t, _, _, _, key, v in cells}
    for i in range(0, len(rows) - 2, 2):
        want = (rows[i + 1]["free"] + rows[i + 2]["free"]) / 2 * 1024
        assert got[rows[i]["t"], "free"] == pytest.approx(want)
