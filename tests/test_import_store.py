"""The import tables on both store backends (SQLite and a real PostgreSQL): staged writes
invisible until ready, duplicates refused by content hash, a delete takes everything."""

from __future__ import annotations

import numpy as np
import pytest

from fleetscope.store.importenc import ImportChunk, decode, encode
from fleetscope.store.imports import DuplicateImport, NewImportChunk
from tests.store_backends import backend_url, pg_url, store  # noqa: F401  (fixtures)


def _chunk(t0: int, n: int) -> bytes:
    values = np.arange(n * 2, dtype=float).reshape(n, 2)
    values[1, 0] = np.nan
    return encode(ImportChunk((("0", "user"), ("0", "idle")), np.arange(t0, t0 + n), np.ones(n, int), values))


def test_codec_round_trip() -> None:
    got = decode(_chunk(100, 5))
    assert got.keys == (("0", "user"), ("0", "idle")) and got.times.tolist() == [100, 101, 102, 103, 104]
    assert np.isnan(got.values[1, 0]) and got.values[4, 1] == 9.0


def test_staged_import_duplicates_and_delete(store) -> None:  # noqa: F811
    files = [{"name": "sa01", "sha256": "a" * 64, "bytes": 10}]
    first = store.begin_import("", "sysstat", None, files, {"options": {}})
    store.add_import_chunks(first, [NewImportChunk("cpu.usage", 100, 105, 5, _chunk(100, 5))])
    assert store.import_chunks("cpu.usage", 0, 1000) == []  # loading: not readable yet
    with pytest.raises(DuplicateImport) as dup:
        store.begin_import("", "sysstat", None, [{"name": "copy", "sha256": "a" * 64, "bytes": 10}], {})
    assert dup.value.import_id == first and "sa01" in str(dup.value)
    store.finish_import(first, "web1", 100, 105, {"samples": 5})
    info = store.get_import(first)
    assert (info.host, info.state, info.start, info.end) == ("web1", "ready", 100, 105)
    assert info.document["samples"] == 5
    got = store.import_chunks("cpu.usage", 104, 200)
    assert [(c.import_id, c.start, c.end) for c in got] == [(first, 100, 105)]
    assert decode(got[0].data).values[4, 1] == 9.0
    assert store.import_chunks("cpu.usage", 105, 200) == [] and store.import_chunks("disk.ops", 0, 999) == []
    assert store.import_chunks("cpu.usage", 0, 999, [first + 1]) == []
    assert store.delete_import(first) and store.get_import(first) is None and not store.delete_import(first)
    assert store.import_chunks("cpu.usage", 0, 1000) == [] and store.list_imports() == []
    again = store.begin_import("", "sysstat", None, files, {})  # the hash is free again
    assert again != first


def test_an_export_stream_adds_imported_steps_across_pieces(store, tmp_path, monkeypatch) -> None:  # noqa: F811
    """imported.stream_with_imported over both backends: live points and an import's steps in
    time order, added where both hold a step, read a few steps at a time."""
    from fleetscope.api import imported, importing
    from fleetscope.model.instrumentation import Instrumentation, validate_spec
    from fleetscope.model.metrics import Catalog
    from fleetscope.model.series import DataPoint
    from fleetscope.perflogs.metrics import METRICS
    from fleetscope.perflogs.sink import Options

    log = tmp_path / "levels.csv"
    log.write_text("t,free\n" + "".join(f"{1000 + i},{i}\n" for i in range(10)))
    mapping = {"time_column": "t", "metrics": [{"metric": "memory.used", "columns": ["free"],
                                                "fields": {"type": "free"}}]}
    importing.run_import(store, "csv", [importing.LogFile("levels.csv", str(log))],
                         Options(host="h", mapping=mapping), None)
    spec = validate_spec({"metric": "memory.used", "decomposition": ["type"]}, Catalog(METRICS))
    inst = Instrumentation(id=1, created=0.0, **spec)
    live = [DataPoint(t, 1, {"used": 5.0}, 1, 1) for t in (995, 1003, 1004, 1020)]
    monkeypatch.setattr(imported, "EXPORT_PIECE", 3)
    got = list(imported.stream_with_imported(store, inst, live, 990, 1030, 1, 50))
    assert [p.start_time for p in got] == [995, *range(1000, 1010), 1020]
    by_t = {p.start_time: p.value for p in got}
    assert by_t[1003] == {"used": 5.0, "free": 3.0} and by_t[1004] == {"used": 5.0, "free": 4.0}
    assert by_t[1009] == {"free": 9.0} and by_t[995] == by_t[1020] == {"used": 5.0}
    assert live[1].value == {"used": 5.0}  # the live point itself is left alone
