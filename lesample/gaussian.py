"""The analytic Gaussian case (docs/gaussian.md): ground truth for every sampler test.

For ``f(y) = 0.5 (y - c)^T Q (y - c) + f0`` with ``A = Q + I/gamma`` positive definite,
``rho(y; x)`` is Gaussian with covariance ``Sigma = A^{-1} / beta`` and mean
``m = A^{-1} (Q c + x / gamma)``; ``grad f_gamma(x) = (I + gamma Q)^{-1} Q (x - c)`` and
``f_gamma(x) = 0.5 (x-c)^T (I + gamma Q)^{-1} Q (x-c) + f0 + log det(I + gamma Q) / (2 beta)``.

Closed forms are computed in float64 NumPy; ``loss`` is a JAX function usable by samplers.
"""

from __future__ import annotations

import numpy as np

from lesample.checks import check_positive

__all__ = ["GaussianCase"]


class GaussianCase:
    """Quadratic loss ``f`` and the closed forms of its local entropy.

    Args:
      Q: (d, d) symmetric matrix (need not be positive definite).
      c: (d,) centre of the quadratic.
      gamma: scope > 0; ``Q + I/gamma`` must be positive definite.
      beta: inverse temperature > 0.
      f0: constant offset of ``f``.
    """

    def __init__(self, Q, c, gamma: float, beta: float = 1.0, f0: float = 0.0):
        Q = np.asarray(Q, dtype=np.float64)
        c = np.asarray(c, dtype=np.float64)
        if Q.ndim != 2 or Q.shape[0] != Q.shape[1]:
            raise ValueError(f"`Q` must be a square (d, d) matrix; got shape {Q.shape}.")
        if c.shape != (Q.shape[0],):
            raise ValueError(f"`c` must have shape ({Q.shape[0]},) to match `Q`; got {c.shape}.")
        if not (np.all(np.isfinite(Q)) and np.all(np.isfinite(c))):
            raise ValueError("`Q` and `c` must be finite.")
        if not np.allclose(Q, Q.T, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(Q).max())):
            raise ValueError("`Q` must be symmetric; pass (Q + Q.T) / 2.")
        check_positive("gamma", gamma)
        check_positive("beta", beta)
        self.Q, self.c, self.f0 = (Q + Q.T) / 2, c, float(f0)
        self.gamma, self.beta = float(gamma), float(beta)
        self.dim = Q.shape[0]
        eye = np.eye(self.dim)
        self.A = self.Q + eye / self.gamma
        eig = np.linalg.eigvalsh(self.A)
        if eig.min() <= 0:
            raise ValueError(
                f"`Q + I/gamma` is not positive definite (smallest eigenvalue {eig.min():.3g}), "
                "so rho is not normalisable: lower `gamma` below 1/|lambda_min(Q)| = "
                f"{1 / max(-np.linalg.eigvalsh(self.Q).min(), 1e-300):.3g}."
            )
        self._A_inv = np.linalg.inv(self.A)
        self._M = np.linalg.solve(eye + self.gamma * self.Q, self.Q)  # (I + gamma Q)^{-1} Q

    @classmethod
    def from_condition_number(
        cls, dim: int, condition_number: float, gamma: float, beta: float = 1.0, *, seed: int = 0
    ) -> GaussianCase:
        """A random rotation of ``diag(logspace(0, log10 kappa))`` with ``kappa`` the
        condition number of ``rho``'s precision ``Q + I/gamma`` (not of ``Q``)."""
        if int(dim) != dim or dim < 1:
            raise ValueError(f"`dim` must be a positive integer; got {dim!r}.")
        if not condition_number >= 1:
            raise ValueError(f"`condition_number` must be >= 1; got {condition_number!r}.")
        if dim == 1 and condition_number != 1:
            raise ValueError(
                f"`condition_number` must be 1 when `dim` is 1; got {condition_number!r}."
            )
        check_positive("gamma", gamma)
        rng = np.random.default_rng(seed)
        rot, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        # Precision eigenvalues spread over [1/gamma, kappa/gamma] so that cond(A) = kappa.
        a = np.logspace(0.0, np.log10(condition_number), dim) / gamma
        Q = (rot * (a - 1.0 / gamma)) @ rot.T
        return cls(Q, rng.standard_normal(dim), gamma=gamma, beta=beta)

    def _x(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1:] != (self.dim,):
            raise ValueError(f"`x` must have trailing shape ({self.dim},); got {x.shape}.")
        return x

    @property
    def cov(self) -> np.ndarray:
        """``Cov_rho = (Q + I/gamma)^{-1} / beta``, shape (d, d)."""
        return self._A_inv / self.beta

    @property
    def precision(self) -> np.ndarray:
        """``beta (Q + I/gamma)``, shape (d, d)."""
        return self.beta * self.A

    def mean(self, x) -> np.ndarray:
        """``E_rho[y] = (Q + I/gamma)^{-1} (Q c + x/gamma)``; ``x`` (..., d)."""
        x = self._x(x)
        return (self.Q @ self.c + x / self.gamma) @ self._A_inv.T

    def grad(self, x) -> np.ndarray:
        """``grad f_gamma(x) = (I + gamma Q)^{-1} Q (x - c) = (x - E_rho[y]) / gamma``."""
        return (self._x(x) - self.c) @ self._M.T

    def value(self, x) -> np.ndarray:
        """``f_gamma(x)``, including the ``log det(I + gamma Q) / (2 beta)`` term."""
        d = self._x(x) - self.c
        _, logdet = np.linalg.slogdet(np.eye(self.dim) + self.gamma * self.Q)
        quad = 0.5 * np.einsum("...i,ij,...j->...", d, self._M, d)
        return quad + self.f0 + logdet / (2 * self.beta)

    def loss(self, y):
        """``f(y)`` in JAX (float32 unless x64 is enabled), for the samplers."""
        import jax.numpy as jnp

        d = y - jnp.asarray(self.c, dtype=y.dtype)
        return 0.5 * d @ (jnp.asarray(self.Q, dtype=y.dtype) @ d) + self.f0

    def sample(self, x, num_samples: int, *, seed: int = 0) -> np.ndarray:
        """Exact i.i.d. draws from ``rho(.; x)``, shape (num_samples, d)."""
        rng = np.random.default_rng(seed)
        chol = np.linalg.cholesky(self.cov)
        return self.mean(x) + rng.standard_normal((num_samples, self.dim)) @ chol.T

    def __repr__(self) -> str:
        return f"GaussianCase(dim={self.dim}, gamma={self.gamma}, beta={self.beta})"
