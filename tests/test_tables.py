"""The one table writer behind `rlft compare` and its win rates: four formats of the same table."""

from __future__ import annotations

import json

import pytest

from rlft.analysis.tables import Column, Table, sig3_whole, write_table
from rlft.errors import RlftError


def _table() -> Table:
    return Table(
        [Column("run"), Column("reward", format=sig3_whole)],
        [["a", 0.61234], ["b", float("nan")], ["c", None], ["d", 12345.0]],
        strong={(0, "reward")},
        json_head={"columns": ["run", "reward"]},
    )


def test_every_format_writes_the_same_cells_and_a_missing_or_nan_value_does_not_crash():
    assert write_table(_table(), "csv").splitlines() == ["run,reward", "a,0.61234", "b,nan", "c,", "d,12345.0"]
    assert write_table(_table(), "markdown").splitlines()[2:] == ["| a | **0.612** |", "| b | nan |", "| c |  |", "| d | 12345 |"]
    data = json.loads(write_table(_table(), "json").replace("NaN", "null"))
    assert data["columns"] == ["run", "reward"] and [r["reward"] for r in data["rows"]] == [0.61234, None, None, 12345.0]


def test_rich_prints_and_an_unknown_format_names_the_choices():
    from rich.console import Console

    console = Console(record=True, width=80)
    assert write_table(_table(), "rich", console) is None
    text = console.export_text()  # export clears the record
    assert "0.612" in text and "nan" in text and "12345" in text
    with pytest.raises(RlftError, match="unknown format 'html'"):
        write_table(_table(), "html")
