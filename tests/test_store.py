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
