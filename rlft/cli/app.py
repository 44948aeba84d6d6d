"""The ``rlft`` command. Imports stay light here: torch loads only inside the commands that train."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from rlft.cli.tables import print_summary
from rlft.layout import RunLayout

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


def _load(recipe: Path, overrides: list[str] | None, deep: bool = True, here: bool = False):
    from rlft.errors import RecipeError
    from rlft.pipeline.checks import check_recipe
    from rlft.recipe import load_recipe

    try:
        r = load_recipe(recipe, overrides or [])
    except RecipeError as exc:
        shaped = exc.recipe  # the schema held, cross-key checks failed: report the deep problems too
        if not deep or shaped is None:
            raise
        try:
            check_recipe(shaped, str(recipe), here=here)
        except RecipeError as deeper:
            raise RecipeError(str(recipe), exc.problems + deeper.problems) from None
        raise
    if deep:
        check_recipe(r, str(recipe), here=here)
    return r


@app.command()
def plan(
    recipe: RecipeArg,
    overrides: OverridesArg = None,
    run_id: Annotated[str | None, typer.Option(help="an existing run: say which stages would run again, which are cached, and why")] = None,
    output_dir: Annotated[Path | None, typer.Option(help="where that run lives (default: the recipe's output_dir)")] = None,
) -> None:
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
        if s.kind == "merge":
            start = "soup of " + ", ".join(f"{m.label}×{m.weight:g}" for m in s.models)
        rewards = ", ".join(f"{x.label}×{x.weight:g}" for x in getattr(s, "rewards", []) or [])
        data = f"{s.data.label}[{s.data.split or s.default_split}]" if s.data else ""
        table.add_row(str(i), s.name, s.kind, start, data, rewards)
    _console().print(table)
    for s in r.stages:
        spec = r.launch_for(s)
        if spec.distributed:
            how = f"accelerate launch --config_file {spec.accelerate_config}" if spec.accelerate_config else "accelerate launch --multi_gpu"
            print(f"stage {s.name}: {how}" + (f" --num_processes {spec.num_processes}" if spec.num_processes else ""))
    print("recipe is valid")
    if run_id:
        from rlft.pipeline.run import plan_status

        run_dir = Path(output_dir or r.output_dir) / run_id
        status = Table(title=f"rlft run {recipe} --run-id {run_id}: what would happen in {run_dir}")
        for col in ("stage", "would", "why"):
            status.add_column(col)
        for name, would, why in plan_status(r, str(recipe), run_dir):
            status.add_row(name, {"cached": "[green]reuse[/]", "resumes": "[yellow]resume[/]"}.get(would, "[bold]run[/]"), why)
        _console().print(status)


@app.command()
def run(
    recipe: RecipeArg,
    overrides: OverridesArg = None,
    run_id: Annotated[str | None, typer.Option(help="run folder name; reuse one to resume (finished stages are skipped)")] = None,
    output_dir: Annotated[str | None, typer.Option(help="parent folder of runs (default: the recipe's output_dir, runs/)")] = None,
    accelerate: Annotated[
        str | None, typer.Option(help="launch training stages with `accelerate launch` and this config, e.g. recipes/accelerate/ddp.yaml")
    ] = None,
    num_processes: Annotated[int | None, typer.Option(help="processes per training stage (with or without --accelerate)")] = None,
    machine_rank: Annotated[int | None, typer.Option(help="multi-node: this machine's rank")] = None,
) -> None:
    """Run every stage of a recipe and print a summary table."""
    from rlft.pipeline.run import run_pipeline

    console = _console()
    try:
        launch = {"accelerate_config": accelerate, "num_processes": num_processes, "machine_rank": machine_rank}
        flags = [f"launch.{k}={v}" for k, v in launch.items() if v is not None] + ([f"output_dir={output_dir}"] if output_dir else [])
        r = _load(recipe, [*(overrides or []), *flags], here=True)  # flags are overrides: checked, and in recipe.json
        summary = run_pipeline(r, source=str(recipe), run_id=run_id, console=console)
    except Exception as exc:
        _fail(exc)
    print_summary(summary, console)
    if summary["status"] != "done":
        raise typer.Exit(1)


@app.command()
def summary(run_dir: Annotated[Path, typer.Argument(help="a run folder, e.g. runs/quickstart-20261125-120000")]) -> None:
    """Print the summary table of a finished (or failed) run."""
    path = RunLayout(run_dir).summary
    if not path.exists():
        print(f"error: {path} does not exist\n  fix: pass a folder made by `rlft run`", file=sys.stderr)
        raise typer.Exit(2)
    print_summary(json.loads(path.read_text()), _console())


@app.command("runs")
def runs_command(folder: Annotated[Path, typer.Argument(help="a folder of runs, or one run folder")] = Path("runs")) -> None:
    """List the pipeline runs found locally: recipe, stages and their status, start, duration, headline metric."""
    import datetime as dt

    from rlft.analysis.runs import find_pipeline_runs
    from rlft.analysis.tables import Column, Table, fitted, sig3

    try:
        found = find_pipeline_runs(folder)
    except Exception as exc:
        _fail(exc)
    if not found:
        print(f"no runs under {folder} (a run folder holds summary.json)")
        return
    marks = {"done": "✓", "cached": "✓", "failed": "✗", "not run": "·"}
    rows = [
        [
            r.run_id,
            r.recipe,
            r.status,
            " ".join(f"{name}{marks.get(status, '?')}" for name, _, status in r.stages),
            dt.datetime.fromtimestamp(r.started).strftime("%Y-%m-%d %H:%M") if r.started else None,
            f"{sig3(float(r.duration_s) / 60)} min" if r.duration_s else None,
            f"{r.headline[0]} {sig3(float(r.headline[1]))}" if r.headline else None,
        ]
        for r in found
    ]
    names = ("run id", "recipe", "status", "stages", "started", "took", "headline")
    table = Table([Column(name, no_wrap=True if name in ("started", "took") else None) for name in names], rows, title=f"runs in {folder}")
    _console().print(fitted(table))


@app.command()
def sweep(
    recipe: RecipeArg,
    metric: Annotated[str, typer.Option(help="the summary metric to optimise, e.g. eval/reward/math_accuracy or eval/loss")],
    direction: Annotated[str, typer.Option(help="maximize or minimize the metric")],
    overrides: OverridesArg = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="a key to search and its distribution, repeatable: KEY=loguniform(LOW,HIGH) | uniform(LOW,HIGH) | int(LOW,HIGH) "
            "| choice(A,B,...), e.g. stages.rl.trl.learning_rate=loguniform(1e-6,1e-4)",
        ),
    ] = None,
    trials: Annotated[int, typer.Option(min=1, help="trials to run now (added to the sweep's earlier ones)")] = 10,
    stage: Annotated[str | None, typer.Option(help="read the metric from this stage (default: the last stage that has it)")] = None,
    prune: Annotated[
        bool,
        typer.Option(
            help="after a stage, stop a trial that falls behind the median of earlier trials there (Optuna's MedianPruner, from the 6th trial)"
        ),
    ] = False,
    sweep_id: Annotated[str | None, typer.Option(help="the sweep's name and folder; reuse one to add trials to it")] = None,
    output_dir: Annotated[str | None, typer.Option(help="where the sweep folder goes (default: the recipe's output_dir, runs/)")] = None,
    wandb_sweep: Annotated[bool, typer.Option(help="run the search as a W&B sweep (online) instead of with Optuna")] = False,
) -> None:
    """Search hyperparameters with Optuna: each trial runs the recipe with sampled overrides; prints every trial, the best marked."""
    from rlft.analysis.sweep import prepare_sweep, render_trials, run_sweep, run_sweep_on_wandb
    from rlft.errors import RlftError

    console = _console()
    try:
        if wandb_sweep and prune:
            raise RlftError(
                "--prune works with Optuna's search only", fix="leave out --prune, or leave out --wandb-sweep to search with Optuna"
            )
        setup = prepare_sweep(
            recipe,
            params=list(param or []),
            metric=metric,
            direction=direction,
            overrides=list(overrides or []),
            stage=stage,
            sweep_id=sweep_id,
            output_dir=output_dir,
        )
        if wandb_sweep:
            rows = run_sweep_on_wandb(setup, trials=trials, console=console)
        else:
            import optuna

            rows = run_sweep(setup, trials=trials, pruner=optuna.pruners.MedianPruner() if prune else None, console=console)
    except Exception as exc:
        _fail(exc)
    render_trials(rows, setup, console)
    console.print(f"add trials: the same command with --sweep-id {setup.sweep_id}")
    if not any(r.state == "complete" for r in rows):
        raise typer.Exit(1)


@app.command()
def compare(
    runs: Annotated[list[str], typer.Argument(help="run ids (folders under --runs-dir; also their W&B group), run folders, or RUN/STAGE")],
    runs_dir: Annotated[Path, typer.Option(help="where run ids are looked up")] = Path("runs"),
    format: Annotated[str, typer.Option("--format", help="rich (terminal), csv, markdown or json")] = "rich",  # noqa: A002
    source: Annotated[
        str | None,
        typer.Option(
            help="local (history.jsonl, or W&B files, on disk) or wandb (the W&B API); default: wandb only when WANDB_MODE=online"
        ),
    ] = None,
    project: Annotated[str | None, typer.Option(help="the W&B project (ENTITY/PROJECT) for --source wandb")] = None,
    plot: Annotated[Path | None, typer.Option(help="write PNG plots here: reward, KL and loss vs step, reward vs KL")] = None,
    winrate: Annotated[bool, typer.Option(help="generate from each run's final model on --prompts and judge them pairwise")] = False,
    judge: Annotated[list[str] | None, typer.Option(help="a reward reference that judges --winrate (repeat to sum several)")] = None,
    prompts: Annotated[Path | None, typer.Option(help="a data file with a prompt column (and what the judge needs), for --winrate")] = None,
    limit: Annotated[int | None, typer.Option(help="judge only the first N prompts")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="completion length for --winrate")] = 128,
    report: Annotated[bool, typer.Option(help="create a W&B report of the comparison (needs --source wandb and a login)")] = False,
) -> None:
    """Compare runs: the held-out scorecard of each run and stage side by side, best value per column marked."""
    from rlft.analysis import compare as cmp

    console = _console()
    try:
        chosen = cmp.source_for(source)
        if winrate and not (judge and prompts):
            raise cmp.RlftError("--winrate needs a judge and prompts", fix="add --judge math_accuracy --prompts held_out.jsonl")
        if chosen == "wandb":
            rows = cmp.load_rows_api(list(runs), _wandb_api(), project or _project_of(runs, runs_dir))
        else:
            rows = cmp.load_rows(list(runs), runs_dir)
        if format == "rich" or not winrate:  # a file format carries one table: with --winrate, the win rates
            text = cmp.render(rows, format, console=console)
            if text is not None:
                sys.stdout.write(text)
        if plot is not None:
            from rlft.analysis.plots import write_plots

            for path in write_plots(rows, plot):
                print(f"wrote {path}", file=sys.stderr)
        if winrate:
            _winrate(list(runs), runs_dir, judge, prompts, limit, max_new_tokens, format, console)
        if report:
            _report(rows, chosen, project or _project_of(runs, runs_dir), console)
    except Exception as exc:
        _fail(exc)


@app.command()
def dashboard(
    run: Annotated[str | None, typer.Argument(help="a run id (under --runs-dir) or run folder: open on its project")] = None,
    runs_dir: Annotated[Path, typer.Option(help="the runs folder whose trackio/ store is shown")] = Path("runs"),
) -> None:
    """Serve trackio's local dashboard on runs tracked with tracking.backends: \\[trackio] (stages grouped by run id)."""
    import subprocess

    from rlft.analysis.compare import _recipe_of, _resolve
    from rlft.tracking import TRACKIO_FOLDER, dashboard_command

    try:
        if run is None:
            store, project = runs_dir / TRACKIO_FOLDER, None
        else:
            run_dir, _ = _resolve(run, runs_dir)
            store, project = run_dir.parent / TRACKIO_FOLDER, (_recipe_of(run_dir).get("tracking") or {}).get("project", "rlft")
        cmd, env = dashboard_command(store, project)
    except Exception as exc:
        _fail(exc)
    print(f"trackio dashboard on {store}" + (f", project {project}" if project else "") + " (Ctrl-C to stop)", file=sys.stderr)
    raise typer.Exit(subprocess.run(cmd, env=env).returncode)


ModelRefArg = Annotated[
    str,
    typer.Argument(
        help="RUN (its last stage that saved a model) or RUN/STAGE — a run id under --runs-dir or a run folder — "
        "or a model/adapter folder, or bundled:smollm2-135m-instruct"
    ),
]
RunsDirOpt = Annotated[Path, typer.Option(help="where run ids are looked up")]
SystemOpt = Annotated[str | None, typer.Option(help="a system message first in every prompt that has none")]
TopPOpt = Annotated[float, typer.Option(help="nucleus sampling: keep the smallest set of tokens whose probability adds up to this")]


@app.command()
def chat(
    model: ModelRefArg,
    runs_dir: RunsDirOpt = Path("runs"),
    temperature: Annotated[float, typer.Option(help="sampling temperature; 0 decodes greedily")] = 0.7,
    top_p: TopPOpt = 1.0,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="the longest answer, in tokens")] = 256,
    system: SystemOpt = None,
    seed: Annotated[int | None, typer.Option(help="seed the sampling, for answers that repeat")] = None,
) -> None:
    """Chat with a model in the terminal: its chat template, the answer streamed as it comes, the conversation kept.

    /reset clears the history, /exit or Ctrl-D quits. Lines can also come piped in: echo hi | rlft chat RUN."""
    from rlft.analysis.trying import HELP, ChatSession, chat_loop, find_model, load
    from rlft.stages.progress import quiet_libraries

    try:
        quiet_libraries()
        target = find_model(model, runs_dir)
        lm, tok = load(target)
        session = ChatSession(lm, tok, system=system, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
    except Exception as exc:
        _fail(exc)
    if seed is not None:
        from transformers import set_seed

        set_seed(seed)
    sampling = "greedy" if session.sampled is None else f"temperature {temperature:g}, top-p {top_p:g}"
    print(f"chatting with {target.label} ({target.path}), {sampling}; {HELP}", file=sys.stderr)
    interactive = sys.stdin.isatty()
    if interactive:
        import readline  # noqa: F401  (line editing and history for input())
    chat_loop(session, prompt="you> " if interactive else "")


@app.command()
def generate(
    model: ModelRefArg,
    prompts: Annotated[Path, typer.Option(help="a .jsonl/.json/.csv/.parquet file with a prompt column; .txt: one prompt a line")],
    out: Annotated[Path, typer.Option(help="the JSONL file to write: one {prompt, completion, tokens} row per prompt, in order")],
    runs_dir: RunsDirOpt = Path("runs"),
    batch_size: Annotated[int, typer.Option(min=1, help="prompts generated together")] = 16,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="the longest completion, in tokens")] = 256,
    temperature: Annotated[float, typer.Option(help="sampling temperature; 0 (the default) decodes greedily, as the scorecard does")] = 0.0,
    top_p: TopPOpt = 1.0,
    system: SystemOpt = None,
    seed: Annotated[int, typer.Option(help="seeds the sampling (temperature above 0)")] = 0,
) -> None:
    """Answer every prompt of a file with a model, with the scorecard's generation code, and write the completions as JSONL."""
    from rlft.analysis.trying import find_model, generate_file
    from rlft.stages.progress import quiet_libraries

    try:
        quiet_libraries()
        target = find_model(model, runs_dir)
        n = generate_file(
            target,
            prompts,
            out,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            temperature=temperature,
            top_p=top_p,
            system=system,
            seed=seed,
        )
    except Exception as exc:
        _fail(exc)
    print(f"wrote {n} completion(s) of {target.label} to {out}", file=sys.stderr)


def _wandb_api():
    import wandb

    try:
        return wandb.Api()
    except Exception as exc:  # no key, no network: say so, without wandb's traceback
        from rlft.errors import RlftError

        raise RlftError(
            f"the W&B API is not available ({exc})", fix="`wandb login`, or leave out --source wandb to read local files"
        ) from None


def _project_of(runs: list[str], runs_dir: Path) -> str:
    """The W&B project the runs were tracked in, from the first local run's recipe."""
    from rlft.analysis.compare import _recipe_of
    from rlft.errors import RlftError

    for ref in runs:
        for folder in (Path(ref), runs_dir / ref, runs_dir / ref.partition("/")[0]):
            project = (_recipe_of(folder).get("tracking") or {}).get("project")
            if project:
                return project
    raise RlftError("which W&B project?", fix="pass --project ENTITY/PROJECT")


def _winrate(refs, runs_dir, judge, prompts, limit, max_new_tokens, fmt, console) -> None:
    from rlft.analysis.compare import _resolve
    from rlft.analysis.winrate import final_model, render_winrates, winrates
    from rlft.stages.progress import quiet_libraries

    quiet_libraries()
    models = {}
    for ref in refs:
        run_dir, stage = _resolve(ref, runs_dir)
        models[ref] = final_model(run_dir, stage)
    result = winrates(models, prompts, list(judge), max_new_tokens=max_new_tokens, limit=limit)
    text = render_winrates(result, fmt, console=console)
    if text is not None:
        sys.stdout.write(text)


def _report(rows, chosen: str, project: str, console) -> None:
    from rlft.analysis.report import build_report, save_report, sync_hint

    if chosen != "wandb":
        console.print(sync_hint(rows))
        return
    entity, _, name = project.rpartition("/")
    entity = entity or _wandb_api().default_entity
    runs = ", ".join(dict.fromkeys(r.run for r in rows))
    console.print(f"report: {save_report(build_report(rows, entity=entity, project=name, title=f'rlft compare: {runs}'))}")


rewards_app = typer.Typer(help="Inspect and try reward functions before spending compute.", no_args_is_help=True)
app.add_typer(rewards_app, name="rewards")


@rewards_app.command("list")
def rewards_list() -> None:
    """List the built-in and registered rewards: name, kind, description, where defined."""
    import importlib

    from rich.table import Table

    import rewards

    for module in sorted(set(rewards.BUILTINS.values())):
        importlib.import_module(module)
    table = Table(title="rewards (use in a recipe as `- name: <name>`; also module:function or ./file.py:function)")
    for col in ("name", "kind", "description", "defined in"):
        table.add_column(col)
    for name, info in sorted(rewards.REGISTRY.items()):
        kind = "class (takes kwargs)" if isinstance(info.fn, type) else "function"
        table.add_row(name, kind, info.description, info.module)
    _console().print(table)
    print("also: `- model: <reward_model stage | folder | hub id>` and `- ensemble: [...]` with reduce: mean | min | mean_minus_std")


@rewards_app.command("test")
def rewards_test(
    ref: Annotated[str, typer.Argument(help="a reward: registered name, module:function or ./file.py:function")],
    data: Annotated[Path | None, typer.Option(help="a .jsonl/.json/.csv/.parquet file of rows (prompt, completion, other columns)")] = None,
    prompt: Annotated[list[str] | None, typer.Option(help="a prompt (repeat, paired with --completion), as a user message")] = None,
    completion: Annotated[list[str] | None, typer.Option(help="a completion (repeat)")] = None,
    column: Annotated[list[str] | None, typer.Option(help="a dataset column for every sample, KEY=VALUE (e.g. answer=42)")] = None,
    kwargs: Annotated[str | None, typer.Option(help='the reward\'s kwargs as JSON, e.g. \'{"tag": "answer"}\'')] = None,
    limit: Annotated[int, typer.Option(help="rows to score from --data")] = 20,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            help="whose tokenizer makes the completion_ids TRL passes rewards (a model folder, hub id or bundled:NAME); "
            "default: the bundled model's, when the reward names completion_ids"
        ),
    ] = None,
) -> None:
    """Score samples with one reward and print a table; exit 1 when the reward is broken.

    The reward is called as TRL calls it in training: prompts and completions as chat messages (as rlft's data
    loading makes them), the samples' columns, TRL's ``log_metric``/``log_extra``
    (no-ops here) and, with ``--tokenizer`` or when the reward names the parameter, ``completion_ids`` (the
    completion's tokens under that tokenizer, ending in its EOS as a finished completion does)."""
    from rich.table import Table

    from rlft.errors import RlftError
    from rlft.reward_refs import resolve_reward

    try:
        resolved = resolve_reward(ref, kwargs=json.loads(kwargs) if kwargs else None, base_dir=Path.cwd())
        prompts, completions, columns = _samples(data, prompt, completion, column, limit)
        missing = [c for c in resolved.required_columns if c not in columns]
        if missing:
            raise RlftError(
                f"reward {ref} needs column(s) {missing}", fix=f"pass --column {missing[0]}=VALUE or a --data file with that column"
            )
        from rlft.evaluation.scorecard import TRL_LOGGERS

        if tokenizer is None and _names_parameter(resolved.reward.target, "completion_ids"):
            tokenizer = "bundled:smollm2-135m-instruct"
        ids = {"completion_ids": _completion_ids(tokenizer, completions)} if tokenizer else {}
        scores = resolved.reward(prompts, completions, **columns, **ids, **TRL_LOGGERS)
    except (RlftError, ValueError) as exc:
        print(f"error: {exc.render() if isinstance(exc, RlftError) else exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    table = Table(title=f"{ref} on {len(completions)} sample(s)")
    for col in ("#", "prompt", "completion", "score"):
        table.add_column(col)
    for i, (p, c, v) in enumerate(zip(prompts, completions, scores, strict=True)):
        table.add_row(str(i), _short(p), _short(c), "None" if v is None else f"{v:.4g}")
    _console().print(table)


def _names_parameter(fn, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _completion_ids(ref: str, completions: list) -> list[list[int]]:
    """Each completion's token ids under the tokenizer of ``ref``, EOS last (what TRL passes as ``completion_ids``)."""
    from rewards import text
    from rlft.models import load_tokenizer, resolve_model

    tok = load_tokenizer(resolve_model(ref))
    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    return [tok(text(c) if not isinstance(c, str) else c, add_special_tokens=False)["input_ids"] + eos for c in completions]


def _short(value, width: int = 60) -> str:
    from rewards import text

    t = text(value) if not isinstance(value, str) else value
    t = t.replace("\n", "⏎")
    return t if len(t) <= width else t[: width - 1] + "…"


def _samples(data, prompt, completion, column, limit):
    from rlft.errors import RlftError

    columns: dict[str, list] = {}
    if data is not None:
        from rlft.data.rows import load_rows
        from rlft.recipe import DataSpec

        rows, _, _ = load_rows(DataSpec(source=str(data), limit=limit), split="train", required=("prompt", "completion"))
        prompts, completions = list(rows["prompt"]), list(rows["completion"])
        columns = {c: list(rows[c]) for c in rows.column_names if c not in ("prompt", "completion")}
    else:
        completions = list(completion or [])
        if not completions:
            raise RlftError("no samples to score", fix="pass --completion TEXT (and --prompt TEXT), or --data FILE")
        prompts = list(prompt or [""] * len(completions))
        if len(prompts) != len(completions):
            raise RlftError(
                f"{len(prompts)} --prompt for {len(completions)} --completion", fix="give one --prompt per --completion, or none"
            )
        # rlft's data loading makes a text prompt one user message, so in training the reward gets chat-shaped
        # completions: hand it the same shape here (Reward makes each completion one assistant message).
        prompts = [[{"role": "user", "content": p}] for p in prompts]
    for item in column or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise RlftError(f"--column {item!r} has no '='", fix="write --column KEY=VALUE")
        columns[key] = [value] * len(completions)
    return prompts, completions, columns


@app.command()
def push(
    stage_dir: Annotated[Path, typer.Argument(help="a finished stage folder, e.g. runs/quickstart-20261125-120000/sft")],
    hub_model_id: Annotated[str | None, typer.Option(help="the Hub repository OWNER/NAME; default: the stage's push.hub_model_id")] = None,
    private: Annotated[bool, typer.Option(help="create the repository private")] = False,
    adapter_only: Annotated[bool, typer.Option(help="upload the stage's adapter/ (LoRA, PEFT format) instead of its model/")] = False,
) -> None:
    """Upload a finished stage's model (or adapter) folder with its model card to the Hugging Face Hub."""
    from rlft.errors import RlftError
    from rlft.layout import StageLayout
    from rlft.models import hub_offline
    from rlft.pipeline import outputs

    try:
        manifest = StageLayout(stage_dir).manifest
        if not manifest.exists():
            raise RlftError(f"{stage_dir} is not a finished stage folder (no manifest.json)", fix="name one: runs/RUN/STAGE")
        spec = json.loads(manifest.read_text()).get("stage", {}).get("push") or {}
        hub_model_id = hub_model_id or spec.get("hub_model_id")
        if not hub_model_id:
            raise RlftError("which Hub repository?", fix="pass --hub-model-id OWNER/NAME")
        private = private or bool(spec.get("private"))
        adapter_only = adapter_only or bool(spec.get("adapter_only"))
        if hub_offline():
            raise RlftError(
                "HF_HUB_OFFLINE is set, so nothing can be uploaded", fix="run it where there is network, without HF_HUB_OFFLINE=1"
            )
        if outputs.hub_token() is None:
            raise RlftError("no Hugging Face token", fix="log in (`hf auth login`) or set HF_TOKEN to a token with write access")
        url = outputs.upload(stage_dir, hub_model_id, private=private, adapter_only=adapter_only)
    except Exception as exc:
        _fail(exc)
    print(f"uploaded {outputs.push_folder(stage_dir, adapter_only=adapter_only)} to {url}")


@app.command("prepare-model")
def prepare_model(model: Annotated[str, typer.Argument(help="a model reference")] = "bundled:smollm2-135m-instruct") -> None:
    """Convert the bundled model into the cache now (otherwise it happens on first use)."""
    from rlft.models import resolve_model

    try:
        print(resolve_model(model))
    except Exception as exc:
        _fail(exc)


@app.command()
def env(as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of text")] = False) -> None:
    """Print the versions (Python, torch and CUDA, transformers, TRL, PEFT, ...) and the machine, for a bug report."""
    from rlft.cli.environment import environment, render

    found = environment()
    print(json.dumps(found, indent=2) if as_json else render(found))


@app.command()
def version() -> None:
    """Print the rlft version."""
    from rlft import __version__

    print(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
