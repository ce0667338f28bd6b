"""The k-means instances of the study, generated from seeds (docs/kmeans.md).

- ``unequal``: 2-D, K = 8; four big diffuse clusters (2,200 to 3,000 points, spread 1.0 to
  1.2) and four small tight ones (200 to 400 points, spread 0.3 to 0.4), each tight one
  beside a diffuse one.
- ``pair``: 2-D, "4 means, 3 clusters" (the talk's slide): two round clusters and one tight
  pair of sub-clusters; the optimum puts two means in the pair.
- ``groups``: d = 20, K = 32 in 8 well separated groups of 4 clusters, 2,000 points each
  (N = 64,000).

Each instance also carries its generating centres (one per Gaussian component), from
which the study starts Lloyd when it looks for the best-known minimum, and a group label per
component (the visible clusters: a big diffuse cluster with the tight one beside it, the
tight pair, a group of four), by which the study counts centres put in the wrong group.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Instance", "INSTANCES", "make_instance"]


class Instance(NamedTuple):
    name: str
    X: np.ndarray  # (N, d) float32
    n_clusters: int
    centers: np.ndarray  # (K, d) generating centres
    description: str
    groups: np.ndarray  # (K,) group of each generating centre


def _blobs(rng, centers, sizes, spreads) -> np.ndarray:
    parts = [c + s * rng.standard_normal((n, len(c))) for c, n, s in zip(centers, sizes,
                                                                       spreads, strict=True)]
    X = np.concatenate(parts).astype(np.float32)
    return X[rng.permutation(len(X))]


def _unequal(seed: int) -> Instance:
    rng = np.random.default_rng(seed)
    big = np.array([[0.0, 0.0], [7.0, 0.0], [0.0, 7.0], [7.0, 7.0]]) + rng.uniform(-0.5, 0.5,
                                                                                    (4, 2))
    angle = rng.uniform(0, 2 * np.pi, 4)
    tight = big + 2.8 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    centers = np.concatenate([big, tight])
    sizes = [3000, 2800, 2500, 2200, 400, 300, 250, 200]
    spreads = [1.2, 1.1, 1.0, 1.0, 0.4, 0.35, 0.3, 0.3]
    return Instance("unequal", _blobs(rng, centers, sizes, spreads), 8, centers,
                    "2-D, K = 8: big diffuse clusters (2,200-3,000 points, spread 1.0-1.2) "
                    "with small tight ones (200-400 points, spread 0.3-0.4) beside them",
                    np.tile(np.arange(4), 2))


def _pair(seed: int) -> Instance:
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [6.0, 0.0], [2.1, 5.0], [3.9, 5.0]])
    sizes = [1000, 1000, 500, 500]
    spreads = [1.0, 1.0, 0.3, 0.3]
    return Instance("pair", _blobs(rng, centers, sizes, spreads), 4, centers,
                    "2-D, 4 means, 3 clusters: two round clusters (1,000 points, spread 1) "
                    "and a tight pair (2 x 500 points, spread 0.3, 1.8 apart)",
                    np.array([0, 1, 2, 2]))


def _groups(seed: int) -> Instance:
    rng = np.random.default_rng(seed)
    d, groups, per_group, size = 20, 8, 4, 2000
    tops = 12.0 * rng.standard_normal((groups, d))
    centers = (tops[:, None, :] + 2.0 * rng.standard_normal((groups, per_group, d)))
    centers = centers.reshape(-1, d)
    K = groups * per_group
    return Instance("groups", _blobs(rng, centers, [size] * K, [1.0] * K), K, centers,
                    "d = 20, K = 32: 8 groups of 4 clusters (2,000 points each, spread 1), "
                    "N = 64,000", np.repeat(np.arange(groups), per_group))


_MAKERS = {"unequal": _unequal, "pair": _pair, "groups": _groups}
INSTANCES = tuple(_MAKERS)


def make_instance(name: str, seed: int = 0) -> Instance:
    """The instance ``name`` (one of :data:`INSTANCES`) generated from ``seed``."""
    if name not in _MAKERS:
        raise ValueError(f"unknown instance {name!r}; expected one of {INSTANCES}")
    return _MAKERS[name](seed)
