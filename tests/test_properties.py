"""Property-based tests (Hypothesis) of the public entry points under bad input.

The contract: every input gives a result or a clear error (``ValueError``/``TypeError``, or
``DivergenceError`` for a run that really diverged); no call hangs (small shapes, short
runs); no result is NaN without a warning or a flag that says so. Each test counts the
inputs it tries that are bad (invalid, non-finite, empty or extreme): with
``LESAMPLE_COUNT_BAD_INPUTS=<file>`` the total is written there at exit.
"""

from __future__ import annotations

import atexit
import collections
import math
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

BAD = collections.Counter()


@atexit.register
def _write_count():
    path = os.environ.get("LESAMPLE_COUNT_BAD_INPUTS")
    if path and BAD:
        with open(path, "w") as fh:
            fh.write(f"{sum(BAD.values())} {dict(BAD)}\n")


SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(SETTINGS, max_examples=12)
#: Scalars a user might pass for gamma, beta, step sizes, learning rates.
EXTREME = st.sampled_from([0.0, -1.0, -1e-30, 1e-30, 1e30, math.inf, -math.inf, math.nan,
                           "0.1", None, True, 1j]) | st.floats(1e-3, 1e2)
CLEAR = (ValueError, TypeError)


def _is_good_positive(v) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            and v > 0)


def _finite(tree) -> bool:
    import jax

    return all(np.isfinite(np.asarray(u, np.float64)).all()
               for u in jax.tree_util.tree_leaves(tree))


# ----------------------------------------------------------------------------- diagnostics

DRAWS = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64]),
    shape=hnp.array_shapes(min_dims=3, max_dims=3, min_side=0, max_side=12),
    elements=st.floats(-1e3, 1e3, width=32) | st.sampled_from([0.0, 1.0, math.nan, math.inf]),
)


@SETTINGS
@given(draws=DRAWS, method=st.sampled_from(["bulk", "tail", "mean", "nope"]))
def test_ess_rhat_give_a_flagged_result_or_a_clear_error(draws, method):
    from lesample import diagnostics
    from lesample.diagnostics import ConvergenceWarning

    chains, n, d = draws.shape
    bad = (chains < 2 or n < 4 or d == 0 or method == "nope"
           or not np.isfinite(draws.astype(np.float64)).all())
    BAD["diagnostics"] += bad
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        try:
            out = [diagnostics.ess(draws, method), diagnostics.rhat(draws)]
        except CLEAR:
            assert bad
            return
    assert not bad
    for values in out:
        assert values.shape == (d,)
        if np.isnan(values).any():  # only where a chain never moved, and then said so
            assert any(issubclass(w.category, ConvergenceWarning) for w in record)
        assert (values[~np.isnan(values)] > 0).all()


@SETTINGS
@given(n=st.integers(0, 6), d=st.integers(0, 3), method=st.sampled_from(
    ["auto", "bures", "exact", "sliced", "x"]), cov_scale=st.sampled_from([1.0, -1.0, 0.0]),
       poison=st.sampled_from([None, math.nan, math.inf]))
def test_w2_gives_a_finite_distance_or_a_clear_error(n, d, method, cov_scale, poison):
    from lesample import diagnostics

    rng = np.random.default_rng(n * 10 + d)
    samples = rng.standard_normal((n, d))
    if poison is not None and samples.size:
        samples[0, 0] = poison
    cov = cov_scale * np.eye(d)
    bad = (n == 0 or d == 0 or method == "x" or cov_scale < 0
           or (poison is not None and samples.size > 0) or (method == "bures" and n < 2))
    BAD["w2"] += bad
    try:
        w = diagnostics.w2_to_gaussian(samples, np.zeros(d), cov, method=method)
    except CLEAR:
        assert bad
        return
    assert not bad and math.isfinite(w) and w >= 0


# ----------------------------------------------------------------------------- Gaussian case


@SETTINGS
@given(gamma=EXTREME, beta=EXTREME, shift=st.floats(-3, 3), dim=st.integers(0, 3))
def test_gaussian_case_gives_finite_closed_forms_or_a_clear_error(gamma, beta, shift, dim):
    import lesample as le

    Q = np.diag(np.linspace(-1.0, 2.0, dim)) + shift * np.eye(dim)
    bad = not (_is_good_positive(gamma) and _is_good_positive(beta)) or dim == 0
    if not bad:  # rho normalisable iff Q + I/gamma is positive definite
        bad = np.linalg.eigvalsh(Q + np.eye(dim) / gamma).min() <= 0
    BAD["GaussianCase"] += bad
    try:
        case = le.GaussianCase(Q, np.zeros(dim), gamma, beta)
    except CLEAR:
        assert bad
        return
    assert not bad
    x = np.ones(dim)
    assert np.isfinite(case.mean(x)).all() and np.isfinite(case.grad(x)).all()
    assert np.isfinite(case.cov).all()


# ----------------------------------------------------------------------------- samplers


@SLOW
@given(name=st.sampled_from(["ula", "mala", "baoab", "hj"]), step=EXTREME,
       beta=st.sampled_from([1.0, 1e8, 0.0, math.nan]), start=st.sampled_from(
           [0.0, 1e3, math.nan, math.inf]))
def test_samplers_flag_every_non_finite_chain_or_refuse(name, step, beta, start):
    import jax
    import jax.numpy as jnp

    import lesample as le

    target = le.local_entropy_target(lambda y: jnp.sum(y**4) / 4, jnp.zeros(2), 1.0, beta
                                     if _is_good_positive(beta) else 1.0)
    bad_args = not _is_good_positive(step)
    BAD["samplers"] += bad_args or not math.isfinite(start) or not _is_good_positive(beta)
    try:
        if not _is_good_positive(beta):
            le.ula(target.grad_H, 0.1, beta)
            raise AssertionError(f"beta={beta} accepted")
        kernel = le.build_sampler(name, target, step)
    except CLEAR:
        assert bad_args or not _is_good_positive(beta)
        return
    assert not bad_args
    trace = le.run_chains(kernel, jax.random.key(0), jnp.full(2, start), num_steps=10,
                          num_chains=2)
    finite = np.isfinite(np.asarray(trace.draws)).reshape(2, -1).all(1)
    # A chain with a non-finite draw is flagged as diverged; never silently NaN.
    assert (finite | np.asarray(trace.diverged)).all()


@SLOW
@given(gamma=EXTREME, beta=EXTREME, step=EXTREME,
       sampler=st.sampled_from(["ula", "mala", "hj", "nosuch"]))
@example(gamma=1e-30, beta=0.0, step=1.0, sampler="hj")  # hj never reads beta
def test_local_entropy_grad_is_finite_or_raises(gamma, beta, step, sampler):
    import jax
    import jax.numpy as jnp

    import lesample as le
    from lesample.samplers import DivergenceError

    bad = not (_is_good_positive(gamma) and _is_good_positive(beta)
               and _is_good_positive(step)) or sampler == "nosuch"
    BAD["local_entropy_grad"] += bad
    try:
        g, _ = le.local_entropy_grad(lambda y: 0.5 * jnp.sum(y**2), jnp.ones(2), gamma, beta,
                                     key=jax.random.key(0), sampler=sampler, num_steps=5,
                                     step_size=step)
    except CLEAR:
        assert bad
        return
    except DivergenceError:  # a valid but unstable step size: said so, not averaged
        assert not bad
        return
    assert not bad and _finite(g)


# ----------------------------------------------------------------------------- optimizers


@SLOW
@given(name=st.sampled_from(["entropy_sgd", "hj", "heat", "sgd"]), lr=EXTREME, gamma=EXTREME,
       schedule=st.booleans())
def test_optimizers_refuse_bad_arguments_or_flag_non_finite_updates(name, lr, gamma,
                                                                    schedule):
    import jax
    import jax.numpy as jnp

    from lesample import optim

    # A schedule's value at step 0 is checked when the optimiser is built (a later value
    # that turns bad is NaN-and-flagged inside the update: tests/test_trust.py).
    good_gamma = _is_good_positive(gamma)
    if schedule and isinstance(gamma, float):
        value = gamma
        gamma = lambda n: value * jnp.ones(())  # noqa: E731  (a schedule, seen under jit)
    # learning_rate=None is entropy_sgd's and hj's proximal step eta = gamma.
    good_lr = _is_good_positive(lr) or (lr is None and name in ("entropy_sgd", "hj"))
    bad = not (good_lr and (name == "sgd" or good_gamma))
    BAD["optim"] += bad
    try:
        tx = {"entropy_sgd": lambda: optim.entropy_sgd(lr, gamma, num_steps=2, momentum=0.0),
              "hj": lambda: optim.hj(lr, gamma, num_steps=2, momentum=0.0),
              "heat": lambda: optim.heat(lr, gamma, num_steps=2, momentum=0.0),
              "sgd": lambda: optim.sgd(lr, momentum=0.0)}[name]()
    except CLEAR:
        assert bad
        return
    assert not bad
    x = jnp.ones(2)
    updates, state = tx.update(None, tx.init(x), x, grad_fn=lambda p, k: p,
                               key=jax.random.key(0))
    assert _finite(updates) or int(state.diverged_at) == 0


# ----------------------------------------------------------------------------- k-means


@SLOW
@given(n=st.integers(0, 12), d=st.integers(0, 2), k=st.sampled_from([0, 1, 3, 20, -1, 2.5]),
       poison=st.sampled_from([None, math.nan]), constant=st.booleans())
def test_local_entropy_kmeans_fits_or_refuses(n, d, k, poison, constant):
    import lesample as le

    X = np.zeros((n, d)) if constant else np.random.default_rng(n).standard_normal((n, d))
    if poison is not None and X.size:
        X[0, 0] = poison
    bad = (n == 0 or d == 0 or not isinstance(k, int) or k < 1 or k > n
           or (poison is not None and X.size > 0))
    BAD["LocalEntropyKMeans"] += bad
    km = le.LocalEntropyKMeans(k, n_init=1, max_iter=2, num_steps=2, batch_size=8,
                               random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant data: the empty-cluster warning
        try:
            km.fit(X)
        except CLEAR:
            assert bad
            return
    assert not bad
    assert km.cluster_centers_.shape == (k, d) and np.isfinite(km.cluster_centers_).all()


def test_the_suite_tries_bad_inputs():
    # Runs last in this file: every property above met invalid inputs, not only good ones.
    ran = {k for k in BAD if BAD[k]}
    if len(ran) < 7:
        pytest.skip("run the whole file to count the bad inputs")
    assert sum(BAD.values()) >= 100, dict(BAD)
