"""Figures that stay legible: a box plot whose outliers do not squash the boxes, and a check
of a finished figure for overlapping tick labels and legends drawn over the data."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["layout_problems", "robust_boxplot"]


def _horizontal() -> dict[str, Any]:
    import matplotlib

    major, minor = (int(p) for p in matplotlib.__version__.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


_HORIZONTAL = _horizontal()  # `vert` is deprecated from matplotlib 3.10, which added this


def _whisker_range(values: np.ndarray, whis: float) -> tuple[float, float]:
    """The ends of a box plot's whiskers: the extreme data within ``whis`` IQR of the box
    (matplotlib's rule)."""
    q1, q3 = np.percentile(values, [25, 75])
    iqr = q3 - q1
    inside = values[(values >= q1 - whis * iqr) & (values <= q3 + whis * iqr)]
    return float(inside.min()), float(inside.max())


def robust_boxplot(
    ax: Axes, groups: Sequence[Sequence[float]], labels: Sequence[str], *, whis: float = 1.5,
    value_format: str = "{:.3g}",
) -> list[float]:
    """Horizontal box plots, one per group, on an axis range set by the boxes and whiskers.

    Outliers inside that range are drawn as usual. Those beyond it are drawn at the axis
    edge as a triangle pointing out, with their count and most extreme value
    (``value_format``) written beside, so one far value neither squashes every box nor
    disappears. Returns the values drawn at the edges.
    """
    data = [np.asarray(g, dtype=float) for g in groups]
    data = [g[np.isfinite(g)] for g in data]
    if len(labels) != len(data):
        raise ValueError(f"labels: {len(labels)} labels for {len(data)} groups")
    ranges = [_whisker_range(g, whis) for g in data if g.size]
    if not ranges:
        raise ValueError("groups: no finite value to plot")
    lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    pad = 0.06 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1.0)
    lo, hi = lo - pad, hi + pad
    ax.boxplot(data, whis=whis, widths=0.6, **_HORIZONTAL)
    ax.set_yticks(range(1, len(data) + 1), labels)
    ax.set_xlim(lo, hi)
    clipped = []
    for pos, g in enumerate(data, start=1):
        for side, beyond, marker, ha in (("low", g[g < lo], "<", "left"),
                                         ("high", g[g > hi], ">", "right")):
            if not beyond.size:
                continue
            edge = lo if side == "low" else hi
            extreme = beyond.min() if side == "low" else beyond.max()
            ax.plot([edge], [pos], marker=marker, color="C3", ms=7, clip_on=False, zorder=3)
            count = f"{beyond.size}: " if beyond.size > 1 else ""
            ax.annotate(f"{count}{value_format.format(extreme)}", (edge, pos),
                        xytext=(-9 if side == "high" else 9, 5), textcoords="offset points",
                        ha=ha, va="bottom", fontsize=7, color="C3")
            clipped.extend(beyond.tolist())
    return clipped


def _renderer(fig: Figure) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _tick_labels(axis, renderer) -> list[tuple[str, Any]]:
    """The tick labels the axis draws: ``(text, extent)`` per visible, non-empty label."""
    lo, hi = sorted(axis.get_view_interval())
    span = hi - lo
    out = []
    for minor in (False, True):
        locs = axis.get_ticklocs(minor=minor)
        for loc, label in zip(locs, axis.get_ticklabels(minor=minor), strict=False):
            inside = lo - 1e-9 * span <= loc <= hi + 1e-9 * span
            if inside and label.get_visible() and label.get_text().strip():
                text = re.sub(r"\\mathdefault\{(.*)\}", r"\1", label.get_text()).strip("$")
                out.append((text, label.get_window_extent(renderer)))
    return out


def _line_points(ax) -> np.ndarray:
    """Display coordinates along every line of ``ax`` (each segment sampled at 16 points),
    error bars included."""
    pts = []
    for line in ax.get_lines():
        xy = np.column_stack(line.get_data()).astype(float)
        xy = xy[np.all(np.isfinite(xy), axis=1)]
        if not len(xy):
            continue
        disp = line.get_transform().transform(xy)
        if len(disp) > 1:
            t = np.linspace(0, 1, 16)[:, None, None]
            disp = (disp[:-1] + t * (disp[1:] - disp[:-1])).reshape(-1, 2)
        pts.append(disp)
    return np.concatenate(pts) if pts else np.empty((0, 2))


def layout_problems(fig: Figure) -> list[str]:
    """What makes ``fig`` hard to read, in words (empty: nothing found).

    Checks, on the figure as drawn: tick labels of one axis that overlap each other (major
    and minor labels, as on a log axis that labels both), a legend inside an axes drawn over
    that axes' lines, and a figure legend drawn over an axes.
    """
    renderer = _renderer(fig)
    problems = []
    for i, ax in enumerate(fig.axes):
        name = ax.get_title() or f"axes {i + 1}"
        for axis_name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            labels = _tick_labels(axis, renderer)
            for (ta, ea), (tb, eb) in itertools.combinations(labels, 2):
                if ea.overlaps(eb):
                    problems.append(f"{name}: {axis_name} tick labels {ta!r} and {tb!r} overlap")
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            box = legend.get_window_extent(renderer)
            pts = _line_points(ax)
            inside = ((pts[:, 0] > box.x0) & (pts[:, 0] < box.x1)
                      & (pts[:, 1] > box.y0) & (pts[:, 1] < box.y1))
            if inside.any():
                problems.append(f"{name}: the legend covers plotted lines")
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        for i, ax in enumerate(fig.axes):
            if box.overlaps(ax.get_window_extent(renderer)):
                problems.append(f"the figure legend covers {ax.get_title() or f'axes {i + 1}'}")
    return problems
