"""Non-viscous Hamilton–Jacobi descent (paper §7.2, Remark 21) as an optax transformation.

The inner loop is noise-free (ULA at ``beta = inf``: the ``hj`` kernel), ``L = 5`` steps,
last iterate; only the mini-batch noise of ``grad_fn`` remains. Two equivalent forms
(docs/conventions.md, Lemma 1):

- ``form="rho"`` (eq. 32-33 with ``beta_ex^-1 = 0``): ``y_0 = x``,
  ``y <- y - h [grad_fn(y, b_l) + (y - x)/gamma]`` for ``l = 0..L-1``, ``g = (x - y_L)/gamma``.
- ``form="rho2"`` (eq. 34): ``z = x - y``, ``z_0 = 0``,
  ``z <- (1 - h/gamma) z + h grad_fn(x - z, b_l)`` for ``l = 0..L-2``, and
  ``g = grad_fn(x - z_{L-1}, b_{L-1})``: the outer step uses the last gradient evaluated.

Both spend ``L`` gradients per update and share the fixed point ``z* = gamma grad f(x - z*)``
(the proximal point ``y* = x - z*``), where ``z*/gamma = grad f(x - z*)``: they agree when
the inner loop has converged (tests check it), and for a quadratic ``f`` both equal the
closed-form ``grad f_gamma(x)`` then.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from lesample import tree
from lesample.checks import check_int, check_positive, check_schedule, check_scope
from lesample.estimators import LastIterate
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
from lesample.samplers import descent, run_chains

__all__ = ["hj"]

FORMS = ("rho", "rho2")


def hj(
    learning_rate=None,
    gamma=None,
    *,
    coupling=None,
    num_steps: int = 5,
    step_size: float = 0.1,
    form: str = "rho",
    momentum: float = 0.9,
    nesterov: bool = True,
    seed: int = 0,
    unroll: int | bool = 1,
    grad_fn=None,
    auto_scope: dict | None = None,
) -> optax.GradientTransformationExtraArgs:
    """HJ: local-entropy descent with a noise-free inner loop, last iterate (§7.2).

    Args:
      learning_rate: the outer step ``eta`` (float or schedule); None (default) is
        ``eta = gamma``, the proximal step ``x <- y_L`` (form "rho", momentum 0).
      gamma: the scope > 0, float or schedule; or ``"auto"`` (Remark 6, as
        ``entropy_sgd``'s: from the mini-batch loss's most negative curvature at ``x`` at
        every update, options ``auto_scope``, HVPs counted as two gradients each, the step
        ``h`` capped as ``entropy_sgd``'s); or
        ``coupling = 1/gamma``, never both.
      num_steps: ``L`` (default 5), gradient evaluations per update.
      step_size: the inner step ``h`` (stable below ``2 / (lambda_max(f'') + 1/gamma)``).
      form: "rho" (default; eq. 32-33) or "rho2" (eq. 34); see the module docstring.
      momentum, nesterov: the outer Nesterov momentum (``delta = 0.9``, §7.4).
      seed: seeds the state's key (the ``grad_fn`` keys of updates given neither ``key`` nor
        ``batches``).
      unroll: inner steps per XLA loop iteration, or True for no loop. On CPU, XLA's
        convolution gradients inside a loop run about 3x slower (``True`` removes the loop,
        for more compile time; LeNet's default matmul convolutions do not need it); 1
        (default) compiles fastest.
      grad_fn: the ``grad_fn`` of every update, given here instead of to ``update``.

    ``update(updates, state, params, *, grad_fn, key=None, batches=None)`` as for
    ``entropy_sgd``; ``updates`` is ignored; ``state.num_grads`` grows by ``L`` per update.
    """
    if form not in FORMS:
        raise ValueError(f"`form` must be one of {FORMS}; got {form!r}.")
    auto = resolve_auto(gamma, coupling, auto_scope)
    gamma_s = None if auto else check_scope(gamma, coupling, schedules=True)
    lr = check_schedule("learning_rate", learning_rate, allow_none=True)
    momentum = check_momentum(momentum)
    seed = check_int("seed", seed, low=0)
    num_steps = check_int("num_steps", num_steps)
    step_size = check_positive("step_size", step_size)
    inner = InnerLoop(sampler="hj", num_steps=num_steps, step_size=step_size, beta=float("inf"),
                      noise="gaussian", alpha=0.75, estimator="last", num_chains=1, burn_in=0,
                      sampler_options=None, unroll=unroll)

    def rho2_gradient(x, gamma_n, grad_inputs, grad_fn, step):
        """Eq. (34): descent on H2(z) = f(x - z) + |z|^2/(2 gamma) from z = 0."""
        z = tree.zeros_like(x)
        if num_steps > 1:
            def grad_H2(z, b):  # grad_z H2 = -grad f(x - z) + z / gamma
                g = grad_fn(tree.sub(x, z), b)
                return jax.tree_util.tree_map(lambda gi, zi: zi / gamma_n - gi, g, z)

            head = jax.tree_util.tree_map(lambda u: u[:-1], grad_inputs)
            trace = run_chains(descent.hj(grad_H2, step), jax.random.key(0), z,
                               num_steps=num_steps - 1, batches=head, estimator=LastIterate(),
                               keep_draws=False, unroll=inner.unroll)
            z = jax.tree_util.tree_map(lambda u, v: u[0].astype(v.dtype), trace.estimate, x)
        last = jax.tree_util.tree_map(lambda u: u[-1], grad_inputs)
        return grad_fn(tree.sub(x, z), last)

    def impl(state, params, grads, key, batches, *, grad_fn, loss_fn):
        del grads, loss_fn
        grad_inputs, noise_key, rng = step_inputs(key, batches, state.rng, num_steps)
        if auto is None:
            gamma_n, hvps, step = evaluate(gamma_s, state.count), 0, step_size
        else:
            first = jax.tree_util.tree_map(lambda u: u[0], grad_inputs)
            gamma_n, lam_max, hvps = auto.gamma(grad_fn, params, first,
                                                jax.random.fold_in(noise_key, 1))
            step = inner_step(step_size, lam_max, gamma_n)
        if form == "rho":
            mean, _ = inner.mean(params, gamma_n, grad_inputs, noise_key, grad_fn=grad_fn,
                                 step_size=step)
            g = jax.tree_util.tree_map(lambda u, m: (u - m) / gamma_n, params, mean)
        else:
            g = rho2_gradient(params, gamma_n, grad_inputs, grad_fn, step)
        eta = gamma_n if lr is None else evaluate(lr, state.count)
        updates, m = outer_step(g, state, eta, momentum, nesterov)
        n = state.num_grads + jnp.asarray(num_steps, jnp.int32) + 2 * hvps
        return updates, OptimState(state.count + 1, n, m, rng)

    return transformation("hj", impl, momentum=momentum, seed=seed, num_inputs=num_steps,
                          grad_fn=grad_fn)
