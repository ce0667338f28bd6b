"""Runnable studies: ``samplers`` (inner-loop samplers against exact answers), ``kmeans``
(local-entropy k-means over random starts) and ``deepnets`` (the paper's deep benchmarks).

Each study module defines a :class:`lesample.registry.Study` named ``STUDY``, listed in the
``lesample.studies`` entry points of ``pyproject.toml``, and writes its tidy results (CSV)
and a self-contained HTML report into its own directory; ``lesample study NAME`` /
``lesample run`` drive them (see :mod:`lesample.cli`).
"""
