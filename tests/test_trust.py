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
