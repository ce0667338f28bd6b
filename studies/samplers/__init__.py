"""Sampler comparison study: which inner loop gives the most accurate ``grad f_gamma``?

For a budget of ``L`` gradient evaluations, compare samplers (ours and peers), step sizes
and estimators of ``E_rho[y]`` on targets with a known truth (Gaussian closed forms;
quadrature for the non-convex 1-D and 2-D losses, below and above the convexity threshold
of Remark 6). The reference inner loop is Entropy-SGD's: ULA, step 0.1, exponential average
``alpha = 0.75``, ``L = 20``.
"""

from __future__ import annotations

from pathlib import Path

from lesample.checks import check_int
from lesample.registry import Study

REFERENCE = dict(sampler="ula", step_size=0.1, estimator="exponential", L=20)


def settings(max_curvature: float, minibatch: bool = False, quick: bool = False,
             peers: bool = True) -> list[dict]:
    """Sampler settings for a target whose ``H`` has curvature at most ``max_curvature``:
    steps as fractions of the stability limits (``2/L`` overdamped, ``2/sqrt(L)`` BAOAB).
    Quick mode keeps one or two per sampler, and on the mini-batch target (digits) the
    one-gradient kernels only (NUTS there costs ~10 min a cell). ``peers``: add BlackJAX."""
    inv, inv_sqrt = 1.0 / max_curvature, max_curvature**-0.5
    lean = quick and minibatch
    pick = (lambda full, short: short) if quick else (lambda full, short: full)
    out = [dict(sampler="ula", step_size=0.1)]  # the reference step, in absolute units
    out += [dict(sampler="ula", step_size=r * inv) for r in pick((0.5, 1.0, 1.5), (1.5,))]
    out += [] if lean else [dict(sampler="mala", step_size=r * inv)
                             for r in pick((0.5, 1.0), (1.0,))]
    out += [dict(sampler="hj", step_size=r * inv) for r in pick((1.0, 1.5), (1.5,))]
    out += [dict(sampler="baoab", step_size=r * inv_sqrt, friction=f)
            for r in pick((0.5, 1.0, 1.9), (1.9,))
            for f in pick((0.3, 1.0, 3.0), (1.0,) if lean else (0.3, 1.0))]
    out += [] if lean else [dict(sampler="nuts", step_size=inv_sqrt, num_warmup=100)]
    if peers:
        out += [dict(sampler="blackjax-sgld", step_size=inv)]
        out += [] if lean else [dict(sampler="blackjax-mala", step_size=inv),
                                 dict(sampler="blackjax-nuts", step_size=inv_sqrt)]
    if minibatch:  # SGLD on mini-batches of 128 rows, as Entropy-SGD runs
        out += [dict(sampler="sgld", step_size=r * inv, batch_size=128)
                for r in pick((0.5, 1.0), (1.0,))]
    # The reference step 0.1 can coincide with r/L (to rounding): keep the first of settings
    # equal to 6 significant digits.
    unique: dict[tuple, dict] = {}
    for s in out:
        key = tuple(sorted((k, f"{v:.6g}" if isinstance(v, float) else v) for k, v in s.items()))
        unique.setdefault(key, s)
    return list(unique.values())


def target_settings(name: str, mode: str) -> list[dict]:
    """The settings run on a target: the dense grid on the full mode's headline targets,
    the sparse one elsewhere; peers on the Gaussians (and everywhere in full mode); no NUTS
    on d = 1000 (up to 2^10 gradients a step: those cells alone would take ~40 min; its
    d = 100 runs stand for it)."""
    from studies.samplers.targets import get_target

    tgt = get_target(name)
    out = settings(tgt.max_curvature, tgt.num_data > 0,
                   quick=mode == "quick" or name not in HEADLINE,
                   peers=mode == "full" or name.startswith("gauss"))
    if tgt.x.size >= 1000:
        out = [s for s in out if not s["sampler"].endswith("nuts")]
    return out


#: The targets of the L = 20 findings (Gaussian rho at beta = 1e4: the low-noise regime
#: Entropy-SGD runs in, beta = 1e8). Every mode runs them; the full mode with its dense grid.
HEADLINE = ("gauss-d100-k100-g10-b10000", "rugged-g0.1-b5", "rugged-g2-b5", "dwell-g4-b4")
#: Seeds of the breadth targets of the full grid (the headline targets get ``seeds``).
BREADTH_SEEDS = 3


def grid(mode: str, seeds: int | None = None) -> tuple[dict[str, int], list[int]]:
    """Targets (each with its number of seeds) and budgets of a mode. The four headline
    targets, on which the L = 20 findings rest, get ``seeds`` (default 2 quick, 10 full);
    the full grid's breadth targets get at most ``BREADTH_SEEDS``."""
    quick = mode == "quick"
    num_seeds = (2 if quick else 10) if seeds is None else check_int("seeds", seeds)
    breadth = [] if quick else (  # digits' NUTS reference alone takes ~3 min on a fresh machine
        ["digits-g1-b1797"]
        + [f"gauss-d{d}-k{k}-g10-b{b}" for d in (10, 100, 1000) for k in (1, 100)
           for b in (1, 10000) if (d, k, b) != (100, 100, 10000)]
        + ["gauss-d100-k100-g1-b10000", "rugged-g0.25-b5", "rugged-g2-b20",
           "dwell-g0.5-b4", "dwell-g1-b4"])
    targets = dict.fromkeys(HEADLINE, num_seeds) | dict.fromkeys(
        breadth, min(num_seeds, BREADTH_SEEDS))
    budgets = [5, 10, 20, 50, 100, 200] + ([] if quick else [500, 1000])
    return targets, budgets


def affinity(cell: dict) -> tuple:
    """A cell's affinity key (``lesample.executor.run_grid``): its target, then its
    setting; the seed does not change the compiled programs."""
    from lesample.store import cell_key

    return cell["target"], cell_key({k: v for k, v in cell.items() if k != "seed"})


def run(out_dir: Path, mode: str, progress: bool, *, seeds: int | None = None,
        executor=None) -> Path:
    from lesample.executor import run_grid
    from lesample.store import publish, run_cells, write_csv
    from studies.samplers.cells import run_cell
    from studies.samplers.efficiency import efficiency_table
    from studies.samplers.report import write_report

    targets, budgets = grid(mode, seeds)
    cells = [
        dict(target=t, **s, seed=seed, num_chains=32, budgets=budgets, version=1)
        for t, num_seeds in targets.items()
        for s in target_settings(t, mode)
        for seed in range(num_seeds)
    ]
    # A worker keeps to a target and a setting (their programs), taking the seeds in turn.
    grid_run = run_grid(out_dir / "cells", cells, run_cell, executor=executor,
                        progress=progress, desc="samplers", affinity=affinity)
    results = grid_run.results
    quick = mode == "quick"
    # Quick mode times NUTS at 4 chains only: at 64 chains it was no faster per ESS (see a full
    # run's efficiency.csv) and its vectorised adaptation alone takes minutes on a CPU.
    # ESS per second is timed here, in this process, once the grid is done: alone on the
    # machine's cores whatever the executor, so comparable with a serial run.
    eff_cell = dict(kind="efficiency", num_draws=2_000 if quick else 20_000,
                    nuts_draws=250 if quick else 2_000,
                    nuts_chain_counts=[4] if quick else [4, 64], version=3)
    eff = run_cells(out_dir / "cells", [eff_cell],
                    lambda c: efficiency_table(c["num_draws"], nuts_draws=c["nuts_draws"],
                                               nuts_chain_counts=tuple(c["nuts_chain_counts"])),
                    progress=progress, desc="efficiency")
    with publish(out_dir) as stage:  # all outputs or none: never new data under an old report
        write_csv(results, stage / "results.csv")
        write_csv(eff, stage / "efficiency.csv")
        write_csv(grid_run.failed, stage / "failed.csv")
        write_report(results, eff, stage, mode=mode, execution=grid_run)
    return out_dir / "report.html"


STUDY = Study("samplers", "Inner-loop samplers: gradient error, W2, ESS against L", run, order=0,
              check=grid)
