"""The sampler protocol shared by every kernel (in the style of BlackJAX).

A ``SamplingAlgorithm`` is a pair of pure functions plus what a consumer needs to know to
drive it:

- ``init(position, key) -> State``: ``position`` is one chain's pytree; ``key`` is used only
  by kernels with auxiliary randomness (BAOAB's momentum, NumPyro's adaptation). Mini-batch
  kernels also take ``init(position, key, batch)``.
- ``step(key, state, batch=None) -> (State, Info)``: one transition. ``batch`` is forwarded to
  the target's gradient for mini-batch kernels (``minibatch=True``); full-batch kernels
  (MALA, HMC/NUTS) take no batch.

Every ``State`` has a ``position`` field and every ``Info`` has ``diverged`` (the new state
is non-finite) and ``num_grads`` (gradient evaluations spent by the step), which the
driver aggregates. Kernels are not jitted inside: the caller jits, vmaps over chains and
scans over steps. Factories check their arguments eagerly (``lesample.checks``); kernels
do not check again (docs/samplers.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax

__all__ = ["SamplingAlgorithm", "check_gradient"]


class SamplingAlgorithm(NamedTuple):
    """A kernel of the common protocol.

    Attributes:
      init: ``init(position, key=None[, batch]) -> State``, the state of one chain at
        ``position`` (a pytree; the ``State`` holds it as ``state.position``).
      step: ``step(key, state[, batch]) -> (State, Info)``, one transition of one chain.
      name: the kernel's name (``"ula"``, ``"mala"``, ``"baoab"``, ``"hj"``, ``"hmc"``,
        ``"nuts"``, or a user's).
      minibatch: True if ``step`` takes a mini-batch ``batch`` (forwarded to the gradient):
        such kernels can be driven by per-step mini-batches or keys (``lesample.inner``).
      init_grads: gradient evaluations ``init`` spends (BAOAB, MALA and HMC cache a gradient
        in the state: 1); not counted in ``Info.num_grads``.
      position_only: True if the state is the position alone and every move is accepted
        (ULA, HJ): a non-finite state then stays non-finite, so a chain diverged iff its
        estimate of ``E_rho[y]`` (a convex combination of states) is non-finite, and
        ``lesample.inner`` tests that once instead of every step.
    """

    init: Callable
    step: Callable
    name: str
    minibatch: bool
    init_grads: int = 0
    position_only: bool = False


def check_gradient(grad, position, name: str = "grad_H") -> None:
    """``TypeError`` unless ``grad`` (what ``name`` returned at ``position``) is a pytree with
    the structure of ``position``: catches a ``value_and_grad`` function passed where a
    gradient function is expected. Runs at trace time; costs nothing per step."""
    got = jax.tree_util.tree_structure(grad)
    want = jax.tree_util.tree_structure(position)
    if got != want:
        hint = ""
        if isinstance(grad, tuple) and len(grad) == 2:
            hint = (" It returned a pair: was it a `value_and_grad` function? Pass the gradient "
                    "alone (e.g. `target.grad_H` or `jax.grad(f)`).")
        raise TypeError(f"`{name}` must return the gradient, a pytree like the position "
                        f"({want}); got {got}.{hint}")
