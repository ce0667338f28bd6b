"""Entropy-SGD (paper §7.1) as an optax transformation: any core sampler as the inner loop.

One update, with ``x = params`` and ``gamma = gamma(n)`` at outer step ``n``:

    run L steps of a sampler on rho(y; x) ∝ exp(-beta [f(y) + |x - y|^2 / (2 gamma)]),
        chains started at x, grad_y H(y) = grad_fn(y, b_l) + (y - x) / gamma;
    <y> = the estimator (exponential average, alpha = 0.75) over the steps, mean over chains;
    g = (x - <y>) / gamma                         (docs/conventions.md: grad f_gamma(x))
    m <- delta m + g;  updates = -eta (g + delta m)   (Nesterov, §7.4; delta = 0 gives -eta g)
"""

from __future__ import annotations

import jax
import optax

from lesample.checks import check_int, check_schedule, check_scope
from lesample.optim._auto_scope import inner_step, resolve_auto
from lesample.optim._base import (
    OptimState,
    check_momentum,
    evaluate,
    outer_step,
    step_inputs,
    transformation,
)
from lesample.optim._inner import InnerLoop

__all__ = ["entropy_sgd"]


def entropy_sgd(
    learning_rate=None,
    gamma=None,
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
    auto_scope: dict | None = None,
    tolerance: float | None = None,
    chunk: int = 5,
) -> optax.GradientTransformationExtraArgs:
    """Entropy-SGD: descent on local entropy ``f_gamma`` with an MCMC inner loop (§7.1).

    Conventions (docs/conventions.md): ``gamma`` is the scope, ``beta`` the inverse temperature,
    ``grad f_gamma(x) = (x - E_rho[y]) / gamma``. Defaults are the paper's §7 (see the table in
    ``lesample.optim``): ULA with ``eta' = 0.1``, ``L = 20``, ``alpha = 0.75``, noise
    ``1e-4`` (``beta = 1e8``), Nesterov ``0.9``.

    Args:
      learning_rate: the outer step ``eta`` (float or optax schedule of the outer step count).
        None (default): ``eta = gamma``, the proximal step ``x <- <y>`` (with momentum 0);
        this is the reference code's ``lr = 1`` (its ``lr`` is ``eta / gamma``).
      gamma: the scope > 0, a float or a schedule (e.g. ``scoping(gamma_0, gamma_1)``),
        or ``"auto"`` (Remark 6, docs/adaptation.md: at every update, from the loss's most
        negative curvature at ``x``; options ``auto_scope={gamma_max, margin,
        num_lanczos}``; its HVPs count as two gradients each in ``num_grads``; the inner
        step is then at most ``1/(lambda_max + 1/gamma)``, from the same Lanczos run);
        or give ``coupling = 1/gamma`` (float or schedule) instead, never both.
      num_steps: ``L``, inner steps per update (including ``burn_in``).
      step_size: the inner step ``eta'``.
      beta: inverse temperature of the inner target (``inf`` for the noise-free HJ limit).
      sampler: "ula"/"sgld" (default), "baoab", "hj" (mini-batch, driven by ``grad_fn``);
        "mala", "hmc", "nuts" (full batch: ``update`` needs ``loss_fn`` and ``key``).
      noise: "gaussian" (exact, default) or "rademacher" (random signs: the same mean and
        covariance, 10-40x cheaper to draw on CPU; ula, sgld, baoab).
      alpha: the exponential-average weight ``mu <- alpha mu + (1 - alpha) y``.
      estimator: "exponential" (default for ula/sgld), "uniform", "last", or an estimator
        instance; None picks ``lesample.DEFAULT_ESTIMATORS[sampler]`` for other samplers.
      num_chains: chains per update (1 in the paper); ``<y>`` averages them. Every chain
        sees the same ``grad_fn`` inputs at a given step.
      burn_in: inner steps left out of the estimate (NUTS/HMC: also their warm-up).
      momentum: Nesterov momentum ``delta`` in [0, 1) of the outer step (0 for none).
      nesterov: Nesterov (default) or heavy-ball momentum.
      seed: seeds the state's key, the source of the Langevin noise in updates driven by
        ``batches`` and of the keys in updates given neither ``key`` nor ``batches``.
      sampler_options: extra kernel options, e.g. ``{"friction": 1.0}`` (baoab).
      unroll: inner steps per XLA loop iteration, or True for no loop. On CPU, XLA's
        convolution gradients inside a loop run about 3x slower (``True`` removes the loop,
        for more compile time; LeNet's default matmul convolutions do not need it); 1
        (default) compiles fastest.
      grad_fn: the ``grad_fn`` of every update, given here instead of to ``update`` (then an
        unchanged ``optax.sgd`` training loop runs Entropy-SGD).
      tolerance: None (default: ``L = num_steps`` every update), or an adaptive inner loop
        (``lesample.stopping.adaptive_mean``, docs/adaptation.md): chunks of ``chunk`` steps
        until the batch-means standard error of ``<y>`` is below ``tolerance`` times
        ``|x - <y>|``, at least 4 chunks, at most ``num_steps``; ``<y>`` is then the uniform
        mean of every step. ``state.inner_steps`` adds the ``L`` spent.

    ``update(updates, state, params, *, grad_fn, key=None, batches=None, loss_fn=None)``:
    ``updates`` (the incoming gradient) is ignored; ``grad_fn(params, key_or_batch)``
    returns a mini-batch gradient of ``f`` at any pytree ``params``; inner step ``l`` calls
    ``grad_fn(y, keys[l])`` (``keys = split(k, L)``, ``k`` split from ``key``, or from the
    state's key when neither ``key`` nor ``batches`` is given) or ``grad_fn(y, batches[l])``
    (leaves of ``batches`` have leading axis ``L``). Apply the
    returned updates with ``optax.apply_updates``. ``state.num_grads`` grows by
    ``num_chains * L`` per update (plus one per chain for the init of BAOAB and MALA; the
    leapfrog steps for HMC/NUTS). The inner loop is jitted with ``grad_fn`` static: pass the
    same function object every step (or jit your train step) to avoid recompiling.
    """
    auto = resolve_auto(gamma, coupling, auto_scope)
    gamma_s = None if auto else check_scope(gamma, coupling, schedules=True)
    lr = check_schedule("learning_rate", learning_rate, allow_none=True)
    momentum = check_momentum(momentum)
    seed = check_int("seed", seed, low=0)
    inner = InnerLoop(sampler=sampler, num_steps=num_steps, step_size=step_size, beta=beta,
                      noise=noise, alpha=alpha, estimator=estimator, num_chains=num_chains,
                      burn_in=burn_in, sampler_options=sampler_options, unroll=unroll,
                      tolerance=tolerance, chunk=chunk)

    def impl(state, params, grads, key, batches, *, grad_fn, loss_fn):
        del grads
        grad_inputs, noise_key, rng = step_inputs(key, batches, state.rng, inner.num_steps)
        if auto is None:
            gamma_n, hvps, step = evaluate(gamma_s, state.count), 0, None
        else:
            first = jax.tree_util.tree_map(lambda u: u[0], grad_inputs) if grad_fn else None
            gamma_n, lam_max, hvps = auto.gamma(grad_fn or jax.grad(loss_fn), params, first,
                                                jax.random.fold_in(noise_key, 1))
            step = inner_step(inner.step_size, lam_max, gamma_n)
        if inner.tolerance is None:
            mean, n = inner.mean(params, gamma_n, grad_inputs, noise_key, grad_fn=grad_fn,
                                 loss_fn=loss_fn, step_size=step)
            steps = None  # the wrapper adds num_steps
        else:
            mean, n, spent = inner.stopped_mean(params, gamma_n, grad_inputs, noise_key,
                                                grad_fn=grad_fn, loss_fn=loss_fn,
                                                step_size=step)
            steps = state.inner_steps + spent
        g = jax.tree_util.tree_map(lambda u, m: (u - m) / gamma_n, params, mean)
        eta = gamma_n if lr is None else evaluate(lr, state.count)
        updates, m = outer_step(g, state, eta, momentum, nesterov)
        return updates, OptimState(state.count + 1, state.num_grads + n + 2 * hvps, m, rng,
                                   inner_steps=steps)

    return transformation("entropy_sgd", impl, momentum=momentum, seed=seed,
                          num_inputs=inner.num_steps, grad_fn=grad_fn,
                          mode="minibatch" if inner.minibatch else "fullbatch")
