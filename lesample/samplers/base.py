"""The sampler protocol shared by every kernel (in the style of BlackJAX).

A ``SamplingAlgorithm`` is a pair of pure functions:

- ``init(position, key) -> State``: ``position`` is one chain's pytree; ``key`` is used only
  by kernels with auxiliary randomness (BAOAB's momentum, NumPyro's adaptation).
- ``step(key, state, batch=None) -> (State, Info)``: one transition. ``batch`` is forwarded to
  the target's gradient for mini-batch kernels (``minibatch=True``); full-batch kernels
  (MALA, HMC/NUTS) take no batch.

Every ``State`` has a ``position`` field and every ``Info`` has ``diverged`` (the new state
is non-finite) and ``num_grads`` (gradient evaluations spent by the step), which the
driver aggregates. Kernels are not jitted inside: the caller jits, vmaps over chains and
scans over steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

__all__ = ["SamplingAlgorithm", "check_step_size"]


class SamplingAlgorithm(NamedTuple):
    init: Callable
    step: Callable
    name: str
    minibatch: bool


def check_step_size(step_size) -> None:
    from lesample.target import check_positive

    check_positive("step_size", step_size)
