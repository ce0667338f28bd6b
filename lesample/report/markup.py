"""HTML building blocks shared by report pages and the index: escaping, a small Markdown
subset, the page skeleton and its inline style sheet (no external CSS, fonts or scripts)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

__all__ = ["escape", "inline", "markdown", "page"]


def escape(value: object) -> str:
    """``str(value)`` with ``& < > " '`` escaped, for text and attribute values."""
    return html.escape(str(value), quote=True)


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_EM = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def inline(text: str) -> str:
    """One line of Markdown-ish text to HTML: ``code``, **bold**, *emphasis*, [text](href).

    Everything else is escaped, so the result is safe to embed whatever ``text`` holds.
    """
    parts = _CODE.split(str(text))
    out = []
    for i, part in enumerate(parts):
        if i % 2:  # inside backticks: verbatim
            out.append(f"<code>{escape(part)}</code>")
            continue
        part = escape(part)
        part = _LINK.sub(lambda m: f'<a href="{m.group(2)}">{m.group(1)}</a>', part)
        part = _BOLD.sub(r"<strong>\1</strong>", part)
        part = _EM.sub(r"<em>\1</em>", part)
        out.append(part)
    return "".join(out)


_BULLET = re.compile(r"^\s*[-*]\s+")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+")
_HEADING = re.compile(r"^(#{1,4})\s+(.*)$")


def markdown(text: str, *, heading_offset: int = 1) -> str:
    """A small Markdown subset to HTML: paragraphs (blank-line separated), ``-``/``*``
    bullet lists, ``1.`` numbered lists, ``#`` headings (shifted down by ``heading_offset``
    levels, so ``#`` is an ``<h2>`` under the page's ``<h1>``) and the inline forms of
    :func:`inline`. Raw HTML in ``text`` is escaped, not interpreted."""
    blocks = re.split(r"\n\s*\n", str(text).strip())
    out = []
    for block in blocks:
        lines = [ln for ln in block.splitlines() if ln.strip()]
        if not lines:
            continue
        m = _HEADING.match(lines[0])
        if m and len(lines) == 1:
            level = min(len(m.group(1)) + heading_offset, 6)
            out.append(f"<h{level}>{inline(m.group(2))}</h{level}>")
        elif all(_BULLET.match(ln) or ln.startswith("  ") for ln in lines) and _BULLET.match(
            lines[0]
        ):
            out.append(_list("ul", lines, _BULLET))
        elif all(_NUMBERED.match(ln) or ln.startswith("  ") for ln in lines) and _NUMBERED.match(
            lines[0]
        ):
            out.append(_list("ol", lines, _NUMBERED))
        else:
            out.append("<p>" + inline(" ".join(ln.strip() for ln in lines)) + "</p>")
    return "\n".join(out)


def _list(tag: str, lines: list[str], marker: re.Pattern) -> str:
    items: list[str] = []
    for ln in lines:
        if marker.match(ln):
            items.append(marker.sub("", ln, count=1).strip())
        else:  # continuation line of the previous item
            items[-1] += " " + ln.strip()
    body = "".join(f"<li>{inline(it)}</li>" for it in items)
    return f"<{tag}>{body}</{tag}>"


CSS = """
:root { --fg: #1d232b; --muted: #5b6572; --line: #d9dee5; --accent: #2f6db5;
        --zebra: #f5f7fa; --find-bg: #eef5ee; --find-line: #3d8b40; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0 auto; max-width: 68rem; padding: 1.5rem 1.25rem 3rem; color: var(--fg);
       font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue",
       Arial, sans-serif; background: #fff; }
h1 { font-size: 1.75rem; line-height: 1.25; margin: 0 0 .5rem; }
h2 { font-size: 1.3rem; margin: 2.2rem 0 .6rem; padding-bottom: .2rem;
     border-bottom: 1px solid var(--line); }
h3 { font-size: 1.1rem; margin: 1.6rem 0 .5rem; }
h4, h5, h6 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
p, ul, ol { margin: .6rem 0; }
a { color: var(--accent); }
code { font: .9em/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
       background: var(--zebra); padding: .05em .3em; border-radius: 3px; }
.lede { color: var(--muted); }
.meta { color: var(--muted); font-size: .875rem; margin: .4rem 0 1rem; }
.meta dl { display: flex; flex-wrap: wrap; gap: .2rem 1.4rem; margin: 0; }
.meta dl div { display: flex; gap: .35rem; }
.meta dt { font-weight: 600; } .meta dd { margin: 0; }
nav.toc { font-size: .925rem; margin: 1rem 0; }
nav.toc ol { margin: .3rem 0; padding-left: 1.4rem; }
.findings { background: var(--find-bg); border-left: 4px solid var(--find-line);
            padding: .6rem 1rem .7rem; margin: 1.2rem 0; border-radius: 0 4px 4px 0; }
.findings h2 { border: 0; margin: .2rem 0 .3rem; font-size: 1.15rem; }
.findings ul { padding-left: 1.3rem; } .findings li { margin: .25rem 0; }
figure { margin: 1.4rem 0; }
figure.table { overflow-x: auto; }
figcaption { color: var(--muted); font-size: .9rem; margin: .35rem 0; }
figure.table figcaption { margin: 0 0 .35rem; }
figure.plot img { display: block; max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: .875rem; font-variant-numeric: tabular-nums; }
th, td { padding: .28rem .55rem; border-bottom: 1px solid var(--line); text-align: left;
         vertical-align: top; white-space: nowrap; }
thead th { border-bottom: 2px solid var(--fg); font-weight: 600; white-space: normal;
           vertical-align: bottom; }
tbody tr:nth-child(even) { background: var(--zebra); }
td.num, th.num { text-align: right; }
td:not(.num) { white-space: normal; min-width: 4rem; }
td.na { color: var(--muted); }
.note { color: var(--muted); font-size: .85rem; }
ul.studies { list-style: none; padding: 0; }
ul.studies > li { padding: .7rem 0; border-bottom: 1px solid var(--line); }
ul.studies > li > a { font-size: 1.1rem; font-weight: 600; }
ul.headlines { margin: .35rem 0 .2rem; padding-left: 1.3rem; font-size: .925rem; }
ul.headlines li { margin: .15rem 0; }
.mode { display: inline-block; margin-left: .5rem; padding: 0 .45rem; border-radius: 3px;
        font-size: .8rem; font-weight: 600; vertical-align: .15rem; color: #fff;
        background: var(--accent); }
.mode.full { background: var(--find-line); }
footer { margin-top: 3rem; color: var(--muted); font-size: .8rem;
         border-top: 1px solid var(--line); padding-top: .6rem; }
@media print { body { max-width: none; } figure { break-inside: avoid; } }
"""


def page(
    title: str, body: str, *, description: str = "", meta: Iterable[tuple[str, str]] = ()
) -> str:
    """A complete, self-contained HTML5 document around ``body`` (already HTML).

    ``description`` becomes ``<meta name="description">`` (the index reads it); ``meta``
    adds further ``<meta name=... content=...>`` pairs. The empty ``data:`` icon stops the
    browser from asking for a ``favicon.ico`` that does not exist.
    """
    extra = "".join(
        f'\n<meta name="{escape(k)}" content="{escape(v)}">' for k, v in meta
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="description" content="{escape(description)}">{extra}\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )
