"""The run-folder layout is named once (rlft/layout.py); every module that reads or writes a run goes through it."""

from __future__ import annotations

import ast
from pathlib import Path

from rlft.layout import RunLayout, StageLayout

ROOT = Path(__file__).resolve().parents[1]
NAMES = (
    "summary.json",
    "manifest.json",
    "recipe.json",
    ".fingerprint.json",
    "samples.jsonl",
    ".wandb_id",
    ".ranks",
    ".partial",
    ".error.json",
)


def _literals(path: Path) -> list[tuple[int, str]]:
    """String constants of a module that are not docstrings, with their line."""
    tree = ast.parse(path.read_text())
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_no_module_but_layout_spells_a_run_folder_name():
    found = []
    for path in sorted((ROOT / "rlft").rglob("*.py")):
        if path.name == "layout.py":
            continue
        for line, text in _literals(path):
            # a literal without spaces that holds a layout name builds a path; messages to the user may name files
            if any(name in text for name in NAMES) and not any(c.isspace() for c in text):
                found.append(f"{path.relative_to(ROOT)}:{line}: {text!r}")
    assert found == []


def test_the_layout_paths(tmp_path):
    run = RunLayout(tmp_path / "r1")
    assert (run.recipe, run.summary, run.lock, run.wandb) == tuple(
        tmp_path / "r1" / n for n in ("recipe.json", "summary.json", ".lock", "wandb")
    )
    assert run.stage("sft") == StageLayout(tmp_path / "r1" / "sft")
    partial = run.partial("sft")
    assert partial.root == tmp_path / "r1" / ".sft.partial" and partial.trainer == partial.root / "trainer"
    assert run.error("sft") == tmp_path / "r1" / ".sft.error.json"
    stage = run.stage("rl")
    assert (stage.manifest.name, stage.model.name, stage.samples.name, stage.fingerprint.name) == (
        "manifest.json",
        "model",
        "samples.jsonl",
        ".fingerprint.json",
    )
