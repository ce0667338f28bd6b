"""DataFrames to HTML tables: every cell escaped, one number format per column, and columns
that hold one value in every row stated once in the caption instead of repeated."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from lesample.report.markup import escape, inline

__all__ = ["FloatFormat", "column_format", "format_number", "html_table"]

#: How to format the floats of a table: a format spec (``".3f"`` or ``"{:.3f}"``), a
#: function ``float -> str``, or a dict ``column -> either of those`` (other columns keep
#: the default :func:`format_number`).
FloatFormat = str | Callable[[float], str] | Mapping[str, str | Callable[[float], str]] | None


def format_number(x: float) -> str:
    """A number as a person reads it in a table.

    Integers (and integral floats below 1e15) in full, other floats to 4 significant digits
    in plain notation between 1e-3 and 1e6 and in scientific notation outside; NaN as an
    empty-looking dash, infinities as ``∞``.
    """
    if isinstance(x, bool | np.bool_):
        return str(bool(x))
    if isinstance(x, numbers.Integral):
        return str(int(x))
    x = float(x)
    special = _special(x)
    if special is not None:
        return special
    a = abs(x)
    if x == int(x) and a < 1e15:
        return str(int(x))
    if 1e-3 <= a < 1e6:
        return f"{x:.4g}"
    return f"{x:.3e}"


def _special(x: float) -> str | None:
    if math.isnan(x):
        return "–"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return None


def column_format(values) -> Callable[[float], str]:
    """One format for all the floats of a column, so that its numbers line up and compare.

    Integral values (below 1e15): in full. Otherwise plain notation with one number of
    decimals, enough for 3 significant digits of the median magnitude (trailing zeros that
    every value shares dropped), unless a value reaches 1e6, the median is below 1e-3, or
    the smallest nonzero value would round to 0: then scientific notation with 4
    significant digits for every value.
    """
    x = np.array([float(v) for v in values if isinstance(v, numbers.Real)
                  and not isinstance(v, bool | np.bool_)], dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0 or (np.all(x == np.round(x)) and np.all(np.abs(x) < 1e15)):
        return format_number
    mags = np.abs(x[x != 0])
    median = float(np.median(mags))
    decimals = max(0, 2 - math.floor(math.log10(median))) if median >= 1e-3 else 0
    if (mags.max() >= 1e6 or median < 1e-3
            or mags.min() < 0.5 * 10.0**-decimals):
        return lambda v: _special(float(v)) or f"{float(v):.3e}"
    while decimals > 0 and all(f"{v:.{decimals}f}".endswith("0") for v in x):
        decimals -= 1
    return lambda v: _special(float(v)) or f"{float(v):.{decimals}f}"


def _formatter(spec: str | Callable[[float], str] | None, values) -> Callable[[float], str]:
    if spec is None:
        return column_format(values)
    if callable(spec):
        return spec
    if "{" in spec:
        return lambda v: spec.format(v)
    return lambda v: format(v, spec)


def _is_missing(v: object) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):  # lists, arrays
        return False


def _column_name(c: object) -> str:
    if isinstance(c, tuple):  # MultiIndex columns
        return " · ".join(str(p) for p in c if str(p) != "")
    return str(c)


def _header(name: str) -> str:
    """An escaped header that may break after its underscores (``best_<wbr>error``)."""
    return escape(name).replace("_", "_<wbr>")


def _is_constant(column: pd.Series) -> bool:
    try:
        return column.nunique(dropna=False) == 1
    except TypeError:  # unhashable cells (lists)
        return column.map(repr).nunique(dropna=False) == 1


def _cell_text(v: object, fmt: Callable[[float], str]) -> str:
    if isinstance(v, numbers.Real) and not isinstance(v, bool | np.bool_):
        return fmt(v) if isinstance(v, float | np.floating) else format_number(v)
    return str(v)


def html_table(
    df: pd.DataFrame,
    *,
    caption: str | None = None,
    float_format: FloatFormat = None,
    index: bool | None = None,
    max_rows: int | None = 500,
    fold_constants: bool = True,
) -> str:
    """``df`` as a ``<figure class="table">`` holding a ``<table>`` and its caption.

    ``index``: show the index as leading columns; ``None`` shows it unless it is unnamed and
    of integers (row numbers: ``0..n-1``, or what a filter left of them). Numeric columns
    are right-aligned; floats go through ``float_format`` (see :data:`FloatFormat`;
    default: :func:`column_format`, one format per column).
    ``fold_constants``: a column that holds one value in every row (of two or more) is not
    drawn; the caption states it once (``kind: efficiency``), leaving the width to the
    columns that vary. Beyond ``max_rows`` rows the table is cut and says so. Every header
    and cell is HTML-escaped; the caption takes the inline Markdown of
    :func:`~lesample.report.markup.inline`.
    """
    if not isinstance(df, pd.DataFrame):
        if isinstance(df, pd.Series):
            df = df.to_frame()
        else:
            raise TypeError(f"add_table takes a pandas DataFrame, got {type(df).__name__}")
    if index is None:
        index = not (
            df.index.nlevels == 1
            and df.index.name is None
            and pd.api.types.is_integer_dtype(df.index.dtype)
        )
    if index:
        df = df.reset_index()
    n_rows = len(df)
    per_column = isinstance(float_format, Mapping)

    def formatter(raw: object, name: str) -> Callable[[float], str]:
        spec = float_format.get(name, float_format.get(raw)) if per_column else float_format
        return _formatter(spec, df[raw])

    constant = []
    if fold_constants and n_rows >= 2:
        constant = [raw for raw in df.columns if _is_constant(df[raw])]
        if len(constant) == len(df.columns):  # repeated rows: keep the table as it is
            constant = []
    folded = []
    for raw in constant:
        name, v = _column_name(raw), df[raw].iloc[0]
        text = "–" if _is_missing(v) else _cell_text(v, formatter(raw, name))
        folded.append(f"<code>{escape(name)}</code> {escape(text)}")
    df = df.drop(columns=constant)
    if max_rows is not None and n_rows > max_rows:
        df = df.iloc[:max_rows]

    columns = [_column_name(c) for c in df.columns]
    numeric = []
    formatters = []
    for raw, name in zip(df.columns, columns, strict=True):
        dtype = df[raw].dtype
        numeric.append(
            pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        )
        formatters.append(formatter(raw, name))

    num_class = ' class="num"'
    head = "".join(
        f'<th scope="col"{num_class if num else ""}>{_header(name)}</th>'
        for name, num in zip(columns, numeric, strict=True)
    )
    rows = []
    for values in df.itertuples(index=False, name=None):
        cells = []
        for v, num, fmt in zip(values, numeric, formatters, strict=True):
            if _is_missing(v):
                cells.append('<td class="na">–</td>')
                continue
            cells.append(f"<td{num_class if num else ''}>{escape(_cell_text(v, fmt))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")

    parts = ['<figure class="table">']
    if caption or folded:
        same = f'<span class="same">In every row: {", ".join(folded)}.</span>' if folded else ""
        parts.append(f"<figcaption>{inline(caption or '')}{' ' if caption else ''}{same}"
                     "</figcaption>")
    parts.append(f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>")
    parts.append("\n".join(rows))
    parts.append("</tbody>\n</table>")
    if len(df) < n_rows:
        parts.append(f'<p class="note">First {len(df)} of {n_rows} rows shown.</p>')
    parts.append("</figure>")
    return "\n".join(parts)
