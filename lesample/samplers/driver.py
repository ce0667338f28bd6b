"""Run any kernel over many chains: ``vmap`` over chains, ``lax.scan`` over steps.

``run_chains`` is pure and jit-able (use it inside your own jitted code); ``sample`` is the
eager front end: it validates, jits once per (algorithm, settings), and surfaces divergences.

Layouts: draws have leaves ``(chains, draws, ...)``; ``Info`` leaves are ``(chains, steps)``;
estimates are ``(chains, ...)``. Of ``num_steps`` transitions, the first ``burn_in`` are
discarded; then every ``thin``-th state is kept as a draw and every state feeds the
streaming estimator.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lesample.checks import check_choice, check_finite, check_int, check_unroll
from lesample.estimators import get_estimator
from lesample.samplers.base import SamplingAlgorithm

PyTree = Any

__all__ = ["Trace", "DivergenceError", "DivergenceWarning", "report_divergence", "run_chains",
           "sample"]


class DivergenceError(RuntimeError):
    """Every chain reached a non-finite state."""


class DivergenceWarning(RuntimeWarning):
    """Some chains reached a non-finite state; they are excluded from chain averages."""


class Trace(NamedTuple):
    """What ``run_chains`` and ``sample`` return.

    draws
        The kept states' positions, leaves ``(chains, draws, ...)``; None with
        ``keep_draws=False``.
    estimate
        The estimator's result per chain, leaves ``(chains, ...)``; None without estimator.
    info
        The kernel's ``Info`` of every transition, leaves ``(chains, num_steps)``.
    final_state
        The kernel's ``State`` after the last transition, leaves ``(chains, ...)``.
    diverged
        ``(chains,)`` bool: the chain reached a non-finite state.
    num_grads
        ``(chains,)`` int32: gradient evaluations spent by the transitions (the kernel's
        ``init`` excluded: ``SamplingAlgorithm.init_grads`` more per chain).
    """

    draws: PyTree | None
    estimate: PyTree | None
    info: Any
    final_state: Any
    diverged: jax.Array
    num_grads: jax.Array


def _check_settings(num_steps, num_chains, burn_in, thin, unroll) -> None:
    check_unroll(unroll)
    for name, value, low in (("num_steps", num_steps, 1), ("num_chains", num_chains, 1),
                             ("burn_in", burn_in, 0), ("thin", thin, 1)):
        check_int(name, value, low)
    if burn_in >= num_steps:
        raise ValueError(f"`burn_in` ({burn_in}) must be smaller than `num_steps` ({num_steps}).")
    if (num_steps - burn_in) % thin:
        raise ValueError(
            f"`num_steps - burn_in` ({num_steps - burn_in}) must be a multiple of `thin` ({thin})."
        )


def run_chains(
    algorithm: SamplingAlgorithm,
    key: jax.Array,
    position: PyTree,
    *,
    num_steps: int,
    num_chains: int = 1,
    burn_in: int = 0,
    thin: int = 1,
    batches: PyTree | None = None,
    estimator=None,
    keep_draws: bool = True,
    stacked: bool = False,
    unroll: int | bool = 1,
) -> Trace:
    """Run ``num_chains`` chains of ``algorithm`` for ``num_steps`` transitions (pure).

    Args:
      position: one chain's start (broadcast to every chain), or, with ``stacked=True``,
        a pytree whose leaves have a leading axis of size ``num_chains``.
      batches: for mini-batch kernels, a pytree whose leaves have leading axis
        ``num_steps``: step ``k`` of every chain sees batch ``k``; or a function
        ``batch_fn(key) -> batch`` called at every step with a key split from the step's
        key (and for ``init``, with a key folded from the init key).
      estimator: ``"uniform"``, ``"exponential"``, ``"last"``, an estimator instance, or
        None (no estimate).
      unroll: steps per loop iteration (``True``: all, no loop): fewer loop iterations for
        cheap kernels, paid for in compile time. On XLA:CPU, ``lax.conv`` gradients inside a
        loop run about 3x slower than outside one: ``True`` removes the loop.
    """
    _check_settings(num_steps, num_chains, burn_in, thin, unroll)
    if batches is not None and not algorithm.minibatch:
        raise TypeError(f"the {algorithm.name!r} kernel is full-batch: pass `batches=None`.")
    est = None if estimator is None else get_estimator(estimator)
    num_kept = (num_steps - burn_in) // thin
    steps = num_steps if unroll is True else int(unroll)  # steps per loop iteration
    batch_fn = batches if callable(batches) else None
    burn_batches = main_batches = first_batch = None
    if batches is not None and batch_fn is None:
        lengths = {np.shape(leaf)[0] for leaf in jax.tree_util.tree_leaves(batches)}
        if lengths != {num_steps}:
            raise ValueError(f"every leaf of `batches` needs leading axis num_steps={num_steps}.")
        burn_batches = jax.tree_util.tree_map(lambda u: u[:burn_in], batches)
        main_batches = jax.tree_util.tree_map(
            lambda u: u[burn_in:].reshape((num_kept, thin) + u.shape[1:]), batches
        )
        first_batch = jax.tree_util.tree_map(lambda u: u[0], batches)

    def transition(state, xs):
        k, batch = xs
        if batch_fn is not None:
            k_batch, k = jax.random.split(k)
            batch = batch_fn(k_batch)
        return algorithm.step(k, state) if batch is None else algorithm.step(k, state, batch)

    def one_chain(key, start):
        k_init, k_burn, k_main = jax.random.split(key, 3)
        init_batch = first_batch if batch_fn is None else batch_fn(jax.random.fold_in(k_init, 1))
        state = algorithm.init(start, k_init, *([] if batches is None else [init_batch]))
        state, burn_info = jax.lax.scan(
            transition, state, (jax.random.split(k_burn, burn_in), burn_batches), unroll=unroll
        )
        acc = None if est is None else est.init(state.position)

        def inner(carry, xs):
            state, acc = carry
            state, info = transition(state, xs)
            acc = None if est is None else est.update(acc, state.position)
            return (state, acc), info

        def outer(carry, xs):  # thin steps, then keep a draw
            if thin == 1:  # even a fully unrolled scan of one step emits a loop
                carry, info = inner(carry, jax.tree_util.tree_map(lambda u: u[0], xs))
                info = jax.tree_util.tree_map(lambda u: u[None], info)
            else:
                carry, info = jax.lax.scan(inner, carry, xs,
                                           unroll=True if thin <= steps else steps)
            return carry, (carry[0].position if keep_draws else None, info)

        keys = jax.random.split(k_main, num_kept * thin).reshape((num_kept, thin))
        (state, acc), (draws, info) = jax.lax.scan(outer, (state, acc), (keys, main_batches),
                                                   unroll=max(1, steps // thin))
        info = jax.tree_util.tree_map(lambda u: u.reshape((num_kept * thin,) + u.shape[2:]), info)
        info = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), burn_info, info)
        estimate = None if est is None else est.result(acc)
        return Trace(draws, estimate, info, state, info.diverged.any(), info.num_grads.sum())

    keys = jax.random.split(key, num_chains)
    if num_chains == 1:  # vmap over a single chain batches every matmul: about 1.7x slower
        start = jax.tree_util.tree_map(lambda u: u[0], position) if stacked else position
        return jax.tree_util.tree_map(lambda u: u[None], one_chain(keys[0], start))
    if stacked:
        return jax.vmap(one_chain)(keys, position)
    return jax.vmap(one_chain, in_axes=(0, None))(keys, position)


_run_jit = jax.jit(
    run_chains,
    static_argnames=("algorithm", "num_steps", "num_chains", "burn_in", "thin", "estimator",
                     "keep_draws", "stacked", "unroll"),
)


def report_divergence(diverged, on_divergence: str = "warn", what: str = "chains") -> None:
    """Report the chains flagged in the concrete boolean mask ``diverged`` (chains,): warn
    (``DivergenceWarning``) if some diverged, raise ``DivergenceError`` if all did, or any
    with ``on_divergence="raise"``. The one place where a divergence becomes a message."""
    diverged = np.asarray(diverged)
    n = int(diverged.sum())
    if n == 0:
        return
    msg = (f"{n} of {diverged.size} {what} reached a non-finite state (chains "
           f"{np.flatnonzero(diverged)[:10].tolist()}); lower the step size.")
    if on_divergence == "raise" or n == diverged.size:
        raise DivergenceError(msg)
    warnings.warn(msg + " They are excluded from chain averages.", DivergenceWarning, stacklevel=3)


def sample(
    algorithm: SamplingAlgorithm,
    key: jax.Array,
    position: PyTree,
    *,
    num_steps: int,
    num_chains: int = 1,
    burn_in: int = 0,
    thin: int = 1,
    batches: PyTree | None = None,
    estimator=None,
    keep_draws: bool = True,
    stacked: bool = False,
    unroll: int | bool = 1,
    on_divergence: str = "raise",
    check_convergence: bool = True,
) -> Trace:
    """Eager, jitted ``run_chains`` that checks for divergence and convergence.

    ``on_divergence="raise"`` raises ``DivergenceError`` if any chain diverged;
    ``"warn"`` warns (``DivergenceWarning``) and returns the trace, whose ``diverged`` mask
    tells which chains to drop; it still raises if every chain diverged. Reuse the same
    ``algorithm`` object to avoid recompiling.

    ``check_convergence`` (with kept draws, >= 2 chains and >= 4 draws): a
    ``lesample.diagnostics.ConvergenceWarning`` names the coordinates whose R-hat exceeds
    1.01 or whose bulk ESS is below 100 per chain (Vehtari et al. 2021), over the chains
    that did not diverge; finite draws can still be wrong, and only these show it. Pass
    ``False`` for runs that are short on purpose.
    """
    check_choice("on_divergence", on_divergence, ("raise", "warn"))
    check_finite("position", position)
    estimator = None if estimator is None else get_estimator(estimator)
    trace = _run_jit(
        algorithm, key, position, num_steps=num_steps, num_chains=num_chains, burn_in=burn_in,
        thin=thin, batches=batches, estimator=estimator, keep_draws=keep_draws, stacked=stacked,
        unroll=unroll,
    )
    report_divergence(trace.diverged, on_divergence)
    if check_convergence and keep_draws:
        _check_convergence(trace)
    return trace


RHAT_MAX = 1.01
ESS_PER_CHAIN_MIN = 100


def _check_convergence(trace: Trace) -> None:
    """Warn (``ConvergenceWarning``) naming the coordinates whose R-hat or bulk ESS fails."""
    from lesample import diagnostics

    ok = ~np.asarray(trace.diverged)
    draws = jax.tree_util.tree_map(lambda u: np.asarray(u)[ok], trace.draws)
    x = diagnostics.as_chains_draws_dim(draws)
    chains, n = x.shape[:2]
    if chains < diagnostics.MIN_CHAINS or n < diagnostics.MIN_DRAWS:
        return
    rhat, ess = diagnostics.rhat(x), diagnostics.ess(x, method="bulk")
    # Written so that NaN fails too (a constant coordinate, a stuck chain).
    bad = np.flatnonzero(~(rhat <= RHAT_MAX) | ~(ess >= ESS_PER_CHAIN_MIN * chains))
    if bad.size:
        shown = bad[:10].tolist()
        warnings.warn(
            f"{bad.size} of {x.shape[2]} coordinates fail R-hat <= {RHAT_MAX} or bulk ESS >= "
            f"{ESS_PER_CHAIN_MIN} per chain ({ESS_PER_CHAIN_MIN * chains} over {chains} "
            f"chains): coordinates {shown}{' ...' if bad.size > 10 else ''} with R-hat "
            f"{np.round(rhat[shown], 3).tolist()} and ESS {np.round(ess[shown]).tolist()}. "
            "Run longer chains, tune the step size, or check the target.",
            diagnostics.ConvergenceWarning, stacklevel=3)
