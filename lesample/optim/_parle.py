"""Parle (Chaudhari et al. 2017): Entropy-SGD in each replica, coupled elastically every ``L``
inner steps. Replica-stacked parameters, the coupling and the devices are
``lesample.optim._elastic``'s; the inner loop is Entropy-SGD's.

One update (one round of ``L`` inner steps per replica, then one coupling), replica ``a``:

    <y>_a = the inner loop on rho(y; x_a) (any sampler; chains start at x_a)
    g_a   = (x_a - <y>_a) / gamma  +  (x_a - xbar) / rho,     xbar = (1/n) sum_b x_b
    m_a <- delta m_a + g_a;  x_a <- x_a - eta (g_a + delta m_a)

Reductions (``tests/test_parle.py``): ``n = 1`` (any ``rho``) or ``rho = inf`` is
``entropy_sgd`` on each replica bit for bit; ``L = 1`` with the local-entropy part switched
off (no noise, the last iterate, inner step ``= gamma``: then ``(x_a - y_1)/gamma`` is the
mini-batch gradient, up to the rounding of ``x_a - y_1``) is ``elastic_sgd``; with ``n = 1``
too it is ``sgd``.

Reference code ``ucla-vision/parle`` (``parle_mpi.py``) against ours:

| reference flag (default) | ours | note |
| --- | --- | --- |
| ``-n`` (MPI ranks) | leading axis ``n`` of ``params`` | one replica per rank there |
| ``-L 25`` | ``num_steps`` (``L``) | inner steps per coupling round |
| ``--gamma 0.01`` (a coupling) | ``gamma = 1/0.01``, or ``coupling=0.01`` | scope |
| ``--rho 0.01``, used as ``rho L n`` | ``rho = 1 / (g rho_flag L n)`` | see below |
| ``--lr 0.1`` (inner and outer) | ``step_size = 0.1``; ``learning_rate = lr gamma`` | |
| ``alpha = 0.75`` (``za``) | ``alpha = 0.75`` | exponential average |
| ``mom = 0.9`` | ``momentum = 0.9`` | outer only, see below |
| ``eps = 1e-3`` (unused) | ``beta = inf`` reproduces it; default ``1e8`` | see below |
| ``(1 + 0.5/nb)^(t // L)``, capped | a ``gamma``/``rho`` schedule, see below | |

``rho``: the reference outer step is ``lr [(x_a - z_a) + rho_ref (x_a - x)]`` with
``rho_ref = rho_flag L n``; ours is ``eta [(x_a - z_a)/gamma + (x_a - xbar)/rho]`` with
``eta = lr gamma``, so ``rho = gamma / rho_ref``.

Decisions on the reference's quirks:

- **Step counter per tensor.** Its ``s['t'] += 1`` sits inside the loop over parameter
  tensors, so ``t`` advances once per tensor per inner step (LeNet: 12 tensors) and its
  scoping ``(1 + 0.5/nb)^(t // L)`` runs 12x faster than written (``gamma`` reaches its cap
  1 within one epoch). Not reproduced: our schedules are evaluated at ``state.count``, the
  number of coupling rounds. The reference's rule as written, with ``c = 1 + 0.5/nb`` per
  round, is ``gamma = lambda k: 1 / min(g c^k, 1)`` and ``rho = lambda k: 1 / (min(g c^k,
  1) min(rho_ref c^k, 10))`` (its couplings capped at 1 and 10); its effective rule on
  LeNet is the same with ``c^12``.
- **Outer step from the last inner iterate.** The reference updates
  ``x_a <- y_L - lr [...]``, adding the inner displacement ``y_L - x_a`` to the step. Not
  reproduced: the outer step starts from ``x_a`` as in the paper's equations and in
  ``entropy_sgd``, which the ``n = 1`` reduction needs; the inner iterates only feed
  ``<y>``.
- **No noise in the inner loop.** ``eps`` is defined but unused there. Our default is
  Entropy-SGD's ``beta = 1e8`` (Parle is Entropy-SGD in each replica); ``beta=inf``
  reproduces the reference and runs the cheaper noise-free kernel.
- Also not reproduced: its inner loop carries Nesterov momentum (use ``sampler="baoab"``
  for momentum there); its momentum step is ``g + m'`` instead of ``g + delta m'``; its
  average ``z_a`` and inner momentum carry over between rounds (ours restart at ``x_a``:
  with ``alpha = 0.75`` the average forgets within a few of the ``L`` steps); its force uses
  the mean of the ``z_a`` (an extra all-reduce per round) where ours uses the mean of the
  ``x_a``; its replicas start from different weights (we stack one start,
  ``replicate``).
"""

from __future__ import annotations

import jax
import optax

from lesample.checks import check_int, check_schedule, check_scope
from lesample.optim._base import check_momentum, evaluate
from lesample.optim._elastic import as_rho, replica_transformation
from lesample.optim._inner import InnerLoop

__all__ = ["parle"]


def parle(
    learning_rate=None,
    gamma=None,
    rho=None,
    *,
    coupling=None,
    num_steps: int = 20,
    step_size: float = 0.1,
    beta: float = 1e8,
    sampler: str = "ula",
    noise: str = "gaussian",
    alpha: float = 0.75,
    estimator=None,
    num_chains: int = 1,
    burn_in: int = 0,
    momentum: float = 0.9,
    nesterov: bool = True,
    seed: int = 0,
    sampler_options: dict | None = None,
    unroll: int | bool = 1,
    grad_fn=None,
    mesh=None,
) -> optax.GradientTransformationExtraArgs:
    """Parle over replica-stacked ``params`` (module docstring).

    Args:
      learning_rate, gamma, coupling, num_steps, step_size, beta, sampler, noise, alpha,
        estimator, num_chains, burn_in, momentum, nesterov, sampler_options, unroll:
        Entropy-SGD's, per replica (``lesample.optim.entropy_sgd``); ``learning_rate=None``
        is ``eta = gamma``.
      rho: the elastic scope > 0 (float or optax schedule of the round count), ``inf`` for
        uncoupled replicas; required.
      seed: seeds the replicas' keys (``split(PRNGKey(seed), n)``).
      grad_fn: ``grad_fn(x_a, key_or_batch)``, a mini-batch gradient of ``f`` at one
        replica's parameters.
      mesh: None (one device) or a one-axis ``Mesh`` to shard the replicas over
        (``lesample.distributed.replica_mesh``); ``n`` must divide over its devices. A
        ``grad_fn`` that reads arrays placed on the mesh must bind them as
        ``jax.tree_util.Partial`` arguments (as ``elastic_sgd``).

    ``update(updates, state, params, *, grad_fn, key=None, batches=None, loss_fn=None)``:
    ``params`` replica-stacked (leading axis ``n``); ``batches`` leaves ``(L, n, ...)``;
    with ``key``, replica ``a`` runs as ``entropy_sgd`` given ``split(key, n)[a]``.
    ``state.num_grads[a]`` grows by ``num_chains * L`` per update.
    """
    gamma_s = check_scope(gamma, coupling, schedules=True)
    if rho is None:
        raise ValueError("`rho` (the elastic scope) is required: a float > 0, a schedule, or "
                         "float('inf') for uncoupled replicas.")
    rho = as_rho(rho)
    lr = check_schedule("learning_rate", learning_rate, allow_none=True)
    momentum = check_momentum(momentum)
    seed = check_int("seed", seed, low=0)
    inner = InnerLoop(sampler=sampler, num_steps=num_steps, step_size=step_size, beta=beta,
                      noise=noise, alpha=alpha, estimator=estimator, num_chains=num_chains,
                      burn_in=burn_in, sampler_options=sampler_options, unroll=unroll)

    def local(x, grads, grad_inputs, noise_key, count, *, grad_fn, loss_fn):
        del grads
        gamma_k = evaluate(gamma_s, count)
        mean, spent = inner.mean(x, gamma_k, grad_inputs, noise_key, grad_fn=grad_fn,
                                 loss_fn=loss_fn)
        return jax.tree_util.tree_map(lambda u, m: (u - m) / gamma_k, x, mean), spent

    def eta(count):
        return evaluate(gamma_s, count) if lr is None else evaluate(lr, count)

    return replica_transformation("parle", local, eta=eta, rho=rho, momentum=momentum,
                                  nesterov=nesterov, seed=seed, num_inputs=inner.num_steps,
                                  grad_fn=grad_fn,
                                  mode="minibatch" if inner.minibatch else "fullbatch",
                                  mesh=mesh)
