"""Run a study's grid of cells on an executor: in this process, on a local process pool, or on
a Dask cluster, with ``concurrent.futures`` semantics throughout.

- ``serial``: one cell after the other in this process (for debugging; what the library does
  when no executor is given).
- ``process`` (the command line's default): ``workers`` worker processes started with
  ``spawn`` (JAX is not fork-safe). Each worker gets its share of the cores: it starts
  pinned to them (``sched_setaffinity``; XLA sizes its thread pools by them) with the
  BLAS/OpenMP thread variables in its environment, so before it imports NumPy or JAX. All
  processes share the on-disk JAX compilation cache, small programs included (the workers
  keep this process's ``XLA_FLAGS``, which are part of the cache's keys).
- ``dask``: Dask distributed (``pip install lesample[dask]``): a ``LocalCluster`` of
  ``workers`` single-threaded worker processes, pinned as the pool's, or the running
  cluster at ``scheduler``
  (``tcp://HOST:PORT``, as dask-jobqueue or Kubernetes deployments give).

:func:`run_grid` runs the cells of a :class:`lesample.store.CellStore` that are not finished
yet. The parent process is the only writer: each finished cell is saved (atomically, by the
store) the moment its result comes back, so a killed parent loses only the cells in flight
and a rerun resumes. Each worker slot is a *lane* (a one-process pool; a thread of a Dask
worker) that holds one cell at a time; cells that share compiled programs can be kept on
one lane (``affinity``), so that each program is traced and loaded by one worker rather
than by all. A cell function must be pure and seeded by the cell (its result may not
depend on the worker or the order), and importable by name (workers unpickle it). Every
cell runs with one BLAS/LAPACK and OpenMP thread (:data:`CELL_THREADS`), on every executor:
OpenBLAS splits some of LAPACK's reductions by thread, so the thread count would otherwise
change a cell's last bits (the serial executor sets the same limit in this process while
it is open). XLA's thread count does not change results.

Faults: a cell that raises is retried up to ``retries`` times, then recorded as failed with
its error (:attr:`GridResult.failed`) while the other cells go on. A process worker that dies
(SIGKILL, out of memory) breaks its lane's pool: the lane is started again and its cell
resubmitted, charged one attempt. Dask reschedules the cells of a dead worker itself (a
lane's preference for its worker is loose). Ctrl-C cancels the queued cells and stops the workers.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing.context
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, NamedTuple

import pandas as pd

from lesample.store import CellStore, cell_key, run_cells

__all__ = [
    "EXECUTORS",
    "CellExecutor",
    "GridResult",
    "available_cpus",
    "run_grid",
]

EXECUTORS = ("serial", "process", "dask")

#: Retries of a failing cell by default (so three attempts in all).
DEFAULT_RETRIES = 2

#: Threads of the native pools (BLAS/LAPACK, OpenMP) while a cell runs, whatever the
#: executor: the same in every process, so a cell's result does not depend on where it ran.
CELL_THREADS = 1

#: Compile time above which JAX keeps a program in its on-disk cache: every program, so that
#: a worker loads what another process compiled (JAX's default, 1 s, skips small programs,
#: which each worker would then compile again).
CACHE_MIN_COMPILE_SECONDS = 0.0


def available_cpus() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_environment() -> dict[str, str]:
    """Environment variables of a worker: BLAS/OpenMP pools at :data:`CELL_THREADS`, and
    the compilation cache of this process with every program kept. They must be in the
    environment before the worker imports NumPy or JAX, so they are given at its start."""
    env = {name: str(CELL_THREADS) for name in (
        "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")}
    cache = _compilation_cache_dir()
    if cache:
        env["JAX_COMPILATION_CACHE_DIR"] = cache
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = str(CACHE_MIN_COMPILE_SECONDS)
    return env


def worker_cores(index: int, threads: int) -> set[int] | None:
    """The cores of worker ``index`` when each has ``threads``: consecutive blocks of this
    process's cores, round robin past the last; None where the OS cannot pin."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return {cpus[(index * threads + k) % len(cpus)] for k in range(threads)}


@contextlib.contextmanager
def _pinned(cores: set[int] | None) -> Iterator[None]:
    # Affinity is per thread and inherited: a process started in the block gets ``cores``.
    if cores is None:
        yield
        return
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


def _call(fn: Callable[[dict], Any], cell: dict) -> Any:
    """``fn(cell)`` with the native thread pools at :data:`CELL_THREADS` (in the process
    that runs it: a worker, or this one)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=CELL_THREADS):
        return fn(cell)


def _compilation_cache_dir() -> str | None:
    # The parent's choice (the command line sets one) reaches the workers through JAX's own
    # environment variable, so they read and fill the same cache.
    if "jax" in sys.modules:
        chosen = sys.modules["jax"].config.jax_compilation_cache_dir
        if chosen:
            return str(chosen)
    return os.environ.get("JAX_COMPILATION_CACHE_DIR")


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _WorkerProcess(multiprocessing.context.SpawnProcess):
    """A spawned process that starts with ``env`` in its environment, pinned to ``cores``
    (the class is pickled by name into the child, so it lives here)."""

    def __init__(self, cores: set[int] | None, env: dict[str, str], *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cores, self.env = cores, env

    def start(self):
        with _environ(self.env), _pinned(self.cores):
            super().start()


class _WorkerContext(multiprocessing.context.SpawnContext):
    """``spawn``, each process started as a :class:`_WorkerProcess` on ``cores``."""

    def __init__(self, cores: set[int] | None, env: dict[str, str]):
        self.cores, self.env = cores, env

    def Process(self, *args, **kwargs):  # noqa: N802 (multiprocessing's name)
        return _WorkerProcess(self.cores, self.env, *args, **kwargs)


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group; the parent alone decides how to stop.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _SerialExecutor(Executor):
    """``concurrent.futures`` executor that runs each call at ``submit``, in this process."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


class CellExecutor:
    """One executor for study grids: ``kind`` (``"serial"``, ``"process"``, ``"dask"``) with
    ``workers`` cells at once, retrying a failing cell ``retries`` times. Use it as a context
    manager (or call :meth:`shutdown`).

    ``failed`` collects ``(study, cell description, error)`` for every cell given up on by
    any grid run on this executor, so a command line can exit 1 at the end.
    """

    def __init__(self, kind: str = "process", workers: int | None = None, *,
                 scheduler: str | None = None, retries: int = DEFAULT_RETRIES):
        if kind not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
        if scheduler is not None and kind != "dask":
            raise ValueError(f"scheduler={scheduler!r} needs the dask executor, not {kind!r}")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                    or workers < 1):
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        self.kind = kind
        self.scheduler = scheduler
        self.retries = _check_retries(retries)
        self.workers = 1 if kind == "serial" else (workers or available_cpus())
        self.failed: list[tuple[str, str, str]] = []
        self._lanes: list[Executor | None] | None = None
        self._addresses: list[str | None] = []
        self._env: dict[str, str] = {}
        self._threads = 1
        self.last_keys: dict[int, tuple] = {}  # lane -> affinity key of its last cell
        self._client = None
        self._cluster = None
        self._limits = None
        self.restarts = 0

    def __repr__(self) -> str:
        where = f", scheduler={self.scheduler!r}" if self.scheduler else ""
        return f"CellExecutor({self.kind!r}, workers={self.workers}{where})"

    def __enter__(self) -> CellExecutor:
        if self.kind == "serial":
            # Cells run here: whatever this process computes and caches for them (a study's
            # targets, their truths) uses the workers' thread limits too.
            from threadpoolctl import threadpool_limits

            self._limits = threadpool_limits(limits=CELL_THREADS)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.shutdown(cancel=exc_type is not None)

    # ---------------------------------------------------------------- the lanes

    def start(self) -> int:
        """Start the workers (if not yet started); return how many lanes there are."""
        if self._lanes is None:
            self._lanes = self._start()
            self.workers = len(self._lanes)
        return len(self._lanes)

    def lane(self, index: int) -> Executor:
        """The ``concurrent.futures.Executor`` of lane ``index``: the one worker slot that
        runs the cells :func:`run_grid` sends there (a worker process, a Dask worker's
        thread, or this process for the serial executor)."""
        self.start()
        if self._lanes[index] is None:
            self._lanes[index] = self._open(index)
        return self._lanes[index]

    def _start(self) -> list[Executor | None]:
        if self.kind == "serial":
            return [_SerialExecutor()]
        threads = max(1, available_cpus() // self.workers)
        if self.kind == "process":
            self._env, self._threads = worker_environment(), threads
            return [None] * self.workers  # each started by lane() on its first cell
        self._addresses = self._start_dask(threads)
        return [None] * len(self._addresses)

    def _open(self, index: int) -> Executor:
        if self.kind == "process":
            context = _WorkerContext(worker_cores(index, self._threads), self._env)
            return ProcessPoolExecutor(1, mp_context=context, initializer=_ignore_sigint)
        # A loose restriction: the cell goes elsewhere if the worker has died.
        where = self._addresses[index]
        return self._client.get_executor(pure=False, **(
            {} if where is None else dict(workers=[where], allow_other_workers=True)))

    def _start_dask(self, threads: int) -> list[str | None]:
        """Start the client (and a ``LocalCluster``); return a lane's worker address per
        worker thread (workers that join later are not used; a cluster with no worker yet
        gets one lane that runs anywhere)."""
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise ImportError("the dask executor needs Dask distributed: "
                              "pip install 'lesample[dask]'") from exc
        if self.scheduler is None:
            from distributed import WorkerPlugin

            class Pin(WorkerPlugin):
                """Pins a LocalCluster worker (named 0, 1, ...) as the pool's workers, every
                thread of it, before it runs a cell (and so before XLA starts)."""

                def setup(self, worker):
                    cores = worker_cores(int(worker.name), threads)
                    if cores is not None:
                        for tid in os.listdir("/proc/self/task"):
                            os.sched_setaffinity(int(tid), cores)

            self._cluster = LocalCluster(
                n_workers=self.workers, threads_per_worker=1, processes=True,
                dashboard_address=":0", env=worker_environment())
            self._client = Client(self._cluster)
            self._client.register_plugin(Pin())
            self._client.wait_for_workers(self.workers)
        else:
            self._client = Client(self.scheduler)
        workers = self._client.scheduler_info()["workers"]
        return [address for address, info in sorted(workers.items())
                for _ in range(info.get("nthreads", 1))] or [None]

    def restart(self, index: int) -> None:
        """Replace lane ``index``'s broken pool (its worker process died) by a fresh one."""
        old, self._lanes[index] = self._lanes[index], None
        self.last_keys.pop(index, None)  # a fresh worker has traced nothing
        self.restarts += 1
        if old is not None:
            _stop(old, cancel=True)

    def shutdown(self, cancel: bool = False) -> None:
        """Stop the workers (``cancel``: drop queued cells and stop running ones now)."""
        for lane in self._lanes or []:
            if lane is not None:
                _stop(lane, cancel=cancel)
        self._lanes = None
        self.last_keys.clear()
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
        if self._limits is not None:
            self._limits.restore_original_limits()
            self._limits = None


def _stop(pool: Executor, cancel: bool) -> None:
    if isinstance(pool, ProcessPoolExecutor) and cancel:
        # concurrent.futures waits for running calls; Ctrl-C and a broken pool must not.
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            with contextlib.suppress(Exception):
                p.terminate()
        for p in processes:
            with contextlib.suppress(Exception):
                p.join(timeout=5)
    else:  # the serial executor and Dask's ClientExecutor (whose shutdown takes wait only)
        pool.shutdown(wait=not cancel)


# --------------------------------------------------------------------------- running a grid


class GridResult(NamedTuple):
    """What :func:`run_grid` returns.

    - ``results``: the finished cells' tables, tidy (as :func:`lesample.store.run_cells`).
    - ``failed``: one row per cell given up on: its parameters, ``attempts`` and ``error``.
    - ``concurrency``: how many cells ran at once (1: serially).
    - ``executor``: the executor's kind.
    - ``resumed``: cells found already finished in the store.
    """

    results: pd.DataFrame
    failed: pd.DataFrame
    concurrency: int
    executor: str
    resumed: int

    def note(self) -> str:
        """One paragraph for a report: how the cells ran and what failed."""
        if self.concurrency > 1:
            text = (f"The cells ran {self.concurrency} at once ({self.executor} executor): "
                    "wall times and per-second rates measured while cells shared the cores "
                    "are not comparable with a serial run's.")
        else:
            text = "The cells ran one at a time."
        if self.resumed:
            text += (f" {self.resumed} cell(s) were finished in an earlier sitting and read "
                     "back from the store: their timings are that sitting's.")
        if len(self.failed):
            text += (f" {len(self.failed)} cell(s) failed after every retry and are missing "
                     "from the results (table of failed cells below).")
        return text

    def add_to(self, report, extra: str = "") -> None:
        """Add a "How the cells ran" section to a :class:`lesample.report.Report`: the
        :meth:`note`, then ``extra``, then the failed cells with their errors."""
        report.add_heading("How the cells ran")
        report.add_text(f"{self.note()} {extra}".strip())
        if len(self.failed):
            report.add_table(self.failed, caption="Failed cells: parameters, attempts, error.")


def _describe(cell: Mapping[str, Any], width: int = 60) -> str:
    text = " ".join(f"{k}={v}" for k, v in cell.items())
    return text if len(text) <= width else text[: width - 1] + "…"


def _one_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _check_retries(retries) -> int:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, got {retries!r}")
    return retries


class _Progress:
    """A tqdm bar on a terminal; elsewhere (a log, CI) one line per finished cell."""

    def __init__(self, total: int, done: int, desc: str, show: bool):
        from tqdm.auto import tqdm


        self.total, self.desc, self.initial = total, desc, done
        self.tty = show and sys.stderr.isatty()
        self.lines = show and not self.tty
        self.bar = tqdm(total=total, initial=done, desc=desc, unit="cell",
                        disable=not self.tty, dynamic_ncols=True)
        self.start = time.monotonic()

    def say(self, text: str) -> None:
        if self.tty:
            self.bar.write(text, file=sys.stderr)
        elif self.lines:
            print(text, flush=True)

    def update(self, done: int, failed: int, running: int, cell=None, status="done") -> None:
        self.bar.set_postfix_str(f"done={done} failed={failed} running={running}",
                                 refresh=False)
        if cell is not None:
            self.bar.update(1)
            if self.lines:
                finished = self.initial + done + failed
                print(f"{self.desc}: cell {finished}/{self.total} {status} "
                      f"({time.monotonic() - self.start:.0f} s): {_describe(cell)}", flush=True)

    def close(self) -> None:
        self.bar.close()


def run_grid(
    store: CellStore | str | os.PathLike,
    cells: Iterable[Mapping[str, Any]],
    fn: Callable[[dict[str, Any]], pd.DataFrame],
    *,
    executor: CellExecutor | None = None,
    retries: int | None = None,
    progress: bool = True,
    desc: str = "cells",
    at_once: int | None = None,
    affinity: Callable[[dict[str, Any]], tuple] | None = None,
) -> GridResult:
    """Run ``fn`` on every cell not yet in ``store`` on ``executor`` (default: serially in
    this process); return a :class:`GridResult`.

    Each result is saved by this process the moment it comes back; the results are then read
    back from the store (:func:`lesample.store.run_cells`), so they are the same whatever the
    executor and whether the run was resumed. A cell that raises is retried ``retries``
    times (default: the executor's), then recorded in ``failed`` (and in
    ``executor.failed``); the others go on.
    ``progress``: a bar on a terminal, one line per finished cell otherwise.
    ``at_once``: at most that many cells in flight (default: the executor's workers); 1
    runs each cell alone, for cells that time themselves.
    ``affinity``: a cell's key (a tuple, most significant part first): cells with equal or
    longer shared keys are sent to the same worker where that keeps every worker busy, so
    that a worker traces (and loads from the compilation cache) the programs they share once
    rather than every worker tracing all of them (:class:`_Queue`). Cells that differ only
    in their seed, say, share a key. It orders the work only: results do not depend on it.
    """
    executor = executor or CellExecutor("serial")
    retries = executor.retries if retries is None else _check_retries(retries)
    if at_once is not None and (isinstance(at_once, bool) or not isinstance(at_once, int)
                                or at_once < 1):
        raise ValueError(f"at_once must be a positive int or None, got {at_once!r}")
    store = store if isinstance(store, CellStore) else CellStore(store)
    cells = [dict(c) for c in cells]
    keys = [cell_key(c) for c in cells]
    if len(set(keys)) != len(keys):
        dup = next(c for c, k in zip(cells, keys, strict=True) if keys.count(k) > 1)
        raise ValueError(f"duplicate cell: {json.dumps(dup, sort_keys=True)}")
    todo = [c for c in cells if not store.has(c)]
    resumed = len(cells) - len(todo)
    bar = _Progress(len(cells), resumed, desc, progress)
    if resumed and progress:
        bar.say(f"{desc}: resuming: {resumed} of {len(cells)} cells already done")
    failed_rows = []
    try:
        failed_rows = _run(store, todo, fn, executor, retries, bar, desc, at_once,
                           affinity)
    finally:
        bar.close()
    failed_keys = {cell_key(row["cell"]) for row in failed_rows}
    ok = [c for c, k in zip(cells, keys, strict=True) if k not in failed_keys]
    results = run_cells(store, ok, fn, progress=False)  # all saved: reads them back
    failed = pd.DataFrame([{**row["cell"], "attempts": row["attempts"], "error": row["error"]}
                           for row in failed_rows])
    for row in failed_rows:
        executor.failed.append((desc, _describe(row["cell"]), row["error"]))
    return GridResult(results, failed, _limit(executor, at_once), executor.kind, resumed)


def _limit(executor: CellExecutor, at_once: int | None) -> int:
    # A remote Dask cluster's worker count is known once the client is connected.
    return min(at_once or executor.workers, executor.workers)


class _Queue:
    """The cells still to run, grouped by their affinity key (a tuple, most significant
    part first). A free lane takes the next cell of the group whose key shares the longest
    prefix with the key of its own last cell and, among those, the shortest with the other
    lanes' last keys: it stays on its programs, starts a group no other lane works on when
    its own are done, and only then shares one (so the lanes stay busy to the end). Ties go
    to the order given. Without a key function every cell is in one group, run in order."""

    def __init__(self, cells: list[dict], affinity: Callable[[dict], tuple] | None,
                 last: dict[int, tuple] | None = None):
        self.affinity = affinity or (lambda cell: ())
        self.groups: dict[tuple, list[dict]] = {}
        self.last = {} if last is None else last  # lane -> key of its last cell
        for cell in cells:
            self.groups.setdefault(self._key(cell), []).append(cell)

    def __bool__(self) -> bool:
        return bool(self.groups)

    def _key(self, cell: dict) -> tuple:
        key = self.affinity(cell)
        if not isinstance(key, tuple):
            raise TypeError(f"affinity must return a tuple, got {type(key).__name__} for "
                            f"the cell {_describe(cell)}")
        return key

    def take(self, lane: int) -> dict:
        mine = self.last.get(lane, ())
        others = [key for other, key in self.last.items() if other != lane]
        key = max(self.groups, key=lambda k: (
            _shared(k, mine), -max((_shared(k, o) for o in others), default=0)))
        group = self.groups[key]
        cell = group.pop(0)
        if not group:
            del self.groups[key]
        self.last[lane] = key
        return cell

    def put_back(self, cell: dict) -> None:
        """Return a cell to the front of its group (to be retried)."""
        self.groups.setdefault(self._key(cell), []).insert(0, cell)


def _shared(a: tuple, b: tuple) -> int:
    """Length of the common prefix of two keys."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _run(store: CellStore, todo: list[dict], fn, executor: CellExecutor, retries: int,
         bar: _Progress, desc: str, at_once: int | None, affinity) -> list[dict]:
    """Send the cells to the executor's lanes, one in flight per lane and at most
    ``at_once`` lanes; save each result as it comes; return the cells given up on
    (``cell``, ``attempts``, ``error``)."""
    queue = _Queue(todo, affinity, executor.last_keys)
    attempts: dict[str, int] = {}
    in_flight: dict[Future, tuple[dict, int]] = {}
    failed: list[dict] = []
    done = 0
    lanes = _limit(executor, at_once) if todo and executor.start() else 0

    def give_up_or_retry(cell, error: str):
        key = cell_key(cell)
        attempts[key] = attempts.get(key, 0) + 1
        if attempts[key] <= retries:
            bar.say(f"{desc}: retrying ({attempts[key]}/{retries}) after {error}: "
                    f"{_describe(cell)}")
            queue.put_back(cell)
            return
        failed.append(dict(cell=cell, attempts=attempts[key], error=error))
        bar.update(done, len(failed), len(in_flight), cell, status=f"FAILED ({error})")

    try:
        free = list(range(lanes))
        while queue or in_flight:
            while queue and free:
                lane = free.pop(0)
                cell = queue.take(lane)
                in_flight[executor.lane(lane).submit(_call, fn, dict(cell))] = (cell, lane)
            bar.update(done, len(failed), len(in_flight))
            finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for future in finished:
                cell, lane = in_flight.pop(future)
                free.append(lane)
                exc = future.exception()
                if isinstance(exc, BrokenProcessPool):
                    executor.restart(lane)
                    give_up_or_retry(cell, "a worker died (killed, or out of memory)")
                    continue
                if exc is None and not isinstance(future.result(), pd.DataFrame):
                    exc = TypeError(f"the cell function must return a pandas DataFrame, got "
                                    f"{type(future.result()).__name__}")
                if exc is not None:
                    give_up_or_retry(cell, _one_line(exc))
                    continue
                store.save(cell, future.result())
                done += 1
                bar.update(done, len(failed), len(in_flight), cell)
    except BaseException:
        for future in in_flight:
            future.cancel()
        raise
    return failed
