"""The index page linking every study's report, and its discovery of the reports on disk."""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterable, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import NamedTuple

from lesample.report.markup import escape, inline, markdown, page
from lesample.store import atomic_write_text

__all__ = ["ReportEntry", "discover_reports", "read_report_info", "write_index"]


class ReportEntry(NamedTuple):
    """One line of the index: the report's title, its link relative to the index, a summary
    (one line) and when it was generated (ISO 8601, or ``""``)."""

    title: str
    href: str
    summary: str = ""
    generated: str = ""


class _HeadReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.meta: dict[str, str] = {}
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self._in_title = True
        elif tag == "meta":
            a = dict(attrs)
            if a.get("name") is not None and a.get("content") is not None:
                self.meta[a["name"]] = a["content"]

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def read_report_info(path: str | os.PathLike) -> tuple[str, str, str]:
    """``(title, summary, generated)`` from a report page's ``<head>``."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    end = text.find("</head>")
    reader = _HeadReader()
    reader.feed(text if end < 0 else text[:end])
    return (
        " ".join(reader.title.split()),
        reader.meta.get("description", ""),
        reader.meta.get("lesample:generated", ""),
    )


def discover_reports(
    out_dir: str | os.PathLike, order: Sequence[str] = ()
) -> list[ReportEntry]:
    """Every ``out_dir/*/report.html`` as an index entry (title and summary read from the
    page). Directories named in ``order`` come first, in that order; the rest by name."""
    out_dir = Path(out_dir)
    pages = sorted(out_dir.glob("*/report.html")) if out_dir.is_dir() else []
    rank = {name: i for i, name in enumerate(order)}
    pages.sort(key=lambda p: (rank.get(p.parent.name, len(rank)), p.parent.name))
    entries = []
    for p in pages:
        title, summary, generated = read_report_info(p)
        href = p.relative_to(out_dir).as_posix()
        entries.append(ReportEntry(title or p.parent.name, href, summary, generated))
    return entries


def _when(iso: str) -> str:
    try:
        t = _dt.datetime.fromisoformat(iso)
    except ValueError:
        return ""
    return t.strftime("%Y-%m-%d %H:%M UTC") if t.tzinfo else t.strftime("%Y-%m-%d %H:%M")


def write_index(
    out_dir: str | os.PathLike,
    studies: Iterable[ReportEntry | tuple[str, ...]] | None = None,
    *,
    title: str = "lesample reports",
    intro: str | None = None,
) -> Path:
    """Write ``out_dir/index.html`` linking every study report; return its path.

    ``studies``: ``(title, relative_href, one-line summary)`` tuples (or
    :class:`ReportEntry`); ``None`` discovers them with :func:`discover_reports`.
    """
    out_dir = Path(out_dir)
    entries = [ReportEntry(*s) for s in (discover_reports(out_dir) if studies is None else studies)]
    if entries:
        items = []
        for e in entries:
            when = _when(e.generated) if e.generated else ""
            items.append(
                f'<li><a href="{escape(e.href)}">{inline(e.title)}</a>'
                + (f"<br>{inline(e.summary)}" if e.summary else "")
                + (f'<br><span class="note">generated {escape(when)}</span>' if when else "")
                + "</li>"
            )
        listing = '<ul class="studies">\n' + "\n".join(items) + "\n</ul>"
    else:
        listing = '<p class="note">No reports yet: run <code>lesample run --quick</code>.</p>'
    intro_html = markdown(intro) if intro else (
        "<p>Local-entropy optimization with the inner loop treated as an MCMC problem: "
        "one report per study, each a self-contained page (tables and figures) beside "
        "its data as CSV.</p>"
    )
    body = f"<header><h1>{inline(title)}</h1>\n{intro_html}</header>\n<main>\n{listing}\n</main>"
    return atomic_write_text(
        out_dir / "index.html",
        page(title, body, description=f"Index of {len(entries)} study reports"),
    )
