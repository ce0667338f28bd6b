"""CellStore and run_cells: stable keys, atomic writes, resuming after a failure."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from lesample.store import (
    CellStore,
    atomic_write_bytes,
    atomic_write_text,
    cell_key,
    run_cells,
    write_csv,
)

CELLS = [{"sampler": s, "L": L, "seed": 0} for s in ("ula", "mala") for L in (5, 20)]


def result(cell):
    # Floats that CSV must round-trip exactly, a string and an integer column.
    x = np.float64(cell["L"]) / 3 + 0.1
    return pd.DataFrame({"step": [0, 1], "error": [x, x / 7], "note": ["a", "b,\"c\""]})


def test_key_is_stable_and_order_free():
    a = {"target": "gauss", "L": 20, "step_size": 0.1, "seed": 3}
    b = dict(reversed(list(a.items())))
    assert cell_key(a) == cell_key(b)
    # Pinned: the same cell must keep its key across runs, processes and releases.
    assert cell_key(a) == "26cef1042e7cb47e"
    assert cell_key({**a, "seed": 4}) != cell_key(a)
    assert cell_key({**a, "L": np.int64(20), "step_size": np.float64(0.1)}) == cell_key(a)
    assert CellStore("x").key(a) == cell_key(a)
    with pytest.raises(TypeError, match="JSON"):
        cell_key({"f": object()})


def test_save_load_roundtrip(tmp_path):
    store = CellStore(tmp_path / "cells")
    cell = CELLS[1]
    assert not store.has(cell)
    with pytest.raises(KeyError):
        store.load(cell)
    df = result(cell)
    store.save(cell, df)
    assert store.has(cell)
    # Exact floats, quoted strings.
    pd.testing.assert_frame_equal(store.load(cell), df, check_exact=True)
    assert store.cells() == [cell]
    marker = json.loads((tmp_path / "cells" / f"{store.key(cell)}.json").read_text())
    assert marker["cell"] == cell and marker["rows"] == 2
    # No temporary files left behind, and files are readable by others (not mkstemp's 0600).
    assert sorted(p.suffix for p in (tmp_path / "cells").iterdir()) == [".csv", ".json"]
    assert os.stat(tmp_path / "cells" / f"{store.key(cell)}.csv").st_mode & 0o044


def test_marker_is_what_marks_a_cell_finished(tmp_path):
    # A run killed between the table and the marker leaves a table alone: not finished.
    store = CellStore(tmp_path)
    write_csv(result(CELLS[0]), tmp_path / f"{store.key(CELLS[0])}.csv")
    assert not store.has(CELLS[0])


def test_atomic_write_keeps_old_content_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "f.txt"
    atomic_write_text(path, "old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"new")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert [p.name for p in path.parent.iterdir()] == ["f.txt"]  # temp file removed


def test_run_cells_resumes_after_failure(tmp_path):
    calls = []

    def fn(cell):
        calls.append(cell)
        if len(calls) == 3 and fail:
            raise RuntimeError("killed in cell 3")
        return result(cell)

    store = CellStore(tmp_path)
    fail = True
    with pytest.raises(RuntimeError, match="killed") as info:
        run_cells(store, CELLS, fn, progress=False)
    assert any("in cell" in n for n in info.value.__notes__)
    assert len(calls) == 3
    assert [store.has(c) for c in CELLS] == [True, True, False, False]

    fail = False
    calls.clear()
    df = run_cells(store, CELLS, fn, progress=False)
    assert calls == CELLS[2:]  # the two saved cells were not recomputed

    # Tidy: the cell parameters lead as columns, one block of rows per cell, in order.
    assert list(df.columns) == ["sampler", "L", "seed", "step", "error", "note"]
    assert len(df) == 2 * len(CELLS)
    assert df[["sampler", "L"]].drop_duplicates().to_dict("records") == [
        {"sampler": c["sampler"], "L": c["L"]} for c in CELLS
    ]
    # A third run computes nothing and returns the same table.
    calls.clear()
    again = run_cells(tmp_path, CELLS, fn, progress=False)
    assert calls == []
    pd.testing.assert_frame_equal(again, df, check_exact=True)


def test_run_cells_checks_its_input(tmp_path):
    with pytest.raises(ValueError, match="duplicate"):
        run_cells(tmp_path, [CELLS[0], dict(CELLS[0])], result, progress=False)
    with pytest.raises(TypeError, match="DataFrame"):
        run_cells(tmp_path, CELLS[:1], lambda c: [1, 2], progress=False)
    # A result column named like a parameter must agree with it.
    bad = lambda c: pd.DataFrame({"seed": [99]})  # noqa: E731
    with pytest.raises(ValueError, match="seed"):
        run_cells(tmp_path / "b", CELLS[:1], bad, progress=False)
    empty = run_cells(tmp_path / "e", CELLS[:2], lambda c: pd.DataFrame(), progress=False)
    assert empty.empty and list(empty.columns) == ["sampler", "L", "seed"]


def test_marker_holds_the_tables_checksum(tmp_path):
    import hashlib

    store = CellStore(tmp_path)
    store.save(CELLS[0], result(CELLS[0]))
    key = store.key(CELLS[0])
    marker = json.loads((tmp_path / f"{key}.json").read_text())
    assert marker["sha256"] == hashlib.sha256((tmp_path / f"{key}.csv").read_bytes()).hexdigest()


def _ten_rows(cell):
    return pd.DataFrame({"trial": range(10), "energy": np.linspace(1, 2, 10) / 3})


def _truncate(path):  # keep the header and 5 of the 10 rows
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:6]))


def _garbage(path):
    path.write_bytes(b"\x00\xffnot,a\ncsv")


def _empty(path):
    path.write_bytes(b"")


@pytest.mark.parametrize("suffix, damage", [
    (".csv", _truncate), (".csv", _garbage), (".csv", _empty),
    (".json", _garbage), (".json", _empty),
    # A marker written before checksums were stored cannot be verified.
    (".json", lambda p: p.write_text(json.dumps(
        {k: v for k, v in json.loads(p.read_text()).items() if k != "sha256"}))),
])
def test_damaged_cell_is_recomputed_with_a_warning_naming_it(tmp_path, suffix, damage):
    from lesample.store import CorruptCellError, CorruptCellWarning

    store = CellStore(tmp_path)
    first = run_cells(store, CELLS, _ten_rows, progress=False)
    bad = tmp_path / f"{store.key(CELLS[1])}{suffix}"
    damage(bad)
    with pytest.raises(CorruptCellError, match=store.key(CELLS[1])):
        store.load(CELLS[1])
    with pytest.warns(CorruptCellWarning, match=bad.name):
        assert store.cells() == [c for c in sorted(CELLS, key=store.key) if c != CELLS[1]]

    calls = []
    with pytest.warns(CorruptCellWarning, match=bad.name):
        again = run_cells(store, CELLS, lambda c: calls.append(c) or _ten_rows(c),
                          progress=False)
    assert calls == [CELLS[1]]  # only the damaged cell is recomputed, and never used
    pd.testing.assert_frame_equal(again, first, check_exact=True)
    assert store.has(CELLS[1])


def test_publish_moves_all_outputs_or_none(tmp_path):
    from lesample.store import publish

    atomic_write_text(tmp_path / "results.csv", "old")
    atomic_write_text(tmp_path / "report.html", "old")
    with pytest.raises(RuntimeError, match="report failed"), publish(tmp_path) as stage:
        atomic_write_text(stage / "results.csv", "new")
        raise RuntimeError("report failed")
    # The old results and report stay, together; nothing staged is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "results.csv"]
    assert (tmp_path / "results.csv").read_text() == "old"

    moved = []
    real_replace = os.replace

    def spy(src, dst):
        moved.append(os.path.basename(dst))
        real_replace(src, dst)

    with publish(tmp_path) as stage:
        atomic_write_text(stage / "report.html", "new report")
        atomic_write_text(stage / "results.csv", "new")
        atomic_write_text(stage / "sub" / "x.csv", "x")
        os.replace = spy
    os.replace = real_replace
    assert moved[-1] == "report.html"  # the report appears after its data
    assert (tmp_path / "results.csv").read_text() == "new"
    assert (tmp_path / "report.html").read_text() == "new report"
    assert (tmp_path / "sub" / "x.csv").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "results.csv", "sub"]


def test_study_publishes_only_validated_inputs_all_together(tmp_path, monkeypatch):
    # The k-means study's runner with its computations replaced by cheap fakes.
    import studies.kmeans as study
    from lesample.store import CorruptCellWarning
    from studies.kmeans import cells as kcells
    from studies.kmeans import report as kreport

    monkeypatch.setattr(kcells, "best_known", lambda *a: pd.DataFrame({"energy": [1.0]}))
    monkeypatch.setattr(kcells, "run_cell", lambda c: _ten_rows(c).head(c["trials"]))
    fail = []

    def write_report(results, refs, out_dir, **kw):
        if fail:
            raise KeyError("ours (random)")
        # Every cell reaches the report whole.
        assert (results.groupby(["instance", "label"]).size() == results["trials"].iloc[0]).all()
        return atomic_write_text(out_dir / "report.html", f"{len(results)} rows")

    monkeypatch.setattr(kreport, "write_report", write_report)
    out = tmp_path / "kmeans"
    assert study.run(out, "quick", False, seeds=10) == out / "report.html"
    published = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert {"reference.csv", "report.html", "results.csv"} <= set(published)

    cell = next(p for p in sorted((out / "cells").glob("*.csv")) if len(p.read_text()) > 100)
    _truncate(cell)
    with pytest.warns(CorruptCellWarning, match=cell.name):
        study.run(out, "quick", False, seeds=10)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == published

    # A report that fails on new results leaves the previous results and report, together.
    fail.append(True)
    with pytest.raises(KeyError, match="ours"):
        study.run(out, "quick", False, seeds=5)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == published
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
