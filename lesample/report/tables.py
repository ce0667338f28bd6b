"""DataFrames to HTML tables: every cell escaped, numbers formatted for reading."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from lesample.report.markup import escape, inline

__all__ = ["FloatFormat", "format_number", "html_table"]

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
    if math.isnan(x):
        return "–"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    a = abs(x)
    if x == int(x) and a < 1e15:
        return str(int(x))
    if 1e-3 <= a < 1e6:
        return f"{x:.4g}"
    return f"{x:.3e}"


def _formatter(spec: str | Callable[[float], str] | None) -> Callable[[float], str]:
    if spec is None:
        return format_number
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


def html_table(
    df: pd.DataFrame,
    *,
    caption: str | None = None,
    float_format: FloatFormat = None,
    index: bool | None = None,
    max_rows: int | None = 500,
) -> str:
    """``df`` as a ``<figure class="table">`` holding a ``<table>`` and its caption.

    ``index``: show the index as leading columns; ``None`` shows it unless it is the default
    ``0..n-1``. Numeric columns are right-aligned; floats go through ``float_format`` (see
    :data:`FloatFormat`). Beyond ``max_rows`` rows the table is cut and says so. Every header
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
            isinstance(df.index, pd.RangeIndex)
            and df.index.start == 0
            and df.index.step == 1
            and df.index.name is None
        )
    if index:
        df = df.reset_index()
    n_rows = len(df)
    if max_rows is not None and n_rows > max_rows:
        df = df.iloc[:max_rows]

    columns = [_column_name(c) for c in df.columns]
    per_column = isinstance(float_format, Mapping)
    numeric = []
    formatters = []
    for raw, name in zip(df.columns, columns, strict=True):
        dtype = df[raw].dtype
        numeric.append(
            pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        )
        spec = float_format.get(name, float_format.get(raw)) if per_column else float_format
        formatters.append(_formatter(spec))

    num_class = ' class="num"'
    head = "".join(
        f'<th scope="col"{num_class if num else ""}>{escape(name)}</th>'
        for name, num in zip(columns, numeric, strict=True)
    )
    rows = []
    for values in df.itertuples(index=False, name=None):
        cells = []
        for v, num, fmt in zip(values, numeric, formatters, strict=True):
            if _is_missing(v):
                cells.append('<td class="na">–</td>')
                continue
            if isinstance(v, numbers.Real) and not isinstance(v, bool | np.bool_):
                text = fmt(v) if isinstance(v, float | np.floating) else format_number(v)
            else:
                text = str(v)
            cells.append(f"<td{num_class if num else ''}>{escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")

    parts = ['<figure class="table">']
    if caption:
        parts.append(f"<figcaption>{inline(caption)}</figcaption>")
    parts.append(f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>")
    parts.append("\n".join(rows))
    parts.append("</tbody>\n</table>")
    if len(df) < n_rows:
        parts.append(f'<p class="note">First {len(df)} of {n_rows} rows shown.</p>')
    parts.append("</figure>")
    return "\n".join(parts)
