"""The gym study's report: per target and sampler, errors against the ground truth with their
Monte Carlo errors, ESS per gradient and per second, R-hat; and, per self-tuned BAOAB, whether
it reaches NumPyro NUTS's ESS per gradient with its warm-up counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lesample.report import NO_INTERVAL, Report, decide, mean_interval

#: Columns averaged over seeds per (target, sampler).
SUMMARY = ["mean_err", "mean_mc", "mean_z", "sd_err", "sd_mc", "sd_z", "ess_per_grad",
           "ess_per_grad_total", "ess_per_second", "ess_per_second_total", "rhat",
           "divergences"]
#: The issue's target: self-tuned BAOAB against this sampler, on every target but these.
REFERENCE, EXEMPT = "numpyro-nuts", ("funnel",)
#: A run is read as converged below this R-hat, and as unbiased below this |error| / MCSE at
#: its worst coordinate (about 4 standard errors: with up to 2 x 30 coordinates a chance
#: exceedance has probability below 1%).
RHAT_MAX, Z_MAX = 1.05, 4.0
FORMATS = {"mean_err": ".3f", "mean_mc": ".3f", "mean_z": ".1f", "sd_err": ".3f",
           "sd_mc": ".3f", "sd_z": ".1f", "ess_per_grad": ".3g", "ess_per_grad_total": ".3g",
           "vs_nuts": ".3g", "ess_per_second": ".3g", "ess_per_second_total": ".3g",
           "rhat": ".3f", "divergences": ".0f", "seeds": ".0f"}


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Means over seeds per (target, sampler); ``vs_nuts``: ESS per gradient, warm-up
    included, over NumPyro NUTS's on the same target."""
    cols = [c for c in SUMMARY if c in results]
    g = results.groupby(["target", "sampler"], sort=False)
    table = g[cols].mean().join(g.seed.nunique().rename("seeds")).reset_index()
    ref = table[table.sampler == REFERENCE].set_index("target").ess_per_grad_total
    table["vs_nuts"] = table.ess_per_grad_total / table.target.map(ref)
    return table


def _flags(rows: pd.DataFrame) -> list[str]:
    """What makes a run's figures unusable: R-hat or a bias beyond Monte Carlo error."""
    out = []
    if rows.rhat.max() > RHAT_MAX:
        out.append(f"R-hat up to {rows.rhat.max():.2f} (> {RHAT_MAX}: not converged, its ESS "
                   "means little)")
    z = np.nanmax(rows[["mean_z", "sd_z"]].to_numpy())
    if z > Z_MAX:
        out.append(f"an error of {z:.1f} Monte Carlo errors (> {Z_MAX:g}: biased)")
    if rows.divergences.sum():
        out.append(f"{int(rows.divergences.sum())} diverged chains")
    return out


def verdict(results: pd.DataFrame, sampler: str, target: str) -> tuple[str, str]:
    """``(verdict, line)``: whether ``sampler`` reaches NumPyro NUTS's ESS per gradient with
    warm-up on ``target``. "meets" needs the 95% t-interval over seeds of the log ratio
    wholly above 0 and no flag (R-hat, bias, divergence); "misses" an interval wholly
    below 0 or a flag; otherwise "not resolved" (one seed gives no interval)."""
    ours = results[(results.sampler == sampler) & (results.target == target)].set_index("seed")
    ref = results[(results.sampler == REFERENCE) & (results.target == target)].set_index("seed")
    seeds = ours.index.intersection(ref.index)
    if not len(seeds):
        return "missing", f"**{target}**, {sampler}: no run to compare."
    log_ratio = np.log(ours.loc[seeds, "ess_per_grad_total"]
                       / ref.loc[seeds, "ess_per_grad_total"])
    iv = mean_interval(log_ratio)
    flags = _flags(ours.loc[seeds])
    side = decide(iv.lo, iv.hi, 0.0) if iv.resolved else None
    ratio = f"{np.exp(iv.estimate):.3g}x"
    if iv.resolved:
        ratio += f" (95% interval {np.exp(iv.lo):.3g}-{np.exp(iv.hi):.3g}x over {iv.n} seeds)"
    if flags or side == "below":
        word = "misses"
    elif side == "above":
        word = "meets"
    else:
        word = "not resolved"
    evidence = "; ".join(flags) if flags else ("" if iv.resolved else NO_INTERVAL)
    line = (f"**{target}**, {sampler}: {ratio} NumPyro NUTS's ESS per gradient with warm-up: "
            f"{word}" + (f" ({evidence})." if evidence else "."))
    return word, line


def headline(verdicts: dict[str, list[str]]) -> list[str]:
    lines = []
    for sampler, words in verdicts.items():
        counts = pd.Series(words).value_counts()
        parts = [f"{w} on {counts[w]}" for w in ("meets", "misses", "not resolved", "missing")
                 if w in counts]
        lines.append(f"Self-tuned {sampler} against NumPyro NUTS's ESS per gradient (warm-up "
                     f"included), every target but {', '.join(EXEMPT)}: "
                     f"{', '.join(parts)} of {len(words)}.")
    return lines


def write_report(results: pd.DataFrame, out_dir: Path, *, mode: str, settings: dict,
                 execution=None, planned: int | None = None) -> Path:
    """The report page; ``planned``: the cells the run was to have, when it was stopped
    before all finished (the page then says how many did)."""
    table = summarise(results)
    targets = list(dict.fromkeys(results.target))
    verdicts, lines = {}, []
    for sampler in ("baoab-diag", "baoab-dense"):
        for target in targets:
            if target in EXEMPT:
                continue
            word, line = verdict(results, sampler, target)
            verdicts.setdefault(sampler, []).append(word)
            lines.append(line)
    flagged = [f"**{t}**, {s}: " + "; ".join(f) + "."
               for (t, s), rows in results.groupby(["target", "sampler"], sort=False)
               if s.split("-")[0] not in ("baoab",) and (f := _flags(rows))]
    rep = Report(
        "Gym: self-tuned kernels against NUTS on inference-gym targets",
        intro=(
            "Self-tuned BAOAB, MALA and ULA (`lesample.adaptation.warmup`: curvature by "
            "Lanczos on Hessian-vector products at warm-up draws, preconditioner from "
            "them; one set of defaults for every target; `baoab-dense` is what the "
            "default preconditioner, `auto`, picks on every target here) against NumPyro "
            "NUTS, BlackJAX NUTS (window adaptation) and BlackJAX MALA (dual-averaged "
            "step, identity metric) on "
            "inference-gym targets with published ground truth. Errors are in ground-truth "
            "standard deviations at the worst coordinate, beside their Monte Carlo standard "
            "errors (`mc`) and the largest |error| / MCSE over coordinates (`z`). ESS is the "
            "smallest bulk ESS over coordinates; `total` counts the warm-up (an HVP as two "
            "gradients); `vs_nuts` is ESS per gradient with warm-up over NumPyro NUTS's. "
            "Seconds exclude compilation. See docs/adaptation.md."),
        details={"mode": mode, "cells": len(results) if planned is None else
                 f"{len(results)} of {planned} planned", "seeds": results.seed.nunique(),
                 **settings},
        headlines=headline(verdicts),
    )
    if planned is not None and planned > len(results):
        rep.add_text(f"The run was stopped with {len(results)} of its {planned} cells finished "
                     "(seed-major order: the first seeds' cells first); a missing (target, "
                     "sampler) pair is absent from its table, and a finding without the NUTS "
                     "run it needs says so.")
    rep.add_findings(lines, title="Self-tuned BAOAB against NumPyro NUTS")
    if flagged:
        rep.add_findings(flagged, title="Other runs whose figures are unusable")
    cols = ["sampler", "mean_err", "mean_mc", "mean_z", "sd_err", "sd_mc", "sd_z",
            "ess_per_grad", "ess_per_grad_total", "vs_nuts", "ess_per_second",
            "ess_per_second_total", "rhat", "divergences", "seeds"]
    for target in targets:
        rows = table[table.target == target]
        rep.add_heading(target)
        rep.add_table(rows[[c for c in cols if c in rows]],
                      caption=f"{target}: means over seeds per sampler.", float_format=FORMATS)
    if execution is not None:  # a lesample.executor.GridResult
        execution.add_to(rep)
    return rep.write(out_dir / "report.html")
