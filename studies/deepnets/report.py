"""The deep-network study's report: Table 1 layout, epochs to SGD's error, curves, run time.

``python -m studies.deepnets.report DIR --mode full [--add RUN_DIR ...]`` rewrites DIR's
report from its tidy data (``results.csv``, ``bn.csv``), after merging in those of other
runs of the study (cells run separately, e.g. one algorithm added later; a cell's rows in a
later directory replace its rows in DIR).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lesample.report import NO_INTERVAL, Report, decide, difference_interval, subplots
from lesample.store import read_csv, write_csv

ALGO_ORDER = ["entropy_sgd", "heat", "hj", "sgd", "parle", "elastic_sgd",  # Table 1's, then ours
              "entropy_sgd+auto", "entropy_sgd+auto+tol", "entropy_sgd+tol", "hj+auto"]
LABEL = {"entropy_sgd": "Entropy-SGD", "heat": "HEAT", "hj": "HJ", "sgd": "SGD",
         "parle": "Parle", "elastic_sgd": "Elastic-SGD",
         "entropy_sgd+auto": "Entropy-SGD, auto scope",
         "entropy_sgd+auto+tol": "Entropy-SGD, auto scope, adaptive L",
         "entropy_sgd+tol": "Entropy-SGD, adaptive L", "hj+auto": "HJ, auto scope"}
PAPER = pd.DataFrame(  # paper Table 1 (MNIST): validation error %, @ effective epochs
    {"entropy_sgd": ["1.08 ± 0.02 @ 120", "0.50 ± 0.01 @ 80"],
     "heat": ["1.13 ± 0.02 @ 200", "0.59 ± 0.02 @ 75"],
     "hj": ["1.17 ± 0.04 @ 200", "0.50 ± 0.01 @ 70"],
     "sgd": ["1.10 ± 0.01 @ 194", "0.50 ± 0.02 @ 67"]},
    index=pd.Index(["mnistfc", "lenet"], name="model"))


CELL = ["model", "algo", "seed"]


def reached(results: pd.DataFrame) -> pd.DataFrame:
    """Per model, every cell's results up to the same share of its budget (column
    ``epochs``) that every cell of the model reached: a stopped run compares like with like,
    and cells with another budget (the self-tuned runs, whose epochs cost about two
    effective epochs each) are compared at the same share of theirs."""
    share = results.groupby(CELL).epoch.transform("max") / results.epochs
    common = share.groupby(results.model).transform("min")
    return results[results.epoch <= np.floor(common * results.epochs + 1e-9)]


def with_budget(results: pd.DataFrame, epochs: int) -> pd.DataFrame:
    """``results`` with every cell's budget in epochs (column ``epochs``): runs written
    before the column had the mode's, ``epochs``."""
    budget = results.get("epochs", pd.Series(np.nan, index=results.index))
    return results.assign(epochs=budget.fillna(epochs).astype(int))


def per_seed(df: pd.DataFrame, column: str, model: str, *algos: str) -> list[np.ndarray]:
    """``column`` of ``df`` for one model and each of ``algos``, one value per seed."""
    return [df[(df.model == model) & (df.algo == a)][column].to_numpy(dtype=float)
            for a in algos]


def last_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Each cell's last row."""
    return df[df.epoch == df.groupby(CELL).epoch.transform("max")]


def final_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per model x algorithm: mean and std over seeds of the final validation error (%) and
    effective epochs."""
    g = last_rows(df).groupby(["model", "algo"])
    return pd.DataFrame({
        "seeds": g.seed.nunique(),
        "val_error_mean": 100 * g.val_error.mean(),
        "val_error_std": 100 * g.val_error.std(ddof=1),
        "train_loss_mean": g.train_loss.mean(),
        "effective_epochs": g.effective_epochs.mean(),
    }).reset_index()


def table1(final: pd.DataFrame) -> pd.DataFrame:
    """Paper Table 1 layout: one row per model, ``mean ± std @ effective epochs``."""
    cell = final.apply(lambda r: f"{r.val_error_mean:.2f}"
                       + (f" ± {r.val_error_std:.2f}" if np.isfinite(r.val_error_std) else "")
                       + f" @ {r.effective_epochs:.1f}", axis=1)
    wide = final.assign(cell=cell).pivot(index="model", columns="algo", values="cell")
    wide = wide[[a for a in ALGO_ORDER if a in wide.columns]]
    return wide.rename(columns=LABEL)


def epochs_to_sgd(df: pd.DataFrame, final: pd.DataFrame) -> pd.DataFrame:
    """Per model x algorithm x seed: the first effective epoch at which the validation error
    is at or below SGD's final mean error of that model (NaN: not reached)."""
    sgd = final[final.algo == "sgd"].set_index("model").val_error_mean / 100
    rows = []
    for (model, algo, seed), g in df.groupby(["model", "algo", "seed"]):
        if model not in sgd.index:
            continue
        hit = g[g.val_error <= sgd[model] + 1e-12]
        rows.append(dict(model=model, algo=algo, seed=seed, sgd_final_error=100 * sgd[model],
                         epochs_to_sgd=hit.effective_epochs.min() if len(hit) else np.nan))
    return pd.DataFrame(rows, columns=["model", "algo", "seed", "sgd_final_error",
                                       "epochs_to_sgd"])


def epochs_summary(hits: pd.DataFrame) -> pd.DataFrame:
    g = hits.groupby(["model", "algo"])
    return pd.DataFrame({
        "sgd_final_error": g.sgd_final_error.first(),
        "seeds_reaching": g.epochs_to_sgd.count(),
        "seeds": g.seed.nunique(),
        "epochs_to_sgd_mean": g.epochs_to_sgd.mean(),
    }).reset_index()


def timing_table(results: pd.DataFrame, settings: dict) -> pd.DataFrame:
    """Measured seconds per effective epoch (training and evaluation) per model x algo, and
    the projected time of one cell at the mode's budget."""
    df = results.assign(seconds=results.train_seconds + results.eval_seconds)
    df = df[df.epoch > 1]  # the first epoch of each call includes compilation
    g = df.groupby(["model", "algo"])
    out = pd.DataFrame({"s_per_epoch": g.seconds.median(),
                        "train_s_per_epoch": g.train_seconds.median()}).reset_index()
    out["projected_cell_min"] = out.s_per_epoch * settings["epochs"] / 60
    return out


def _pm(mean: float, sd: float) -> str:
    """``mean ± sd`` (%), or the mean alone when there is no spread to show (one seed)."""
    return f"{mean:.2f} ± {sd:.2f}%" if np.isfinite(sd) else f"{mean:.2f}%"


def claim_verdict(errors: pd.DataFrame, hits: pd.DataFrame, model: str, algo: str
                  ) -> tuple[str, str]:
    """``(verdict, evidence)`` on the paper's claim that ``algo`` matches or beats SGD's
    final validation error in fewer effective epochs.

    ``errors``: final validation error per model x algo x seed; ``hits``: effective epochs
    to SGD's final error per seed (:func:`epochs_to_sgd`). The verdict is "agrees with" when
    the 95% Welch intervals of both differences (error, epochs; ``algo`` minus SGD) lie below
    0, "does not agree with" when either lies above 0, and ``"not resolved"`` otherwise, or
    with one seed (no interval). A seed that never reaches SGD's error leaves the epochs
    comparison unresolved."""
    err_a, err_s = per_seed(errors, "val_error", model, algo, "sgd")
    if min(err_a.size, err_s.size) < 2:
        return "not resolved", NO_INTERVAL
    err = difference_interval(100 * err_a, 100 * err_s)
    ep_a, ep_s = per_seed(hits, "epochs_to_sgd", model, algo, "sgd")
    reached_all = np.isfinite(ep_a).all() and np.isfinite(ep_s).all()
    ep = difference_interval(ep_a, ep_s) if reached_all else None
    err_side = decide(err.lo, err.hi, 0)
    ep_side = decide(ep.lo, ep.hi, 0) if ep is not None else None
    if "above" in (err_side, ep_side):
        verdict = "does not agree with"
    elif err_side == ep_side == "below":
        verdict = "agrees with"
    else:
        verdict = "not resolved"
    epochs = ("a seed never reaches it" if ep is None else
              f"epochs {ep.estimate:+.1f} [{ep.lo:+.1f}, {ep.hi:+.1f}]")
    evidence = (f"differences from SGD with 95% intervals, {err_a.size} and {err_s.size} "
                f"seeds: error {err.estimate:+.2f} [{err.lo:+.2f}, {err.hi:+.2f}] points, "
                f"{epochs}")
    return verdict, evidence


def findings(final, hits_summary, errors: pd.DataFrame, hits: pd.DataFrame) -> list[str]:
    """Per model, Entropy-SGD's, HJ's, Parle's and Elastic-SGD's final error and epochs to
    SGD's final error against SGD's, with a verdict on the paper's claim only where the
    intervals resolve it."""
    lines = []
    for model in final.model.unique():
        f = final[final.model == model].set_index("algo")
        if "sgd" not in f.index:
            continue
        s = f.loc["sgd"]
        for algo in [a for a in ALGO_ORDER if a not in ("sgd", "heat")]:
            if algo not in f.index:
                continue
            a = f.loc[algo]
            h = hits_summary[(hits_summary.model == model) & (hits_summary.algo == algo)]
            h_sgd = hits_summary[(hits_summary.model == model) & (hits_summary.algo == "sgd")]
            e_algo = h.epochs_to_sgd_mean.iloc[0] if len(h) else np.nan
            e_sgd = h_sgd.epochs_to_sgd_mean.iloc[0] if len(h_sgd) else np.nan
            verdict, evidence = claim_verdict(errors, hits, model, algo)
            claim = "the paper's claim (matches or beats SGD's error in fewer effective epochs)"
            conclusion = (f"No verdict on {claim}: not resolved ({evidence})."
                          if verdict == "not resolved" else
                          f"This {verdict} {claim} ({evidence}).")
            lines.append(
                f"**{model}, {LABEL[algo]}**: {_pm(a.val_error_mean, a.val_error_std)} "
                f"against SGD's {_pm(s.val_error_mean, s.val_error_std)} at "
                f"{s.effective_epochs:.0f} effective epochs; it reaches SGD's final error "
                f"{'never' if not np.isfinite(e_algo) else f'after {e_algo:.1f} effective epochs'}"
                f" (SGD: {e_sgd:.1f}). {conclusion}")
    return lines


def self_tuning_verdict(errors: pd.DataFrame, hits: pd.DataFrame, model: str, tuned: str
                        ) -> tuple[str, str]:
    """``(verdict, evidence)`` on issue 15's target: the self-tuned variant ``tuned``
    (``entropy_sgd+auto+tol``, ...) reaches SGD's final error in no more effective epochs
    than its hand-set algorithm. "met" or "missed" only where a 95% Welch interval resolves
    it: of the epochs (tuned minus hand-set) when every seed of both reaches that error; of
    the final error when some seeds of one reach it and none of the other (which needs more
    epochs than the budget); otherwise "not resolved"."""
    hand = tuned.split("+")[0]

    ep_t, ep_h = per_seed(hits, "epochs_to_sgd", model, tuned, hand)
    err_t, err_h = per_seed(errors, "val_error", model, tuned, hand)
    err = difference_interval(100 * err_t, 100 * err_h)
    reach_t, reach_h = np.isfinite(ep_t), np.isfinite(ep_h)
    evidence = (f"reaches SGD's final error in {reach_t.sum()} of {ep_t.size} seeds"
                + (f" after {np.nanmean(ep_t):.1f} effective epochs" if reach_t.any() else "")
                + f", the hand-set {LABEL[hand]} in {reach_h.sum()} of {ep_h.size}"
                + (f" after {np.nanmean(ep_h):.1f}" if reach_h.any() else "")
                + f"; final error {err.estimate:+.2f} [{err.lo:+.2f}, {err.hi:+.2f}] points "
                "against the hand-set")
    if min(ep_t.size, ep_h.size) < 2:
        return "not resolved", evidence + f" ({NO_INTERVAL})"
    if reach_t.all() and reach_h.all():
        ep = difference_interval(ep_t, ep_h)
        evidence += f", epochs {ep.estimate:+.1f} [{ep.lo:+.1f}, {ep.hi:+.1f}]"
        side = decide(ep.lo, ep.hi, 0)
    elif not reach_t.any() and reach_h.any():
        side = "above" if decide(err.lo, err.hi, 0) == "above" else None
    elif reach_t.any() and not reach_h.any():
        side = "below" if decide(err.lo, err.hi, 0) == "below" else None
    else:
        side = None
    return {"below": "met", "above": "missed", None: "not resolved"}[side], evidence


def self_tuning_findings(errors: pd.DataFrame, hits: pd.DataFrame) -> list[str]:
    """Per model and self-tuned variant present, its :func:`self_tuning_verdict`."""
    return [f"**{model}, {LABEL[tuned]}** against the hand-set scoping: "
            + "{1}. Target (no more effective epochs to SGD's error): {0}.".format(
                *self_tuning_verdict(errors, hits, model, tuned))
            for model in errors.model.unique()
            for tuned in [a for a in ALGO_ORDER if "+" in a]
            if {tuned, tuned.split("+")[0]} <= set(errors[errors.model == model].algo)]


def curves(df: pd.DataFrame, model: str):
    fig, axes = subplots(1, 2, figsize=(10, 3.6))
    for algo in [a for a in ALGO_ORDER if a in set(df.algo)]:
        g = df[(df.model == model) & (df.algo == algo)].groupby("epoch")
        x = g.effective_epochs.mean()
        for ax, col, scale in ((axes[0], "train_loss", 1), (axes[1], "val_error", 100)):
            m, s = scale * g[col].mean(), scale * g[col].std(ddof=1).fillna(0)
            ax.plot(x, m, marker="o", ms=3, label=LABEL[algo])
            ax.fill_between(x, m - s, m + s, alpha=0.2)
    axes[0].set(xlabel="effective epochs", ylabel="training loss (cross-entropy)",
                yscale="log", title=f"{model}: training loss")
    axes[1].set(xlabel="effective epochs", ylabel="validation error (%)",
                title=f"{model}: validation error")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center",
               frameon=False)
    return fig


def wall_clock_curves(df: pd.DataFrame, model: str):
    """Validation error against cumulative training seconds (mean over seeds)."""
    fig, ax = subplots(1, 1, figsize=(6.5, 3.6))
    for algo in [a for a in ALGO_ORDER if a in set(df.algo)]:
        cell = df[(df.model == model) & (df.algo == algo)].sort_values("epoch")
        cell = cell.assign(minutes=cell.groupby("seed").train_seconds.cumsum() / 60)
        g = cell.groupby("epoch")
        ax.plot(g.minutes.mean(), 100 * g.val_error.mean(), marker="o", ms=3,
                label=LABEL[algo])
    ax.set(xlabel="training wall-clock (min, cumulative)", ylabel="validation error (%)",
           title=f"{model}: validation error against wall-clock time")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right center", frameon=False)
    return fig


def write_report(results: pd.DataFrame, bn: pd.DataFrame, out_dir: Path, *, mode: str,
                 settings: dict, dataset: str, num_train: int, execution=None) -> Path:
    results = with_budget(results, settings["epochs"])
    df = reached(results)
    final = final_table(df)
    hits = epochs_to_sgd(df, final)
    hits_summary = epochs_summary(hits)
    timing = timing_table(results, settings)
    write_csv(final, out_dir / "summary.csv")
    write_csv(hits, out_dir / "epochs_to_sgd.csv")
    write_csv(timing, out_dir / "timing.csv")
    finished = results.groupby(CELL).epoch.transform("max") >= results.epochs
    complete = bool(finished.all())
    cells = results.groupby(CELL).ngroups
    status = ("every cell reached the budget" if complete else
              "**stopped before the budget**: the tables compare all cells at the last "
              "epoch every cell of a model reached")
    total_s = (results.train_seconds + results.eval_seconds).sum()
    rep = Report(
        "Deep networks: local entropy against SGD at equal effective epochs",
        intro=(
            f"Mode **{mode}**: {dataset}, {num_train:,} training images, batches of "
            f"{settings['batch_size']}, budget {settings['epochs']} effective epochs "
            f"(learning rate / 5 every {settings['drop_every']}), {cells} cells "
            f"(model x algorithm x seed); {status}. Effective epochs = gradient evaluations "
            "x batch / N (paper Remark 22); for Parle and Elastic-SGD the gradients of all "
            "replicas count (n replicas x L gradients per coupling round). Settings of each "
            "algorithm: `lesample/train/algorithms.py`. Validation error is measured on the 10,000 "
            "test images, as in the paper. BatchNorm statistics are recomputed at x without "
            "dropout before each evaluation (`lesample/train/step.py`). Entropy-SGD's noise: "
            f"{', '.join(sorted(set(results.noise)))}. Training time spent: "
            f"{total_s / 60:.1f} min."
        ),
        details={"mode": mode, "cells": cells, "seeds": results.seed.nunique()},
    )
    errors = last_rows(df)
    rep.add_findings((findings(final, hits_summary, errors, hits)
                      or ["No SGD baseline in this run: nothing to compare against."])
                     + self_tuning_findings(errors, hits))
    rep.add_heading("Validation error (%) @ effective epochs (Table 1 layout)")
    rep.add_table(table1(final).reset_index(), caption="Mean ± std over seeds of the final "
                  "validation error (the mean alone with one seed), at the effective epochs "
                  "reached.")
    done = results[finished]
    if not complete and len(done):
        rep.add_table(table1(final_table(done)).reset_index(), caption="The cells that "
                      f"reached the budget ({settings['epochs']} effective epochs), at the "
                      "budget: the table above compares every cell at the epoch all reached.")
    rep.add_table(PAPER.rename(columns=LABEL).reset_index(),
                  caption="Paper Table 1 (MNIST, not Fashion-MNIST; 6 seeds, full budgets), "
                  "for the layout; the numbers are not comparable with Fashion-MNIST.")
    rep.add_heading("Effective epochs to reach SGD's final error")
    rep.add_table(hits_summary, caption="First effective epoch at which a seed's validation "
                  "error is at or below SGD's final mean error (mean over the seeds that "
                  "reach it).")
    rep.add_heading("Curves")
    for model in df.model.unique():
        rep.add_figure(curves(df, model), caption=f"{model}: mean over seeds against "
                       "effective epochs, shaded ± std (no band with one seed).")
    rep.add_heading("Wall-clock curves")
    rep.add_text(
        "Validation error against the cumulative training time of a cell (evaluation left "
        "out; the first epoch of each call includes compilation). The cells ran on a shared "
        "2-core machine under varying load from other jobs, several cells at once with one "
        "thread each, and the algorithms' cells ran at different times: the time axis shows "
        "what each run cost here, not the algorithms' relative speed. Replicas of Parle and "
        "Elastic-SGD ran stacked on one device (one process per cell)."
    )
    for model in df.model.unique():
        rep.add_figure(wall_clock_curves(df, model), caption=f"{model}: mean over seeds.")
    rep.add_heading("BatchNorm statistics")
    rep.add_text(
        "The engine never lets a training pass move BatchNorm's running averages (the inner "
        "iterates y of Entropy-SGD/HJ and HEAT's perturbed points are not the evaluated "
        "model); it recomputes the statistics at x, without dropout, before evaluating. The "
        "table compares the final validation error with statistics recomputed with dropout "
        "on, which is what a running average of training passes would track."
    )
    if len(bn):
        bn_view = bn.groupby(["model", "algo"])[["val_error_no_dropout", "val_error_dropout"]]
        rep.add_table((100 * bn_view.mean()).reset_index(),
                      caption="Validation error (%), mean over seeds of finished cells.")
    rep.add_heading("Run time")
    rep.add_table(timing, caption="Measured median seconds per effective epoch (training + "
                  "evaluation, first epoch of each call left out: compilation) on this "
                  "machine, and the projected minutes of one cell at the budget.")
    rep.add_text(
        f"Projected time of all {cells} cells at the budget: "
        f"{(timing.projected_cell_min.sum() * cells / max(len(timing), 1)) / 60:.1f} h "
        "(the mean projected cell time x cells)."
    )
    if execution is not None:  # a lesample.executor.GridResult
        execution.add_to(rep)
    return rep.write(out_dir / "report.html")


def merge_runs(dirs: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(results, bn)`` of several run directories; a cell's rows (model x algo x seed) in a
    later directory replace those of an earlier one."""
    results, bn = [], []
    for d in dirs:
        r = read_csv(Path(d) / "results.csv")
        results.append(r)
        if (Path(d) / "bn.csv").exists():
            bn.append(read_csv(Path(d) / "bn.csv"))
    def last_wins(frames):
        if not frames:
            return pd.DataFrame()
        df = pd.concat([f.assign(_run=i) for i, f in enumerate(frames)], ignore_index=True)
        newest = df.groupby(CELL)._run.transform("max")
        return df[df._run == newest].drop(columns="_run").reset_index(drop=True)

    out = last_wins(results)
    if "replicas" in out:  # runs from before the replica algorithms have no such column
        out["replicas"] = out.replicas.fillna(1).astype(int)
    return out, last_wins(bn)


def main(argv=None) -> None:
    import argparse

    from studies.deepnets import MODES

    parser = argparse.ArgumentParser(prog="python -m studies.deepnets.report",
                                     description="Rewrite a deepnets report from its tidy "
                                     "data, merging in the cells of other runs.")
    parser.add_argument("dir", type=Path, help="the report's directory (rewritten)")
    parser.add_argument("--mode", choices=sorted(MODES), required=True)
    parser.add_argument("--add", type=Path, nargs="*", default=[],
                        help="run directories whose cells are merged in")
    args = parser.parse_args(argv)
    results, bn = merge_runs([args.dir, *args.add])
    settings = MODES[args.mode]
    results = with_budget(results, settings["epochs"])
    write_csv(results, args.dir / "results.csv")
    write_csv(bn, args.dir / "bn.csv")
    first = results.iloc[0]  # N from effective epochs = num_grads x B / N
    num_train = round(first.num_grads * settings["batch_size"] / first.effective_epochs)
    print(write_report(results, bn, args.dir, mode=args.mode, settings=settings,
                       dataset=", ".join(sorted(set(results.dataset))), num_train=num_train))


if __name__ == "__main__":
    main()
