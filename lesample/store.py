"""Resumable, atomic storage of a study's results, one small table per *cell*.

A study is a grid of independent cells: one cell is one configuration (say target x sampler
x step size x ``L`` x seed), given as a flat dict of JSON values, and running it produces a
small tidy :class:`pandas.DataFrame`. :func:`run_cells` runs the cells one after the other
and saves each result the moment it is computed, so a run that is killed loses at most the
cell in progress: run it again and the finished cells are read back instead of recomputed.

Layout of a :class:`CellStore` directory, for each finished cell::

    <key>.csv    the cell's table (floats written to round-trip exactly)
    <key>.json   the cell's parameters, the SHA-256 of ``<key>.csv`` and some bookkeeping;
                 written last, so it marks the cell as finished

``key`` is a hash of the cell's JSON with sorted keys: the same parameters give the same
key in every run and on every machine. Anything that changes the results but is not in the
cell (a fixed constant changed in the code) is not seen by the key; put a ``"version"``
entry in the cells to invalidate old results deliberately.

Every file is written atomically (temporary file in the same directory, ``fsync``,
``os.replace``), so a reader never sees half a file. A cell is used only if its table's
SHA-256 matches the one in its marker: a table that was truncated or edited, a marker that
is not valid JSON or has no checksum (an older version's) makes the cell unfinished, with a
:class:`CorruptCellWarning` naming the file, and :func:`run_cells` recomputes it.

A study's combined outputs (``results.csv``, ``report.html``, ...) go through
:func:`publish`: written into a staging directory and moved into place only once all of
them were written, so a failure leaves the previous results and report together.
This module does not import JAX.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "CellStore",
    "CorruptCellError",
    "CorruptCellWarning",
    "atomic_write_bytes",
    "atomic_write_text",
    "cell_key",
    "publish",
    "run_cells",
    "write_csv",
]


class CorruptCellError(ValueError):
    """A stored cell failed its integrity check; the message names the file."""


class CorruptCellWarning(UserWarning):
    """A stored cell failed its integrity check and is treated as not finished."""


# --------------------------------------------------------------------------- atomic writes


def _umask() -> int:
    # The only portable way to read the umask is to set it and put it back.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; create the parent directories; return the path.

    The bytes go to a temporary file in the same directory, which is flushed, ``fsync``-ed
    and then renamed over ``path`` (``os.replace``), so ``path`` holds either its old content
    or all of the new one, never a torn file, even if the process is killed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates the file 0600; give it the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode(encoding))


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not possible on every platform, and not needed for
    # atomicity, so failures are ignored.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_csv(df: pd.DataFrame, path: str | os.PathLike, *, index: bool = False) -> Path:
    """Write ``df`` to ``path`` as CSV, atomically; floats are written to round-trip."""
    return atomic_write_text(path, df.to_csv(index=index))


# pandas >= 3 parses floats exactly by default (and deprecates the option).
_READ_CSV = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}


def read_csv(path: str | os.PathLike | io.BytesIO) -> pd.DataFrame:
    """Read a CSV written by :func:`write_csv` (an empty file gives an empty frame)."""
    try:
        return pd.read_csv(path, **_READ_CSV)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


@contextlib.contextmanager
def publish(out_dir: str | os.PathLike, last: str = "report.html") -> Iterator[Path]:
    """Stage a set of outputs, then move them into ``out_dir`` all together.

    >>> with publish(out_dir) as stage:
    ...     write_csv(results, stage / "results.csv")
    ...     write_report(results, stage)          # writes stage / "report.html"

    The block writes into a fresh hidden directory inside ``out_dir``; if it raises, nothing
    in ``out_dir`` changes (the previous results and report stay, consistent). If it
    succeeds, every staged file is moved over its namesake (``os.replace``, atomic per
    file), ``last`` after all the others, so the new report appears only once its data is
    in place.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=out_dir))
    try:
        yield stage
        files = sorted((p for p in stage.rglob("*") if p.is_file()),
                       key=lambda p: (p.relative_to(stage) == Path(last), str(p)))
        for src in files:
            dst = out_dir / src.relative_to(stage)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
        _fsync_dir(out_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# --------------------------------------------------------------------------- cells and keys


def _json_default(obj: Any) -> Any:
    # NumPy scalars (np.float64(0.1), np.int64(3), np.bool_) are common in grids.
    item = getattr(obj, "item", None)
    if callable(item) and getattr(obj, "shape", None) == ():
        return item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(
        f"cell values must be JSON values (str, int, float, bool, None, lists, dicts); "
        f"got {type(obj).__name__}: {obj!r}"
    )


def _canonical_json(cell: Mapping[str, Any]) -> str:
    if not isinstance(cell, Mapping):
        raise TypeError(f"a cell is a dict of parameters, got {type(cell).__name__}")
    return json.dumps(
        dict(cell), sort_keys=True, separators=(",", ":"), ensure_ascii=True,
        allow_nan=True, default=_json_default,
    )


def cell_key(cell: Mapping[str, Any]) -> str:
    """A stable 16-hex-digit key of ``cell``: SHA-256 of its JSON with sorted keys.

    Independent of the order of the keys, of the process and of the machine; NumPy scalars
    hash like the Python numbers they hold, tuples like lists.
    """
    return hashlib.sha256(_canonical_json(cell).encode("ascii")).hexdigest()[:16]


def _plain(cell: Mapping[str, Any]) -> dict[str, Any]:
    """The cell as plain JSON values (what is stored and what becomes columns), in the
    cell's own key order."""
    plain = json.loads(_canonical_json(cell))
    return {str(k): plain[str(k)] for k in cell}


class CellStore:
    """Finished cells of one study, in ``directory`` (created on first save).

    >>> store = CellStore("reports/samplers/cells")
    >>> cell = {"target": "gauss10", "sampler": "ula", "L": 20, "seed": 0}
    >>> store.has(cell)       # False until saved
    >>> store.save(cell, df)  # atomic; the .json marker is written last
    >>> store.load(cell)      # the table as saved
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"CellStore({str(self.directory)!r})"

    def key(self, cell: Mapping[str, Any]) -> str:
        """See :func:`cell_key`."""
        return cell_key(cell)

    def _paths(self, cell: Mapping[str, Any]) -> tuple[Path, Path]:
        k = self.key(cell)
        return self.directory / f"{k}.csv", self.directory / f"{k}.json"

    def _read(self, marker: Path) -> tuple[dict[str, Any], pd.DataFrame]:
        """``(marker's content, table)`` of a finished cell, after checking the table's
        SHA-256 against the marker's; :class:`CorruptCellError` naming the file if not."""
        table = marker.with_suffix(".csv")
        try:
            meta = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptCellError(f"cell marker {marker} is unreadable ({exc})") from exc
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
            raise CorruptCellError(f"cell marker {marker} holds no checksum of {table.name}")
        data = table.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise CorruptCellError(
                f"cell table {table} does not match the SHA-256 in {marker.name} (truncated "
                f"or edited after it was saved)"
            )
        return meta, read_csv(io.BytesIO(data))

    def has(self, cell: Mapping[str, Any]) -> bool:
        """Whether ``cell`` is finished and intact: its table and its marker are on disk and
        the table's SHA-256 is the marker's. A corrupt cell gives ``False`` and a
        :class:`CorruptCellWarning` naming the file."""
        table, marker = self._paths(cell)
        if not (marker.is_file() and table.is_file()):
            return False
        try:
            self._read(marker)
        except CorruptCellError as exc:
            warnings.warn(f"{exc}; the cell will be recomputed", CorruptCellWarning,
                          stacklevel=2)
            return False
        return True

    def load(self, cell: Mapping[str, Any]) -> pd.DataFrame:
        """The table saved for ``cell`` (without the parameter columns); ``KeyError`` if none,
        :class:`CorruptCellError` (naming the file) if it fails its checksum."""
        table, marker = self._paths(cell)
        if not (marker.is_file() and table.is_file()):
            raise KeyError(f"cell not in {self}: {_canonical_json(cell)}")
        return self._read(marker)[1]

    def save(self, cell: Mapping[str, Any], df: pd.DataFrame) -> None:
        """Save ``df`` as the result of ``cell``, atomically (table first, marker last, with
        the table's SHA-256)."""
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"a cell's result must be a pandas DataFrame, got {type(df).__name__}")
        table, marker = self._paths(cell)
        data = df.to_csv(index=False).encode("utf-8")
        atomic_write_bytes(table, data)
        meta = {
            "key": self.key(cell),
            "cell": _plain(cell),
            "rows": len(df),
            "columns": [str(c) for c in df.columns],
            "sha256": hashlib.sha256(data).hexdigest(),
            "saved": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        atomic_write_text(marker, json.dumps(meta, indent=1, sort_keys=True) + "\n")

    def cells(self) -> list[dict[str, Any]]:
        """The parameters of every finished, intact cell in the directory (in key order);
        corrupt ones are left out with a :class:`CorruptCellWarning`."""
        if not self.directory.is_dir():
            return []
        out = []
        for marker in sorted(self.directory.glob("*.json")):
            if not marker.with_suffix(".csv").is_file():
                continue
            try:
                out.append(self._read(marker)[0]["cell"])
            except CorruptCellError as exc:
                warnings.warn(str(exc), CorruptCellWarning, stacklevel=2)
        return out

    def __len__(self) -> int:
        return len(self.cells())


# --------------------------------------------------------------------------- running a grid


def _with_cell_columns(cell: Mapping[str, Any], df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with one leading column per cell parameter (a tidy table)."""
    params = _plain(cell)
    df = df.copy()
    for name, value in params.items():
        if isinstance(value, list | dict):
            params[name] = value = json.dumps(value, sort_keys=True)
        if name in df.columns:
            if not (df[name] == value).all():
                raise ValueError(
                    f"the result of cell {_canonical_json(cell)} has a column {name!r} that "
                    f"differs from the cell parameter of that name"
                )
            df = df.drop(columns=name)
    for i, (name, value) in enumerate(params.items()):
        df.insert(i, name, [value] * len(df))
    return df


def _describe(cell: Mapping[str, Any], width: int = 60) -> str:
    text = " ".join(f"{k}={v}" for k, v in cell.items())
    return text if len(text) <= width else text[: width - 1] + "…"


def run_cells(
    store: CellStore | str | os.PathLike,
    cells: Iterable[Mapping[str, Any]],
    fn: Callable[[dict[str, Any]], pd.DataFrame],
    *,
    progress: bool = True,
    desc: str | None = None,
) -> pd.DataFrame:
    """Run ``fn`` on every cell not yet in ``store``; return all cells' results, tidy.

    Cells are run in the order given, and each result is saved the moment ``fn`` returns, so
    an interrupted run resumes where it stopped: finished cells are loaded, not recomputed.
    A stored cell that fails its checksum is recomputed, with a :class:`CorruptCellWarning`
    naming its file; it is never used.
    If ``fn`` raises, the exception propagates (with a note naming the cell) and the cells
    finished before it stay saved.

    Returns the concatenation of the cells' tables, each with one leading column per cell
    parameter (list/dict parameters as JSON strings). Every table, fresh or resumed, is read
    back from disk, so a resumed run returns exactly what an uninterrupted one does.

    ``progress`` shows a tqdm bar on a terminal (never on a pipe or a log file); ``desc``
    labels it. Duplicate cells are an error (their rows would be counted twice).
    """
    from tqdm.auto import tqdm

    if not isinstance(store, CellStore):
        store = CellStore(store)
    cells = [dict(c) for c in cells]
    keys = [store.key(c) for c in cells]
    if len(set(keys)) != len(keys):
        dup = next(c for c, k in zip(cells, keys, strict=True) if keys.count(k) > 1)
        raise ValueError(f"duplicate cell: {_canonical_json(dup)}")

    done = [store.has(c) for c in cells]
    frames = []
    with tqdm(
        total=len(cells), initial=sum(done), desc=desc, unit="cell",
        disable=None if progress else True, dynamic_ncols=True,
    ) as bar:
        for cell, finished in zip(cells, done, strict=True):
            if not finished:
                bar.set_postfix_str(_describe(cell), refresh=False)
                try:
                    result = fn(dict(cell))
                except Exception as exc:
                    exc.add_note(f"in cell {_canonical_json(cell)}")
                    raise
                if not isinstance(result, pd.DataFrame):
                    raise TypeError(
                        f"the cell function must return a pandas DataFrame, got "
                        f"{type(result).__name__} for cell {_canonical_json(cell)}"
                    )
                store.save(cell, result)
                bar.update(1)
            frames.append(_with_cell_columns(cell, store.load(cell)))

    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(dict.fromkeys(k for c in cells for k in c)))
    return pd.concat(frames, ignore_index=True)
