"""The ``rlft`` command. Imports stay light here: torch loads only inside the commands that train."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="rlft — one YAML recipe takes a language model through SFT and RL stages, tracked in W&B.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

RecipeArg = Annotated[Path, typer.Argument(help="the recipe YAML file, e.g. recipes/quickstart.yaml")]
OverridesArg = Annotated[list[str] | None, typer.Argument(help="dotted overrides, e.g. stages.rl.trl.learning_rate=1e-6")]


def _console():
    from rich.console import Console

    return Console(highlight=False)


def _fail(exc) -> None:
    from rlft.errors import RlftError

    if isinstance(exc, RlftError):
        print(f"error: {exc.render()}", file=sys.stderr)
        raise typer.Exit(2)
    raise exc


def _load(recipe: Path, overrides: list[str] | None, deep: bool = True):
    from rlft.recipe import check_recipe, load_recipe

    r = load_recipe(recipe, overrides or [])
    if deep:
        check_recipe(r, str(recipe))
    return r


@app.command()
def plan(recipe: RecipeArg, overrides: OverridesArg = None) -> None:
    """Validate a recipe (schema, stage chaining, rewards, TRL configs) and print its stages."""
    from rich.table import Table

    try:
        r = _load(recipe, overrides)
    except Exception as exc:
        _fail(exc)
    table = Table(title=f"{r.name}: {r.model} → {len(r.stages)} stage(s)")
    for col in ("#", "stage", "kind", "starts from", "data", "rewards"):
        table.add_column(col)
    for i, s in enumerate(r.stages, 1):
        start = s.init_from or ("(last model)" if s.kind == "eval" else r.model)
        rewards = ", ".join(f"{x.name}×{x.weight:g}" for x in getattr(s, "rewards", []) or [])
        data = f"{s.data.source}[{s.data.split or s.default_split}]"
        table.add_row(str(i), s.name, s.kind, start, data, rewards)
    _console().print(table)
    print("recipe is valid")


@app.command()
def run(
    recipe: RecipeArg,
    overrides: OverridesArg = None,
    run_id: Annotated[str | None, typer.Option(help="run folder name; reuse one to resume (finished stages are skipped)")] = None,
    output_dir: Annotated[str | None, typer.Option(help="parent folder of runs (default: the recipe's output_dir, runs/)")] = None,
) -> None:
    """Run every stage of a recipe and print a summary table."""
    from rlft.pipeline import run_pipeline

    console = _console()
    try:
        r = _load(recipe, overrides)
        summary = run_pipeline(r, source=str(recipe), run_id=run_id, output_dir=output_dir, console=console)
    except Exception as exc:
        _fail(exc)
    print_summary(summary, console)
    if summary["status"] != "done":
        raise typer.Exit(1)


def print_summary(summary: dict, console) -> None:
    from rich.table import Table

    table = Table(title=f"run {summary['run_id']} — {summary['status']}")
    for col in ("stage", "kind", "status", "wall", "final loss", "final reward"):
        table.add_column(col)
    for s in summary["stages"]:
        m = s.get("metrics") or {}
        wall = s.get("wall_s")
        table.add_row(
            s["name"],
            s["kind"],
            s["status"],
            f"{wall:.0f} s" if wall else "",
            _num(m.get("train/loss")),
            _num(m.get("train/reward")),
        )
    console.print(table)
    for s in summary["stages"]:
        m = s.get("metrics") or {}
        names = sorted({k.split("/", 1)[1] for k in m if k.startswith("eval/") and k not in ("eval/n", "eval/mean_length")})
        if not names:
            continue
        held = Table(title=f"held-out score ({s['name']}, {int(m.get('eval/n', 0))} prompts)")
        for col in ("reward", "base model", "final model", "change"):
            held.add_column(col)
        for n in names:
            before, after = m.get(f"baseline/{n}"), m.get(f"eval/{n}")
            change = f"{after - before:+.3f}" if before is not None and after is not None else ""
            held.add_row(n, _num(before), _num(after), change)
        console.print(held)
    for s in summary["stages"]:
        if s.get("error"):
            console.print(f"[red]stage {s['name']} failed:[/red] {s['error']}", markup=True)
    console.print(f"outputs: {summary['run_dir']} (summary.json, one folder per stage)")


def _num(v) -> str:
    return "" if v is None else f"{v:.3f}"


@app.command()
def summary(run_dir: Annotated[Path, typer.Argument(help="a run folder, e.g. runs/quickstart-20261125-120000")]) -> None:
    """Print the summary table of a finished (or failed) run."""
    path = run_dir / "summary.json"
    if not path.exists():
        print(f"error: {path} does not exist\n  fix: pass a folder made by `rlft run`", file=sys.stderr)
        raise typer.Exit(2)
    print_summary(json.loads(path.read_text()), _console())


@app.command("prepare-model")
def prepare_model(model: Annotated[str, typer.Argument(help="a model reference")] = "bundled:smollm2-135m-instruct") -> None:
    """Convert the bundled model into the cache now (otherwise it happens on first use)."""
    from rlft.models import resolve_model

    try:
        print(resolve_model(model))
    except Exception as exc:
        _fail(exc)


@app.command()
def version() -> None:
    """Print the rlft version."""
    from rlft import __version__

    print(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
