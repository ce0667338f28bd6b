"""The index page linking every study's report, and its discovery of the reports on disk."""

from __future__ import annotations

import datetime as _dt
import html
import os
import re
from collections.abc import Iterable, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import NamedTuple

from lesample.report.markup import escape, inline, markdown, page
from lesample.store import atomic_write_text

__all__ = ["ReportEntry", "ReportInfo", "discover_reports", "read_report_info", "write_index"]


class ReportInfo(NamedTuple):
    """What a report page's ``<head>`` says about it (see :class:`~lesample.report.Report`)."""

    title: str
    summary: str
    generated: str  #: ISO 8601, or ``""``
    mode: str = ""  #: the study's mode (``quick``, ``full``), or ``""``
    headlines: tuple[str, ...] = ()  #: its headline findings (inline Markdown)


class ReportEntry(NamedTuple):
    """One entry of the index: the report's title, its link relative to the index, a summary
    (one line), when it was generated (ISO 8601, or ``""``), its mode and its headline
    findings (inline Markdown)."""

    title: str
    href: str
    summary: str = ""
    generated: str = ""
    mode: str = ""
    headlines: tuple[str, ...] = ()


class _HeadReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.meta: dict[str, str] = {}
        self.headlines: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self._in_title = True
        elif tag == "meta":
            a = dict(attrs)
            if a.get("name") == "lesample:headline" and a.get("content") is not None:
                self.headlines.append(a["content"])
            elif a.get("name") is not None and a.get("content") is not None:
                self.meta[a["name"]] = a["content"]

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


_MODE = re.compile(r"<dt>mode</dt><dd>([^<]*)</dd>")
_FINDINGS = re.compile(r'<section class="findings"[^>]*>.*?<ul>(.*?)</ul>', re.S)


def _markdown_of(fragment: str) -> str:
    """A findings item's HTML back to the inline Markdown it was written in."""
    text = re.sub(r"</?strong>", "**", fragment)
    text = re.sub(r"</?code>", "`", text)
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def read_report_info(path: str | os.PathLike) -> ReportInfo:
    """Title, summary, generation time, mode and headlines from a report page's ``<head>``.

    A page written before its head carried the mode and the headlines gives them from its
    body: the ``mode`` of its details line and the first three items of its findings box.
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    end = text.find("</head>")
    reader = _HeadReader()
    reader.feed(text if end < 0 else text[:end])
    mode, headlines = reader.meta.get("lesample:mode", ""), tuple(reader.headlines)
    if "lesample:mode" not in reader.meta and (m := _MODE.search(text)):
        mode = html.unescape(m.group(1))
    if not headlines and (f := _FINDINGS.search(text)):
        headlines = tuple(_markdown_of(it) for it in re.findall(r"<li>(.*?)</li>",
                                                                 f.group(1), re.S)[:3])
    return ReportInfo(
        " ".join(reader.title.split()),
        reader.meta.get("description", ""),
        reader.meta.get("lesample:generated", ""),
        mode,
        headlines,
    )


def discover_reports(
    out_dir: str | os.PathLike, order: Sequence[str] = ()
) -> list[ReportEntry]:
    """Every ``out_dir/*/report.html`` as an index entry (read from the page's head).
    Directories named in ``order`` come first, in that order, each followed by its variants
    (``samplers``, then ``samplers-full``); the rest by name."""
    out_dir = Path(out_dir)
    pages = sorted(out_dir.glob("*/report.html")) if out_dir.is_dir() else []
    rank = {name: i for i, name in enumerate(order)}

    def key(p: Path) -> tuple[int, str]:
        name = p.parent.name
        return rank.get(name, rank.get(name.split("-")[0], len(rank))), name

    pages.sort(key=key)
    entries = []
    for p in pages:
        info = read_report_info(p)
        href = p.relative_to(out_dir).as_posix()
        entries.append(ReportEntry(info.title or p.parent.name, href, info.summary,
                                   info.generated, info.mode, info.headlines))
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
    :class:`ReportEntry`); ``None`` discovers them with :func:`discover_reports`. Each entry
    shows its mode beside the title (two runs of one study differ there) and its headline
    findings under the summary.
    """
    out_dir = Path(out_dir)
    entries = [ReportEntry(*s) for s in (discover_reports(out_dir) if studies is None else studies)]
    if entries:
        items = []
        for e in entries:
            when = _when(e.generated) if e.generated else ""
            mode = (f' <span class="mode {escape(e.mode)}">{escape(e.mode)}</span>'
                    if e.mode else "")
            headlines = "".join(f"<li>{inline(h)}</li>" for h in e.headlines)
            items.append(
                f'<li><a href="{escape(e.href)}">{inline(e.title)}</a>{mode}'
                + (f"<br>{inline(e.summary)}" if e.summary else "")
                + (f'<ul class="headlines">{headlines}</ul>' if headlines else "")
                + (f'<span class="note">generated {escape(when)}</span>' if when else "")
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
