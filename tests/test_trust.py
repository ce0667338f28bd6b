"""Trustworthy numbers (issue 16): NaN never passes a threshold; flags for what went wrong."""

import types

import numpy as np
import pytest


def test_nan_rhat_fails_the_reference_convergence_check(tmp_path, monkeypatch):
    # A stuck reference run gives constant draws, hence a NaN R-hat: it must be refused,
    # never cached as ground truth.
    import lesample as le
    from studies.samplers import targets

    const = np.ones((4, 50, 3))
    monkeypatch.setattr(targets, "digits_problem", lambda: (lambda w: 0.0, 1))
    monkeypatch.setattr(le, "local_entropy_target", lambda *a, **k: types.SimpleNamespace(H=None))
    monkeypatch.setattr(le, "numpyro_hmc", lambda *a, **k: None)
    monkeypatch.setattr(le, "sample", lambda *a, **k: types.SimpleNamespace(draws=const))
    cache = tmp_path / "ref.npz"
    with pytest.raises(RuntimeError, match="not converged.*nan"):
        targets._digits_reference(1.0, 1.0, np.zeros(3), cache)
    assert not cache.exists()


def test_kernel_benchmark_rows_give_w2_against_its_monte_carlo_floor():
    import lesample as le
    from lesample import diagnostics
    from studies.samplers import efficiency

    case = le.GaussianCase.from_condition_number(4, 10.0, gamma=1.0, beta=1.0, seed=0)
    x = case.c + 0.1
    mean, n = case.mean(x), efficiency.W2_DRAWS

    def row(draws):  # draws (chains, draws, d)
        return efficiency._row("s", draws, 1.0, 1, case, x, draws.shape[0])

    # An exact sample of the floor's size is the floor's own sample: W2 equal to the floor.
    exact = diagnostics.gaussian_draws(mean, case.cov, n, seed=1)
    r = row(exact.reshape(2, n // 2, 4))
    assert r["w2"] == r["w2_floor"] > 0
    # Shifted draws: W2 of two empirical measures is at least the distance of their means.
    shifted = exact + 1.0
    ref = diagnostics.gaussian_draws(mean, case.cov, n, seed=0)
    r = row(shifted.reshape(2, n // 2, 4))
    assert r["w2"] >= np.linalg.norm(shifted.mean(0) - ref.mean(0)) - 1e-9
    assert r["w2"] > 1.5 * r["w2_floor"]


# ----------------------------------------------------------------------------- samplers


def _quartic_target():
    import jax.numpy as jnp

    import lesample as le

    return le.local_entropy_target(lambda y: jnp.sum(y**4) / 4, jnp.zeros(1), 1e6, 1.0)


def test_mala_diverged_means_the_new_state_is_non_finite():
    # The issue's reproducer: chain 0's proposals overflow and are all rejected; it stays at
    # 2000, finite, so it did not diverge.
    import jax
    import jax.numpy as jnp

    import lesample as le

    vg = jax.value_and_grad(lambda y: jnp.sum(y**4) / 4)
    trace = le.run_chains(le.mala(vg, 1.0, 1.0), jax.random.key(0), jnp.array([[2000.0], [0.1]]),
                          num_steps=20, num_chains=2, stacked=True)
    assert not np.asarray(trace.diverged).any()
    np.testing.assert_array_equal(np.asarray(trace.draws)[0], 2000.0)


@pytest.mark.parametrize("name", ["ula", "sgld", "mala", "baoab", "hj", "hmc", "nuts"])
def test_every_kernel_flags_exactly_the_chains_whose_state_is_non_finite(name):
    import jax
    import jax.numpy as jnp

    import lesample as le

    opts = dict(num_warmup=0) if name in ("hmc", "nuts") else {}
    kernel = le.build_sampler(name, _quartic_target(), 1.0, **opts)
    trace = le.run_chains(kernel, jax.random.key(0), jnp.array([[2000.0], [0.1]]),
                          num_steps=20, num_chains=2, stacked=True)
    # A non-finite state stays non-finite (every kernel), so "some new state was non-finite"
    # is "the final state is non-finite".
    final = jax.tree_util.tree_leaves(trace.final_state)
    finite = np.all([np.isfinite(np.asarray(x, np.float64)).reshape(2, -1).all(1)
                     for x in final if jnp.issubdtype(x.dtype, jnp.floating)], axis=0)
    np.testing.assert_array_equal(np.asarray(trace.diverged), ~finite)


# ----------------------------------------------------------------------------- diagnostics


def test_a_stuck_sampler_is_flagged_and_its_ess_is_not_a_success():
    # MALA that accepts nothing, started from one point for every chain: constant draws.
    import jax
    import jax.numpy as jnp

    import lesample as le
    from lesample import diagnostics
    from lesample.diagnostics import ConvergenceWarning

    vg = jax.value_and_grad(lambda y: jnp.sum(y**4) / 4)
    trace = le.run_chains(le.mala(vg, 1.0, 1.0), jax.random.key(0), jnp.full(2, 2000.0),
                          num_steps=50, num_chains=4)
    draws = np.asarray(trace.draws)
    assert np.asarray(trace.info.acceptance_rate).max() == 0
    with pytest.warns(ConvergenceWarning, match=r"never mov.*chains \[0, 1, 2, 3\]"):
        ess = diagnostics.ess(draws)
    assert np.isnan(ess).all()
    with pytest.raises(ValueError, match="NaN"):
        diagnostics.efficiency(ess, num_grads=200, seconds=1.0)
    # One chain stuck among moving ones: that chain is named, the ESS is NaN.
    rng = np.random.default_rng(0)
    mixed = rng.standard_normal((4, 100, 2))
    mixed[2] = 0.5
    with pytest.warns(ConvergenceWarning, match=r"chains \[2\]"):
        assert np.isnan(diagnostics.ess(mixed, method="tail")).all()
    with pytest.warns(ConvergenceWarning, match=r"chains \[2\]"):
        assert np.isnan(diagnostics.mcse_mean(mixed)).all()


def test_ess_warns_when_there_are_more_chains_than_draws():
    import warnings

    from lesample import diagnostics

    x = np.random.default_rng(1).standard_normal((4, 500, 3))  # 4 chains x 500 draws
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        diagnostics.ess(x)
        diagnostics.rhat(x)
    swapped = np.moveaxis(x, 0, 1)  # 500 "chains" x 4 "draws"
    for fn in (diagnostics.ess, diagnostics.rhat, diagnostics.mcse_mean):
        with pytest.warns(UserWarning, match=r"more chains \(500\) than draws \(4\)"):
            fn(swapped)


def test_sample_warns_naming_the_coordinates_that_fail_rhat_or_ess():
    import warnings

    import jax
    import jax.numpy as jnp

    import lesample as le
    from lesample.diagnostics import ConvergenceWarning

    # N(0, diag(1, 1e4)) with a step set by the stiff coordinate 0: coordinate 1 mixes
    # 1e4 times more slowly and 1000 steps cannot explore it; coordinate 0 mixes.
    scales = jnp.array([1.0, 100.0])
    grad = jax.grad(lambda y: 0.5 * jnp.sum((y / scales) ** 2))
    kernel = le.ula(lambda y, batch=None: grad(y), 0.5, 1.0)
    with pytest.warns(ConvergenceWarning, match=r"coordinates \[1\]") as record:
        le.sample(kernel, jax.random.key(0), jnp.zeros(2), num_steps=1000, num_chains=4)
    assert "[0, 1]" not in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        le.sample(kernel, jax.random.key(0), jnp.zeros(2), num_steps=1000, num_chains=4,
                  check_convergence=False)
        # Coordinate 0 alone over a long run: R-hat and ESS both pass, no warning.
        good = le.ula(lambda y, batch=None: y, 0.5, 1.0)
        le.sample(good, jax.random.key(0), jnp.zeros(1), num_steps=4000, num_chains=4)


# ----------------------------------------------------------------------------- optimizers


def _optimizers():
    from lesample import optim

    return {
        "entropy_sgd": optim.entropy_sgd(0.1, 0.1, num_steps=3, beta=1e4, momentum=0.0),
        "hj": optim.hj(0.1, 0.1, num_steps=3, momentum=0.0),
        "heat": optim.heat(0.1, 0.1, num_steps=3, momentum=0.0),
        "sgd": optim.sgd(0.1, momentum=0.0),
    }


def _run(tx, grad_fn, steps=4):
    import jax
    import jax.numpy as jnp

    x, state = jnp.ones(3), None
    state = tx.init(x)

    @jax.jit
    def step(x, state, k):
        updates, state = tx.update(None, state, x, grad_fn=grad_fn, key=k)
        return x + updates, state

    for k in jax.random.split(jax.random.key(0), steps):
        x, state = step(x, state, k)
    return x, state


@pytest.mark.parametrize("name", ["entropy_sgd", "hj", "heat", "sgd"])
def test_optimizers_flag_the_first_non_finite_update_in_their_state(name):
    import jax.numpy as jnp

    tx = _optimizers()[name]
    _, state = _run(tx, lambda x, k: x)
    assert int(state.diverged_at) == -1

    # A grad_fn returning NaN: flagged at step 0, and the flag stays through later steps.
    x, state = _run(tx, lambda x, k: jnp.full_like(x, jnp.nan))
    assert int(state.diverged_at) == 0 and int(state.count) == 4


@pytest.mark.parametrize("name", ["entropy_sgd", "hj", "heat"])
def test_a_gamma_schedule_that_turns_negative_is_nan_and_flagged(name):
    from lesample import optim

    make = {"entropy_sgd": lambda g: optim.entropy_sgd(0.1, g, num_steps=3, beta=1e4,
                                                       momentum=0.0),
            "hj": lambda g: optim.hj(0.1, g, num_steps=3, momentum=0.0),
            "heat": lambda g: optim.heat(0.1, g, num_steps=3, momentum=0.0)}[name]
    tx = make(lambda n: 0.1 - 0.04 * n)  # 0.1, 0.06, 0.02, then -0.02 at step 3
    x, state = _run(tx, lambda x, k: x, steps=5)
    assert int(state.diverged_at) == 3
    assert np.isnan(np.asarray(x)).all()  # never a silent ascent with a negative scope


@pytest.mark.slow  # one compiled training run
def test_train_raises_naming_the_step_where_the_optimizer_diverged():
    from lesample.data import load_dataset
    from lesample.samplers import DivergenceError
    from lesample.train import TrainConfig, fit

    digits = load_dataset("digits", limit=96)
    config = TrainConfig(model="mnistfc", algo="sgd", epochs=2, batch_size=16, seed=3,
                         eval_rows=64, eval_chunk=64, lr=1e30)
    with pytest.raises(DivergenceError, match=r"outer step \d+ \(epoch 1\)"):
        fit(config, digits)
