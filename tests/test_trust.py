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
