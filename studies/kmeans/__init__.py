"""k-means study: local-entropy k-means (SBE, HEAT, Entropy-SGD) against Lloyd, mini-batch
k-means and faiss.

Four instances generated from seeds (:mod:`studies.kmeans.instances`), plus in full mode a
2,000,000-point instance and Fashion-MNIST (K = 10 and 50); for each, every method runs many
trials with a different seed each, and the report gives the spread of the final energies,
the share of trials at the best-known minimum (within 1e-4 relative) and in its basin (after
a Lloyd polish), the wall time of a run, and comparisons at equal wall time with restarted
k-means++, mini-batch k-means and faiss. On ``talk`` it also runs the talk's experiment:
ours and mini-batch EM at batch 1000 and 500.
"""

from __future__ import annotations

from pathlib import Path

from lesample.checks import check_int
from lesample.registry import Study
from studies.kmeans.instances import INSTANCES, LARGE

#: Instances per mode (the large ones only in full mode: minutes per trial here).
MODE_INSTANCES = {"quick": INSTANCES, "full": INSTANCES + LARGE}
#: Trials on the large instances in full mode (each Lloyd pass over 2M points takes seconds).
LARGE_TRIALS = 5
#: k-means++ restarts behind the large instances' best-known minimum (the small ones: 200).
LARGE_RESTARTS = 10

#: ``LocalEntropyKMeans`` settings per method, the same for every instance and mode. SBE
#: runs the estimator's defaults (docs/kmeans.md gives their evidence); HEAT runs the
#: coarse-to-fine continuation of earlier rounds (scope 1 shrinking to 1e-4 over 200 outer
#: steps) and Entropy-SGD the estimator's former defaults (ULA, scope 0.03, ``beta = 1000``).
SETTINGS = {
    "sbe": {},
    "heat": dict(gamma=1.0, scoping=0.045, num_steps=16, learning_rate=0.5, batch_size=500,
                 max_iter=200),
    "entropy-sgd": dict(gamma=0.03, scoping=0.03, num_steps=20, learning_rate=1.0,
                        step_size=0.5, beta=1e3, batch_size=1000, max_iter=200),
}
NAMES = {"sbe": "ours", "heat": "HEAT", "entropy-sgd": "Entropy-SGD"}


def _has_faiss() -> bool:
    from importlib.util import find_spec

    return find_spec("faiss") is not None


def methods(mode: str, instance: str) -> list[dict]:
    """Ours (SBE with its defaults) from random and k-means++ starts, HEAT and Entropy-SGD
    from random starts; Lloyd (``KMeans``, ``n_init=1``); ``MiniBatchKMeans`` (batch 1000,
    plus 500 in full mode); faiss where installed. On ``talk``, ours also at batch 1000 (the
    talk's two batch sizes)."""
    out = [dict(algo="ours", method="sbe", init=i) for i in ("random", "k-means++")]
    out += [dict(algo="ours", method=m, init="random") for m in ("heat", "entropy-sgd")]
    if instance == "talk":
        out.append(dict(algo="ours", method="sbe", init="random", batch=1000))
    out += [dict(algo="kmeans", init=i) for i in ("random", "k-means++")]
    batches = (1000,) if mode == "quick" else (500, 1000)
    out += [dict(algo="minibatch", init=i, batch=b) for b in batches
            for i in ("random", "k-means++")]
    if _has_faiss():
        out.append(dict(algo="faiss", init="random"))
    return out


def settings(method: dict) -> dict:
    """The ``LocalEntropyKMeans`` keyword arguments of one of our methods."""
    out = dict(SETTINGS[method["method"]], method=method["method"])
    if "batch" in method:
        out["batch_size"] = method["batch"]
    return out


def label(method: dict) -> str:
    """``"ours (random)"`` (SBE), ``"HEAT (random)"``, ``"ours 1000 (random)"``,
    ``"KMeans (k-means++)"``, ``"MiniBatch 500 (random)"``, ``"faiss (random)"``."""
    if method["algo"] == "ours":
        name = NAMES[method["method"]] + (f" {method['batch']}" if "batch" in method else "")
    else:
        name = {"kmeans": "KMeans", "faiss": "faiss"}.get(method["algo"])
        name = name or f"MiniBatch {method['batch']}"
    return f"{name} ({method['init']})"


def grid(mode: str, seeds: int | None = None) -> tuple[int, int]:
    """Trials per instance x method, and k-means++ restarts for the best-known minimum."""
    quick = mode == "quick"
    trials = (10 if quick else 100) if seeds is None else check_int("seeds", seeds)
    return trials, 50 if quick else 200


def chosen_instances(mode: str, instances: str | None = None) -> list[str]:
    """The mode's instances, or those named in ``instances`` (comma-separated, in the
    mode's order): ``-O instances=unequal,pair`` runs a part of the grid."""
    allowed = MODE_INSTANCES[mode]
    if instances is None:
        return list(allowed)
    names = [n.strip() for n in str(instances).split(",") if n.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise ValueError(f"`instances`: choose from {', '.join(allowed)} in {mode} mode "
                         f"(comma-separated); got {instances!r}")
    return [n for n in allowed if n in names]


def check(mode: str, *, seeds: int | None = None, instances: str | None = None) -> None:
    """Refuse bad options before any work starts."""
    grid(mode, seeds)
    chosen_instances(mode, instances)


def reference(cell: dict):
    """The best-known minimum of a reference cell (module level: workers import it)."""
    from studies.kmeans.cells import best_known

    return best_known(cell["instance"], cell["instance_seed"], cell["restarts"])


def run(out_dir: Path, mode: str, progress: bool, *, seeds: int | None = None,
        instances: str | None = None, executor=None) -> Path:
    from lesample.executor import run_grid
    from lesample.store import publish, write_csv
    from studies.kmeans.cells import run_cell
    from studies.kmeans.report import write_report

    trials, restarts = grid(mode, seeds)
    instances = chosen_instances(mode, instances)
    ref_cells = [dict(kind="reference", instance=i, instance_seed=0,
                      restarts=restarts if i in INSTANCES else LARGE_RESTARTS, version=2)
                 for i in instances]
    ref_run = run_grid(out_dir / "cells", ref_cells, reference, executor=executor,
                       progress=progress, desc="kmeans reference")
    if len(ref_run.failed):  # every trial is scored against the references
        raise RuntimeError(f"the k-means reference cells failed: "
                           f"{'; '.join(ref_run.failed.error)}")
    refs = ref_run.results
    cells = [dict(kind="trials", instance=i, instance_seed=0, method=m, label=label(m),
                  trials=trials if i in INSTANCES else min(trials, LARGE_TRIALS),
                  hyper=settings(m) if m["algo"] == "ours" else {}, version=4)
             for i in instances for m in methods(mode, i)]
    # A worker keeps to an instance (its data and our programs for its shapes).
    grid_run = run_grid(out_dir / "cells", cells, run_cell, executor=executor,
                        progress=progress, desc="kmeans",
                        affinity=lambda cell: (cell["instance"], cell["method"]["algo"]))
    results = grid_run.results
    with publish(out_dir) as stage:  # all outputs or none: never new data under an old report
        write_csv(refs, stage / "reference.csv")
        write_csv(results, stage / "results.csv")
        write_csv(grid_run.failed, stage / "failed.csv")
        write_report(results, refs, stage, mode=mode, hyper=SETTINGS, restarts=restarts,
                     large_trials=LARGE_TRIALS, large_restarts=LARGE_RESTARTS,
                     execution=grid_run)
    return out_dir / "report.html"


STUDY = Study("kmeans", "Local-entropy k-means against Lloyd and mini-batch k-means "
              "over many random starts", run, order=1, check=check)
