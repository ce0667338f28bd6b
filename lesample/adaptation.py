"""Warm-up adaptation of the inner kernels: step size, friction and preconditioner from the
target itself, in the style of BlackJAX's ``window_adaptation`` (pure and jit-able).

``warmup(sampler, target, position, key, ...)`` runs ``num_chains`` chains through
windows of growing length. After each window it

1. re-estimates the preconditioner ``L`` from the positions of the window's second half,
   pooled over chains: ``"diag"`` (per-coordinate standard deviations, any pytree) or
   ``"dense"`` (Cholesky factor of the covariance, flat vectors only), shrunk toward
   ``1e-3 I`` as Stan does;
2. measures the curvature of the preconditioned potential ``H(L z)``, whose Hessian is
   ``L^T (grad^2 H) L``: extreme Ritz values of ``num_lanczos`` Lanczos steps on
   Hessian-vector products at ``curvature_points`` of the window's draws (its second
   half, evenly spaced in time, all chains). Lanczos's Krylov space contains the
   power-iteration iterate, so at equal cost its largest Ritz value is at least as
   accurate. ``lambda_max`` is the *design curvature* (``design_curvature``): with
   ``s = sqrt(lambda_max)`` per draw, ``(mean(s) + tail sd(s))^2``, so that the step
   holds in the curved tails the sampling run will visit and the draws did not (on a
   Gaussian, ``s`` is constant: the Hessian's largest eigenvalue); ``lambda_min`` is the
   median of the smallest;
3. sets the step against the integrator's stability limit: BAOAB is stable for
   ``h < 2 / sqrt(lambda_max)``, ULA and MALA for ``h < 2 / lambda_max``; ``safety`` is the
   fraction of the limit used. BAOAB's friction underdamps the slowest mode,
   ``2 damping sqrt(lambda_min)`` with damping ratio ``damping`` (default 0.3; 1 is critical
   damping), ``lambda_min`` floored at ``lambda_max / MAX_CONDITION`` (a non-convex region
   has ``lambda_min <= 0``). Below critical damping the momentum persists along the slow
   direction: the integrated autocorrelation time of a linear observable of a Gaussian mode
   is ``2 friction / lambda``, so it shrinks with the friction, while that of its square
   grows like ``1 / friction`` when the friction is small (see docs/adaptation.md). MALA
   then runs dual averaging on its acceptance rate (target ``target_accept``) in every
   window, started from that step.

Preconditioning is a change of variables ``y = L z``: the unchanged kernel runs on
``H(L z)``, whose gradient is ``L^T grad H(L z)``. For BAOAB this is exactly a constant
mass matrix ``M = (L L^T)^{-1}``; for ULA and MALA a constant metric ``L L^T``.
``adapted_sampler`` wraps the kernel so that its states' ``position`` is ``y``.

Costs are counted: ``num_grads`` (gradients of ``H``, over all chains) and ``num_hvps``
(Hessian-vector products, each about two gradients' work), to be reported beside ESS.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from lesample import tree
from lesample.checks import check_choice, check_int, check_number, check_positive
from lesample.samplers import SamplingAlgorithm, build_sampler

PyTree = Any

__all__ = [
    "Preconditioner",
    "AdaptedParameters",
    "WarmupRecord",
    "PreconditionedState",
    "WARMUP_SAMPLERS",
    "hvp",
    "lanczos_extremes",
    "design_curvature",
    "stable_step",
    "warmup",
    "adapted_sampler",
    "whiten",
]

#: Samplers ``warmup`` tunes, with the fraction of the stability limit used by default.
WARMUP_SAMPLERS = {"baoab": 0.8, "mala": 0.5, "ula": 0.25, "sgld": 0.25}
#: Largest condition number assumed when flooring lambda_min for BAOAB's friction.
MAX_CONDITION = 1e4
#: Standard deviations of the frequencies ``sqrt(lambda_max)`` over the warm-up's draws
#: that the step covers above their mean (``design_curvature``).
TAIL = 4.0
#: BAOAB's default damping ratio: friction = 2 * DAMPING * sqrt(lambda_min).
DAMPING = 0.3
PRECONDITIONERS = ("auto", "diag", "dense", "none")
#: ``"auto"`` takes ``"dense"`` for a flat position when the last window's second half
#: gives at least this many draws (pooled over chains) per coordinate: a covariance from
#: ``n`` draws in ``d`` dimensions has eigenvalues off by about ``sqrt(d / n)`` relatively,
#: so that its whitened condition number stays below about ``((1 + 0.32)/(1 - 0.32))^2``
#: (4) at 10; otherwise ``"diag"``.
DENSE_DRAWS_PER_DIM = 10


class Preconditioner(NamedTuple):
    """``y = L z``: ``scale`` (a pytree like the position: ``L = diag(scale)``) or ``chol``
    ((d, d) lower-triangular, for flat positions; then ``scale`` is None)."""

    scale: PyTree | None
    chol: jax.Array | None


class AdaptedParameters(NamedTuple):
    """What ``adapted_sampler`` needs: the kernel's step, friction (BAOAB) and ``L``."""

    step_size: jax.Array
    friction: jax.Array
    preconditioner: Preconditioner


class WarmupRecord(NamedTuple):
    """How the parameters were found; per-window arrays have shape ``(num_windows,)``.

    ``lambda_max``/``lambda_min``: the design curvature and the median smallest Ritz
    value of the preconditioned ``H``, measured after the window;
    ``step_size``/``friction``: the values set from them (for MALA the dual-averaged step
    the window ended with); ``acceptance_rate``: MALA's mean in the
    window (NaN for the others); ``num_grads``/``num_hvps``: totals over all chains;
    ``num_unstable``: per window, the chain steps that reached a non-finite state. Such a
    window is discarded: the chains return to where it started, the preconditioner is not
    updated, and the step fraction is halved from then on, so a start in a flat region
    (whose curvature underestimates the typical one) cannot blow the warm-up up.
    """

    window_lengths: jax.Array
    lambda_max: jax.Array
    lambda_min: jax.Array
    step_size: jax.Array
    friction: jax.Array
    acceptance_rate: jax.Array
    num_grads: jax.Array
    num_hvps: jax.Array
    num_unstable: jax.Array


class PreconditionedState(NamedTuple):
    position: PyTree  # y = L z
    inner: Any  # the kernel's state over z


# --------------------------------------------------------------------------- change of variables


def _to_y(p: Preconditioner, z):
    if p.chol is not None:
        return p.chol @ z
    return jax.tree_util.tree_map(jnp.multiply, p.scale, z)


def _to_z(p: Preconditioner, y):
    if p.chol is not None:
        return jax.scipy.linalg.solve_triangular(p.chol, y, lower=True)
    return jax.tree_util.tree_map(jnp.divide, y, p.scale)


def _grad_to_z(p: Preconditioner, g):
    if p.chol is not None:
        return p.chol.T @ g
    return jax.tree_util.tree_map(jnp.multiply, p.scale, g)


def identity(position) -> Preconditioner:
    return Preconditioner(jax.tree_util.tree_map(jnp.ones_like, position), None)


def whiten(target, p: Preconditioner):
    """``target`` (a ``LocalEntropyTarget``) over ``z`` with ``y = L z``: its ``H``,
    ``grad_H`` and ``value_and_grad_H`` are those of ``H(L z)``."""

    def value_and_grad_H(z, batch=None):
        value, g = target.value_and_grad_H(_to_y(p, z), batch)
        return value, _grad_to_z(p, g)

    def grad_H(z, batch=None):
        return _grad_to_z(p, target.grad_H(_to_y(p, z), batch))

    def H(z, batch=None):
        return target.H(_to_y(p, z), batch)

    return target._replace(H=H, grad_H=grad_H, value_and_grad_H=value_and_grad_H,
                           logdensity=lambda z, batch=None: -target.beta * H(z, batch))


def adapted_sampler(sampler: str, target, params: AdaptedParameters, *,
                    noise: str = "gaussian") -> SamplingAlgorithm:
    """The kernel ``sampler`` with the adapted parameters, over ``y`` (states carry
    ``position = y``); use it with ``run_chains``/``sample`` like any kernel."""
    _check_sampler(sampler)
    p = params.preconditioner
    options = {} if sampler == "mala" else dict(noise=noise)
    if sampler == "baoab":
        options["friction"] = params.friction
    alg = build_sampler(sampler, whiten(target, p), params.step_size, **options)

    def init(position, key=None, *batch):
        return PreconditionedState(position, alg.init(_to_z(p, position), key, *batch))

    def step(key, state, *batch):
        inner, info = alg.step(key, state.inner, *batch)
        return PreconditionedState(_to_y(p, inner.position), inner), info

    return SamplingAlgorithm(init, step, alg.name, alg.minibatch)


# --------------------------------------------------------------------------- curvature


def hvp(grad_H, y, v, batch=None):
    """Hessian-vector product ``(grad^2 H)(y) v`` by forward-over-reverse differentiation."""
    return jax.jvp(lambda u: grad_H(u, batch), (y,), (v,))[1]


def lanczos_extremes(matvec, v0, num_iters: int):
    """``(lambda_min, lambda_max)``: the extreme Ritz values of ``num_iters`` Lanczos steps
    (full reorthogonalisation) of the symmetric ``matvec`` on flat vectors, from ``v0``.

    Ritz values lie inside the spectrum: ``lambda_max`` is a lower bound of the largest
    eigenvalue and ``lambda_min`` an upper bound of the smallest, both converging fast for
    well-separated extremes. After an exact invariant subspace is found (``num_iters``
    beyond its dimension), the remaining steps are neutral.
    """
    d = v0.shape[0]
    k = int(min(num_iters, d))
    v0 = v0 / jnp.linalg.norm(v0)

    def body(i, carry):
        basis, alpha, beta, v, v_prev, b_prev, alive = carry
        basis = basis.at[i].set(v)
        w = matvec(v)
        a = jnp.vdot(w, v)
        w = w - a * v - b_prev * v_prev
        w = w - basis.T @ (basis @ w)  # reorthogonalise against every earlier vector
        b = jnp.linalg.norm(w)
        alpha = alpha.at[i].set(jnp.where(alive, a, alpha[0]))
        still = alive & (b > 1e-6 * (jnp.abs(a) + jnp.abs(b_prev)) + 1e-30)
        beta = beta.at[i].set(jnp.where(still, b, 0.0))
        v_next = jnp.where(still, w / jnp.where(still, b, 1.0), 0.0)
        return basis, alpha, beta, v_next, v, jnp.where(still, b, 0.0), still

    init = (jnp.zeros((k, d), v0.dtype), jnp.zeros(k, v0.dtype), jnp.zeros(k, v0.dtype),
            v0, jnp.zeros_like(v0), jnp.zeros((), v0.dtype), jnp.array(True))
    _, alpha, beta, *_ = jax.lax.fori_loop(0, k, body, init)
    T = jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)
    eig = jnp.linalg.eigvalsh(T)
    return eig[0], eig[-1], k


def _curvature(target, p, z, key, num_iters, batch):
    """Extreme Ritz values of the preconditioned Hessian at one chain's ``z``."""
    flat, unravel = ravel_pytree(z)
    grad_z = whiten(target, p).grad_H

    def matvec(v):
        return ravel_pytree(hvp(grad_z, z, unravel(v), batch))[0]

    lo, hi, _ = lanczos_extremes(matvec, jax.random.normal(key, flat.shape, flat.dtype),
                                 num_iters)
    return lo, hi


def design_curvature(lambda_max, tail=TAIL):
    """The curvature a step is set against, from ``lambda_max`` (``(n,)``, the largest
    Ritz value at ``n`` warm-up draws): ``(mean(s) + tail sd(s))^2`` with ``s =
    sqrt(lambda_max)``, the largest frequency of the dynamics, which a stable step
    must keep below ``2/h`` wherever the chains go. On a Gaussian ``s`` is constant and
    this is its ``lambda_max``; on a curved target it covers ``tail`` standard deviations
    of the frequencies met, above the draws' mean (see docs/adaptation.md)."""
    check_number("tail", tail, ge=0, hint="(standard deviations of the curvature's "
                 "frequencies)")
    s = jnp.sqrt(jnp.maximum(lambda_max, 0.0))
    return (s.mean() + tail * s.std()) ** 2


def stable_step(sampler: str, lambda_max, safety):
    """``safety`` times the stability limit: ``2/sqrt(lambda_max)`` (BAOAB), ``2/lambda_max``
    (ULA, SGLD, MALA's Langevin proposal)."""
    lam = jnp.maximum(lambda_max, 1e-30)
    return safety * (2.0 / jnp.sqrt(lam) if sampler == "baoab" else 2.0 / lam)


# --------------------------------------------------------------------------- checks


def _check_sampler(sampler):
    if sampler not in WARMUP_SAMPLERS:
        raise ValueError(f"`sampler` must be one of {sorted(WARMUP_SAMPLERS)} for warm-up "
                         f"adaptation; got {sampler!r}.")


def _window_lengths(num_steps: int, num_windows: int) -> list[int]:
    """Doubling windows summing to ``num_steps``: 1, 1, 2, 4, ... parts (Stan-like)."""
    parts = [1] + [2 ** max(i - 1, 0) for i in range(1, num_windows)]
    unit = num_steps / sum(parts)
    lengths = [max(2, int(unit * q)) for q in parts]
    lengths[-1] = num_steps - sum(lengths[:-1])
    if min(lengths) < 2:
        raise ValueError(f"`num_steps` ({num_steps}) is too small for {num_windows} windows; "
                         f"pass num_steps >= {4 * sum(parts)}.")
    return lengths


# --------------------------------------------------------------------------- warm-up


class _Moments(NamedTuple):
    n: jax.Array
    mean: PyTree  # flat (d,) for dense, else like the position
    second: PyTree  # sum of squared deviations: like the position (diag) or (d, d) (dense)


def _moments_init(y, dense):
    if dense:
        return _Moments(jnp.zeros(()), jnp.zeros_like(y), jnp.zeros((y.size, y.size), y.dtype))
    zeros = tree.zeros_like(y)
    return _Moments(jnp.zeros(()), zeros, zeros)


def _moments_update(m: _Moments, ys, dense) -> _Moments:
    """Chan's parallel update with a batch ``ys`` (leading axis: chains)."""
    nb = jax.tree_util.tree_leaves(ys)[0].shape[0]
    n = m.n + nb
    bmean = jax.tree_util.tree_map(lambda u: u.mean(0), ys)
    delta = tree.sub(bmean, m.mean)
    mean = tree.axpy(nb / n, delta, m.mean)
    if dense:
        c = ys - bmean
        second = m.second + c.T @ c + jnp.outer(delta, delta) * m.n * nb / n
    else:
        second = jax.tree_util.tree_map(
            lambda s, u, bm, dl: s + ((u - bm) ** 2).sum(0) + dl**2 * m.n * nb / n,
            m.second, ys, bmean, delta)
    return _Moments(n, mean, second)


def _preconditioner(m: _Moments, dense) -> Preconditioner:
    """Stan's regularised estimate: ``n/(n+5) Cov + 1e-3 * 5/(n+5) I``."""
    n = m.n
    w, shrink = n / (n + 5.0), 1e-3 * 5.0 / (n + 5.0)
    if dense:
        cov = w * m.second / jnp.maximum(n - 1.0, 1.0) + shrink * jnp.eye(m.second.shape[0])
        return Preconditioner(None, jnp.linalg.cholesky(cov))
    var = jax.tree_util.tree_map(lambda s: w * s / jnp.maximum(n - 1.0, 1.0) + shrink, m.second)
    return Preconditioner(jax.tree_util.tree_map(jnp.sqrt, var), None)


def warmup(
    sampler: str,
    target,
    position: PyTree,
    key: jax.Array,
    *,
    num_steps: int = 1000,
    num_chains: int = 1,
    num_windows: int = 4,
    preconditioner: str = "auto",
    safety: float | None = None,
    num_lanczos: int = 20,
    curvature_points: int = 16,
    tail: float = TAIL,
    damping: float = DAMPING,
    target_accept: float = 0.574,
    noise: str = "gaussian",
    batch=None,
) -> tuple[PyTree, AdaptedParameters, WarmupRecord]:
    """Tune ``sampler`` (``baoab``, ``mala``, ``ula``/``sgld``) on ``target`` (pure, jit-able).

    Args:
      target: a ``LocalEntropyTarget`` (``H``, ``grad_H``, ``value_and_grad_H``, ``beta``).
      position: one chain's start (every chain starts there).
      num_steps: warm-up transitions per chain, split into ``num_windows`` doubling windows.
      preconditioner: ``"diag"``, ``"dense"`` (flat positions only), ``"none"`` or
        ``"auto"`` (dense for a flat position with enough warm-up draws per coordinate,
        ``DENSE_DRAWS_PER_DIM``; else diag).
      safety: fraction of the stability limit (default ``WARMUP_SAMPLERS[sampler]``).
      damping: BAOAB's damping ratio of the slowest mode (> 0; 1 is critical damping):
        ``friction = 2 damping sqrt(lambda_min)``.
      num_lanczos: Lanczos steps (Hessian-vector products) per curvature measurement,
        taken after each window at ``curvature_points`` of its draws (the chains'
        positions at ``ceil(curvature_points / num_chains)`` evenly spaced times of its
        second half, which the window keeps: that many copies of the chains' positions).
      tail: standard deviations of the draws' frequencies ``sqrt(lambda_max)`` that the
        step covers above their mean (``design_curvature``).
      batch: a fixed mini-batch forwarded to ``grad_H`` (SGLD's curvature), or None.

    Returns ``(positions, params, record)``: the chains' final positions (leading axis
    ``num_chains``: start ``run_chains(..., stacked=True)`` there), the tuned
    ``AdaptedParameters`` for ``adapted_sampler`` and the ``WarmupRecord``.
    """
    _check_sampler(sampler)
    for name, value in (("num_steps", num_steps), ("num_chains", num_chains),
                        ("num_windows", num_windows), ("num_lanczos", num_lanczos),
                        ("curvature_points", curvature_points)):
        check_int(name, value)
    check_choice("preconditioner", preconditioner, PRECONDITIONERS)
    flat = isinstance(position, jax.Array | np.ndarray) and np.ndim(position) == 1
    lengths = _window_lengths(num_steps, num_windows)
    if preconditioner == "auto":
        pooled = num_chains * (lengths[-1] - lengths[-1] // 2)
        dense_ok = flat and pooled >= DENSE_DRAWS_PER_DIM * np.size(position)
        preconditioner = "dense" if dense_ok else "diag"
    dense = preconditioner == "dense"
    if dense and not flat:
        raise ValueError("`preconditioner='dense'` needs a flat 1-D `position`; use 'diag' "
                         "for pytrees.")
    safety = WARMUP_SAMPLERS[sampler] if safety is None else safety
    check_number("safety", safety, gt=0, lt=1, hint="(a fraction of the stability limit)")
    check_positive("damping", damping, hint="(a damping ratio, 1 critical)")
    check_number("target_accept", target_accept, gt=0, lt=1)
    lengths = jnp.asarray(lengths, jnp.int32)
    num_probes = -(-curvature_points // num_chains)  # probe times per window
    kind = "ula" if sampler == "sgld" else sampler
    last = num_windows - 1
    dim = ravel_pytree(position)[0].size

    def measure(p, points, k):
        """Curvature at ``points`` (leading axis); (lambda_min, lambda_max, hvps)."""
        n = jax.tree_util.tree_leaves(points)[0].shape[0]
        z = jax.vmap(lambda y: _to_z(p, y))(points)
        lo, hi = jax.vmap(lambda z, kk: _curvature(target, p, z, kk, num_lanczos, batch))(
            z, jax.random.split(k, n))
        return jnp.median(lo), design_curvature(hi, tail), n * min(num_lanczos, dim)

    def settings(lo, hi, shrink=1.0):
        h = stable_step(kind, hi, safety * shrink)
        friction = 2.0 * damping * jnp.sqrt(jnp.maximum(lo, hi / MAX_CONDITION))
        return h, friction

    p = (identity(position) if not dense else
         Preconditioner(None, jnp.eye(position.shape[0], dtype=position.dtype)))
    ys = jax.tree_util.tree_map(lambda u: jnp.broadcast_to(u, (num_chains,) + u.shape), position)
    key, k0 = jax.random.split(key)
    lo, hi, n_hvps = measure(p, jax.tree_util.tree_map(lambda u: u[None], position), k0)
    h, friction = settings(lo, hi)
    nan = jnp.full(num_windows, jnp.nan)
    rec = WarmupRecord(lengths, nan, nan, nan, nan, nan, jnp.zeros((), jnp.int32),
                       jnp.asarray(n_hvps, jnp.int32), jnp.zeros(num_windows, jnp.int32))

    def window(w, carry):
        ys, p, h, friction, shrink, rec, key = carry
        key, k_run, k_curv = jax.random.split(key, 3)
        # MALA's last window keeps the metric and dual-averages the step for it (Stan's
        # terminal window); every other window re-estimates the metric after it.
        terminal = (kind == "mala") & (w == last)
        ys_new, p_new, probes, (accept, h_da, grads, unstable) = _run_window(
            kind, target, p, h, friction, ys, k_run, lengths[w], dense, noise, batch,
            target_accept, num_probes)
        ok = unstable == 0
        ys = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), ys_new, ys)
        if preconditioner != "none":
            p = jax.tree_util.tree_map(lambda a, b: jnp.where(terminal | ~ok, b, a), p_new, p)
        # A discarded window's probes are from the chains that blew up: measure where the
        # chains returned to instead.
        probes = jax.tree_util.tree_map(
            lambda a, b: jnp.where(ok, a, b[jnp.arange(a.shape[0]) % num_chains]), probes, ys)
        lo, hi, its = measure(p, jax.tree_util.tree_map(lambda u: u[-curvature_points:], probes),
                              k_curv)
        shrink = jnp.where(ok, shrink, 0.5 * shrink)
        h_curv, friction = settings(lo, hi, shrink)
        h = jnp.where(terminal, h_da, h_curv)
        rec = rec._replace(
            lambda_max=rec.lambda_max.at[w].set(hi), lambda_min=rec.lambda_min.at[w].set(lo),
            step_size=rec.step_size.at[w].set(h_da if kind == "mala" else h),
            friction=rec.friction.at[w].set(friction),
            acceptance_rate=rec.acceptance_rate.at[w].set(accept),
            num_grads=rec.num_grads + grads, num_hvps=rec.num_hvps + its,
            num_unstable=rec.num_unstable.at[w].set(unstable))
        return ys, p, h, friction, shrink, rec, key

    ys, p, h, friction, _, rec, _ = jax.lax.fori_loop(
        0, num_windows, window, (ys, p, h, friction, jnp.ones(()), rec, key))
    fr = friction if kind == "baoab" else jnp.full((), jnp.nan)
    return ys, AdaptedParameters(h, fr, p), rec


def _run_window(kind, target, p, h, friction, ys, key, length, dense, noise, batch,
                target_accept, num_probes):
    """One window of ``length`` (traced) steps from positions ``ys`` (chains leading).
    Returns the final positions, the preconditioner from the second half's moments, the
    positions at ``num_probes`` evenly spaced times of the second half (the last at its
    end; shape ``(num_probes * chains, ...)``, time-major) and ``(mean acceptance,
    dual-averaged step, gradients, undone non-finite steps)``."""
    num_chains = jax.tree_util.tree_leaves(ys)[0].shape[0]
    zt = whiten(target, p)
    options = {} if kind == "mala" else dict(noise=noise)
    if kind == "baoab":
        options["friction"] = friction
    args = [] if batch is None or kind == "mala" else [batch]
    k_init, k_run = jax.random.split(key)
    alg0 = build_sampler(kind, zt, h, **options)
    states = jax.vmap(lambda y, k: alg0.init(_to_z(p, y), k, *args))(
        ys, jax.random.split(k_init, num_chains))
    moments = _moments_init(jax.tree_util.tree_map(lambda u: u[0], ys), dense)
    # Dual averaging (Hoffman & Gelman 2014, as Stan/BlackJAX): log h toward target_accept.
    mu = jnp.log(10.0 * h)
    zero = jnp.zeros(())
    half = length // 2
    probe_times = half + ((jnp.arange(num_probes) + 1) * (length - half)) // num_probes - 1

    def body(t, carry):
        states, moments, probes, log_h, g_bar, log_h_bar, acc_sum, div, grads = carry
        k = jax.random.fold_in(k_run, t)
        alg = build_sampler(kind, zt, jnp.exp(log_h), **options) if kind == "mala" else alg0
        new, info = jax.vmap(lambda s, kk: alg.step(kk, s, *args))(
            states, jax.random.split(k, num_chains))
        bad = info.diverged
        states = jax.tree_util.tree_map(
            lambda a_, b_: jnp.where(bad.reshape(bad.shape + (1,) * (a_.ndim - 1)), b_, a_),
            new, states)
        if kind == "mala":
            a = jnp.nanmean(info.acceptance_rate)
            m = t + 1.0
            eta = 1.0 / (m + 10.0)
            g_bar = (1 - eta) * g_bar + eta * (target_accept - a)
            log_h = mu - jnp.sqrt(m) / 0.05 * g_bar
            w = m**-0.75
            log_h_bar = w * log_h + (1 - w) * log_h_bar
            acc_sum = acc_sum + a
        ys_now = jax.vmap(lambda s: _to_y(p, s.position))(states)
        upd = _moments_update(moments, ys_now, dense)
        moments = jax.tree_util.tree_map(lambda a_, b_: jnp.where(t >= half, a_, b_),
                                         upd, moments)
        hit = probe_times == t
        probes = jax.tree_util.tree_map(
            lambda b_, y_: jnp.where(hit.reshape((-1,) + (1,) * y_.ndim), y_[None], b_),
            probes, ys_now)
        return (states, moments, probes, log_h, g_bar, log_h_bar, acc_sum, div + bad.sum(),
                grads + info.num_grads.sum())

    probes = jax.tree_util.tree_map(lambda u: jnp.broadcast_to(u, (num_probes,) + u.shape), ys)
    carry = (states, moments, probes, jnp.log(h), zero, zero, zero, jnp.zeros((), jnp.int32),
             jnp.zeros((), jnp.int32))
    states, moments, probes, _, _, log_h_bar, acc_sum, div, grads = jax.lax.fori_loop(
        0, length, body, carry)
    probes = jax.tree_util.tree_map(lambda u: u.reshape((-1,) + u.shape[2:]), probes)
    ys = jax.vmap(lambda s: _to_y(p, s.position))(states)
    accept = acc_sum / length if kind == "mala" else jnp.full((), jnp.nan)
    init_grads = num_chains if kind in ("baoab", "mala") else 0
    return ys, _preconditioner(moments, dense), probes, (accept, jnp.exp(log_h_bar),
                                                         grads + init_grads, div)
