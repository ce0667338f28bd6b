"""Deep-network study (paper §8, Table 1): SGD, Entropy-SGD, HJ and HEAT on mnistfc and
LeNet at equal budgets of effective epochs (Remark 22), several seeds, Fashion-MNIST.

- ``--quick``: the first 2,000 Fashion-MNIST training images (digits if Fashion-MNIST is
  not installed), the full 10,000-image test set, batches of 32, 3 effective epochs, one
  seed: minutes on a CPU; it checks the pipeline, not the paper's claim.
- ``--full``: Fashion-MNIST 60k/10k, batches of 128, 30 effective epochs (learning rate
  divided by 5 every 15), 3 seeds. Cells advance in rounds of a few epochs each, every cell
  checkpointed at every epoch, so a run stopped at any time leaves all cells at about the
  same budget and the report covers what has been reached (``-O epochs=N`` sets another
  budget, ``-O round_epochs=N`` the round length). The cells of a round run on the command
  line's executor (``--workers``, ``--executor``; docs/executors.md).

``-O gamma=auto`` and ``-O tolerance=T`` run Entropy-SGD and HJ with the automatic scope and
Entropy-SGD with the adaptive inner loop (docs/adaptation.md); their runs are named apart
(``entropy_sgd+auto+tol``), so that ``python -m studies.deepnets.report DIR --add RUN``
sets them beside the hand-set runs. An automatic-scope update also spends the Lanczos HVPs,
so those cells get fewer epochs (fixed numbers of updates) for the same budget in effective
epochs (``cells.with_self_tuning``).

Entropy-SGD's Langevin noise is ``noise="rademacher"`` (random signs with the mean and
covariance of the Gaussian, ``lesample.noise``), 10-40x cheaper to draw; ``-O
noise=gaussian`` runs the exact one.
"""

from __future__ import annotations

from pathlib import Path

from lesample.checks import check_int
from lesample.registry import Study

MODELS = ("mnistfc", "lenet")
NOISES = ("rademacher", "gaussian")
ALGOS = ("sgd", "entropy_sgd", "hj", "heat", "elastic_sgd", "parle")

#: Per mode: training rows (None: all), batch, effective epochs, learning-rate drop
#: period, seeds, epochs per round, and training rows for BatchNorm statistics.
MODES = {
    "quick": dict(limit=2_000, batch_size=32, epochs=3, drop_every=2, seeds=1,
                  round_epochs=3, eval_rows=1_000),
    "full": dict(limit=None, batch_size=128, epochs=30, drop_every=15, seeds=3,
                 round_epochs=2, eval_rows=5_000),
}


def _names(option: str, value, allowed, canonical=str) -> list[str]:
    if value is None:
        return list(allowed)
    try:
        names = [canonical(v.strip()) for v in str(value).split(",") if v.strip()]
    except ValueError:
        names = []
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise ValueError(f"`{option}`: choose from {', '.join(allowed)} (comma-separated); "
                         f"got {value!r}")
    return names


def plan(mode: str, *, seeds=None, model=None, algo=None, epochs=None, round_epochs=None,
         noise: str = "rademacher", replicas=None, gamma=None, tolerance=None
         ) -> tuple[dict, list[dict]]:
    """``(settings, cells)``: the mode's settings and one cell (a flat dict of JSON values,
    the arguments of ``lesample.train.TrainConfig``) per model x algorithm x seed.
    ``gamma="auto"`` and ``tolerance`` go to the algorithms that take them
    (``cells.with_self_tuning``); their runs are named ``entropy_sgd+auto`` and so on."""
    from lesample.train import canonical_algorithm
    from studies.deepnets.cells import with_replicas, with_self_tuning

    settings = dict(MODES[mode])
    if epochs is not None:
        settings["epochs"] = check_int("epochs", epochs)
        settings["drop_every"] = max(1, settings["epochs"] // 2)
    if round_epochs is not None:
        settings["round_epochs"] = check_int("round_epochs", round_epochs)
    if noise not in NOISES:
        raise ValueError(f"`noise` must be one of {', '.join(NOISES)}; got {noise!r}")
    num_seeds = settings["seeds"] if seeds is None else check_int("seeds", seeds)
    cells = [
        dict(model=m, algo=a, seed=s, epochs=settings["epochs"],
             batch_size=settings["batch_size"], drop_every=settings["drop_every"],
             noise=noise, eval_rows=settings["eval_rows"],
             unroll=False)  # the default, kept: cell keys (checkpoint names) include it
        for s in range(num_seeds)
        for m in _names("model", model, MODELS, str.lower)
        for a in _names("algo", algo, ALGOS, canonical_algorithm)
    ]
    return settings, with_self_tuning(with_replicas(cells, replicas), gamma, tolerance)


def check(mode: str, *, data_dir: Path | None = None, **options) -> None:
    """Refuse bad options before any work starts: those of :func:`plan`, and a ``data_dir``
    that is not a folder."""
    if data_dir is not None and not Path(data_dir).is_dir():
        raise ValueError(f"--data-dir {data_dir} is not a folder: give the folder that holds "
                         "the data set's files")
    plan(mode, **options)


def run(out_dir: Path, mode: str, progress: bool, *, seeds: int | None = None,
        model: str | None = None, algo: str | None = None, data_dir: Path | None = None,
        epochs: int | None = None, round_epochs: int | None = None,
        noise: str = "rademacher", replicas: int | None = None, gamma: str | None = None,
        tolerance: float | None = None, executor=None) -> Path:
    from studies.deepnets.cells import load_data, run_rounds
    from studies.deepnets.report import write_report

    settings, cells = plan(mode, seeds=seeds, model=model, algo=algo, epochs=epochs,
                           round_epochs=round_epochs, noise=noise, replicas=replicas,
                           gamma=gamma, tolerance=tolerance)
    data = load_data(settings["limit"], data_dir)
    return run_rounds(
        cells, data, out_dir, settings["round_epochs"], progress,
        lambda results, bn, execution: write_report(
            results, bn, out_dir, mode=mode, settings=settings, dataset=data.name,
            num_train=len(data.train_images), execution=execution),
        executor=executor, data_dir=data_dir, limit=settings["limit"])


STUDY = Study("deepnets", "SGD, Entropy-SGD, HJ, HEAT, Elastic-SGD and Parle on mnistfc and "
              "LeNet (Fashion-MNIST): "
              "validation error at equal effective epochs (paper Table 1)", run, order=2,
              check=check)
