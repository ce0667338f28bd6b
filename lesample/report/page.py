"""One study's report: a self-contained HTML page built from text, findings, tables and
matplotlib figures (embedded as base64 PNG). It opens from disk with no network: the CSS is
inline, there is no script, no web font and no external URL."""

from __future__ import annotations

import base64
import datetime as _dt
import io
import os
import re
import struct
import sys
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lesample.report.markup import escape, inline, markdown, page
from lesample.report.plots import layout_problems
from lesample.report.tables import FloatFormat, html_table
from lesample.store import atomic_write_text

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["Report", "subplots", "figure_to_png", "lesample_version"]


def lesample_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lesample")
    except PackageNotFoundError:
        return "unknown"


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, **kwargs) -> tuple[Figure, Any]:
    """``(fig, axes)`` like ``plt.subplots`` but outside pyplot: no GUI backend, no global
    figure list to close, nothing to leak over a long study. ``layout="constrained"`` unless
    given."""
    from matplotlib.figure import Figure

    kwargs.setdefault("layout", "constrained")
    fig_kw = {k: kwargs.pop(k) for k in ("layout", "dpi") if k in kwargs}
    fig = Figure(figsize=figsize, **fig_kw)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def figure_to_png(fig: Figure, *, dpi: float = 150) -> bytes:
    """The figure as PNG bytes (no metadata chunk naming the software or a URL)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _png_size(png: bytes) -> tuple[int, int]:
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    return struct.unpack(">II", png[16:24])


def _slug(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    taken.add(slug)
    return slug


def _plain_text(markdown_text: str) -> str:
    """Markdown-ish text with the markup removed (for the description meta tag)."""
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", markdown_text)
    text = re.sub(r"[`*#]", "", text)
    return " ".join(text.split())


def _first_sentence(text: str, limit: int = 200) -> str:
    text = _plain_text(text)
    m = re.match(r"(.+?[.!?])(\s|$)", text)
    text = m.group(1) if m else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Report:
    """A study's HTML report, built top to bottom, written with :meth:`write`.

    >>> rep = Report("Samplers", intro="How well do the inner-loop samplers estimate ...",
    ...              summary="ULA vs MALA vs BAOAB ...", details={"mode": "quick"})
    >>> rep.add_findings(["BAOAB reaches 1% gradient error with 5x fewer gradients."])
    >>> rep.add_heading("Gradient error against L")
    >>> rep.add_table(df, caption="Median relative error", float_format=".3f")
    >>> rep.add_figure(fig, caption="Relative error of grad f_gamma against L")
    >>> rep.write(out_dir / "report.html")

    Text takes a small Markdown subset (paragraphs, ``-`` lists, ``#`` headings, ``code``,
    **bold**, *emphasis*, [links](results.csv)); it is escaped, never taken as HTML
    (:meth:`add_html` is the way in for raw HTML). ``summary`` (default: the intro's first
    sentence) is the line shown for this report on the index page, with ``headlines``: the
    findings a reader should see there (default: the first three of the first findings box).
    ``details`` is a short ``name: value`` line under the title (mode, number of cells,
    seeds, run time); its ``mode`` is also shown on the index.
    ``index_href`` is the footer's link back to the index (``None``: no link). Every
    ``add_*`` returns the report, so calls chain.
    """

    def __init__(
        self,
        title: str,
        intro: str | None = None,
        *,
        summary: str | None = None,
        details: Mapping[str, Any] | None = None,
        headlines: Iterable[str] | None = None,
        index_href: str | None = "../index.html",
    ):
        self.title = str(title)
        self.intro = intro
        self.summary = summary if summary is not None else _first_sentence(intro or "")
        self.details = dict(details or {})
        if isinstance(headlines, str):
            raise TypeError("headlines takes a list of strings, not one string")
        self.headlines = None if headlines is None else [str(h) for h in headlines]
        self._first_findings: list[str] | None = None
        self.index_href = index_href
        self._blocks: list[tuple[str, Any]] = []
        self._n_tables = 0
        self._n_figures = 0

    # ----------------------------------------------------------------- content

    def add_heading(self, text: str, level: int = 2) -> Report:
        """A section heading (``level`` 2 to 4; level-2 headings make the contents list)."""
        if level not in (2, 3, 4):
            raise ValueError(f"heading level must be 2, 3 or 4, got {level}")
        self._blocks.append(("heading", (level, str(text))))
        return self

    def add_text(self, text: str) -> Report:
        """Paragraphs of Markdown-subset text (escaped; see the class docstring)."""
        self._blocks.append(("html", markdown(text)))
        return self

    def add_html(self, fragment: str) -> Report:
        """A raw HTML fragment, inserted as is (keep it free of scripts and external URLs)."""
        self._blocks.append(("html", str(fragment)))
        return self

    def add_findings(self, items: Iterable[str], title: str = "Findings") -> Report:
        """A highlighted box listing the study's findings, each stated in words."""
        if isinstance(items, str):
            raise TypeError("add_findings takes a list of strings, not one string")
        items = [str(it) for it in items]
        if not items:
            raise ValueError("add_findings takes a non-empty list of strings")
        if self._first_findings is None:
            self._first_findings = items
        lis = "".join(f"<li>{inline(it)}</li>" for it in items)
        self._blocks.append(("findings", (str(title), f"<ul>{lis}</ul>")))
        return self

    def add_table(
        self,
        df: pd.DataFrame,
        caption: str | None = None,
        *,
        float_format: FloatFormat = None,
        index: bool | None = None,
        max_rows: int | None = 500,
        fold_constants: bool = True,
    ) -> Report:
        """A table from ``df``, numbered ("Table 1."), every cell escaped.

        ``float_format``: a format spec (``".3f"``), a function, or a dict per column;
        default one format per column (:func:`~lesample.report.tables.column_format`).
        ``index``: show the index (default: unless it is unnamed and of integers).
        ``fold_constants``: state the columns that hold one value in every row in the
        caption instead of drawing them. Longer tables are cut at ``max_rows`` with a note
        saying so.
        """
        self._n_tables += 1
        label = f"**Table {self._n_tables}.**" + (f" {caption}" if caption else "")
        self._blocks.append(
            ("html", html_table(df, caption=label, float_format=float_format, index=index,
                                max_rows=max_rows, fold_constants=fold_constants))
        )
        return self

    def add_figure(
        self,
        fig: Figure,
        caption: str | None = None,
        *,
        alt: str | None = None,
        dpi: float = 150,
        close: bool = True,
    ) -> Report:
        """A matplotlib figure, embedded as a base64 PNG and numbered ("Figure 1.").

        Rendered at ``dpi`` and shown at matplotlib's nominal size (100 px per inch), so it
        stays sharp on high-density screens. ``close`` closes it in pyplot afterwards (if it
        came from pyplot), so a long study does not pile figures up. A figure that
        :func:`~lesample.report.plots.layout_problems` finds hard to read (overlapping tick
        labels, a legend over the data) is kept, with a ``UserWarning`` naming the problem.
        """
        for problem in layout_problems(fig):
            warnings.warn(f"Figure {self._n_figures + 1}: {problem}", UserWarning, stacklevel=2)
        png = figure_to_png(fig, dpi=dpi)
        if close and "matplotlib.pyplot" in sys.modules:
            import matplotlib.pyplot as plt

            plt.close(fig)
        return self.add_image(png, caption, alt=alt, scale=100 / dpi)

    def add_image(
        self, png: bytes, caption: str | None = None, *, alt: str | None = None, scale: float = 1
    ) -> Report:
        """PNG bytes as a numbered figure (shown at ``scale`` times its pixel size)."""
        width, height = _png_size(png)
        self._n_figures += 1
        label = f"**Figure {self._n_figures}.**" + (f" {caption}" if caption else "")
        alt = alt if alt is not None else (_plain_text(caption) if caption else "figure")
        data = base64.b64encode(png).decode("ascii")
        self._blocks.append(
            (
                "html",
                '<figure class="plot">'
                f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}" '
                f'width="{round(width * scale)}" height="{round(height * scale)}">'
                f"<figcaption>{inline(label)}</figcaption></figure>",
            )
        )
        return self

    # ----------------------------------------------------------------- output

    def to_html(self) -> str:
        """The whole page as a string."""
        taken: set[str] = set()
        body: list[str] = []
        toc: list[tuple[str, str]] = []
        for kind, content in self._blocks:
            if kind == "heading":
                level, text = content
                slug = _slug(text, taken)
                if level == 2:
                    toc.append((slug, text))
                body.append(f'<h{level} id="{slug}">{inline(text)}</h{level}>')
            elif kind == "findings":
                title, items = content
                slug = _slug(title, taken)
                body.append(
                    f'<section class="findings" id="{slug}"><h2>{inline(title)}</h2>'
                    f"{items}</section>"
                )
            else:
                body.append(content)

        now = _dt.datetime.now(_dt.UTC)
        head = [f"<header>\n<h1>{inline(self.title)}</h1>"]
        if self.details:
            items = "".join(
                f"<div><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>"
                for k, v in self.details.items()
            )
            head.append(f'<div class="meta"><dl>{items}</dl></div>')
        if self.intro:
            head.append(f'<div class="lede">{markdown(self.intro)}</div>')
        head.append("</header>")
        if len(toc) >= 3:
            links = "".join(f'<li><a href="#{s}">{inline(t)}</a></li>' for s, t in toc)
            head.append(f'<nav class="toc"><strong>Contents</strong><ol>{links}</ol></nav>')

        version = lesample_version()
        stamp = now.strftime("%Y-%m-%d %H:%M UTC")
        back = (
            f' <a href="{escape(self.index_href)}">All reports</a>' if self.index_href else ""
        )
        footer = f"<footer>Generated by lesample {escape(version)} on {stamp}.{back}</footer>"
        main = "<main>\n" + "\n".join(body) + "\n</main>"
        headlines = self.headlines
        if headlines is None:
            headlines = (self._first_findings or [])[:3]
        meta = [("generator", f"lesample {version}"),
                ("lesample:generated", now.isoformat(timespec="seconds"))]
        if "mode" in self.details:
            meta.append(("lesample:mode", str(self.details["mode"])))
        meta += [("lesample:headline", h) for h in headlines]
        return page(
            self.title,
            "\n".join(head) + "\n" + main + "\n" + footer,
            description=self.summary,
            meta=meta,
        )

    def write(self, path: str | os.PathLike) -> Path:
        """Write the page to ``path`` atomically (parents created); return the path."""
        return atomic_write_text(path, self.to_html())
