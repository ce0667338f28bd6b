"""Inference-gym targets with published ground truth, as flat potentials for our kernels.

Each target is the gym model wrapped by ``VectorModel`` (one flat vector, flattened
sample transformations), sampled in the unconstrained space of its default event-space
bijector ``b``: the potential is ``H(z) = -log p(b(z)) - log|det J_b(z)|`` (beta = 1), and
draws are compared, through ``b`` and the ``identity`` sample transformation, with the
ground-truth mean and standard deviation the gym ships (no download). Needs the ``gym``
extra (``inference-gym`` and ``tfp-nightly``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lesample.target import LocalEntropyTarget

#: Study names of the gym targets, and the gym class each wraps.
GYM_TARGETS = {
    "banana": "Banana",
    "eight-schools": "EightSchools",
    "eight-schools-noncentred": "EightSchools",
    "brownian-missing": "BrownianMotionMissingMiddleObservations",
    "ill-conditioned-gaussian": "IllConditionedGaussian",
    "funnel": "NealsFunnel",
}


#: Targets sampled in the non-centred form of a gym hierarchical model (the gym's eight
#: schools is deliberately centred: a funnel in the group scale). For the flat vector
#: ``(loc, log_scale, effects...)`` the sampler moves standardised effects ``eta``, with
#: ``effects = loc + exp(log_scale) eta``: the same posterior and ground truth, with
#: ``-log p`` gaining the Jacobian term ``-n log_scale``. Value: (loc index, log-scale
#: index, the effects' slice).
NONCENTRED = {"eight-schools-noncentred": (0, 1, slice(2, 10))}


class GymTarget(NamedTuple):
    name: str
    potential: LocalEntropyTarget  # H over the unconstrained flat z, beta = 1
    start: jax.Array  # (d,) the unconstrained origin: every sampler starts there
    to_params: Callable  # z (d,) -> the identity transformation's flat values (p,)
    true_mean: np.ndarray  # (p,)
    true_sd: np.ndarray  # (p,)


def potential_target(H: Callable) -> LocalEntropyTarget:
    """A ``LocalEntropyTarget`` for ``rho ∝ exp(-H)`` with no anchor (``x`` None,
    ``gamma`` inf): the kernels and ``lesample.adaptation`` use only ``H``, its gradient and
    ``beta``."""

    def value_and_grad_H(z, batch=None):
        del batch
        return jax.value_and_grad(H)(z)

    return LocalEntropyTarget(lambda z, batch=None: H(z),
                              lambda z, batch=None: value_and_grad_H(z)[1], value_and_grad_H,
                              lambda z, batch=None: -H(z), None, math.inf, 1.0)


@functools.cache
def get_target(name: str) -> GymTarget:
    if name not in GYM_TARGETS:
        raise ValueError(f"unknown gym target {name!r}; expected one of {sorted(GYM_TARGETS)}")
    from inference_gym import using_jax as gym

    model = gym.targets.VectorModel(getattr(gym.targets, GYM_TARGETS[name])(),
                                    flatten_sample_transformations=True)
    bij = model.default_event_space_bijector
    identity = model.sample_transformations["identity"]

    def centred_H(z):
        return -(model.unnormalized_log_prob(bij(z)) + bij.forward_log_det_jacobian(z))

    H, centred = centred_H, lambda z: z
    if name in NONCENTRED:
        loc, log_scale, effects = NONCENTRED[name]

        def centred(z):
            return z.at[effects].set(z[loc] + jnp.exp(z[log_scale]) * z[effects])

        def H(z):
            return centred_H(centred(z)) - z[effects].size * z[log_scale]

    dim = int(np.prod(bij.inverse_event_shape(model.event_shape)))
    return GymTarget(name, potential_target(H), jnp.zeros(dim, jnp.float32),
                     lambda z: identity(bij(centred(z))),
                     np.asarray(identity.ground_truth_mean, np.float64),
                     np.asarray(identity.ground_truth_standard_deviation, np.float64))
