"""Checkpoints: the leaves of a pytree in one ``.npz`` plus a JSON header, written atomically.

No pickle: the arrays are stored by position (``np.savez``) and the tree structure is
taken from a template that the caller rebuilds (the freshly initialised ``(params,
opt_state)``), so loading checks every leaf's shape and dtype against it and a file from a
different model or optimiser is refused rather than silently misread.

The last two checkpoints are kept: saving moves the current file to
:func:`previous_path` first. :func:`resume_checkpoint` reads the newest one that is intact
and, when a file is unreadable (truncated, a bad CRC), warns naming it and falls back to the
previous one, or to a fresh start when neither can be read.
"""

from __future__ import annotations

import io
import json
import os
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any

import jax
import numpy as np

from lesample.store import atomic_write_bytes

__all__ = [
    "CheckpointWarning",
    "CorruptCheckpointError",
    "load_checkpoint",
    "previous_path",
    "resume_checkpoint",
    "save_checkpoint",
]

HEADER = "__header__"


class CorruptCheckpointError(ValueError):
    """A checkpoint file cannot be read; the message names it."""


class CheckpointWarning(UserWarning):
    """A checkpoint was unreadable and a previous one (or a fresh start) is used instead."""


def previous_path(path: str | os.PathLike) -> Path:
    """Where the checkpoint before the one at ``path`` is kept: ``run.npz`` -> ``run.prev.npz``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(path: str | os.PathLike, tree: Any, header: dict) -> Path:
    """Write the leaves of ``tree`` and the JSON-able ``header`` to ``path`` atomically; the
    checkpoint it replaces is kept at :func:`previous_path`."""
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]
    buf = io.BytesIO()
    arrays = {f"leaf_{i:05d}": leaf for i, leaf in enumerate(leaves)}
    np.savez(buf, **arrays, **{HEADER: np.array(json.dumps(header))})
    if Path(path).is_file():
        os.replace(path, previous_path(path))
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, template: Any) -> tuple[Any, dict]:
    """``(tree, header)`` from ``path``: the stored leaves in the structure of ``template``.

    An unreadable file raises :class:`CorruptCheckpointError` naming it; one written by
    another model or optimiser, a ``ValueError``."""
    leaves, treedef = jax.tree_util.tree_flatten(template)
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
            header = json.loads(str(f[HEADER]))
            stored = [f[f"leaf_{i:05d}"] for i in range(len(f.files) - 1)]
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        raise CorruptCheckpointError(
            f"checkpoint {path} is unreadable: {type(exc).__name__}: {exc}") from exc
    if len(stored) != len(leaves):
        raise ValueError(f"checkpoint {path} holds {len(stored)} arrays; this run has "
                         f"{len(leaves)}: it was written by another model or optimiser.")
    for i, (a, b) in enumerate(zip(stored, leaves, strict=True)):
        if a.shape != np.shape(b) or a.dtype != np.asarray(b).dtype:
            raise ValueError(f"checkpoint {path}: array {i} is {a.dtype}{a.shape}, expected "
                             f"{np.asarray(b).dtype}{np.shape(b)}.")
    return jax.tree_util.tree_unflatten(treedef, [jax.numpy.asarray(a) for a in stored]), header


def resume_checkpoint(path: str | os.PathLike, template: Any) -> tuple[Any, dict] | None:
    """``(tree, header)`` of the newest intact checkpoint of ``path`` (itself, then
    :func:`previous_path`), or ``None`` when there is none.

    An unreadable file gives a :class:`CheckpointWarning` naming it and is moved aside to
    ``<name>.corrupt`` (so the next save does not rotate it over the good one)."""
    candidates = [p for p in (Path(path), previous_path(path)) if p.is_file()]
    for i, candidate in enumerate(candidates):
        try:
            return load_checkpoint(candidate, template)
        except CorruptCheckpointError as exc:
            aside = candidate.with_name(candidate.name + ".corrupt")
            os.replace(candidate, aside)
            then = (f"falling back to {candidates[i + 1]}" if i + 1 < len(candidates)
                    else "starting afresh")
            warnings.warn(f"{exc} (moved to {aside.name}); {then}", CheckpointWarning,
                          stacklevel=2)
    return None
