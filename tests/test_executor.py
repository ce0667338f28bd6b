"""lesample.executor: a grid of cells on the serial, process-pool and Dask executors gives the
same results; failing cells are retried, then recorded; a killed worker or parent loses
nothing."""

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from lesample.executor import CellExecutor, _Queue, run_grid
from lesample.store import CellStore

# Cell functions live at module level: process and Dask workers import them by name.


def study_cell(cell):
    """A cell of the sampler study less its timing columns, plus where it ran (not part of
    the comparison). Its truth and W2 go through NumPy's LAPACK, whose last bits depend on
    the BLAS thread count."""
    from studies.samplers.cells import run_cell

    timings = ["seconds", "ess_per_second"]
    return run_cell(cell).drop(columns=timings, errors="ignore").assign(pid=os.getpid())


def flaky_cell(cell):
    """Raises on its first call (a marker file remembers it across processes)."""
    marker = Path(cell["marker"])
    if cell.get("flaky") and not marker.exists():
        marker.write_text("raised once")
        raise RuntimeError("transient failure")
    return pd.DataFrame({"value": [cell["seed"] * 2.0]})


def raising_cell(cell):
    if cell["seed"] == 1:
        raise ValueError("this cell always fails")
    return pd.DataFrame({"value": [cell["seed"] * 2.0]})


def killing_cell(cell):
    """Kills its own worker (SIGKILL) on its first call, mid-cell."""
    marker = Path(cell["marker"])
    if cell.get("kill") and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return pd.DataFrame({"value": [cell["seed"] * 2.0]})


def logged_cell(cell):
    """Sleeps, then logs its call (one line per call) for the resume test."""
    time.sleep(cell["sleep"])
    with open(cell["log"], "a") as fh:
        fh.write(f"{cell['seed']}\n")
    return pd.DataFrame({"value": [cell["seed"] ** 0.5]})


GRID = [dict(target=t, sampler=s, step_size=0.05, seed=seed, num_chains=8, budgets=[5, 20],
            version=1)
        for t in ("gauss-d100-k100-g10-b10000", "rugged-g2-b5") for s in ("ula", "hj")
        for seed in range(2)]


def numeric(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns="pid")


@pytest.fixture(scope="module")
def pool():
    with CellExecutor("process", 2) as ex:
        yield ex


@pytest.fixture(scope="module")
def serial_results(tmp_path_factory):
    from studies.samplers.targets import get_target

    get_target.cache_clear()  # truths computed under the serial executor, as in a fresh CLI
    with CellExecutor("serial") as ex:
        got = run_grid(tmp_path_factory.mktemp("serial"), GRID, study_cell, executor=ex,
                       progress=False)
    assert set(got.results.pid) == {os.getpid()}
    return got.results


@pytest.mark.slow  # starts worker processes (each imports JAX)
def test_process_pool_gives_the_serial_results(tmp_path, pool, serial_results):
    got = run_grid(tmp_path, GRID, study_cell, executor=pool, progress=False,
                   affinity=lambda cell: (cell["target"], cell["sampler"]))
    assert got.failed.empty and got.concurrency == 2 and got.executor == "process"
    assert got.results.pid.nunique() >= 1 and os.getpid() not in set(got.results.pid)
    pd.testing.assert_frame_equal(numeric(got.results), numeric(serial_results),
                                  check_exact=True)


@pytest.mark.slow
def test_dask_local_cluster_gives_the_serial_results(tmp_path, serial_results):
    pytest.importorskip("distributed")
    with CellExecutor("dask", 2) as ex:
        got = run_grid(tmp_path, GRID, study_cell, executor=ex, progress=False)
    assert got.failed.empty and got.concurrency == 2 and got.executor == "dask"
    assert os.getpid() not in set(got.results.pid)
    pd.testing.assert_frame_equal(numeric(got.results), numeric(serial_results),
                                  check_exact=True)


@pytest.mark.slow  # starts worker processes (each imports JAX)
def test_a_cell_that_raises_once_is_retried_and_succeeds(tmp_path, pool):
    cells = [dict(seed=s, flaky=s == 2, marker=str(tmp_path / f"m{s}")) for s in range(4)]
    got = run_grid(tmp_path / "cells", cells, flaky_cell, executor=pool, retries=1,
                   progress=False)
    assert got.failed.empty
    assert (tmp_path / "m2").read_text() == "raised once"
    assert sorted(got.results.value) == [0.0, 2.0, 4.0, 6.0]


@pytest.mark.parametrize("kind", ["serial", pytest.param("process", marks=pytest.mark.slow)])
def test_a_cell_that_always_raises_is_recorded_and_the_others_finish(tmp_path, pool, kind):
    ex = pool if kind == "process" else CellExecutor("serial")
    before = len(ex.failed)
    cells = [dict(seed=s) for s in range(4)]
    got = run_grid(tmp_path, cells, raising_cell, executor=ex, retries=2, progress=False)
    assert sorted(got.results.seed) == [0, 2, 3]
    assert got.failed.to_dict("records") == [
        dict(seed=1, attempts=3, error="ValueError: this cell always fails")]
    assert not CellStore(tmp_path).has(cells[1])
    assert ex.failed[before:] == [("cells", "seed=1", "ValueError: this cell always fails")]
    assert "1 cell(s) failed after every retry" in got.note()


@pytest.mark.slow  # starts worker processes (each imports JAX)
def test_a_killed_worker_is_replaced_and_its_cell_rerun(tmp_path, pool):
    cells = [dict(seed=s, kill=s == 1, marker=str(tmp_path / f"k{s}")) for s in range(4)]
    restarts = pool.restarts
    got = run_grid(tmp_path / "cells", cells, killing_cell, executor=pool, progress=False)
    assert (tmp_path / "k1").exists()  # the worker did die
    assert pool.restarts == restarts + 1
    assert got.failed.empty
    assert sorted(got.results.value) == [0.0, 2.0, 4.0, 6.0]


@pytest.mark.slow  # starts worker processes (each imports JAX)
def test_killing_the_parent_and_restarting_resumes_nothing_lost_or_duplicated(tmp_path):
    log = tmp_path / "calls.log"
    cells = [dict(seed=s, sleep=0.3, log=str(log)) for s in range(8)]
    store = tmp_path / "cells"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from lesample.executor import CellExecutor, _Queue, run_grid
        from test_executor import logged_cell
        with CellExecutor("process", 2) as ex:
            run_grid({str(store)!r}, {cells!r}, logged_cell, executor=ex, progress=False)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        _wait_for_saved_cells(parent, store, 2)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)  # the orphaned workers too
    saved_before = {c["seed"] for c in CellStore(store).cells()}
    assert 2 <= len(saved_before) < len(cells)
    calls_before = log.read_text().split()

    again = run_grid(store, cells, logged_cell, progress=False)
    assert again.resumed == len(saved_before)
    assert f"{len(saved_before)} cell(s) were finished in an earlier sitting" in again.note()
    assert sorted(again.results.seed) == list(range(8))  # each cell exactly once
    fresh = run_grid(tmp_path / "fresh", cells, logged_cell, progress=False).results
    pd.testing.assert_frame_equal(again.results, fresh)
    calls_after = log.read_text().split()[len(calls_before):]
    rerun = [int(s) for s in calls_after[: len(calls_after) - len(cells)]]
    assert not saved_before & set(rerun)  # no finished cell was computed again
    assert len(rerun) == len(cells) - len(saved_before)


@pytest.mark.slow  # starts worker processes (each imports JAX)
def test_ctrl_c_stops_the_pool_and_keeps_the_finished_cells(tmp_path):
    """SIGINT to the process group (what Ctrl-C sends): the run stops, every worker exits,
    the cells saved before stay intact and a rerun computes only the others."""
    log = tmp_path / "calls.log"
    cells = [dict(seed=s, sleep=0.5, log=str(log)) for s in range(12)]
    store = tmp_path / "cells"
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from lesample.executor import CellExecutor, _Queue, run_grid
        from test_executor import logged_cell
        try:
            with CellExecutor("process", 2) as ex:
                run_grid({str(store)!r}, {cells!r}, logged_cell, executor=ex, progress=False)
        except KeyboardInterrupt:
            sys.exit(130)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        _wait_for_saved_cells(parent, store, 2)
        workers = {int(p) for p in subprocess.run(["pgrep", "-P", str(parent.pid)],
                                                  capture_output=True, text=True).stdout.split()}
        os.killpg(parent.pid, signal.SIGINT)
        assert parent.wait(timeout=60) == 130
        assert workers  # the pool's processes (and multiprocessing's resource tracker)
        deadline = time.monotonic() + 30
        while alive := [p for p in workers if _running(p)]:
            assert time.monotonic() < deadline, f"processes {alive} outlived the run"
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)  # only left if the test failed
    saved = {c["seed"] for c in CellStore(store).cells()}
    assert 2 <= len(saved) < len(cells)
    calls = len(log.read_text().split())
    again = run_grid(store, cells, logged_cell, progress=False)
    assert again.resumed == len(saved) and sorted(again.results.seed) == list(range(12))
    assert len(log.read_text().split()) - calls == len(cells) - len(saved)


def _wait_for_saved_cells(parent: subprocess.Popen, store: Path, count: int) -> None:
    """Until ``count`` cells are saved in ``store`` by the still running ``parent``."""
    deadline = time.monotonic() + 240
    while len(list(store.glob("*.json"))) < count:
        assert parent.poll() is None, "the run ended before it could be stopped"
        assert time.monotonic() < deadline, "no cell finished in time"
        time.sleep(0.05)


def _running(pid: int) -> bool:
    state = subprocess.run(["ps", "-p", str(pid), "-o", "stat="], capture_output=True,
                           text=True).stdout.strip()
    return state not in ("", "Z")


def stamped_cell(cell):
    """Sleeps; returns when it started and ended (wall clock, comparable across processes)."""
    start = time.time()
    time.sleep(cell["sleep"])
    return pd.DataFrame({"start": [start], "end": [time.time()]})


@pytest.mark.slow  # starts worker processes (each imports JAX)
def test_cells_that_time_themselves_run_alone_on_a_worker(tmp_path, pool):
    cells = [dict(seed=s, sleep=0.3) for s in range(4)]
    got = run_grid(tmp_path, cells, stamped_cell, executor=pool, at_once=1, progress=False)
    assert got.concurrency == 1 and got.note().startswith("The cells ran one at a time.")
    spans = got.results.sort_values("start")
    assert (spans.start.to_numpy()[1:] >= spans.end.to_numpy()[:-1]).all()  # no overlap


@pytest.mark.parametrize("at_once", [0, 1.5, True])
def test_bad_at_once_is_refused(tmp_path, at_once):
    with pytest.raises(ValueError, match="at_once must be a positive int or None"):
        run_grid(tmp_path, [dict(seed=0)], flaky_cell_safe, at_once=at_once)


def test_progress_off_a_terminal_prints_one_line_per_cell_and_the_resumed_count(
        tmp_path, capsys):
    cells = [dict(seed=s) for s in range(3)]
    run_grid(tmp_path, cells[:1], flaky_cell_safe, desc="demo")
    out = capsys.readouterr().out
    assert "demo: cell 1/1 done" in out
    run_grid(tmp_path, cells, flaky_cell_safe, desc="demo")
    out = capsys.readouterr().out
    assert "demo: resuming: 1 of 3 cells already done" in out
    assert "demo: cell 2/3 done" in out and "demo: cell 3/3 done" in out
    run_grid(tmp_path, cells, flaky_cell_safe, desc="demo", progress=False)
    assert capsys.readouterr().out == ""


def flaky_cell_safe(cell):
    return pd.DataFrame({"value": [float(cell["seed"])]})


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="threads"), "executor must be one of serial, process, dask"),
    (dict(kind="process", workers=0), "workers must be a positive int"),
    (dict(kind="process", scheduler="tcp://h:1"), "needs the dask executor"),
    (dict(kind="serial", retries=-1), "retries must be an int >= 0"),
])
def test_bad_executor_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CellExecutor(**kwargs)


def take_all(queue, lanes):
    """The cells each lane takes when the lanes take turns until the queue is empty."""
    taken = {lane: [] for lane in lanes}
    while queue:
        for lane in lanes:
            if queue:
                taken[lane].append(queue.take(lane))
    return taken


def test_affinity_keeps_each_group_on_one_lane_and_spreads_the_groups():
    cells = [dict(t=t, s=s, seed=seed) for t in "ab" for s in (1, 2) for seed in range(2)]
    taken = take_all(_Queue(cells, lambda c: (c["t"], c["s"])), [0, 1])
    # lane 0 starts on a, lane 1 on the group that shares the least with it: b; each then
    # stays on its target, one setting at a time, its seeds in the order given
    assert taken[0] == [c for c in cells if c["t"] == "a"]
    assert taken[1] == [c for c in cells if c["t"] == "b"]


def test_a_lane_whose_groups_are_done_shares_the_last_one():
    cells = [dict(g="a", seed=s) for s in range(4)] + [dict(g="b", seed=0)]
    queue = _Queue(cells, lambda c: (c["g"],))
    assert [queue.take(0)["g"], queue.take(1)["g"]] == ["a", "b"]
    assert queue.take(1) == dict(g="a", seed=1)  # b is done: the lane helps with a
    queue.put_back(dict(g="a", seed=1))  # a retry goes to the front of its group
    assert queue.take(0) == dict(g="a", seed=1)


def test_without_affinity_the_cells_run_in_the_order_given():
    cells = [dict(seed=s) for s in range(5)]
    taken = take_all(_Queue(cells, None), [0, 1, 2])
    assert taken == {0: [cells[0], cells[3]], 1: [cells[1], cells[4]], 2: [cells[2]]}


def test_an_affinity_that_is_not_a_tuple_is_refused(tmp_path):
    with pytest.raises(TypeError, match="affinity must return a tuple, got str"):
        run_grid(tmp_path, [dict(seed=0)], flaky_cell_safe, affinity=lambda c: "x")


def test_results_must_be_dataframes(tmp_path):
    got = run_grid(tmp_path, [dict(seed=0)], dict, retries=0, progress=False)
    assert got.failed.error[0] == "TypeError: the cell function must return a pandas " \
                                  "DataFrame, got dict"
