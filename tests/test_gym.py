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


def test_summary_ratio_to_numpyro_nuts():
    from studies.gym import SUMMARY, summarise

    rows = [dict(target="t", sampler=s, seed=k, **dict.fromkeys(SUMMARY, 1.0))
            | dict(ess_per_grad_total=v * (1 + k))
            for s, v in (("baoab-diag", 3.0), ("numpyro-nuts", 1.5)) for k in (0, 1)]
    table = summarise(pd.DataFrame(rows)).set_index("sampler")
    assert table.loc["baoab-diag", "vs_nuts_grad_total"] == pytest.approx(2.0)
