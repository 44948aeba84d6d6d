"""One table, four ways: a table of named columns and rows printed with rich, or returned as csv, markdown or json text.

``rlft compare`` (the scorecard of several runs) and its ``--winrate`` table both write through ``write_table``;
what differs between them is data on the ``Table``: a title and caption (rich only), cells shown strong (the best
per column), how each column's numbers read, extra top-level json keys. The rules common to both:

- json holds the raw values (``{"<json_head keys>": ..., "<json_rows>": [{column: value, ...}, ...]}``);
- csv, markdown and rich hold text: ``None`` reads as ``Table.blank``, anything else as its column's ``format``;
- a strong cell is ``**x**`` in markdown and bold green in rich; csv and json carry no emphasis.

Example::

    table = Table([Column("model"), Column("score", justify="right")], [["sft", 0.51234], ["grpo", None]])
    write_table(table, "markdown")  # '| model | score |\\n|---|---|\\n| sft | 0.5123 |\\n| grpo |  |\\n'
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from rlft.errors import RlftError

FORMATS = ("rich", "csv", "markdown", "json")


def sig4(value: Any) -> str:
    """A float to 4 significant digits (``0.625``, ``1.234e+04``); anything else as ``str``."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def sig4_whole(value: Any) -> str:
    """As ``sig4``, but a whole number in full (``12345.0`` -> ``12345``): counts and sizes that W&B logged as floats."""
    if isinstance(value, float) and not value.is_integer():  # NaN and inf too (int() of them raises)
        return f"{value:.4g}"
    return f"{int(value)}" if isinstance(value, int | float) else str(value)


@dataclass(frozen=True)
class Column:
    """One column: its name (the header, and the key of a json row), how its values read, and its rich layout."""

    name: str
    format: Callable[[Any], str] = sig4  # a value that is not None -> its text in csv, markdown and rich
    justify: Literal["left", "center", "right"] = "left"  # rich only
    no_wrap: bool = False  # rich only


@dataclass
class Table:
    """What ``write_table`` writes: columns, rows of raw values (one per column), and what differs per table."""

    columns: list[Column]
    rows: list[list[Any]]
    title: str | None = None  # rich only
    caption: str | None = None  # rich only, under the table
    strong: set[tuple[int, str]] = field(default_factory=set)  # (row index, column name): **x** in markdown, bold green in rich
    blank: str = ""  # what None reads as in csv, markdown and rich
    json_head: dict[str, Any] = field(default_factory=dict)  # json: keys before the rows
    json_rows: str = "rows"  # json: the key of the list of rows

    def text(self) -> list[list[str]]:
        """Every cell as text (``blank`` for None, else its column's format), no emphasis."""
        return [[cell(v, c.format, self.blank) for c, v in zip(self.columns, row, strict=True)] for row in self.rows]


def cell(value: Any, format: Callable[[Any], str] = sig4, blank: str = "") -> str:
    """A value as a table shows it: ``blank`` for None, else ``format(value)``."""
    return blank if value is None else format(value)


def write_table(table: Table, fmt: str = "rich", console=None) -> str | None:
    """Print the table on ``console`` (rich; a new ``Console`` when None) and return None, or return it as csv, markdown or json text."""
    if fmt not in FORMATS:
        raise RlftError(f"unknown format {fmt!r}", fix="use rich, csv, markdown or json")
    names = [c.name for c in table.columns]
    if fmt == "json":
        rows = [dict(zip(names, row, strict=True)) for row in table.rows]
        return json.dumps({**table.json_head, table.json_rows: rows}, indent=2)
    text = table.text()
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(names)
        writer.writerows(text)
        return out.getvalue()
    mark = "**{}**" if fmt == "markdown" else "[bold green]{}[/]"
    shown = [
        [mark.format(c) if (i, name) in table.strong else c for name, c in zip(names, cells, strict=True)] for i, cells in enumerate(text)
    ]
    if fmt == "markdown":
        lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
        lines += ["| " + " | ".join(cells) + " |" for cells in shown]
        return "\n".join(lines) + "\n"
    from rich.console import Console
    from rich.table import Table as RichTable

    t = RichTable(title=table.title, caption=table.caption)
    for c in table.columns:
        t.add_column(c.name, justify=c.justify, no_wrap=c.no_wrap)
    for cells in shown:
        t.add_row(*cells)
    (console or Console()).print(t)
    return None
