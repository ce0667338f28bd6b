"""The four algorithms of the deep benchmarks (paper §7-8) with their settings in our
conventions (docs/conventions.md), and the learning-rate schedule.

| algo | ``L`` | scope ``gamma`` | ``eta`` | inner loop |
| --- | --- | --- | --- | --- |
| ``sgd`` | 1 | — | ``0.1 s(e)`` | — |
| ``entropy_sgd`` | 20 | ``scoping(1e4, 1e-3)`` | ``s(e) gamma_n`` | ULA 0.1, beta 1e8, avg 0.75 |
| ``hj`` | 5 | ``scoping(1e4, 1e-3)`` | ``s(e) gamma_n`` | noise-free, step 0.1, last iterate |
| ``heat`` | 20 | ``scoping(1e-5, 1e-3)`` | ``0.1 s(e)`` | perturbations ``N(0, gamma I)`` |

| ``elastic_sgd`` | 1 | ``rho = 0.1 / c`` | ``0.1 s(e)`` | —; ``n = 3`` |
| ``parle`` | 20 | ``entropy_sgd``'s; ``rho = gamma_n / c`` | ``s(e) gamma_n`` | ``entropy_sgd``'s |

All use Nesterov momentum 0.9 on the outer step (§7.4) and batches of 128.

- **Replicas** (``elastic_sgd``, ``parle``; ``lesample.optim``): ``n`` replicas from one
  start, coupled to their mean with the elastic scope ``rho``. The pull per round is
  ``eta / rho = s(e) c`` with ``c = 0.1 x 0.01 x L x n``, the reference Parle's ``lr x rho
  x L x n`` (``--lr 0.1 --rho 0.01``; 0.06 for Parle's ``L = 20``, ``n = 3``; 0.003 per
  step for Elastic-SGD, the same pull per gradient); Parle's ``rho`` follows ``gamma``'s
  scoping. The replicas' gradients all count (see ``lesample.train.loop``).

- **Scope.** The reference code's coupling ``g0 = 1e-4`` for MNIST is the scope
  ``gamma = 1e4`` here; scoping ``g1 = 1e-3`` per outer step is ``scoping(1e4, 1e-3)``
  (paper §7.5). HEAT's ``gamma`` is the variance of its perturbations (eq. 35), a different
  scale: ``1e-5`` (std ``0.003`` per weight), in the paper's range. A short run (mnistfc,
  2,000 Fashion-MNIST images, 4 effective epochs) gave 22.7-23.3% validation error for every
  ``gamma`` in ``1e-4 .. 1e-7``: what slows HEAT is one outer step per ``L`` gradients.
- **Outer step.** For local-entropy descent our ``eta`` is the reference ``lr`` times
  ``gamma`` (docs/conventions.md), so ``eta = lr_ref * gamma_n`` follows the scope. The reference
  code's inner loop carries Nesterov momentum 0.9; ours is the paper's eq. (32), without
  it, so its displacement ``x - <y>`` is about 10x smaller per gradient. ``lr_ref = 1`` (the
  reference's "lr 1", see ``lesample.optim``) instead of 0.1 gives the same rate per
  gradient as SGD's ``0.1`` with Nesterov 0.9.
- **Schedule** ``s(e)`` (§7.1: "reduce by a factor of 5 after every 3 epochs", where an
  epoch of Entropy-SGD is ``N/B`` outer steps of ``L = 20`` gradients, i.e. 60 effective
  epochs): a step decay in **effective epochs** ``e`` (Remark 22), the same for every
  algorithm so that equal budgets compare like with like: ``s(e) = 0.2^floor(e / T)``,
  ``T = 60`` by default; a shorter budget scales ``T`` down (``studies/deepnets``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import optax

from lesample import optim
from lesample.optim._auto_scope import AutoScope

__all__ = ["ADAPTIVE_L", "ALGORITHMS", "AUTO_SCOPE", "Algorithm", "canonical_algorithm",
           "check_self_tuning", "grads_per_update", "lr_schedule", "make_optimizer"]


@dataclass(frozen=True)
class Algorithm:
    """Defaults of one algorithm: ``L`` gradients per update, reference learning rate,
    initial scope (None for SGD); ``local_entropy``: ``eta = lr * gamma_n``; ``replicas``: the
    default ``n`` of a replica algorithm (1: params are not replica-stacked)."""

    name: str
    num_grads: int
    lr: float
    gamma: float | None
    local_entropy: bool
    replicas: int = 1  # default n; algorithms with replicas have 3 (Parle's paper and code)


ALGORITHMS: dict[str, Algorithm] = {
    "sgd": Algorithm("sgd", 1, 0.1, None, False),
    "entropy_sgd": Algorithm("entropy_sgd", 20, 1.0, 1e4, True),
    "hj": Algorithm("hj", 5, 1.0, 1e4, True),
    "heat": Algorithm("heat", 20, 0.1, 1e-5, False),
    "elastic_sgd": Algorithm("elastic_sgd", 1, 0.1, None, False, replicas=3),
    "parle": Algorithm("parle", 20, 1.0, 1e4, True, replicas=3),
}

SCOPING = 1e-3  # gamma_1 of §7.5, per outer step
MOMENTUM = 0.9  # §7.4
ELASTIC_PULL = 0.1 * 0.01  # the reference Parle's lr x rho flag; times L n: pull per round


def canonical_algorithm(name: str) -> str:
    """``"entropy-sgd"`` -> ``"entropy_sgd"``; raises ``ValueError`` for an unknown name."""
    key = name.strip().lower().replace("-", "_")
    if key not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; choose from {sorted(ALGORITHMS)}")
    return key


def lr_schedule(lr: float, steps_per_epoch: int, drop_every: float, epochs: int):
    """``lr * 0.2^floor(e / drop_every)`` as an optax schedule of the outer step count, with
    ``e = step / steps_per_epoch`` effective epochs (module docstring)."""
    boundaries = {
        round(k * drop_every * steps_per_epoch): 0.2
        for k in range(1, math.ceil(epochs / drop_every) + 1)
    }
    return optax.piecewise_constant_schedule(lr, boundaries)


#: The algorithms that take ``gamma="auto"`` (the scope from the loss's curvature) and a
#: ``tolerance`` (the adaptive inner loop), docs/adaptation.md.
AUTO_SCOPE = ("entropy_sgd", "hj")
ADAPTIVE_L = ("entropy_sgd",)
#: Inner steps per batch mean of the adaptive inner loop: with at least 4 batches it may
#: stop after 8 of Entropy-SGD's ``L = 20`` steps.
ADAPTIVE_CHUNK = 2


def grads_per_update(algo: str, gamma=None) -> int:
    """The most gradients one update of ``algo`` spends: its ``L`` inner steps, plus with
    ``gamma="auto"`` the automatic scope's Lanczos HVPs at two gradients each. Refuses an
    unknown algorithm and a ``gamma`` it does not take (:func:`check_self_tuning`)."""
    check_self_tuning(algo, gamma, None)
    spec = ALGORITHMS[canonical_algorithm(algo)]
    return spec.num_grads + (2 * AutoScope().num_lanczos if gamma == "auto" else 0)


def check_self_tuning(algo: str, gamma, tolerance) -> None:
    """Refuse ``gamma="auto"`` or a ``tolerance`` for an algorithm that has none."""
    name = canonical_algorithm(algo)
    if isinstance(gamma, str) and (gamma != "auto" or name not in AUTO_SCOPE):
        raise ValueError(f"`gamma` may be 'auto' for {' and '.join(AUTO_SCOPE)} only (a "
                         f"number otherwise); got gamma={gamma!r} for {name!r}")
    if tolerance is not None and (name not in ADAPTIVE_L or isinstance(tolerance, bool)
                                  or not isinstance(tolerance, int | float)
                                  or not tolerance > 0):
        raise ValueError(f"`tolerance` (the adaptive inner loop) is a number > 0 for "
                         f"{' and '.join(ADAPTIVE_L)} only; got tolerance={tolerance!r} "
                         f"for {name!r}")


def _scaled(tx: optax.GradientTransformationExtraArgs, schedule
            ) -> optax.GradientTransformationExtraArgs:
    """``tx``'s updates times ``schedule(count)`` (``count``: the outer steps before this
    one). The optimisers' outer step is ``-eta`` times a direction that does not depend on
    ``eta``, so for ``learning_rate=None`` (``eta = gamma_n``) this is exactly ``eta =
    schedule(n) gamma_n``: the hand-set scope's rule for a scope known only at the update."""

    def update(updates, state, params=None, **extra):
        scale = schedule(state.count)
        out, state = tx.update(updates, state, params, **extra)
        return jax.tree_util.tree_map(lambda u: (scale * u).astype(u.dtype), out), state

    return optax.GradientTransformationExtraArgs(tx.init, update)


def make_optimizer(algo: str, *, steps_per_epoch: int, epochs: int, drop_every: float = 60,
                   seed: int = 0, noise: str = "gaussian", lr: float | None = None,
                   gamma: float | str | None = None, tolerance: float | None = None,
                   unroll: int | bool = 1, replicas: int | None = None,
                   mesh=None) -> optax.GradientTransformationExtraArgs:
    """The ``lesample.optim`` transformation of ``algo`` with the settings of the module
    docstring; ``lr`` and ``gamma`` override the defaults; ``noise`` is Entropy-SGD's
    Langevin noise ("gaussian" or "rademacher"); ``seed`` seeds the optimiser's own noise;
    ``unroll`` is the inner loop's (``lesample.optim.entropy_sgd``); ``replicas`` (``n``,
    default the algorithm's) and ``mesh`` are the replica algorithms'.

    ``gamma="auto"`` (``AUTO_SCOPE``): the scope from the mini-batch loss's most negative
    curvature at every update (Remark 6), at most the algorithm's initial scope, with
    ``eta = lr s(e) gamma_n`` as for the hand-set scope; ``tolerance`` (``ADAPTIVE_L``):
    the adaptive inner loop, from 4 to the algorithm's ``L`` steps, in chunks of
    ``ADAPTIVE_CHUNK`` (docs/adaptation.md)."""
    spec = ALGORITHMS[canonical_algorithm(algo)]
    check_self_tuning(spec.name, gamma, tolerance)
    base = lr_schedule(spec.lr if lr is None else lr, steps_per_epoch, drop_every, epochs)
    # rho such that the pull per round eta/rho is s(e) c (module docstring)
    rho_per_eta = (spec.lr if lr is None else lr) / (
        ELASTIC_PULL * spec.num_grads * (spec.replicas if replicas is None else replicas))
    if spec.name == "sgd":
        return optim.sgd(base, momentum=MOMENTUM, seed=seed)
    if spec.name == "elastic_sgd":
        return optim.elastic_sgd(base, rho_per_eta, momentum=MOMENTUM, seed=seed,
                                 mesh=mesh)
    common = dict(num_steps=spec.num_grads, momentum=MOMENTUM, seed=seed, unroll=unroll)
    if gamma == "auto":
        common |= dict(gamma="auto", auto_scope=dict(gamma_max=spec.gamma))
        if spec.name == "entropy_sgd":
            return _scaled(optim.entropy_sgd(None, noise=noise, tolerance=tolerance,
                                             chunk=ADAPTIVE_CHUNK, **common), base)
        return _scaled(optim.hj(None, **common), base)
    scope = optim.scoping(spec.gamma if gamma is None else gamma, SCOPING)
    eta = (lambda n: base(n) * scope(n)) if spec.local_entropy else base
    common["gamma"] = scope
    if spec.name == "entropy_sgd":
        return optim.entropy_sgd(eta, noise=noise, tolerance=tolerance,
                                 chunk=ADAPTIVE_CHUNK, **common)
    if spec.name == "parle":
        return optim.parle(eta, rho=lambda n: scope(n) * rho_per_eta, noise=noise,
                           mesh=mesh, **common)
    if spec.name == "hj":
        return optim.hj(eta, **common)
    return optim.heat(eta, **common)
