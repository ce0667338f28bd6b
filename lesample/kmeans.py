"""Local-entropy k-means: Entropy-SGD on the k-means energy, as a scikit-learn estimator.

The energy (DESIGN.md §5) of centres ``C = (c_1, ..., c_K)`` on data ``x_1, ..., x_N`` is

    J(C) = (1/N) sum_j min_i |c_i - x_j|^2,

the mean squared distance to the nearest centre (scikit-learn's ``inertia_`` is ``N J``). Its
mini-batch gradient (:func:`kmeans_grad`) for centre ``i`` is ``(2/B) sum_{j in I_i} (c_i -
x_j)`` over the batch points ``I_i`` whose nearest centre is ``c_i``: exact wherever no point
is equidistant from two centres.

The descent (DESIGN.md §4, Entropy-SGD): each outer step samples
``rho(y; x) ∝ exp(-beta [f(y) + |x - y|^2 / (2 gamma)])`` with ``L`` steps of an inner
sampler started at ``x`` on mini-batches, estimates ``<y>`` and moves
``x <- x - lr (x - <y>)`` (the outer step ``eta = lr * gamma`` on ``grad f_gamma =
(x - <y>) / gamma``). Scoping shrinks the scope: ``gamma_k = gamma (1 - scoping)^k`` at
outer step ``k``. Lloyd iterations then polish the result to the nearby local minimum
(until the centres move less than ``tol``).

Reduced units, so that one set of hyperparameters serves data of any scale and any ``K``:
the data are centred and divided by ``s = sqrt(J_1)`` (``J_1`` the energy of one centre at
the mean), and ``f = (K / 2) J`` in those units, so that a centre owning a ``1/K`` share of
the data has curvature 1. ``gamma``, ``beta`` and the steps are in these units; the inner
step is ``lr_inner / (1 + 1/gamma)``, a fixed fraction of the stability limit of ``H``.
"""

from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

from lesample.estimators import ExponentialAverage, LastIterate, TimeAverage
from lesample.noise import normal_like
from lesample.samplers import baoab, hj, ula

__all__ = ["LocalEntropyKMeans", "kmeans_energy", "kmeans_grad", "kmeans_fit"]

#: Inner loops: samplers (each paired with an estimator of ``<y>``) and HEAT (no sampler).
KMEANS_SAMPLERS = ("ula", "baoab", "hj", "heat")


def _sqdist(X, C):
    """(N, K) squared distances, clipped at 0 (the expansion can round below it)."""
    d = (X * X).sum(1)[:, None] - 2.0 * X @ C.T + (C * C).sum(1)[None, :]
    return jnp.maximum(d, 0.0)


def kmeans_energy(centers, X):
    """``J = (1/N) sum_j min_i |c_i - x_j|^2``; ``centers`` (K, d), ``X`` (N, d)."""
    return _sqdist(X, centers).min(axis=1).mean()


def _assign_stats(centers, X):
    """Per centre, the count (K,) and the sum (K, d) of the points of ``X`` nearest to it."""
    onehot = jax.nn.one_hot(_sqdist(X, centers).argmin(1), centers.shape[0], dtype=X.dtype)
    return onehot.sum(0), onehot.T @ X


def kmeans_grad(centers, X):
    """The exact gradient of :func:`kmeans_energy` on the batch ``X`` (B, d): for centre
    ``i``, ``(2/B) sum_{j in I_i} (c_i - x_j)`` over the points nearest to ``c_i``."""
    counts, sums = _assign_stats(centers, X)
    return 2.0 * (counts[:, None] * centers - sums) / X.shape[0]


def _lloyd(centers, X, tol, max_steps):
    """Lloyd iterations until the squared shift of the centres is at most ``tol`` (or
    ``max_steps``); an empty cluster keeps its centre. Returns ``(centers, steps)``."""

    def step(state):
        C, _, n = state
        counts, sums = _assign_stats(C, X)
        counts = counts[:, None]
        new = jnp.where(counts > 0, sums / jnp.maximum(counts, 1.0), C)
        return new, ((new - C) ** 2).sum(), n + 1

    def go_on(state):
        return (state[1] > tol) & (state[2] < max_steps)

    C, _, n = jax.lax.while_loop(go_on, step, (centers, jnp.inf, 0))
    return C, n


def _kmeans_pp(key, X, n_clusters):
    """k-means++ seeding (D^2 sampling, one candidate per centre)."""
    N = X.shape[0]
    k0, key = jax.random.split(key)
    first = X[jax.random.randint(k0, (), 0, N)]
    C = jnp.zeros((n_clusters, X.shape[1]), X.dtype).at[0].set(first)
    d2 = ((X - first) ** 2).sum(1)

    def body(i, state):
        C, d2 = state
        j = jax.random.categorical(jax.random.fold_in(key, i), jnp.log(d2))
        C = C.at[i].set(X[j])
        return C, jnp.minimum(d2, ((X - X[j]) ** 2).sum(1))

    return jax.lax.fori_loop(1, n_clusters, body, (C, d2))[0]


def init_centers(key, X, n_clusters, init: str):
    """``"random"``: ``K`` distinct data points; ``"k-means++"``: D^2 seeding."""
    if init == "random":
        return X[jax.random.choice(key, X.shape[0], (n_clusters,), replace=False)]
    return _kmeans_pp(key, X, n_clusters)


@functools.partial(
    jax.jit,
    static_argnames=("alpha", "batch_size", "L", "max_iter", "sampler", "noise", "max_lloyd"),
)
def kmeans_fit(key, X, centers, gamma, scoping, lr, lr_inner, beta, tol, *, alpha=0.75,
               batch_size, L, max_iter, sampler="ula", noise="gaussian", max_lloyd=300):
    """Local-entropy descent from ``centers`` (K, d) on ``X`` (N, d), then Lloyd.

    Pure and jitted, in reduced units (see the module docstring: pass standardised data);
    ``jax.vmap`` over ``key`` and ``centers`` runs independent trials. Returns
    ``(centers, lloyd_steps)``. ``sampler="heat"`` replaces the inner loop by HEAT
    (DESIGN.md §4, eq. 35): ``g = mean_l grad f_mb(x + e_l)`` over ``L`` copies ``e_l ~ N(0,
    gamma_k I)``, each on its own mini-batch, and each centre takes ``lr`` times its Newton
    step (``g`` over its curvature, the summed count of points it owns: Lloyd's step when
    ``gamma_k -> 0`` and ``lr = 1``).
    """
    K, N = centers.shape[0], X.shape[0]
    scale = K / 2.0

    def heat(x, key, g):
        # Centres perturbed by N(0, g I), L copies, each on its own mini-batch.
        k_noise, k_batch = jax.random.split(key)
        e = jnp.sqrt(g) * normal_like(k_noise, jnp.zeros((L, *x.shape), x.dtype), noise)
        idx = jax.random.randint(k_batch, (L, batch_size), 0, N)
        counts, sums = jax.vmap(lambda e_l, i: _assign_stats(x + e_l, X[i]))(e, idx)
        n = counts.sum(0)[:, None]
        grad = n * x + (counts[..., None] * e).sum(0) - sums.sum(0)
        return x - lr * grad / jnp.maximum(n, 1.0)

    def outer(carry, k):
        x, key = carry
        key, sub = jax.random.split(key)
        g = gamma * (1.0 - scoping) ** k
        if sampler == "heat":
            return (heat(x, sub, g), key), None
        estimator = {"ula": ExponentialAverage(alpha), "baoab": TimeAverage(),
                     "hj": LastIterate()}[sampler]
        h = lr_inner / (1.0 + 1.0 / g)

        def grad_H(y, batch):
            return scale * kmeans_grad(y, batch) + (y - x) / g

        if sampler == "ula":
            kernel = ula(grad_H, h, beta, noise=noise)
        elif sampler == "baoab":
            kernel = baoab(grad_H, h, beta, noise=noise)
        else:
            kernel = hj(grad_H, h)

        def inner(state, step_key):
            state, acc = state
            kb, kn = jax.random.split(step_key)
            batch = X[jax.random.randint(kb, (batch_size,), 0, N)]
            state, _ = kernel.step(kn, state, batch)
            return (state, estimator.update(acc, state.position)), None

        k_init, k_steps = jax.random.split(sub)
        start = kernel.init(x, k_init, X[:batch_size])
        (_, acc), _ = jax.lax.scan(inner, (start, estimator.init(x)),
                                   jax.random.split(k_steps, L))
        return (x - lr * (x - estimator.result(acc)), key), None

    (x, _), _ = jax.lax.scan(outer, (centers, key), jnp.arange(max_iter))
    return _lloyd(x, X, tol, max_lloyd)


def _check_number(name, value, low, high=np.inf, *, low_open=True, integer=False):
    """``ValueError`` naming ``name`` unless ``low < value <= high`` (``low <= value`` if not
    ``low_open``); ``value`` may be ``inf`` only when ``high`` is."""
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool) and not np.isnan(value)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok or (value == np.inf and not (high == np.inf and name == "beta")):
        what = "an integer" if integer else "a number"
        bound = f"> {low}" if low_open else f">= {low}"
        upper = "" if high == np.inf else f" and <= {high}"
        raise ValueError(f"`{name}` must be {what} {bound}{upper}; got {value!r}.")


class LocalEntropyKMeans(ClusterMixin, TransformerMixin, BaseEstimator):
    """k-means by local-entropy (Entropy-SGD) descent, then Lloyd to the nearby minimum.

    Parameters (``gamma``, ``beta`` and the steps in the reduced units of the module
    docstring; conventions of DESIGN.md §1: ``gamma`` is the scope, ``beta`` the inverse
    temperature):

    n_clusters: ``K``. init: ``"random"`` (``K`` distinct data points), ``"k-means++"`` or
    an array (K, d). batch_size: mini-batch size of the inner loop (capped at ``N``).
    L: inner steps per outer step (HEAT: perturbed copies). gamma: initial scope;
    scoping: ``gamma_1``, the scope is multiplied by ``1 - scoping`` each outer step. lr:
    outer step, ``x <- x - lr (x - <y>)`` (HEAT: the fraction of each centre's Newton
    step). lr_inner: inner step as a fraction of ``1 / (1 + 1/gamma)``. beta: inverse
    temperature of the inner sampler (``inf``: noise-free). alpha: exponential-average
    weight of ``<y>`` (ULA). sampler: ``"ula"`` (Entropy-SGD), ``"baoab"``, ``"hj"`` or
    ``"heat"`` (Gaussian smoothing of scope ``gamma``, see :func:`kmeans_fit`; with a large
    initial scope shrinking slowly to ~0 it is a coarse-to-fine continuation, the k-means
    study's setting: ``gamma=1`` down to 1e-4 over ``max_iter`` steps, ``L=16, lr=0.5``).
    noise: ``"gaussian"`` or ``"rademacher"``. max_iter: outer steps. tol: Lloyd stops
    when the squared shift of the centres (reduced units) is at most ``tol``.
    random_state: seed or ``RandomState``.

    Attributes: ``cluster_centers_`` (K, d), ``labels_`` (N,), ``inertia_`` (``N J``, the
    sum of squared distances, as in scikit-learn), ``n_iter_`` (outer steps plus Lloyd
    steps), ``n_features_in_``.
    """

    def __init__(self, n_clusters=8, *, init="random", batch_size=1000, L=20, gamma=0.03,
                 scoping=0.03, lr=1.0, lr_inner=0.5, beta=1e3, alpha=0.75, sampler="ula",
                 noise="gaussian", max_iter=200, tol=1e-6, random_state=None):
        self.n_clusters = n_clusters
        self.init = init
        self.batch_size = batch_size
        self.L = L
        self.gamma = gamma
        self.scoping = scoping
        self.lr = lr
        self.lr_inner = lr_inner
        self.beta = beta
        self.alpha = alpha
        self.sampler = sampler
        self.noise = noise
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _check_params(self, n_samples, n_features):
        _check_number("n_clusters", self.n_clusters, 0, integer=True)
        for name in ("batch_size", "L", "max_iter"):
            _check_number(name, getattr(self, name), 0, integer=True)
        for name in ("gamma", "lr_inner"):
            _check_number(name, getattr(self, name), 0)
        _check_number("scoping", self.scoping, 0, 1, low_open=False)
        _check_number("lr", self.lr, 0, 1)
        _check_number("beta", self.beta, 0, np.inf)
        _check_number("alpha", self.alpha, 0, 1, low_open=False)
        _check_number("tol", self.tol, 0, low_open=False)
        if self.sampler not in KMEANS_SAMPLERS:
            raise ValueError(f"`sampler` must be one of {KMEANS_SAMPLERS}; got {self.sampler!r}.")
        if self.noise not in ("gaussian", "rademacher"):
            raise ValueError(f"`noise` must be 'gaussian' or 'rademacher'; got {self.noise!r}.")
        if self.n_clusters > n_samples:
            raise ValueError(f"`n_clusters` = {self.n_clusters} must be <= n_samples = "
                             f"{n_samples} (X has fewer points than clusters).")
        if isinstance(self.init, str):
            if self.init not in ("random", "k-means++"):
                raise ValueError(f"`init` must be 'random', 'k-means++' or an array; got "
                                 f"{self.init!r}.")
            return None
        init = np.asarray(self.init, dtype=np.float64)
        if init.shape != (self.n_clusters, n_features):
            raise ValueError(f"`init` array must have shape (n_clusters, n_features) = "
                             f"({self.n_clusters}, {n_features}); got {init.shape}.")
        if not np.all(np.isfinite(init)):
            raise ValueError("`init` array contains NaN or inf.")
        return init

    def fit(self, X, y=None):
        """Fit the centres to ``X`` (N, d); ``y`` is ignored."""
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        init = self._check_params(*X.shape)
        rng = check_random_state(self.random_state)
        key = jax.random.key(rng.randint(np.iinfo(np.int32).max))
        mean = X.mean(axis=0)
        scale = np.sqrt(((X - mean) ** 2).sum(axis=1).mean()) or 1.0
        Z = jnp.asarray((X - mean) / scale, jnp.float32)
        k_init, k_fit = jax.random.split(key)
        if init is None:
            C0 = init_centers(k_init, Z, self.n_clusters, self.init)
        else:
            C0 = jnp.asarray((init - mean) / scale, jnp.float32)
        C, steps = kmeans_fit(
            k_fit, Z, C0, self.gamma, self.scoping, self.lr, self.lr_inner, self.beta,
            self.tol, alpha=float(self.alpha), batch_size=min(self.batch_size, X.shape[0]),
            L=self.L, max_iter=self.max_iter, sampler=self.sampler, noise=self.noise,
        )
        self.cluster_centers_ = (np.asarray(C, np.float64) * scale + mean).astype(X.dtype)
        self.n_iter_ = self.max_iter + int(steps)
        self.labels_, self.inertia_ = self._assign(X)
        return self

    def _sqdist(self, X):
        X, C = np.asarray(X, np.float64), self.cluster_centers_.astype(np.float64)
        d = (X * X).sum(1)[:, None] - 2.0 * X @ C.T + (C * C).sum(1)[None, :]
        return np.maximum(d, 0.0)

    def _assign(self, X):
        d = self._sqdist(X)
        labels = d.argmin(axis=1)
        return labels.astype(np.int32), float(d[np.arange(len(X)), labels].sum())

    def _validated(self, X):
        check_is_fitted(self)
        return validate_data(self, X, dtype=[np.float64, np.float32], reset=False)

    def predict(self, X):
        """Index of the nearest centre for each row of ``X``."""
        return self._assign(self._validated(X))[0]

    def fit_predict(self, X, y=None):
        """Fit to ``X`` and return ``labels_``."""
        return self.fit(X).labels_

    def transform(self, X):
        """Distances (N, K) from each row of ``X`` to each centre."""
        return np.sqrt(self._sqdist(self._validated(X)))

    def score(self, X, y=None):
        """``-N J`` on ``X`` (minus the sum of squared distances), as ``KMeans.score``."""
        return -self._assign(self._validated(X))[1]
