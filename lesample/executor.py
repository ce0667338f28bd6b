"""Run a study's grid of cells on an executor: in this process, on a local process pool, or on
a Dask cluster, with ``concurrent.futures`` semantics throughout.

- ``serial``: one cell after the other in this process (for debugging; what the library does
  when no executor is given).
- ``process`` (the command line's default): a pool of ``workers`` processes started with
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
and a rerun resumes. A cell function must be pure and seeded by the cell (its result may not
depend on the worker or the order), and importable by name (workers unpickle it). Every
cell runs with one BLAS/LAPACK and OpenMP thread (:data:`CELL_THREADS`), on every executor:
OpenBLAS splits some of LAPACK's reductions by thread, so the thread count would otherwise
change a cell's last bits (the serial executor sets the same limit in this process while
it is open). XLA's thread count does not change results.

Faults: a cell that raises is retried up to ``retries`` times, then recorded as failed with
its error (:attr:`GridResult.failed`) while the other cells go on. A process worker that dies
(SIGKILL, out of memory) breaks a ``concurrent.futures`` pool: the pool is started again and
the cells that were in flight are resubmitted, each charged one attempt (at most ``workers``
cells are in flight, so they are the cells that were running). Dask reschedules the cells of
a dead worker itself. Ctrl-C cancels the queued cells and stops the workers.
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
    """A spawned process that starts with :data:`_WorkerProcess.env` in its environment,
    pinned to the cores of the ``started``-th worker with ``threads`` cores each (set by the
    pool that starts it; the class is pickled by name, so it lives here)."""

    env: dict[str, str] = {}
    threads = 1
    started = 0

    def start(self):
        cores = worker_cores(_WorkerProcess.started, self.threads)
        _WorkerProcess.started += 1
        with _environ(self.env), _pinned(cores):
            super().start()


class _WorkerContext(multiprocessing.context.SpawnContext):
    Process = _WorkerProcess


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
        self._pool: Executor | None = None
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

    # ----------------------------------------------------------------- the pool

    @property
    def pool(self) -> Executor:
        """The ``concurrent.futures.Executor`` cells are submitted to (started on first use)."""
        if self._pool is None:
            self._pool = self._start()
        return self._pool

    def _start(self) -> Executor:
        if self.kind == "serial":
            return _SerialExecutor()
        threads = max(1, available_cpus() // self.workers)
        if self.kind == "process":
            _WorkerProcess.env, _WorkerProcess.threads = worker_environment(), threads
            _WorkerProcess.started = 0
            return ProcessPoolExecutor(self.workers, mp_context=_WorkerContext(),
                                       initializer=_ignore_sigint)
        return self._start_dask(threads)

    def _start_dask(self, threads: int) -> Executor:
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
        else:
            self._client = Client(self.scheduler)
            self.workers = max(1, sum(w.get("nthreads", 1) for w in
                                      self._client.scheduler_info()["workers"].values()))
        return self._client.get_executor(pure=False)

    def restart(self) -> None:
        """Replace a broken pool (a process worker died) by a fresh one."""
        old, self._pool = self._pool, None
        self.restarts += 1
        if old is not None:
            _stop(old, cancel=True)

    def shutdown(self, cancel: bool = False) -> None:
        """Stop the workers (``cancel``: drop queued cells and stop running ones now)."""
        if self._pool is not None:
            _stop(self._pool, cancel=cancel)
            self._pool = None
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
        failed_rows = _run(store, todo, fn, executor, retries, bar, desc, at_once)
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


def _run(store: CellStore, todo: list[dict], fn, executor: CellExecutor, retries: int,
         bar: _Progress, desc: str, at_once: int | None) -> list[dict]:
    """Submit the cells, at most ``at_once`` in flight; save each result as it comes;
    return the cells given up on (``cell``, ``attempts``, ``error``)."""
    queue = list(reversed(todo))  # pop() takes them in the order given
    attempts: dict[str, int] = {}
    in_flight: dict[Future, dict] = {}
    failed: list[dict] = []
    done = 0

    def submit(cell):
        in_flight[executor.pool.submit(_call, fn, dict(cell))] = cell

    def give_up_or_retry(cell, error: str):
        key = cell_key(cell)
        attempts[key] = attempts.get(key, 0) + 1
        if attempts[key] <= retries:
            bar.say(f"{desc}: retrying ({attempts[key]}/{retries}) after {error}: "
                    f"{_describe(cell)}")
            queue.append(cell)
            return
        failed.append(dict(cell=cell, attempts=attempts[key], error=error))
        bar.update(done, len(failed), len(in_flight), cell, status=f"FAILED ({error})")

    try:
        while queue or in_flight:
            while queue and len(in_flight) < _limit(executor, at_once):
                submit(queue.pop())
            bar.update(done, len(failed), len(in_flight))
            finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            broken = []
            for future in finished:
                cell = in_flight.pop(future)
                exc = future.exception()
                if isinstance(exc, BrokenProcessPool):
                    broken.append(cell)
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
            if broken:
                # Every other call of the broken pool fails too: collect them, start afresh.
                for future in list(in_flight):
                    broken.append(in_flight.pop(future))
                executor.restart()
                for cell in broken:
                    give_up_or_retry(cell, "a worker died (killed, or out of memory)")
    except BaseException:
        for future in in_flight:
            future.cancel()
        raise
    return failed
