"""Checkpoints: the leaves of a pytree in one ``.npz`` plus a JSON header, written atomically.

No pickle: the arrays are stored by position (``np.savez``) and the tree structure is
taken from a template that the caller rebuilds (the freshly initialised ``(params,
opt_state)``), so loading checks every leaf's shape and dtype against it and a file from a
different model or optimiser is refused rather than silently misread.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from lesample.store import atomic_write_bytes

__all__ = ["load_checkpoint", "save_checkpoint"]

HEADER = "__header__"


def save_checkpoint(path: str | os.PathLike, tree: Any, header: dict) -> Path:
    """Write the leaves of ``tree`` and the JSON-able ``header`` to ``path`` atomically."""
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]
    buf = io.BytesIO()
    arrays = {f"leaf_{i:05d}": leaf for i, leaf in enumerate(leaves)}
    np.savez(buf, **arrays, **{HEADER: np.array(json.dumps(header))})
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, template: Any) -> tuple[Any, dict]:
    """``(tree, header)`` from ``path``: the stored leaves in the structure of ``template``."""
    leaves, treedef = jax.tree_util.tree_flatten(template)
    with np.load(path, allow_pickle=False) as f:
        header = json.loads(str(f[HEADER]))
        stored = [f[f"leaf_{i:05d}"] for i in range(len(f.files) - 1)]
    if len(stored) != len(leaves):
        raise ValueError(f"checkpoint {path} holds {len(stored)} arrays; this run has "
                         f"{len(leaves)}: it was written by another model or optimiser.")
    for i, (a, b) in enumerate(zip(stored, leaves, strict=True)):
        if a.shape != np.shape(b) or a.dtype != np.asarray(b).dtype:
            raise ValueError(f"checkpoint {path}: array {i} is {a.dtype}{a.shape}, expected "
                             f"{np.asarray(b).dtype}{np.shape(b)}.")
    return jax.tree_util.tree_unflatten(treedef, [jax.numpy.asarray(a) for a in stored]), header
