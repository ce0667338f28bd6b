"""The k-means study's report: per instance x method, the spread of the final energies,
the shares at the best-known minimum and in its basin, times, and equal-time restarts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lesample import LocalEntropyKMeans
from lesample.report import (
    Interval,
    Report,
    binomial_interval,
    decide,
    robust_boxplot,
    subplots,
)
from studies.kmeans.instances import LARGE, make_instance

RTOL = 1e-4
#: Issue 14's targets for one default fit (``n_init`` runs) from random starts: 95% on
#: ``pair`` and ``talk``; everywhere at least the share of one k-means++ start of KMeans.
TARGETS = {"pair": 95.0, "talk": 95.0}
#: The runs of one default fit of ours.
N_INIT = LocalEntropyKMeans().n_init


def best_known(results: pd.DataFrame, refs: pd.DataFrame) -> pd.Series:
    """Per instance, the best-known minimum: the lowest energy of the reference cells and of
    every trial (final or polished), so a trial that beats the references sets the mark."""
    found = [refs[["instance", "energy"]]] + [
        results[["instance", c]].rename(columns={c: "energy"})
        for c in ("energy", "polished") if c in results]
    return pd.concat(found).groupby("instance").energy.min()


def at_best(results: pd.DataFrame, refs: pd.DataFrame, column: str) -> pd.Series:
    """Per trial: is ``column`` (an energy) within ``RTOL`` (relative) of the instance's
    best-known minimum (:func:`best_known`)?"""
    return results[column] <= results.instance.map(best_known(results, refs)) * (1 + RTOL)


def summarise(results: pd.DataFrame, refs: pd.DataFrame) -> pd.DataFrame:
    """One row per instance x method: energy min/max/mean/std, % at the global minimum,
    % in its basin, median seconds per run."""
    df = results.assign(at_min=at_best(results, refs, "energy"),
                        in_basin=at_best(results, refs, "polished"))
    out = df.groupby(["instance", "label"], sort=False).agg(
        trials=("trial", "size"), min=("energy", "min"), max=("energy", "max"),
        mean=("energy", "mean"), std=("energy", "std"), pct_global=("at_min", "mean"),
        pct_basin=("in_basin", "mean"), median_s=("seconds", "median"),
    ).reset_index()
    out[["pct_global", "pct_basin"]] *= 100
    return out


def failure_modes(results: pd.DataFrame, refs: pd.DataFrame) -> pd.DataFrame:
    """Per instance x method, the trials that end outside the global minimum's basin and
    where their centres went (``studies.kmeans.cells.allocation``): % with a centre in the
    wrong group, % with the right count per group but a component without a centre, and %
    with every component covered. Instances without generating centres (real data,
    ``misallocated = -1``) are left out."""
    failed = results[~at_best(results, refs, "polished") & (results.misallocated >= 0)]
    wrong_group = failed.misallocated > 0
    within = ~wrong_group & (failed.uncovered > 0)
    out = failed.assign(wrong_group=wrong_group, within_group=within,
                        covered=~wrong_group & ~within).groupby(
        ["instance", "label"], sort=False).agg(
        failures=("trial", "size"), pct_wrong_group=("wrong_group", "mean"),
        pct_within_group=("within_group", "mean"), pct_covered=("covered", "mean"),
        mean_misallocated=("misallocated", "mean")).reset_index()
    out[["pct_wrong_group", "pct_within_group", "pct_covered"]] *= 100
    return out


def equal_time(summary: pd.DataFrame) -> pd.DataFrame:
    """Ours from random starts against ``KMeans`` with as many k-means++ restarts as fit in
    one of our runs: the restarted share is ``1 - (1 - p)^n`` with ``p`` its single-start
    share at the minimum."""
    rows = []
    for inst, g in summary.groupby("instance", sort=False):
        g = g.set_index("label")
        ours, pp = g.loc["ours (random)"], g.loc["KMeans (k-means++)"]
        n = max(1, int(ours.median_s // pp.median_s))
        p = pp.pct_global / 100
        rows.append(dict(instance=inst, ours_s=ours.median_s, kmeanspp_s=pp.median_s,
                         restarts=n, ours_pct=ours.pct_global,
                         restarted_pct=100 * (1 - (1 - p) ** n)))
    return pd.DataFrame(rows)


def best_of(energies: np.ndarray, n: int) -> float:
    """The expected lowest of ``n`` draws (with replacement) from ``energies``: the order
    statistic ``e_(i)`` is the minimum with probability ``((T-i+1)/T)^n - ((T-i)/T)^n``."""
    e = np.sort(np.asarray(energies, np.float64))
    T = len(e)
    above = (T - np.arange(T)) / T
    return float((e * (above ** n - np.append(above[1:], 0.0) ** n)).sum())


def equal_time_fit(results: pd.DataFrame, refs: pd.DataFrame, n_init: int = N_INIT):
    """Per instance, one default fit of ours (``n_init`` runs, the best kept) against every
    baseline restarted as often as fits in the same wall time (``budget_s``): the share of
    fits at the best-known minimum, ``1 - (1 - p)^n`` from the single-run share ``p``, and
    the expected best energy of ``n`` runs (:func:`best_of`), relative to the best known."""
    df = results.assign(at_min=at_best(results, refs, "energy"))
    best = best_known(results, refs)
    rows = []
    for inst, g in df.groupby("instance", sort=False):
        budget = n_init * g[g.label == "ours (random)"].seconds.median()
        for lab, m in g.groupby("label", sort=False):
            if not lab.startswith(("ours (", "KMeans", "MiniBatch", "faiss")):
                continue
            n = n_init if lab.startswith("ours") else max(1, int(budget // m.seconds.median()))
            p = m.at_min.mean()
            rows.append(dict(instance=inst, label=lab, budget_s=budget, runs=n,
                             pct_global=100 * (1 - (1 - p) ** n),
                             mean_rel=best_of(m.energy, n) / best[inst]))
    return pd.DataFrame(rows)


def restarted(share: Interval, runs: int) -> Interval:
    """The share (%) of ``runs`` restarts with at least one at the minimum, ``1 - (1 -
    p)^runs``, from the single-run share ``share`` (a fraction with its interval, which the
    map carries: it is increasing in ``p``)."""
    def at(p):
        return 100 * (1 - (1 - p) ** runs)

    return Interval(at(share.estimate), at(share.lo), at(share.hi), share.n)


def _share_of_runs(at_min: pd.Series, runs: int) -> Interval:
    """:func:`restarted` from the trials' hits ``at_min`` (exact binomial interval)."""
    return restarted(binomial_interval(int(at_min.sum()), len(at_min)), runs)


def _best_of_difference(a: np.ndarray, n: int, b: np.ndarray, m: int, reps: int = 4000):
    """95% bootstrap interval (trials resampled, fixed seed) of ``best_of(a, n) -
    best_of(b, m)``: the expected best energy of ``n`` runs of one method less that of ``m``
    runs of another."""
    rng = np.random.default_rng(0)
    diffs = [best_of(rng.choice(a, len(a)), n) - best_of(rng.choice(b, len(b)), m)
             for _ in range(reps)]
    return np.percentile(diffs, [2.5, 97.5])


def large_instance_findings(results: pd.DataFrame, refs: pd.DataFrame,
                            fits: pd.DataFrame) -> list[str]:
    """Issue 14's target on the large instances: at the wall time of one default fit, ours
    reaches a lower expected best energy and a higher share at the best-known minimum than
    restarted ``KMeans`` (k-means++) and ``MiniBatchKMeans`` (its setting with the lowest
    expected best energy); a comparison says lower or higher only when its interval resolves
    it. Then where our runs end."""
    df = results.assign(at_min=at_best(results, refs, "energy"),
                        in_basin=at_best(results, refs, "polished"))
    best = best_known(results, refs)
    out = []
    for inst in [i for i in dict.fromkeys(df.instance) if i in LARGE]:
        g, f = df[df.instance == inst], fits[fits.instance == inst].set_index("label")
        ours = g[g.label == "ours (random)"]
        minibatch = f[f.index.str.startswith("MiniBatch")].mean_rel
        if ours.empty or "KMeans (k-means++)" not in f.index or minibatch.empty:
            continue
        mine = _share_of_runs(ours.at_min, N_INIT)
        parts, verdicts = [], []
        for lab in ("KMeans (k-means++)", minibatch.idxmin()):
            base = g[g.label == lab]
            theirs = _share_of_runs(base.at_min, f.runs[lab])
            share = ("higher" if mine.lo > theirs.hi else "lower" if mine.hi < theirs.lo
                     else "not resolved")
            lo, hi = _best_of_difference(ours.energy.to_numpy(), N_INIT,
                                         base.energy.to_numpy(), f.runs[lab])
            energy = "lower" if hi < 0 else "higher" if lo > 0 else "not resolved"
            verdicts.append((energy, share))
            parts.append(f"{lab}, {f.runs[lab]} runs: {f.mean_rel[lab]:.4f}, "
                         f"{theirs.estimate:.0f}% (ours: energy {energy}, share {share})")
        verdict = ("met" if all(v == ("lower", "higher") for v in verdicts) else
                   "missed" if any(e == "higher" or s == "lower" for e, s in verdicts) else
                   "not resolved")
        basins = np.unique(np.round(ours.polished.to_numpy() / best[inst], 4))
        reached = ", ".join(f"{lab} {n}/{len(m)}" for lab, m in g.groupby(
            "label", sort=False).in_basin if (n := int(m.sum())))
        out.append(
            f"{inst}, equal wall time (one default fit of ours, {N_INIT} runs, "
            f"{f.budget_s.iloc[0]:.0f} s), expected best J over the best known and share of "
            f"fits at the best known: ours {f.mean_rel['ours (random)']:.4f}, {mine.estimate:.0f}% "
            f"(95% interval {mine.lo:.0f}-{mine.hi:.0f}%); " + "; ".join(parts)
            + f". Target (lower energy and higher share than both): {verdict} ({len(ours)} "
            "trials per method; energy intervals by bootstrap over the trials). Our "
            f"{len(ours)} runs from random starts end in {len(basins)} distinct minima (after "
            f"the Lloyd polish, {basins.min():.4f}-{basins.max():.4f} x the best known); runs "
            f"in the best-known basin: {reached or 'none'}.")
    return out


def _figure(results: pd.DataFrame, refs: pd.DataFrame):
    """Box plots of the final energy over the best known, one panel per instance (three
    per row), on a linear axis ranged by the boxes: values beyond are marked at the edge."""
    from matplotlib.ticker import MaxNLocator

    best = refs.groupby("instance").energy.min()
    instances = list(dict.fromkeys(results.instance))
    ncols = min(3, len(instances))
    nrows = -(-len(instances) // ncols)
    methods = [list(dict.fromkeys(results[results.instance == i].label)) for i in instances]
    same_methods = all(m == methods[0] for m in methods)
    fig, axes = subplots(nrows, ncols, figsize=(3.4 * ncols + 1.4, (0.32 * max(map(
        len, methods)) + 1.1) * nrows), squeeze=False)
    for k, (ax, inst, labels) in enumerate(zip(axes.flat, instances, methods, strict=False)):
        d = results[results.instance == inst]
        robust_boxplot(ax, [d[d.label == m].energy / best[inst] for m in labels], labels)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]))
        if same_methods and k % ncols:
            ax.tick_params(labelleft=False)  # the row's first panel names the methods
        ax.set_title(inst)
        ax.set_xlabel("final energy / best known")
    for ax in axes.flat[len(instances):]:
        ax.set_visible(False)
    return fig


def write_report(results: pd.DataFrame, refs: pd.DataFrame, out_dir: Path, *, mode: str,
                 hyper: dict, restarts: int, large_trials: int, large_restarts: int,
                 execution=None) -> Path:
    summary = summarise(results, refs)
    best = best_known(results, refs)
    eq = equal_time(summary)
    modes = failure_modes(results, refs)
    def share(inst: str, label: str):
        """The share of trials at the global minimum with its exact 95% interval."""
        row = summary[(summary.instance == inst) & (summary.label == label)].iloc[0]
        return binomial_interval(round(row.pct_global / 100 * row.trials), row.trials)

    fits = equal_time_fit(results, refs)
    findings = []
    for inst in dict.fromkeys(summary.instance):
        got = share(inst, "ours (random)")
        est, lo, hi, _ = restarted(got, N_INIT)
        pp = share(inst, "KMeans (k-means++)")
        target = TARGETS.get(inst, 100 * pp.estimate)
        verdict = {"above": "met", "below": "missed", None: "not resolved"}[
            decide(lo, hi, target)]
        g = summary[summary.instance == inst].set_index("label")
        f = fits[fits.instance == inst].sort_values(["pct_global", "mean_rel"],
                                                    ascending=[False, True])
        findings.append(
            f"{inst}: one default fit of ours ({N_INIT} runs from random starts) reaches the "
            f"best-known minimum with probability {est:.0f}% (95% interval {lo:.0f}-{hi:.0f}%, "
            f"from {100 * got.estimate:.0f}% of single runs); target {target:.0f}% "
            + ("" if inst in TARGETS else "(one k-means++ start of KMeans) ")
            + f"{verdict}. At a single start, {g.pct_global.idxmax()} wins "
            f"({g.pct_global.max():.0f}%); at the wall time of one fit of ours "
            f"({f.budget_s.iloc[0]:.2f} s), {f.label.iloc[0]} wins ({f.runs.iloc[0]} runs: "
            f"{f.pct_global.iloc[0]:.0f}%, expected best J {f.mean_rel.iloc[0]:.4f} x the best "
            "known).")
    for row in eq.itertuples():
        ours_i = share(row.instance, "ours (random)")
        _, lo, hi, _ = restarted(share(row.instance, "KMeans (k-means++)"), row.restarts)
        verdict = ("higher" if 100 * ours_i.lo > hi else
                   "lower" if 100 * ours_i.hi < lo else "not resolved")
        findings.append(
            f"{row.instance}, equal wall time: ours {row.ours_pct:.0f}% against "
            f"{row.restarted_pct:.0f}% for {row.restarts} k-means++ restarts of KMeans "
            f"({verdict}: 95% intervals {100 * ours_i.lo:.0f}-{100 * ours_i.hi:.0f}% and "
            f"{lo:.0f}-{hi:.0f}%).")
    ours_modes = modes[modes.label == "ours (random)"].set_index("instance")
    measured = "; ".join(
        f"{inst}: {r.pct_wrong_group * r.failures / 100:.0f} of {r.failures} have a centre "
        f"in the wrong group, {r.pct_within_group * r.failures / 100:.0f} the right count "
        f"per group but a component without a centre" for inst, r in ours_modes.iterrows())
    with_centres = refs[refs.misallocated >= 0]  # real data has no generating centres
    best_rows = with_centres.loc[with_centres.groupby("instance").energy.idxmin()]
    one_each = bool((best_rows[["misallocated", "uncovered"]] == 0).all(axis=None))
    misplaced = 100 - (ours_modes.pct_covered * ours_modes.failures).sum() / max(
        1, ours_modes.failures.sum())
    findings.append(
        "What limits ours: SBE is descent on the energy smoothed at a scope that shrinks "
        "from 3 to about 1 (reduced units) over 20 outer steps, then Lloyd. "
        "Counted at the nearest generating centre, the best-known minimum "
        + ("has one centre per component" if one_each else "does not have one centre per "
           "component") + f"; of our trials from random starts that end outside its basin, "
        f"{measured or 'none'}. So {misplaced:.0f}% of our failures put the centres in the "
        "wrong places among the components rather than failing to converge: a split of the "
        "centres among the groups made while the scope is large is kept once the scope is "
        "below the distance between groups, where the smoothing moves centres only within a "
        "group.")
    findings += large_instance_findings(results, refs, fits)
    tight = results[(results.instance == "unequal") & (results.label == "ours (random)")
                    & ~at_best(results, refs, "polished")]
    if len(tight):
        findings.append(
            f"Does smoothing merge small tight clusters into big ones? On unequal, "
            f"{(tight.uncovered > 0).mean() * 100:.0f}% of our {len(tight)} failing runs leave "
            "a component without a centre of its own (the tight one beside a big cluster, "
            "counted at the nearest generating centre).")
    trials = int(summary.trials.max())
    large = bool(set(summary.instance) & set(LARGE))
    rep = Report(
        "k-means: local entropy against Lloyd and mini-batch k-means",
        intro=(
            "How often does each method reach the global minimum of the k-means energy "
            "`J = (1/N) sum_j min_i |c_i - x_j|^2` (the mean squared distance to the nearest "
            "centre) from random starts? Instances generated from seeds (and, in full mode, "
            "Fashion-MNIST); every method "
            f"runs {trials} trials" + (f" ({min(trials, large_trials)} on the large "
                                       "instances)" if large else "")
            + ", each with its own seed. The best-known minimum is the lowest energy found: "
            f"the best of {restarts} k-means++ restarts of Lloyd run to convergence"
            + (f" ({large_restarts} on the large instances)" if large else "")
            + ", Lloyd from the generating centres, and every trial."),
        details={"mode": mode, "trials": trials, "restarts": restarts},
    )
    rep.add_findings(findings)
    rep.add_heading("Instances")
    rep.add_text("\n".join(
        f"- `{i}`: {make_instance(i).description}; best-known J = {best[i]:.6f}"
        + ("" if best[i] >= refs[refs.instance == i].energy.min() * (1 - RTOL) else
           f", below the reference cells' {refs[refs.instance == i].energy.min():.6f}")
        + "." for i in dict.fromkeys(summary.instance)))
    rep.add_heading("Results")
    rep.add_text(
        "`pct_global`: % of trials whose final energy is within 1e-4 (relative) of the "
        "best-known minimum; `pct_basin`: the same after a Lloyd polish of the final "
        "centres (the trial ended in the global minimum's basin); `median_s`: median wall "
        "time of one run. Ours ends with Lloyd iterations, so for it the two shares agree; "
        "MiniBatchKMeans stops short of the exact minimum, hence its low `pct_global`. "
        "`ours` is SBE with the estimator's defaults (one run per trial); HEAT and "
        "Entropy-SGD run, for every instance: "
        + "; ".join(f"{m}: " + ", ".join(f"`{k}={v}`" for k, v in h.items())
                    for m, h in hyper.items() if h)
        + ". Our wall time per run is that of one fit of the estimator (its `n_init` runs "
        "vmapped, after compilation) divided by `n_init`; the trials themselves run "
        "vmapped.")
    rep.add_table(summary, caption="Final energy J per instance and method.",
                  float_format={"min": ".5f", "max": ".5f", "mean": ".5f", "std": ".5f",
                                "pct_global": ".0f", "pct_basin": ".0f", "median_s": ".3f"})
    rep.add_table(eq, caption="Equal wall time: ours (random starts) against KMeans with "
                              "k-means++ restarts.",
                  float_format={"ours_s": ".3f", "kmeanspp_s": ".3f", "ours_pct": ".0f",
                                "restarted_pct": ".0f"})
    rep.add_table(fits, caption=f"Equal wall time per fit: one default fit of ours "
                  f"({N_INIT} runs from random starts, the best kept) against each baseline "
                  "restarted as often as fits in the same time (`runs`); `pct_global`: share "
                  "of fits at the best-known minimum, `1 - (1 - p)^runs` from the single-run "
                  "share; `mean_rel`: expected best energy of the runs over the best known.",
                  float_format={"budget_s": ".3f", "pct_global": ".0f", "mean_rel": ".4f"})
    rep.add_table(modes, caption="Trials that end outside the global minimum's basin, by "
                                 "where their centres went (each centre counted at its "
                                 "nearest generating centre; groups: the visible clusters "
                                 "of each instance).",
                  float_format={"pct_wrong_group": ".0f", "pct_within_group": ".0f",
                                "pct_covered": ".0f", "mean_misallocated": ".2f"})
    rep.add_figure(_figure(results, refs), caption="Final energies relative to the best "
                   "known, per method: boxes span the quartiles, whiskers reach the furthest "
                   "trial within 1.5 interquartile ranges, circles are trials beyond; the "
                   "axis covers the whiskers, and trials beyond it are red triangles at the "
                   "edge labelled with the most extreme value (and their count).")
    rep.add_text("Data: [results.csv](results.csv) (one row per trial), "
                 "[reference.csv](reference.csv).")
    if execution is not None:  # a lesample.executor.GridResult
        execution.add_to(rep)
    return rep.write(out_dir / "report.html")
