"""Argument checks shared by every public entry point, with one error style.

A bad argument raises ``TypeError`` (wrong kind: a string, a bool, a non-callable) or
``ValueError`` (right kind, bad value), and the message names the argument, says what it
must be (the fix) and shows the value received::

    ValueError: `beta` must be a number > 0 (inf allowed: the noise-free limit); got -1.0.

Under ``jax.jit`` a traced value cannot be inspected: value checks of a tracer are skipped
and the tracer is returned unchanged (its type and shape are still those of the eager
value). Entry points therefore check their arguments eagerly, once, before they trace;
code below them (kernels, the inner loop) does not check again. Inside a jitted program a
bad value shows up as a non-finite result, which the divergence checks report
(docs/samplers.md).

Every check returns the validated value (a Python ``float``/``int`` for concrete numbers)
so that callers can write ``beta = check_positive("beta", beta)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from typing import Any

import jax
import numpy as np

__all__ = [
    "is_traced",
    "check_number",
    "check_positive",
    "check_int",
    "check_fraction",
    "check_choice",
    "check_callable",
    "check_finite",
    "check_unroll",
    "check_schedule",
    "check_scope",
]


def is_traced(value) -> bool:
    """Whether ``value`` is a JAX tracer (an abstract value under ``jit``/``vmap``/``grad``)."""
    return isinstance(value, jax.core.Tracer)


def _describe(integer, gt, ge, lt, le, allow_inf) -> str:
    parts = []
    for op, bound in ((">", gt), (">=", ge), ("<", lt), ("<=", le)):
        if bound is not None:
            parts.append(f"{op} {bound:g}")
    what = "an integer" if integer else "a number"
    inf = ""
    if allow_inf:
        inf = " (inf allowed: the noise-free limit)"
    elif not integer:
        what = "a finite number"
    return what + (" " + " and ".join(parts) if parts else "") + inf


def check_number(name: str, value, *, gt=None, ge=None, lt=None, le=None,
                 allow_inf: bool = False, integer: bool = False, hint: str = ""):
    """A real scalar within the given bounds: ``TypeError`` unless a number (a Python or
    NumPy scalar, or a 0-d array; not a string or a bool), ``ValueError`` if NaN, infinite
    (unless ``allow_inf``, which admits ``+inf`` only) or out of bounds. Returns a ``float``
    (``int`` with ``integer=True``); a tracer is returned unchanged. ``hint`` is appended
    to the message (a further fix)."""
    if is_traced(value):
        return value
    requirement = _describe(integer, gt, ge, lt, le, allow_inf)
    suffix = f" {hint}" if hint else ""
    kind = numbers.Integral if integer else numbers.Real
    numeric = isinstance(value, kind | np.number) or (
        hasattr(value, "dtype") and np.asarray(value).dtype.kind in "iuf")
    if isinstance(value, str | bytes | bool | np.bool_) or not numeric:
        raise TypeError(f"`{name}` must be {requirement}; got {value!r} "
                        f"({type(value).__name__}).{suffix}")
    if np.ndim(value) != 0:
        raise ValueError(f"`{name}` must be a scalar ({requirement}); got shape "
                         f"{np.shape(value)}.{suffix}")
    if integer:
        if not np.issubdtype(np.asarray(value).dtype, np.integer):
            raise TypeError(f"`{name}` must be {requirement}; got {value!r}.{suffix}")
        v = int(value)
    else:
        try:
            v = float(value)
        except TypeError:  # complex, object arrays
            raise TypeError(f"`{name}` must be {requirement}; got {value!r}.{suffix}") from None
    bad = math.isnan(v) or (math.isinf(v) and not (allow_inf and v > 0))
    for ok, bound in ((lambda b: v > b, gt), (lambda b: v >= b, ge), (lambda b: v < b, lt),
                      (lambda b: v <= b, le)):
        bad = bad or (bound is not None and not ok(bound))
    if bad:
        raise ValueError(f"`{name}` must be {requirement}; got {value!r}.{suffix}")
    return v


def check_positive(name: str, value, *, allow_inf: bool = False, hint: str = ""):
    """A number > 0 (``allow_inf``: ``inf`` too); see :func:`check_number`."""
    return check_number(name, value, gt=0, allow_inf=allow_inf, hint=hint)


def check_int(name: str, value, low: int = 1) -> int:
    """An integer ``>= low`` (not a bool, not a float such as ``2.0``)."""
    return check_number(name, value, ge=low, integer=True)


def check_fraction(name: str, value, *, closed: bool = False) -> float:
    """A number in ``[0, 1)`` (``closed=True``: ``[0, 1]``), e.g. a momentum or a weight."""
    return check_number(name, value, ge=0, **({"le": 1} if closed else {"lt": 1}))


def check_choice(name: str, value, choices: Iterable) -> Any:
    """``value`` if it is one of ``choices``, else a ``ValueError`` listing them."""
    choices = tuple(choices)
    if isinstance(value, str | int | float | None | tuple) and value in choices:
        return value
    raise ValueError(f"`{name}` must be one of {sorted(choices, key=str)}; got {value!r}.")


def check_callable(name: str, fn, expected: str) -> Callable:
    """``fn`` if callable, else a ``TypeError`` saying what was expected (``expected``,
    e.g. ``"f(params[, batch]) returning a scalar"``)."""
    if not callable(fn):
        raise TypeError(f"`{name}` must be a function {expected}; got {type(fn).__name__}.")
    return fn


def check_finite(name: str, params, hint: str = "a previous step may have diverged: lower "
                 "the step size") -> None:
    """``ValueError`` naming ``name`` if any leaf of a concrete pytree is NaN or inf (skipped
    when a leaf is traced)."""
    for leaf in jax.tree_util.tree_leaves(params):
        if is_traced(leaf):
            return
        if not np.all(np.isfinite(np.asarray(leaf))):
            raise ValueError(f"`{name}` contains NaN or inf; pass finite values ({hint}).")


def check_unroll(unroll) -> int | bool:
    """``unroll`` of a ``lax.scan``: an integer >= 1, or ``True`` (no loop)."""
    if unroll is True:
        return unroll
    if isinstance(unroll, bool) or not isinstance(unroll, int | np.integer) or unroll < 1:
        raise ValueError(f"`unroll` must be an integer >= 1 or True; got {unroll!r}.")
    return unroll


def check_schedule(name: str, value, *, allow_none: bool = False):
    """A float > 0 or an optax-style schedule ``count -> value``, returned as a ``float`` or
    the callable (None stays None with ``allow_none``). A schedule is evaluated once at
    step 0 and must give a finite value > 0 there (one that cannot run eagerly is
    accepted as is); later values are the caller's to check where they are used."""
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"`{name}` is required: a number > 0 or a schedule count -> value.")
    if callable(value):
        try:
            first = np.asarray(value(0), dtype=float)
        except Exception:  # noqa: BLE001 - a schedule that cannot run eagerly is checked later
            return value
        if first.ndim != 0 or not (first > 0) or not np.isfinite(first):
            raise ValueError(f"the `{name}` schedule must return a finite value > 0; "
                             f"got {first!r} at step 0.")
        return value
    return check_positive(name, value)


def check_scope(gamma=None, coupling=None, *, schedules: bool = False):
    """The scope ``gamma`` from exactly one of ``gamma`` or ``coupling`` (``= 1/gamma``, the
    reference code's ``g0``; docs/conventions.md). Each is a number > 0 or, with
    ``schedules=True``, also a schedule (then a schedule of ``gamma`` is returned)."""
    if (gamma is None) == (coupling is None):
        raise ValueError("Pass exactly one of `gamma` (the scope) or `coupling` (= 1/gamma); "
                         f"got gamma={gamma!r}, coupling={coupling!r}.")
    check = check_schedule if schedules else check_positive
    if coupling is None:
        return check("gamma", gamma)
    coupling = check("coupling", coupling)
    if callable(coupling):
        return lambda count: 1.0 / coupling(count)
    return 1.0 / coupling
