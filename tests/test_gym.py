"""The gym study's targets and summary (needs the ``gym`` extra: skipped without it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("inference_gym")


@pytest.mark.slow
def test_gym_targets_are_finite_flat_potentials_with_ground_truth():
    import jax

    from studies.gym.targets import GYM_TARGETS, get_target

    for name in GYM_TARGETS:
        tgt = get_target(name)
        value, grad = tgt.potential.value_and_grad_H(tgt.start)
        assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad)))
        params = np.asarray(tgt.to_params(tgt.start))
        assert params.shape == tgt.true_mean.shape == tgt.true_sd.shape
        assert np.all(tgt.true_sd > 0)
        np.testing.assert_allclose(np.asarray(jax.grad(tgt.potential.H)(tgt.start)),
                                   np.asarray(grad), rtol=1e-5)


def test_noncentred_eight_schools_is_the_same_posterior():
    """The non-centred potential is the centred one after the change of variables ``T``
    (standardised to centred effects): ``H_nc(z) = H_c(T z) - log|det T'(z)|``, with the
    Jacobian by autodiff; the parameters reported are the centred ones."""
    import jax
    import jax.numpy as jnp

    from studies.gym.targets import NONCENTRED, get_target

    centred, noncentred = get_target("eight-schools"), get_target("eight-schools-noncentred")
    loc, log_scale, effects = NONCENTRED["eight-schools-noncentred"]

    def T(z):
        return z.at[effects].set(z[loc] + jnp.exp(z[log_scale]) * z[effects])

    for seed in range(3):
        z = jax.random.normal(jax.random.key(seed), (10,)) + jnp.array([5.0, 2.0] + [0.0] * 8)
        log_det = np.linalg.slogdet(np.asarray(jax.jacfwd(T)(z), np.float64))[1]
        np.testing.assert_allclose(float(noncentred.potential.H(z)),
                                   float(centred.potential.H(T(z))) - log_det, rtol=1e-5)
        np.testing.assert_allclose(noncentred.to_params(z), centred.to_params(T(z)), rtol=1e-6)


def _rows(values, **extra):
    from studies.gym.report import SUMMARY

    return [dict(target="t", sampler=s, seed=k, **dict.fromkeys(SUMMARY, 1.0))
            | dict(ess_per_grad_total=v * (1 + k) * (1 + 0.1 * k * (s == "baoab-diag")),
                   divergences=0) | extra
            for s, v in values for k in (0, 1, 2)]


def test_summary_ratio_to_numpyro_nuts():
    from studies.gym.report import summarise

    table = summarise(pd.DataFrame(_rows((("baoab-diag", 3.0), ("numpyro-nuts", 1.5)))))
    table = table.set_index("sampler")
    # means over seeds: 3 (1 + 2.2 + 3.6) / 3 over 1.5 (1 + 2 + 3) / 3
    assert table.loc["baoab-diag", "vs_nuts"] == pytest.approx(3.0 * 6.8 / (1.5 * 6.0))
    assert table.loc["baoab-diag", "seeds"] == 3


def test_verdict_needs_an_interval_and_no_flag():
    from studies.gym.report import verdict

    ahead = pd.DataFrame(_rows((("baoab-diag", 3.0), ("numpyro-nuts", 1.5))))
    assert verdict(ahead, "baoab-diag", "t")[0] == "meets"
    behind = pd.DataFrame(_rows((("baoab-diag", 0.5), ("numpyro-nuts", 1.5))))
    assert verdict(behind, "baoab-diag", "t")[0] == "misses"
    one_seed = ahead[ahead.seed == 0]
    assert verdict(one_seed, "baoab-diag", "t")[0] == "not resolved"
    biased = pd.DataFrame(_rows((("baoab-diag", 3.0), ("numpyro-nuts", 1.5)), mean_z=6.0))
    word, line = verdict(biased, "baoab-diag", "t")
    assert word == "misses" and "biased" in line
    unmixed = pd.DataFrame(_rows((("baoab-diag", 3.0), ("numpyro-nuts", 1.5)), rhat=1.2))
    assert verdict(unmixed, "baoab-diag", "t")[0] == "misses"
