"""One cell of the k-means study: an instance and a method, run over many seeded trials.

A cell returns one row per trial: the final energy ``J`` (mean squared distance to the
nearest centre, evaluated in float64 for every method alike), the energy after a Lloyd
polish of the final centres (which local minimum's basin the run ended in), where the
centres went (:func:`allocation`) and the wall time of the run. The reference cell gives
the best-known minimum of an instance.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from sklearn.cluster import KMeans, MiniBatchKMeans

from lesample.kmeans import KMeansHyper, LocalEntropyKMeans, kmeans_trials
from studies.kmeans.instances import make_instance

__all__ = ["allocation", "energy", "run_cell", "best_known"]


def energy(X: np.ndarray, centers: np.ndarray) -> float:
    """``J = (1/N) sum_j min_i |c_i - x_j|^2`` in float64."""
    X, C = X.astype(np.float64), np.asarray(centers, np.float64)
    d = (X * X).sum(1)[:, None] - 2.0 * X @ C.T + (C * C).sum(1)[None, :]
    return float(np.maximum(d, 0.0).min(axis=1).mean())


def allocation(centers: np.ndarray, generating: np.ndarray, groups: np.ndarray):
    """Where the centres ``(K, d)`` went, each counted at its nearest generating centre:
    ``misallocated``, the centres that would have to move to another group to give every
    group as many centres as it has components (half the sum of the count differences), and
    ``uncovered``, the components that no centre is nearest to (a dict of the two)."""
    C, G = np.asarray(centers, np.float64), np.asarray(generating, np.float64)
    nearest = ((C[:, None, :] - G[None, :, :]) ** 2).sum(-1).argmin(1)
    n_groups = int(groups.max()) + 1
    have = np.bincount(groups[nearest], minlength=n_groups)
    need = np.bincount(groups, minlength=n_groups)
    return dict(misallocated=int(np.abs(have - need).sum()) // 2,
                uncovered=len(G) - len(np.unique(nearest)))


def _polish(X: np.ndarray, centers: list[np.ndarray]) -> list[float]:
    """Energy after Lloyd to convergence from each set of centres (sklearn, float64)."""
    return [energy(X, KMeans(len(C), init=C, n_init=1, tol=0.0).fit(X).cluster_centers_)
            for C in centers]


def best_known(instance: str, seed: int, restarts: int) -> pd.DataFrame:
    """Best energy over ``restarts`` k-means++ starts of Lloyd and Lloyd from the
    generating centres (where an instance has them), with where their centres are
    (:func:`allocation`)."""
    inst = make_instance(instance, seed)
    X = inst.X.astype(np.float64)
    km = KMeans(inst.n_clusters, init="k-means++", n_init=restarts, random_state=0,
                tol=0.0).fit(X)
    found = [(f"best of {restarts} k-means++", km.cluster_centers_)]
    if inst.centers is not None:
        gen = KMeans(inst.n_clusters, init=inst.centers, n_init=1, tol=0.0).fit(X)
        found.append(("Lloyd from generating centres", gen.cluster_centers_))
    return pd.DataFrame([dict(source=source, energy=energy(X, C), **(
        allocation(C, inst.centers, inst.groups) if inst.centers is not None else
        dict(misallocated=-1, uncovered=-1))) for source, C in found])


def _sklearn_run(method: dict, K: int, X: np.ndarray, seed: int):
    if method["algo"] == "kmeans":
        est = KMeans(K, init=method["init"], n_init=1, random_state=seed)
    elif method["algo"] == "minibatch":
        est = MiniBatchKMeans(K, init=method["init"], n_init=1, batch_size=method["batch"],
                              random_state=seed)
    else:
        est = _Faiss(K, seed)
    t = time.perf_counter()
    est.fit(X)
    return est.cluster_centers_, time.perf_counter() - t


class _Faiss:
    """faiss-cpu's k-means (its defaults: 25 Lloyd iterations from random data points),
    the fastest k-means a practitioner would pick; an optional extra (``[kmeans]``)."""

    def __init__(self, K: int, seed: int):
        self.K, self.seed = K, seed

    def fit(self, X):
        import faiss

        km = faiss.Kmeans(X.shape[1], self.K, seed=self.seed, verbose=False)
        km.train(np.ascontiguousarray(X, np.float32))
        self.cluster_centers_ = km.centroids.astype(np.float64)
        return self


def _standardise(X: np.ndarray):
    """The estimator's reduced units: centred, scaled to unit energy for one centre."""
    mean = X.mean(0)
    scale = np.sqrt(((X - mean) ** 2).sum(1).mean())
    return jnp.asarray((X - mean) / scale, jnp.float32), mean, scale


def _ours(method: dict, K: int, X: np.ndarray, trials: int, seed0: int, settings: dict):
    """The trials in chunks of the estimator's ``n_init`` runs, each chunk one call of
    ``kmeans_trials`` exactly as a fit makes it (one compilation serves the fit and the
    study), compiled before the first timed call. The wall time per run is a warm chunk's
    time divided by ``n_init``: the cost of a run amortised over the batch a user gets."""
    est = LocalEntropyKMeans(K, init=method["init"], **settings)
    s = {k: v for k, v in est.resolved_params().items() if k in _TRIAL_ARGS | {"n_init"}}
    n = s.pop("n_init")
    hp = KMeansHyper(*(float(s.pop(f)) for f in KMeansHyper._fields))
    Z, mean, scale = _standardise(X)

    def keys(first: int):
        return jax.vmap(jax.random.key)(jnp.arange(first, first + n))

    # Compiled ahead of the timed calls, without running (a run of n trials on the large
    # instances takes minutes).
    call = kmeans_trials.lower(keys(seed0), Z, hp, n_clusters=K, init=method["init"], **{
        **s, "batch_size": min(s["batch_size"], len(X))}).compile()
    centers, times = [], []
    for first in range(seed0, seed0 + trials, n):
        t = time.perf_counter()
        C = jax.block_until_ready(call(keys(first), Z, hp)[0])
        times.append((time.perf_counter() - t) / n)
        centers += list(np.asarray(C, np.float64) * scale + mean)
    return centers[:trials], float(np.median(times))


_TRIAL_ARGS = set(KMeansHyper._fields) | {"method", "sampler", "noise", "alpha",
                                          "batch_size", "num_steps", "max_iter"}


def run_cell(cell: dict) -> pd.DataFrame:
    """Run ``cell["trials"]`` trials of ``cell["method"]`` on ``cell["instance"]``."""
    inst = make_instance(cell["instance"], cell["instance_seed"])
    X, K, method = inst.X.astype(np.float64), inst.n_clusters, cell["method"]
    seed0 = 1000 * cell["instance_seed"]
    if method["algo"] == "ours":
        centers, seconds = _ours(method, K, X, cell["trials"], seed0, cell["hyper"])
        times = [seconds] * len(centers)
    else:
        runs = [_sklearn_run(method, K, X, seed0 + i) for i in range(cell["trials"])]
        centers, times = [c for c, _ in runs], [t for _, t in runs]
    if inst.centers is None:
        where = pd.DataFrame(dict(misallocated=[-1] * len(centers), uncovered=-1))
    else:
        where = pd.DataFrame([allocation(C, inst.centers, inst.groups) for C in centers])
    return pd.DataFrame(dict(
        trial=np.arange(len(centers)),
        energy=[energy(X, C) for C in centers],
        polished=_polish(X, centers),
        misallocated=where.misallocated,
        uncovered=where.uncovered,
        seconds=times,
    ))
