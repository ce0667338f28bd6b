"""The ``lesample`` command line: run the studies and write their reports.

    lesample list                                  the available studies
    lesample study NAME [--quick|--full] [--out DIR] [--no-progress] [options]
    lesample run [--quick|--full] [--out DIR]      every study, then the index
        --executor {serial,process,dask} --workers N --scheduler ADDRESS --retries N
                                                   where the cells run (docs/executors.md)
    lesample index [--out DIR]                     rewrite DIR/index.html from DIR/*/report.html

A study writes into ``DIR/NAME/`` (default ``reports/kmeans/`` ...): its results as CSV, its
finished cells (a rerun resumes, recomputing nothing) and ``report.html``; then
``DIR/index.html`` is rewritten to link every report found in ``DIR``. Compiled programs
are cached in ``~/.cache/lesample/jax`` (``$XDG_CACHE_HOME``, or ``JAX_COMPILATION_CACHE_DIR``
to choose), so a resumed run does not compile them again.

Every option of every study to run is checked before any work starts. Exit status: 0 on
success, 1 on failure (one line on stderr; ``--debug`` shows the traceback) or when cells
failed after their retries (the report is still written, listing them), 2 on a usage error
(unknown study, bad option), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

PROG = "lesample"


def _int_at_least(low: int):
    """An argparse ``type``: an integer ``>= low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    return parse


#: Study options the command line knows, forwarded (only when given) as keyword arguments
#: to the study's ``run``: (flag, keyword, argparse keywords).
STUDY_OPTIONS: tuple[tuple[str, str, dict], ...] = (
    ("--seeds", "seeds", {"type": _int_at_least(1), "metavar": "N", "help": "number of seeds"}),
    ("--data-dir", "data_dir", {
        "type": Path, "metavar": "DIR",
        "help": "directory holding data sets (MNIST/CIFAR-10 files)",
    }),
    ("--model", "model", {
        "metavar": "NAME", "help": "model(s) to run, e.g. mnistfc or mnistfc,lenet",
    }),
    ("--algo", "algo", {
        "metavar": "NAME", "help": "algorithm(s) to run, e.g. entropy-sgd or sgd,hj",
    }),
    ("--replicas", "replicas", {
        "type": _int_at_least(1), "metavar": "N",
        "help": "replicas of parle and elastic-sgd (default 3)",
    }),
)


class UsageError(Exception):
    """A mistake in the command line: reported with exit status 2."""


class CellsFailed(Exception):
    """Some cells of a study failed after their retries; its report was written."""


# --------------------------------------------------------------------------- parser


def _add_common(p: argparse.ArgumentParser, *, out: bool = True, mode: bool = True) -> None:
    if mode:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--quick", dest="mode", action="store_const", const="quick",
                       help="the quick version: small grids, minutes on a CPU (default)")
        g.add_argument("--full", dest="mode", action="store_const", const="full",
                       help="the full version of the study")
        p.set_defaults(mode="quick")
        p.add_argument("--no-progress", dest="progress", action="store_false",
                       help="no progress bars")
    if out:
        p.add_argument("--out", type=Path, default=Path("reports"), metavar="DIR",
                       help="reports directory (default: %(default)s)")
    p.add_argument("--debug", action="store_true", help="show the traceback of a failure")


def _add_executor_options(p: argparse.ArgumentParser) -> None:
    from lesample.executor import DEFAULT_RETRIES, EXECUTORS

    g = p.add_argument_group("where the cells run (docs/executors.md)")
    g.add_argument("--executor", choices=EXECUTORS, default=None,
                   help="serial: one cell at a time in this process; process: a local pool "
                        "of worker processes (default); dask: a Dask cluster (a LocalCluster, "
                        "or the one at --scheduler; needs lesample[dask])")
    g.add_argument("--workers", type=_int_at_least(1), default=None, metavar="N",
                   help="cells at once (default: the number of cores)")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="address of a running Dask scheduler, e.g. tcp://HOST:8786 "
                        "(implies --executor dask)")
    g.add_argument("--retries", type=_int_at_least(0), default=DEFAULT_RETRIES, metavar="N",
                   help="retries of a cell that raises before it is recorded as failed "
                        "(default: %(default)s)")


def _add_study_options(p: argparse.ArgumentParser) -> None:
    _add_executor_options(p)
    g = p.add_argument_group("study options (forwarded to the study when given)")
    for flag, dest, kwargs in STUDY_OPTIONS:
        g.add_argument(flag, dest=dest, default=None, **kwargs)
    g.add_argument("-O", "--option", dest="extra", action="append", default=[],
                   metavar="KEY=VALUE",
                   help="any other study option; VALUE is read as JSON when it parses "
                        "(3, 0.5, true, [1,2]) and as a string otherwise; repeatable")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Local-entropy optimization with MCMC inner loops: run the studies and "
                    "write their self-contained HTML reports.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("list", help="list the available studies",
                       description="List the available studies with their descriptions.")
    _add_common(p, out=False, mode=False)

    p = sub.add_parser("study", help="run one study and write its report",
                       description="Run one study into DIR/NAME/ and rewrite DIR/index.html. "
                                   "Finished cells are kept: a rerun resumes.")
    p.add_argument("name", metavar="NAME", help="the study (see `lesample list`)")
    _add_common(p)
    _add_study_options(p)

    p = sub.add_parser("run", help="run every study and write the index",
                       description="Run every available study (quick by default) into "
                                   "DIR/<study>/ and write DIR/index.html. A failing study "
                                   "is reported and the others still run.")
    _add_common(p)
    _add_study_options(p)

    p = sub.add_parser("index", help="rewrite the index page",
                       description="Rewrite DIR/index.html from the reports in DIR/*/.")
    _add_common(p, mode=False)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lesample")
    except PackageNotFoundError:
        return "unknown"


def _study_options(args: argparse.Namespace) -> dict:
    options = {dest: getattr(args, dest) for _, dest, _ in STUDY_OPTIONS}
    options = {k: v for k, v in options.items() if v is not None}
    for item in args.extra:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise UsageError(f"--option takes KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


def _flag(option: str) -> str:
    for flag, dest, _ in STUDY_OPTIONS:
        if dest == option:
            return flag
    return f"--option {option}=..."


# --------------------------------------------------------------------------- commands


def _use_agg() -> None:
    # Reports are files: never open a GUI window, whatever MPLBACKEND says.
    os.environ["MPLBACKEND"] = "Agg"
    if "matplotlib" in sys.modules:
        import matplotlib

        matplotlib.use("Agg")


def _use_compile_cache() -> None:
    # Compiled programs persist on disk, so cells, rounds, workers and resumed runs that
    # build the same program load it instead of compiling it again (an unrolled LeNet step:
    # ~50 s), small programs included. JAX_COMPILATION_CACHE_DIR chooses another place.
    import jax

    from lesample.executor import CACHE_MIN_COMPILE_SECONDS

    if jax.config.jax_compilation_cache_dir is None:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        jax.config.update("jax_compilation_cache_dir", str(base / "lesample" / "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_SECONDS)


def _make_executor(args: argparse.Namespace):
    from lesample.executor import CellExecutor

    kind = args.executor or ("dask" if args.scheduler else "process")
    if args.scheduler and kind != "dask":
        raise UsageError(f"--scheduler needs --executor dask, not --executor {kind}")
    if kind == "dask":
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise UsageError("--executor dask needs Dask distributed: "
                             "pip install 'lesample[dask]'") from None
    if kind == "serial" and args.workers not in (None, 1):
        raise UsageError(f"--executor serial runs one cell at a time, not --workers "
                         f"{args.workers}")
    return CellExecutor(kind, args.workers, scheduler=args.scheduler, retries=args.retries)


def _run_study(study, out: Path, mode: str, progress: bool, options: dict,
               executor) -> Path:
    _use_compile_cache()
    out_dir = out / study.name
    out_dir.mkdir(parents=True, exist_ok=True)
    if study.takes_executor():
        options = dict(options, executor=executor)
        where = f"{executor.kind} executor, {executor.workers} at once"
    else:
        where = "in this process"
    print(f"{study.name}: running ({mode}) into {out_dir} ({where})", flush=True)
    start = time.perf_counter()
    failed_before = len(executor.failed)
    result = study.run(out_dir, mode, progress, **options)
    report = Path(result) if result is not None else out_dir / "report.html"
    if not report.is_file():
        raise RuntimeError(f"study {study.name!r} finished but wrote no report at {report}")
    print(f"{study.name}: wrote {report} ({time.perf_counter() - start:.1f} s)", flush=True)
    failed = executor.failed[failed_before:]
    if failed:
        for desc, cell, error in failed:
            print(f"{PROG}: error: {desc}: cell failed ({error}): {cell}", file=sys.stderr)
        raise CellsFailed(f"study {study.name!r}: {len(failed)} cell(s) failed (listed in "
                          f"its report); the others are saved, rerun to retry the failed")
    return report


def _write_index(out: Path) -> Path:
    from lesample.registry import load_studies
    from lesample.report import discover_reports, write_index

    path = write_index(out, discover_reports(out, order=tuple(load_studies())))
    print(f"wrote {path}", flush=True)
    return path


def _validate(study, mode: str, options: dict) -> None:
    try:
        study.validate(mode, options)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"study {study.name!r}: {_one_line(exc).partition(': ')[2]}") from None


def cmd_list(args: argparse.Namespace) -> int:
    from lesample.registry import ENTRY_POINT_GROUP, load_studies

    studies = load_studies()
    if not studies:
        print(f"no studies installed (none in the entry-point group {ENTRY_POINT_GROUP!r})")
        return 0
    width = max(len(n) for n in studies)
    for name, study in studies.items():
        opts = " ".join(_flag(o) for o in study.options())
        print(f"{name:<{width}}  {study.description}" + (f"  [{opts}]" if opts else ""))
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from lesample.registry import UnknownStudyError, get_study

    try:
        study = get_study(args.name)
    except UnknownStudyError as exc:
        raise UsageError(str(exc)) from None
    if study.missing():
        raise UsageError(study.missing())
    options = _study_options(args)
    refused = [o for o in options if not study.accepts(o)]
    if refused:
        takes = ", ".join(_flag(o) for o in study.options()) or "no options"
        raise UsageError(
            f"study {study.name!r} does not take {', '.join(_flag(o) for o in refused)} "
            f"(it takes: {takes})"
        )
    _validate(study, args.mode, options)
    executor = _make_executor(args)
    _use_agg()
    with executor:
        try:
            _run_study(study, args.out, args.mode, args.progress, options, executor)
        except CellsFailed:  # its report is written: list it, then fail
            _write_index(args.out)
            raise
    _write_index(args.out)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from lesample.registry import load_studies

    studies = load_studies()
    for name, study in list(studies.items()):  # an optional study without its extra
        if study.missing():
            print(f"{PROG}: skipping {study.missing()}", file=sys.stderr)
            del studies[name]
    if not studies:
        raise RuntimeError("no studies available")
    options = _study_options(args)
    unused = [o for o in options if not any(s.accepts(o) for s in studies.values())]
    if unused:
        raise UsageError(f"no study takes {', '.join(_flag(o) for o in unused)}")
    for study in studies.values():  # every study's options, before the first one runs
        _validate(study, args.mode, options)
    executor = _make_executor(args)
    _use_agg()
    failed = []
    with executor:  # one pool for every study's cells
        for study in studies.values():
            mine = {k: v for k, v in options.items() if study.accepts(k)}
            try:
                _run_study(study, args.out, args.mode, args.progress, mine, executor)
            except Exception as exc:  # report it, run the other studies, fail at the end
                failed.append(study.name)
                _report_error(exc, args.debug, prefix=f"study {study.name!r} failed: ")
    _write_index(args.out)
    if failed:
        print(f"{PROG}: error: {len(failed)} of {len(studies)} studies failed: "
              f"{', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    if not args.out.is_dir():
        raise UsageError(f"--out {args.out} is not a folder: give the reports directory "
                         "(the --out of `lesample study` or `lesample run`)")
    _write_index(args.out)
    return 0


COMMANDS = {"list": cmd_list, "study": cmd_study, "run": cmd_run, "index": cmd_index}


# --------------------------------------------------------------------------- main


def _one_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    notes = [n for n in getattr(exc, "__notes__", ()) if n]
    return text + (f" ({'; '.join(notes)})" if notes else "")


def _report_error(exc: BaseException, debug: bool, prefix: str = "") -> None:
    if debug:
        traceback.print_exception(exc)
    print(f"{PROG}: error: {prefix}{_one_line(exc)}", file=sys.stderr)
    if not debug:
        print(f"{PROG}: rerun with --debug for the traceback", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; finished cells are saved, rerun to resume",
              file=sys.stderr)
        return 130
    except CellsFailed as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        _report_error(exc, args.debug)
        return 1


if __name__ == "__main__":
    sys.exit(main())
