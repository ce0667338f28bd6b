"""Local-entropy optimisers as optax gradient transformations (docs/optimizers.md, paper §7).

Each factory returns an ``optax.GradientTransformationExtraArgs``. Its ``update`` runs an
inner loop through a user ``grad_fn(params, key_or_batch)`` (a mini-batch gradient of ``f``
at any pytree ``params``), fed either keys split from ``key`` or the entries of ``batches``
(leading axis ``L``), never both; with neither, keys are split from the state's ``rng``::

    tx = lesample.optim.entropy_sgd(gamma=0.03)          # in place of optax.sgd(...)
    state = tx.init(params)
    updates, state = tx.update(grads, state, params, grad_fn=grad_fn, key=key)
    params = optax.apply_updates(params, updates)

``grad_fn`` may instead be given to the factory (``entropy_sgd(gamma=0.03, grad_fn=g)``):
then a training loop written for ``optax.sgd`` runs unchanged. With flax NNX:
``nnx.Optimizer(model, tx, wrt=nnx.Param)`` and ``optimizer.update(model, grads)`` (NNX
forwards keyword arguments such as ``key=`` to ``tx.update``; ``grad_fn`` receives the pure
``nnx.State`` of the params). The incoming gradient ``updates``/``grads`` is ignored by
``entropy_sgd``, ``hj`` and ``heat`` (a loop that computes it anyway spends one gradient they
do not count).

Conventions (docs/conventions.md): ``gamma`` is the scope (the PDE time; the reference code's
coupling ``g0`` is ``1/gamma``, accepted as ``coupling=``), ``beta`` the inverse temperature
(the reference noise ``eps`` is ``beta = eps^-2``), ``grad f_gamma(x) = (x - <y>)/gamma``,
and the outer step is ``x <- x - eta g``, so the reference ``lr`` is ``eta / gamma`` and
``eta = gamma`` is the proximal step ``x <- <y>`` (the default ``learning_rate=None``).
``gamma`` and ``learning_rate`` are floats or optax schedules of the outer step count
(``scoping(gamma_0, gamma_1)`` is the paper's §7.5 rule). Every state is an ``OptimState``
with ``count`` (outer steps) and ``num_grads`` (gradient evaluations spent: the cost
measure; "effective epochs" = epochs × L, Remark 22), and ``diverged_at``: the outer step
of the first non-finite update, -1 while none. Bad values under ``jit`` follow one policy,
NaN-and-flag: a schedule value below 0 becomes NaN, a NaN/inf gradient gives a NaN update,
and either is recorded in ``diverged_at`` (``lesample.train`` raises on it, naming the step).

| transformation | inner loop (``L``) | ``<y>`` / gradient | grads per update |
| --- | --- | --- | --- |
| ``entropy_sgd`` | any sampler, default ULA (20) | exponential average, ``alpha = 0.75`` | ``L`` |
| ``hj`` | noise-free ULA (5), form ``rho`` or ``rho2`` (eq. 34) | last iterate | ``L`` |
| ``heat`` | none: ``L`` perturbations ``N(0, gamma I)`` (eq. 35) | mean of gradients | ``L`` |
| ``sgd`` | none | the mini-batch gradient | 1 |

Defaults (paper §7) against the reference code's flags (``ucla-vision/entropy-sgd``
``python/optim.py`` + ``train.py``; ``pratikac/hamilton-jacobi`` ``code/optim.py``):

| ours (default) | reference flag (default there) | note |
| --- | --- | --- |
| ``learning_rate=None`` (``eta = gamma``) | ``lr`` (1 then decayed; train.py 0.1) | ``lr gamma`` |
| ``num_steps = 20`` (``hj``: 5, ``heat``: 20) | ``L`` (``-L 20``; 0 = plain SGD) | Remark 22 |
| ``gamma`` (required) or ``coupling`` | ``g0`` / ``--gamma`` (MNIST 1e-4, CIFAR 0.03) | ``1/g0`` |
| ``gamma=scoping(gamma_0, gamma_1)`` | ``g1`` / ``--scoping`` (1e-3) | coupling ``g0 (1+g1)^t`` |
| ``beta = 1e8`` | ``eps`` / ``--noise`` (1e-4) | ``beta = eps^-2`` |
| ``step_size = 0.1`` | ``llr = 0.1`` (inner Langevin step) | |
| ``alpha = 0.75`` | ``beta1 = 0.75`` (``mw`` average; HJB: 1e-4 ~ last) | |
| ``momentum = 0.9, nesterov=True`` | ``momentum=0.9, nesterov=True`` | also SGD's |
| ``noise = "gaussian"`` | ``eta.normal_()`` | ``"rademacher"``: fast signs |

Differences from the reference code (docs/optimizers.md): its python ``EntropySGD`` never
increments its scoping counter ``t`` (so ``g1`` has no effect; ``hamilton-jacobi`` does
increment it); its noise ``eps / sqrt(0.5 llr)`` added to the gradient is our ``beta =
eps^-2`` (docs/conventions.md); ``hamilton-jacobi`` also applies the Nesterov momentum inside the
inner loop (we do not: use ``sampler="baoab"`` for momentum there) and adds no noise-free
special case for HJB (its ``beta1 = 1e-4`` average is ~ the last iterate, ours is exact).

Left out: ``weight_decay`` (chain ``optax.add_decayed_weights`` before, or add it to
``grad_fn``) and the reference ``rho`` term mixing the plain gradient into the outer step.
"""

from lesample.optim._base import OptimState, scoping
from lesample.optim._elastic import ReplicaState, elastic_sgd, replica_mean, replicate
from lesample.optim._entropy_sgd import entropy_sgd
from lesample.optim._heat import heat
from lesample.optim._hj import hj
from lesample.optim._parle import parle
from lesample.optim._sbe import sbe
from lesample.optim._sgd import sgd

__all__ = ["OptimState", "scoping", "entropy_sgd", "hj", "heat", "sbe", "sgd",
           "ReplicaState", "elastic_sgd", "parle", "replica_mean", "replicate"]
