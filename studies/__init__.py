"""Runnable studies: ``samplers`` (inner-loop samplers against exact answers), ``kmeans``
(local-entropy k-means over random starts) and ``deepnets`` (the paper's deep benchmarks).

Each study registers itself with :func:`studies.registry.register` and writes its tidy
results (CSV) and a self-contained HTML report into its own directory; ``lesample study
NAME`` / ``lesample run`` drive them (see :mod:`lesample.cli`).
"""

from studies.registry import KNOWN_STUDIES, Study, get_study, load_studies, register

__all__ = ["KNOWN_STUDIES", "Study", "get_study", "load_studies", "register"]
