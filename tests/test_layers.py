"""The package layers point one way: every import (function-level ones too) goes to the same layer or one below.

The layers, bottom up (docs/architecture.md): leaf modules and the reward library, ``rlft.data``, ``rlft.recipe``,
``rlft.evaluation``, ``rlft.training``, ``rlft.ppo``, ``rlft.stages``, ``rlft.pipeline``, ``rlft.analysis``,
``rlft.cli``. A module may import its own layer (without a cycle) and the layers below, never one above, and
the whole import graph has no cycle, so a cycle cannot come back hidden behind an import inside a function.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LAYERS = [
    ("leaf", ("rlft", "rlft.errors", "rlft.models", "rlft.reward_refs", "rlft.redact", "rlft.tracking", "rlft.distributed")),
    ("leaf", ("rlft.layout", "rlft.wandb_files", "rewards")),
    ("data", ("rlft.data",)),
    ("recipe", ("rlft.recipe",)),
    ("evaluation", ("rlft.evaluation",)),
    ("training", ("rlft.training",)),
    ("ppo", ("rlft.ppo",)),
    ("stages", ("rlft.stages",)),
    ("pipeline", ("rlft.pipeline",)),
    ("analysis", ("rlft.analysis",)),
    ("cli", ("rlft.cli",)),
]
ORDER = list(dict.fromkeys(name for name, _ in LAYERS))
HEAVY = ("torch", "transformers", "trl", "peft", "datasets", "accelerate")


def layer_of(module: str) -> str:
    """The layer a module belongs to: the longest listed prefix that names it or a package above it."""
    best = ""
    found = None
    for layer, prefixes in LAYERS:
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, found = prefix, layer
    if found is None:
        raise AssertionError(f"{module} is in no layer: add its package to LAYERS and to the layout in docs/architecture.md")
    return found


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules ``path`` imports anywhere in its body (functions included), resolved to known modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = set()
    for node in ast.walk(tree):  # `if TYPE_CHECKING:` imports are for type checkers only
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for b in node.body for n in ast.walk(b))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            # `from pkg import sub` imports the module pkg.sub; `from pkg import name` imports pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    files = {module_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}
    known = set(files)
    return {name: imports(path, name, known) for name, path in files.items()}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import that points to a higher layer, as ``a (layer) -> b (layer)``."""
    out = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if ORDER.index(layer_of(target)) > ORDER.index(layer_of(module)):
                out.append(f"{module} ({layer_of(module)}) -> {target} ({layer_of(target)})")
    return out


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return stack[stack.index(w) :] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        stack.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def test_imports_point_down_the_layers_and_never_in_a_cycle():
    graph = import_graph(ROOT, ("rlft", "rewards"))
    assert len(graph) > 60
    assert upward_imports(graph) == []
    assert cycle(graph) is None


def test_the_recipe_layer_imports_no_torch_and_no_stage_code():
    graph = import_graph(ROOT, ("rlft", "rewards"))
    recipe = [m for m in graph if layer_of(m) == "recipe"]
    reached, todo = set(), list(recipe)
    while todo:
        m = todo.pop()
        if m not in reached:
            reached.add(m)
            todo += graph[m]
    assert not {m for m in reached if layer_of(m) in ("evaluation", "training", "ppo", "stages", "pipeline", "analysis", "cli")}
    for m in recipe:
        path = ROOT / (m.replace(".", "/") + ("/__init__.py" if (ROOT / m.replace(".", "/")).is_dir() else ".py"))
        tree = ast.parse(path.read_text())
        heavy = {
            n.split(".")[0]
            for node in ast.walk(tree)
            for n in (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
        } & set(HEAVY)
        assert not heavy, f"{m} imports {heavy}"
    code = (
        "import sys; from rlft.recipe import load_recipe; load_recipe('recipes/quickstart.yaml'); "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m.startswith('rlft.stages')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    "planted, problem",
    [
        # a function-level import from the data layer up into the stages layer
        ("def f():\n    from rlft.stages.context import StageContext\n", "upward"),
        # two leaf modules importing each other, one of them inside a function
        ("from rlft import errors\n", "cycle"),
    ],
)
def test_the_checks_catch_an_upward_import_and_a_cycle(tmp_path, planted, problem):
    files = {
        "rlft/__init__.py": "",
        "rlft/errors.py": "def f():\n    from rlft import models\n",
        "rlft/models.py": "",
        "rlft/data/__init__.py": "",
        "rlft/data/rows.py": "from rlft.errors import f\n",
        "rlft/stages/__init__.py": "",
        "rlft/stages/context.py": "from rlft.data.rows import f\n",
    }
    clean = import_graph(_write(tmp_path / "clean", files) or tmp_path / "clean", ("rlft",))
    assert upward_imports(clean) == [] and cycle(clean) is None
    target = "rlft/data/rows.py" if problem == "upward" else "rlft/models.py"
    files[target] += planted
    graph = import_graph(_write(tmp_path / "bad", files) or tmp_path / "bad", ("rlft",))
    if problem == "upward":
        assert upward_imports(graph) == ["rlft.data.rows (data) -> rlft.stages.context (stages)"]
    else:
        assert upward_imports(graph) == [] and cycle(graph) == ["rlft.errors", "rlft.models", "rlft.errors"]
