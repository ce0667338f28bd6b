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

from lesample.kmeans import LocalEntropyKMeans, init_centers, kmeans_fit
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
    generating centres, with where their centres are (:func:`allocation`)."""
    inst = make_instance(instance, seed)
    X = inst.X.astype(np.float64)
    km = KMeans(inst.n_clusters, init="k-means++", n_init=restarts, random_state=0,
                tol=0.0).fit(X)
    gen = KMeans(inst.n_clusters, init=inst.centers, n_init=1, tol=0.0).fit(X)
    rows = [dict(source=source, energy=energy(X, C), **allocation(C, inst.centers, inst.groups))
            for source, C in ((f"best of {restarts} k-means++", km.cluster_centers_),
                              ("Lloyd from generating centres", gen.cluster_centers_))]
    return pd.DataFrame(rows)


def _sklearn_run(method: dict, K: int, X: np.ndarray, seed: int):
    if method["algo"] == "kmeans":
        est = KMeans(K, init=method["init"], n_init=1, random_state=seed)
    else:
        est = MiniBatchKMeans(K, init=method["init"], n_init=1, batch_size=method["batch"],
                              random_state=seed)
    t = time.perf_counter()
    est.fit(X)
    return est.cluster_centers_, time.perf_counter() - t


def _ours(method: dict, K: int, X: np.ndarray, trials: int, seed0: int, hyper: dict):
    """All trials at once (``vmap`` over seeds); the wall time per run is measured on
    single fits of the estimator after compilation."""
    single = [LocalEntropyKMeans(K, init=method["init"], random_state=seed0 + i, **hyper)
              for i in range(4)]
    single[0].fit(X)  # compile
    times = []
    for est in single[1:]:
        t = time.perf_counter()
        est.fit(X)
        times.append(time.perf_counter() - t)
    mean = X.mean(0)
    scale = np.sqrt(((X - mean) ** 2).sum(1).mean())
    Z = jnp.asarray((X - mean) / scale, jnp.float32)
    est = single[0]

    def one(key):
        k_init, k_fit = jax.random.split(key)
        C0 = init_centers(k_init, Z, K, method["init"])
        return kmeans_fit(k_fit, Z, C0, est.gamma, est.scoping, est.lr, est.lr_inner,
                          est.beta, est.tol, alpha=float(est.alpha),
                          batch_size=min(est.batch_size, len(X)), L=est.L,
                          max_iter=est.max_iter, sampler=est.sampler, noise=est.noise)[0]

    keys = jax.vmap(jax.random.key)(jnp.arange(seed0, seed0 + trials))
    C = np.asarray(jax.jit(jax.vmap(one))(keys), np.float64) * scale + mean
    return list(C), float(np.median(times))


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
    where = pd.DataFrame([allocation(C, inst.centers, inst.groups) for C in centers])
    return pd.DataFrame(dict(
        trial=np.arange(len(centers)),
        energy=[energy(X, C) for C in centers],
        polished=_polish(X, centers),
        misallocated=where.misallocated,
        uncovered=where.uncovered,
        seconds=times,
    ))
