"""Local-entropy k-means: implicit (SBE), HEAT and Entropy-SGD descent as a scikit-learn
estimator (docs/kmeans.md).

The energy of centres ``C = (c_1, ..., c_K)`` on data ``x_1, ..., x_N`` is

    J(C) = (1/N) sum_j min_i |c_i - x_j|^2,

the mean squared distance to the nearest centre (scikit-learn's ``inertia_`` is ``N J``). Its
mini-batch gradient (:func:`kmeans_grad`) for centre ``i`` is ``(2/B) sum_{j in I_i} (c_i -
x_j)`` over the batch points ``I_i`` whose nearest centre is ``c_i``: exact wherever no point
is equidistant from two centres.

Reduced units, so that one set of hyperparameters serves data of any scale and any ``K``:
the data are centred and divided by ``s = sqrt(J_1)`` (``J_1`` the energy of one centre at
the mean), and ``f = (K / 2) J`` in those units, so that a centre owning a ``1/K`` share of
the data has curvature 1. The scope ``gamma`` and the steps are in these units. At outer
step ``k`` the scope is ``gamma_k = gamma (1 - scoping)^k``, the schedule
``lesample.optim.scoping(gamma, scoping)``.

Methods (one outer step each; docs/kmeans.md gives the derivations):

- ``"sbe"``, stochastic backward Euler (Yin, Pham, Oberman, Osher 2018): the implicit step
  ``x' = x - gamma_k grad f(x')`` solved by the stochastic fixed-point iteration ``y <- x -
  gamma_k grad f_mb(y)`` from ``y = x`` for ``num_steps`` steps, each on its own
  mini-batch; the uniform mean of the trajectory is carried over, ``x <- x - lr (x -
  <y>)`` (``lr = 1``: ``x <- <y>``). This is the local-entropy inner loop run noise-free
  with the inner step equal to the scope (``step_size = gamma_k``). For centre ``i`` the map
  has rate ``gamma_k c_i`` (``c_i = K n_i / B``, its curvature on the batch); each centre's
  scope is capped at ``max_rate / c_i``, so that no centre's iterates grow faster than
  ``max_rate`` per step, and a centre that owns no point of a fresh batch after the step
  takes the batch point farthest from its nearest centre, as in Lloyd.
- ``"heat"``: Gaussian smoothing of scope ``gamma_k``: ``g = mean_l grad f_mb(x + e_l)``
  over ``num_steps`` copies ``e_l ~ N(0, gamma_k I)``, each on its own mini-batch, and each
  centre takes ``lr`` times its Newton step (``g`` over its curvature, the summed count of
  the points it owns: Lloyd's step when ``gamma_k -> 0`` and ``lr = 1``).
- ``"entropy-sgd"``: ``num_steps`` steps of an inner sampler (``"ula"``, ``"baoab"`` or
  ``"hj"``) at inverse temperature ``beta`` on ``rho(y; x) ∝ exp(-beta [f(y) + |x - y|^2 /
  (2 gamma_k)])``, inner step ``step_size / (1 + 1/gamma_k)`` (a fraction of the stability
  limit), ``<y>`` by the sampler's estimator, ``x <- x - lr (x - <y>)``.

Every run ends with Lloyd iterations to the nearby local minimum (until the squared shift of
the centres is at most ``tol``), which move a centre that owns no point to the point farthest
from its centre, as scikit-learn does. :func:`kmeans_trials` runs independent trials as one
vmapped, jitted call; the estimator keeps the best of ``n_init`` of them by energy.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

from lesample import noise as noises
from lesample.checks import (
    check_choice,
    check_fraction,
    check_int,
    check_number,
    check_positive,
)
from lesample.estimators import ExponentialAverage, LastIterate, TimeAverage
from lesample.inner import estimate_mean
from lesample.samplers import baoab, hj, ula

__all__ = [
    "LocalEntropyKMeans",
    "KMeansHyper",
    "kmeans_energy",
    "kmeans_grad",
    "kmeans_descent",
    "kmeans_trials",
    "lloyd",
    "init_centers",
    "METHODS",
]

#: Outer steps: stochastic backward Euler, HEAT (no sampler) and Entropy-SGD.
METHODS = ("sbe", "heat", "entropy-sgd")
#: Inner samplers of ``method="entropy-sgd"``, with the estimator of ``<y>`` each uses.
SAMPLERS = ("ula", "baoab", "hj")
#: Old keyword names of ``LocalEntropyKMeans`` (accepted with a DeprecationWarning).
RENAMED = {"L": "num_steps", "lr": "learning_rate", "lr_inner": "step_size"}


class KMeansHyper(NamedTuple):
    """The numeric hyperparameters of a run (traced by ``jit``, so changing them does not
    recompile); reduced units (module docstring)."""

    gamma: float = 1.0  # initial scope
    scoping: float = 0.0  # gamma_k = gamma (1 - scoping)^k
    learning_rate: float = 1.0  # outer step, x <- x - lr (x - <y>)
    step_size: float = 0.5  # entropy-sgd: inner step as a fraction of 1 / (1 + 1/gamma_k)
    beta: float = 1e3  # entropy-sgd: inverse temperature
    max_rate: float = math.inf  # sbe: cap of each centre's fixed-point rate gamma_k K p_i
    tol: float = 1e-6  # Lloyd stops when the squared shift is at most tol


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


def lloyd(centers, X, tol, max_steps):
    """Lloyd iterations until the squared shift of the centres is at most ``tol`` (or
    ``max_steps``). A centre that owns no point takes the point farthest from its centre
    (the r-th empty centre the r-th farthest point, which leaves its old cluster), as
    scikit-learn does. Returns ``(centers, steps)``."""
    K = centers.shape[0]

    def step(state):
        C, _, n = state
        d = _sqdist(X, C)
        labels = d.argmin(1)
        labels = labels.at[_farthest_for_empty(d, labels)].set(jnp.arange(K), mode="drop")
        onehot = jax.nn.one_hot(labels, K, dtype=X.dtype)
        counts, sums = onehot.sum(0), onehot.T @ X
        new = jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], C)
        return new, ((new - C) ** 2).sum(), n + 1

    def go_on(state):
        return (state[1] > tol) & (state[2] < max_steps)

    C, _, n = jax.lax.while_loop(go_on, step, (centers, jnp.inf, 0))
    return C, n


def _farthest_for_empty(d, labels):
    """Per centre, the point it takes if it owns none: the r-th empty centre takes the r-th
    farthest point from its nearest centre (as scikit-learn does); N (no point) for the
    others. ``d`` (N, K) squared distances, ``labels`` (N,) nearest centres."""
    N, K = d.shape
    empty = jnp.bincount(labels, length=K) == 0
    farthest = jax.lax.top_k(jnp.take_along_axis(d, labels[:, None], 1)[:, 0], min(K, N))[1]
    rank = jnp.clip(jnp.cumsum(empty) - 1, 0, farthest.shape[0] - 1)
    return jnp.where(empty, farthest[rank], N)


def _reseed_empty(centers, X):
    """Centres that own no point of ``X`` (B, d) move to the points of ``X`` farthest from
    their nearest centres (:func:`_farthest_for_empty`)."""
    d = _sqdist(X, centers)
    moved = _farthest_for_empty(d, d.argmin(1))
    return jnp.where((moved < X.shape[0])[:, None], X[jnp.minimum(moved, X.shape[0] - 1)],
                     centers)


def _kmeans_pp(key, X, n_clusters):
    """Greedy k-means++ (scikit-learn's): for each new centre, ``2 + floor(log K)``
    candidates drawn by D^2 sampling; the one that lowers the energy most is kept."""
    N = X.shape[0]
    n_local = 2 + int(math.log(n_clusters))
    k0, key = jax.random.split(key)
    first = X[jax.random.randint(k0, (), 0, N)]
    C = jnp.zeros((n_clusters, X.shape[1]), X.dtype).at[0].set(first)
    d2 = ((X - first) ** 2).sum(1)

    def body(i, state):
        C, d2 = state
        cand = jax.random.categorical(jax.random.fold_in(key, i), jnp.log(d2),
                                      shape=(n_local,))
        new_d2 = jnp.minimum(d2[:, None], _sqdist(X, X[cand]))
        best = new_d2.sum(0).argmin()
        return C.at[i].set(X[cand[best]]), new_d2[:, best]

    return jax.lax.fori_loop(1, n_clusters, body, (C, d2))[0]


def init_centers(key, X, n_clusters, init: str):
    """``"random"``: ``K`` distinct data points; ``"k-means++"``: greedy D^2 seeding."""
    if init == "random":
        return X[jax.random.choice(key, X.shape[0], (n_clusters,), replace=False)]
    return _kmeans_pp(key, X, n_clusters)


def _outer_step(method, sampler, noise, alpha, X, hp, batch_size, num_steps):
    """One outer step ``(x, key, gamma_k) -> x`` of ``method`` (module docstring)."""
    N = X.shape[0]

    def draw(key):  # a mini-batch of B points, drawn with replacement
        return X[jax.random.randint(key, (batch_size,), 0, N)]

    def local_entropy(x, key, g):
        # H(y) = f(y) + |y - x|^2 / (2 g), f = (K/2) J: the shared inner loop estimates <y>.
        K = x.shape[0]

        def grad_H(y, batch):
            # grad_i f = c_i (y_i - m_i), c_i = K n_i / B the centre's curvature on the batch;
            # SBE scales it by g_i / g, g_i = min(g, max_rate / c_i): the per-centre scope
            # under which the map y_i <- x_i - g_i grad_i f(y) has rate g_i c_i <= max_rate.
            counts, sums = _assign_stats(y, batch)
            curv = (K / batch.shape[0]) * counts
            grad_f = curv[:, None] * y - (K / batch.shape[0]) * sums
            if method == "sbe":
                grad_f = grad_f * jnp.minimum(1.0, hp.max_rate / (g * curv))[:, None]
            return grad_f + (y - x) / g

        if method == "sbe":  # noise-free, step = scope: y <- y - g grad_H(y) = x - g grad f(y)
            kernel, estimator = hj(grad_H, g), TimeAverage()
        else:
            h = hp.step_size / (1.0 + 1.0 / g)
            kernel = {"ula": lambda: ula(grad_H, h, hp.beta, noise=noise),
                      "baoab": lambda: baoab(grad_H, h, hp.beta, noise=noise),
                      "hj": lambda: hj(grad_H, h)}[sampler]()
            estimator = {"ula": ExponentialAverage(alpha), "baoab": TimeAverage(),
                         "hj": LastIterate()}[sampler]
        k_inner, k_check = jax.random.split(key)
        mean = estimate_mean(kernel, estimator, x, k_inner, num_steps, batches=draw).mean
        new = x - hp.learning_rate * (x - mean)
        return _reseed_empty(new, draw(k_check)) if method == "sbe" else new

    def heat(x, key, g):
        k_noise, k_batch = jax.random.split(key)
        shape = jnp.zeros((num_steps, *x.shape), x.dtype)
        e = jnp.sqrt(g) * noises.noise_like(k_noise, shape, noise)
        data = jax.vmap(draw)(jax.random.split(k_batch, num_steps))
        counts, sums = jax.vmap(lambda e_l, b: _assign_stats(x + e_l, b))(e, data)
        n = counts.sum(0)[:, None]
        grad = n * x + (counts[..., None] * e).sum(0) - sums.sum(0)
        return x - hp.learning_rate * grad / jnp.maximum(n, 1.0)

    return heat if method == "heat" else local_entropy


@functools.partial(jax.jit, static_argnames=("method", "sampler", "noise", "alpha",
                                             "batch_size", "num_steps", "max_iter"))
def kmeans_descent(key, X, centers, hp: KMeansHyper, *, method="sbe", sampler="ula",
                   noise="gaussian", alpha=0.75, batch_size, num_steps, max_iter):
    """``max_iter`` outer steps of ``method`` from ``centers`` (K, d) on ``X`` (N, d), in
    reduced units (standardised data, module docstring); no Lloyd polish. Pure and jitted;
    ``jax.vmap`` over ``key`` and ``centers`` runs independent trials. ``alpha``: the
    exponential-average weight of Entropy-SGD with ULA."""
    step = _outer_step(method, sampler, noise, alpha, X, hp, batch_size, num_steps)
    log_rate = jnp.log1p(-jnp.asarray(hp.scoping, X.dtype))

    def outer(x, inputs):
        k, key = inputs
        return step(x, key, hp.gamma * jnp.exp(log_rate * k)), None

    ks = jnp.arange(max_iter, dtype=X.dtype)
    x, _ = jax.lax.scan(outer, centers, (ks, jax.random.split(key, max_iter)))
    return x


@functools.partial(jax.jit, static_argnames=("n_clusters", "init", "method", "sampler",
                                             "noise", "alpha", "batch_size", "num_steps",
                                             "max_iter", "max_lloyd"))
def kmeans_trials(keys, X, hp: KMeansHyper, *, n_clusters, init="random", centers=None,
                  method="sbe", sampler="ula", noise="gaussian", alpha=0.75, batch_size,
                  num_steps, max_iter, max_lloyd=300):
    """Independent runs, one per key (T keys), as one vmapped, jitted call: seed (``init``
    "random" or "k-means++", or the given ``centers`` (K, d)), descend, polish with Lloyd.
    Returns ``(centers (T, K, d), energies (T,), lloyd_steps (T,))`` in reduced units."""

    def one(key):
        k_init, k_fit = jax.random.split(key)
        C0 = init_centers(k_init, X, n_clusters, init) if centers is None else centers
        C = kmeans_descent(k_fit, X, C0, hp, method=method, sampler=sampler, noise=noise,
                           alpha=alpha, batch_size=batch_size, num_steps=num_steps,
                           max_iter=max_iter)
        C, steps = lloyd(C, X, hp.tol, max_lloyd)
        return C, kmeans_energy(C, X), steps

    return jax.vmap(one)(keys)


class LocalEntropyKMeans(ClusterMixin, TransformerMixin, BaseEstimator):
    """k-means by local-entropy descent (stochastic backward Euler by default), then Lloyd.

    The best of ``n_init`` independent runs by energy, all run in one vmapped, jitted call.
    ``gamma`` and the steps are in the reduced units of :mod:`lesample.kmeans` (data centred
    and scaled to unit energy for one centre; a centre owning a ``1/K`` share of the data has
    curvature 1), so the defaults serve data of any scale and any ``K``; docs/kmeans.md
    states how they were chosen and what they reach.

    Parameters
    ----------
    n_clusters : int, default=8
        The number of centres ``K``.
    init : {"random", "k-means++"} or array of shape (n_clusters, n_features), default="random"
        ``"random"``: ``K`` distinct data points; ``"k-means++"``: greedy D^2 seeding with
        ``2 + floor(log K)`` candidates per centre (scikit-learn's); an array: the start of
        every run.
    n_init : int, default=16
        Independent runs (each from its own start); the one with the lowest energy is kept.
    method : {"sbe", "heat", "entropy-sgd"}, default="sbe"
        The outer step (module docstring): stochastic backward Euler, HEAT (Gaussian
        smoothing, no sampler) or Entropy-SGD with the inner ``sampler``.
    num_steps : int, default=10
        Inner steps per outer step (SBE: fixed-point steps; HEAT: perturbed copies;
        Entropy-SGD: sampler steps), each on its own mini-batch.
    gamma : float, default=3.0
        Initial scope (reduced units); SBE's implicit step.
    scoping : float in [0, 1), default=0.05
        The scope at outer step ``k`` is ``gamma (1 - scoping)^k``, the schedule
        ``lesample.optim.scoping(gamma, scoping)``.
    max_rate : float > 0 or inf, default=2.0
        SBE: the cap of each centre's fixed-point rate ``gamma_k c_i`` (``c_i`` its curvature
        on the batch, ``K`` times its share of the batch): its scope is at most ``max_rate /
        c_i``. Below 1 every centre's map contracts; ``inf``: no cap.
    learning_rate : float in (0, 1], default=1.0
        Outer step ``x <- x - learning_rate (x - <y>)`` (1: the proximal step ``x <- <y>``;
        HEAT: the fraction of each centre's Newton step).
    step_size : float, default=0.5
        Entropy-SGD's inner step as a fraction of ``1 / (1 + 1/gamma_k)``; SBE's inner step
        is the scope itself and HEAT has none.
    beta : float, default=1e3
        Entropy-SGD's inverse temperature (``inf``: noise-free).
    alpha : float in [0, 1), default=0.75
        Entropy-SGD with ULA: the exponential-average weight of ``<y>``.
    sampler : {"ula", "baoab", "hj"}, default="ula"
        Entropy-SGD's inner sampler.
    noise : {"gaussian", "rademacher"}, default="gaussian"
        Noise of Entropy-SGD's sampler and of HEAT's perturbations.
    batch_size : int, default=500
        Mini-batch size of each inner step (capped at ``n_samples``).
    max_iter : int, default=20
        Outer steps before the Lloyd polish.
    tol : float, default=1e-6
        Lloyd stops when the squared shift of the centres (reduced units) is at most ``tol``.
    random_state : int, RandomState instance or None, default=None
        Seeds the starts, the mini-batches and the noise.
    L, lr, lr_inner : deprecated
        Old names of ``num_steps``, ``learning_rate`` and ``step_size`` (removed in the next
        release). ``sampler="heat"`` is the old spelling of ``method="heat"``.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        The centres of the best run.
    labels_ : ndarray of shape (n_samples,)
        Index of the nearest centre of each training point.
    inertia_ : float
        Sum of squared distances to the nearest centre (``N J``), as in scikit-learn.
    n_iter_ : int
        Outer steps plus the Lloyd steps of the best run.
    energies_ : ndarray of shape (n_init,)
        Final energy ``J`` of each run (reduced units: divide by the energy of one centre at
        the mean).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features, when ``X`` has string column names.
    """

    def __init__(self, n_clusters=8, *, init="random", n_init=16, method="sbe", num_steps=10,
                 gamma=3.0, scoping=0.05, max_rate=2.0, learning_rate=1.0, step_size=0.5,
                 beta=1e3, alpha=0.75, sampler="ula", noise="gaussian", batch_size=500, max_iter=20,
                 tol=1e-6, random_state=None, L="deprecated", lr="deprecated",
                 lr_inner="deprecated"):
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.method = method
        self.num_steps = num_steps
        self.gamma = gamma
        self.scoping = scoping
        self.max_rate = max_rate
        self.learning_rate = learning_rate
        self.step_size = step_size
        self.beta = beta
        self.alpha = alpha
        self.sampler = sampler
        self.noise = noise
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.L = L
        self.lr = lr
        self.lr_inner = lr_inner

    def resolved_params(self) -> dict:
        """The parameters of a run under their current names (old names mapped, with a
        DeprecationWarning); ``init`` and ``random_state`` left out."""
        out = {name: getattr(self, name) for name in (
            "n_clusters", "n_init", "method", "num_steps", "gamma", "scoping", "max_rate",
            "learning_rate", "step_size", "beta", "alpha", "sampler", "noise", "batch_size",
            "max_iter", "tol")}
        for old, new in RENAMED.items():
            if getattr(self, old) != "deprecated":
                warnings.warn(f"`{old}` is deprecated and will be removed in the next release; "
                              f"use `{new}`.", DeprecationWarning, stacklevel=3)
                out[new] = getattr(self, old)
        if out["sampler"] == "heat":
            warnings.warn("`sampler='heat'` is deprecated (HEAT has no sampler) and will be "
                          "removed in the next release; use `method='heat'`.",
                          DeprecationWarning, stacklevel=3)
            out["method"], out["sampler"] = "heat", "ula"
        return out

    def _check_params(self, s: dict, n_samples, n_features):
        for name in ("n_clusters", "n_init", "batch_size", "num_steps", "max_iter"):
            s[name] = check_int(name, s[name])
        for name in ("gamma", "step_size"):
            s[name] = check_positive(name, s[name])
        s["scoping"] = check_fraction("scoping", s["scoping"])
        s["learning_rate"] = check_number("learning_rate", s["learning_rate"], gt=0, le=1)
        s["beta"] = check_positive("beta", s["beta"], allow_inf=True)
        s["max_rate"] = check_positive("max_rate", s["max_rate"], allow_inf=True)
        s["alpha"] = check_fraction("alpha", s["alpha"])
        s["tol"] = check_number("tol", s["tol"], ge=0)
        check_choice("method", s["method"], METHODS)
        check_choice("sampler", s["sampler"], SAMPLERS)
        check_choice("noise", s["noise"], ("gaussian", "rademacher"))
        if s["n_clusters"] > n_samples:
            raise ValueError(f"`n_clusters` = {s['n_clusters']} must be <= n_samples = "
                             f"{n_samples} (X has fewer points than clusters).")
        if isinstance(self.init, str):
            if self.init not in ("random", "k-means++"):
                raise ValueError(f"`init` must be 'random', 'k-means++' or an array; got "
                                 f"{self.init!r}.")
            return None
        init = np.asarray(self.init, dtype=np.float64)
        if init.shape != (s["n_clusters"], n_features):
            raise ValueError(f"`init` array must have shape (n_clusters, n_features) = "
                             f"({s['n_clusters']}, {n_features}); got {init.shape}.")
        if not np.all(np.isfinite(init)):
            raise ValueError("`init` array contains NaN or inf.")
        return init

    def fit(self, X, y=None):
        """Fit the centres to ``X`` (N, d); ``y`` is ignored."""
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        s = self.resolved_params()
        init = self._check_params(s, *X.shape)
        rng = check_random_state(self.random_state)
        key = jax.random.key(rng.randint(np.iinfo(np.int32).max))
        mean = X.mean(axis=0)
        scale = np.sqrt(((X - mean) ** 2).sum(axis=1).mean()) or 1.0
        Z = jnp.asarray((X - mean) / scale, jnp.float32)
        hp = KMeansHyper(*(float(s[f]) for f in KMeansHyper._fields))
        C, energies, steps = kmeans_trials(
            jax.random.split(key, s["n_init"]), Z, hp, n_clusters=s["n_clusters"],
            init=self.init if init is None else "random",
            centers=None if init is None else jnp.asarray((init - mean) / scale, jnp.float32),
            method=s["method"], sampler=s["sampler"], noise=s["noise"], alpha=float(s["alpha"]),
            batch_size=min(s["batch_size"], X.shape[0]), num_steps=s["num_steps"],
            max_iter=s["max_iter"])
        energies = np.asarray(energies, np.float64)
        best = int(np.argmin(energies))
        self.cluster_centers_ = (np.asarray(C[best], np.float64) * scale + mean).astype(X.dtype)
        self.n_iter_ = s["max_iter"] + int(steps[best])
        self.energies_ = energies
        self.labels_, self.inertia_ = self._assign(X)
        found = len(np.unique(self.labels_))
        if found < s["n_clusters"]:
            warnings.warn(f"Number of distinct clusters ({found}) found smaller than "
                          f"n_clusters ({s['n_clusters']}): {s['n_clusters'] - found} centres "
                          "own no point. Possibly due to duplicate points in X.",
                          ConvergenceWarning, stacklevel=2)
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
