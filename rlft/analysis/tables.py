"""One table, four ways: a table of named columns and rows printed with rich, or returned as csv, markdown or json text.

``rlft compare`` (the scorecard of several runs) and its ``--winrate`` table both write through ``write_table``,
and the end-of-run tables of ``rlft run`` / ``rlft summary`` / ``rlft runs`` print through ``fitted``;
what differs between them is data on the ``Table``: a title and caption (rich only), cells shown strong (the best
per column), how each column's numbers read, extra top-level json keys. The rules common to all:

- json holds the raw values (``{"<json_head keys>": ..., "<json_rows>": [{column: value, ...}, ...]}``);
- markdown and rich hold text for people: ``None`` reads as ``Table.blank``, anything else as its column's ``format``
  (``sig3``: 3 significant digits, whole numbers from 1,000 up in full); csv holds every digit (``str`` of the value);
- a strong cell is ``**x**`` in markdown and bold green in rich; csv and json carry no emphasis;
- rich lays a table out for the width it gets (``Fitted``): of several layouts of the same figures the first
  that fits the width unwrapped, else the one that needs the least; a figure column never wraps, text wraps
  at spaces (folded only when a word is wider than the whole column could be), never cut with an ellipsis.

Example::

    table = Table([Column("model"), Column("score", justify="right")], [["sft", 0.51234], ["grpo", None]])
    write_table(table, "markdown")  # '| model | score |\\n|---|---|\\n| sft | 0.512 |\\n| grpo |  |\\n'
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from rlft.errors import RlftError

FORMATS = ("rich", "csv", "markdown", "json")


def sig3(value: Any, *, sign: bool = False) -> str:
    """A float to 3 significant digits (``0.625``, ``0.500``, ``12.3``, ``0.0500``), from 1,000 up rounded to a whole number
    (``1235``), ``nan``/``inf`` as such; an int, or anything else, as ``str``. ``sign``: ``+`` in front of a positive float."""
    if not isinstance(value, float):
        return str(value)
    plus = "+" if sign else ""
    if not math.isfinite(value):
        return "nan" if math.isnan(value) else f"{value:{plus}}"
    if abs(value) >= 999.5:  # would read 1.00e+03 with 3 significant digits
        return f"{value:{plus}.0f}"
    if value == 0:
        return f"{0.0:{plus}.2f}"
    text = f"{value:{plus}#.3g}"  # '#' keeps trailing zeros: 0.500, not 0.5
    return text.replace(".e", "e").removesuffix(".")  # '#' also keeps a bare point: 100. -> 100


def sig3_whole(value: Any) -> str:
    """As ``sig3``, but a whole number in full (``12345.0`` -> ``12345``, ``500.0`` -> ``500``): counts and sizes that W&B logged as floats."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return f"{int(value)}"
    return sig3(value)


@dataclass(frozen=True)
class Column:
    """One column: its name (the header, and the key of a json row), how its values read, and its rich layout."""

    name: str
    format: Callable[[Any], str] = sig3  # a value that is not None -> its text in markdown and rich
    justify: Literal["left", "center", "right"] = "left"  # rich only
    no_wrap: bool | None = None  # rich only; None: a column of figures (numbers) stays whole, text wraps at spaces


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
    styles: dict[int, str] = field(default_factory=dict)  # rich only: row index -> a rich style for the whole row

    def text(self) -> list[list[str]]:
        """Every cell as text (``blank`` for None, else its column's format), no emphasis."""
        return [[cell(v, c.format, self.blank) for c, v in zip(self.columns, row, strict=True)] for row in self.rows]

    def keeps_whole(self, index: int) -> bool:
        """Whether rich must not wrap column ``index``: as the column says, else when every value in it is a number."""
        column = self.columns[index]
        if column.no_wrap is not None:
            return column.no_wrap
        values = [row[index] for row in self.rows if row[index] is not None]
        return bool(values) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def cell(value: Any, format: Callable[[Any], str] = sig3, blank: str = "") -> str:
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
    if fmt == "rich":
        _print(console, fitted(table))
        return None
    if fmt == "csv":  # data for a spreadsheet or a script: every digit, as json has them
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(names)
        writer.writerows([[cell(v, str, table.blank) for v in row] for row in table.rows])
        return out.getvalue()
    text = table.text()
    shown = [[f"**{c}**" if (i, name) in table.strong else c for name, c in zip(names, cells, strict=True)] for i, cells in enumerate(text)]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(cells) + " |" for cells in shown]
    return "\n".join(lines) + "\n"


def _print(console, renderable) -> None:
    if console is None:
        from rich.console import Console

        console = Console(highlight=False)
    console.print(renderable)


# --------------------------------------------------------------------------- rich, laid out for the width


PADDING = 2  # rich's default cell padding, one space either side
MIN_TEXT = 8  # a text column is not squeezed narrower than this (nor, while there is room, than its longest word)
MIN_FIGURE = 4  # a column of figures keeps at least this much room for its header
MIN_FOLDED = 3  # when even whole words do not fit, a text column may fold down to this


def fitted(*layouts: Table) -> Fitted:
    """A rich renderable printing the first layout that fits the console's width unwrapped, else the one needing the least width.

    Pass the layouts in order of preference, e.g. ``fitted(runs_as_columns, runs_as_rows)``: with few runs the
    first fits and is printed; with many, the second.
    """
    return Fitted(list(layouts))


@dataclass
class Fitted:
    """Layouts of one table; rich asks it at print time for the one that suits the width (``fitted``)."""

    layouts: list[Table]

    def choose(self, width: int) -> tuple[Table, list[int]]:
        """The layout to print in ``width`` columns and the width of each of its columns (padding included)."""
        measured = [(t, *_measure(t)) for t in self.layouts]
        for table, natural, _, _ in measured:
            if sum(natural) + len(natural) + 1 <= width:
                return table, natural
        table, natural, least, floor = min(measured, key=lambda m: (sum(m[2]) + len(m[2]), sum(m[3])))
        room = width - len(natural) - 1  # the borders take one column each, and one more
        return table, _shrink(_shrink(natural, least, room), floor, room)

    def __rich_console__(self, console, options):
        table, widths = self.choose(options.max_width)
        yield _rich(table, widths)


def _measure(table: Table) -> tuple[list[int], list[int], list[int]]:
    """Per column (padding included): its natural width (widest cell or header, unwrapped); the least it can take
    without breaking a word (a figure column: its widest cell); the least it can take at all (its header may fold)."""
    from rich.cells import cell_len

    def widest(texts: list[str]) -> int:
        return max((cell_len(line) for t in texts for line in t.split("\n")), default=0) + PADDING

    text = table.text()
    natural, least, floor = [], [], []
    for i, column in enumerate(table.columns):
        cells = [row[i] for row in text]
        natural.append(widest([column.name, *cells]))
        if table.keeps_whole(i):  # its header wraps at spaces while there is room, and folds only when there is none
            floor.append(max(widest(cells), MIN_FIGURE + PADDING))
            least.append(max(floor[-1], widest(column.name.split())))
        else:
            words = [w for t in [column.name, *cells] for w in t.split()]
            least.append(min(natural[-1], max(widest(words), MIN_TEXT + PADDING)))
            floor.append(min(natural[-1], MIN_FOLDED + PADDING))
    return natural, least, [min(f, n) for f, n in zip(floor, natural, strict=True)]


def _shrink(widths: list[int], least: list[int], room: int) -> list[int]:
    """Column widths summing to at most ``room``: the widest columns give way first, none below its ``least``."""
    widths = list(widths)
    while sum(widths) > room:
        give = [i for i, w in enumerate(widths) if w > least[i]]
        if not give:
            break  # narrower than the table can be: rich folds what does not fit
        i = max(give, key=lambda j: widths[j])
        widths[i] -= 1
    return widths


def _rich(table: Table, widths: list[int]):
    from rich.table import Table as RichTable
    from rich.text import Text

    t = RichTable(title=table.title, caption=table.caption, caption_justify="left")
    for c, width in zip(table.columns, widths, strict=True):
        # a width for every column: rich's own squeezing would take figures apart; ours keeps them whole
        t.add_column(Text(c.name), justify=c.justify, no_wrap=False, overflow="fold", width=max(width - PADDING, 1))
    for i, cells in enumerate(table.text()):
        shown = [Text(c, style="bold green" if (i, col.name) in table.strong else "") for col, c in zip(table.columns, cells, strict=True)]
        t.add_row(*shown, style=table.styles.get(i))
    return t
