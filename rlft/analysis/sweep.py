"""``rlft sweep``: hyperparameter search over a recipe, driven by Optuna (offline) or run as a W&B sweep.

A searched key is a recipe override with a distribution in place of the value::

    --param stages.rl.trl.learning_rate=loguniform(1e-6,1e-4)   # a float, log scale
    --param stages.sft.trl.warmup_ratio=uniform(0,0.2)          # a float
    --param stages.rl.trl.num_generations=int(2,8)              # an integer, both ends included
    --param stages.sft.peft.lora.r=choice(8,16,32)              # one of the values

Every key is checked against the recipe before the first trial (at both ends of its range and at every
choice, as ``rlft run`` checks an override). Each trial is a pipeline run of the recipe with the sampled
values as overrides, run id ``<sweep id>-t<k>`` (k = Optuna's trial number), inside the sweep folder
``<output_dir>/<sweep id>/``, which also holds the Optuna study (``study.db``, SQLite: running the same
command with the same ``--sweep-id`` adds trials to it) and the trials table (``trials.csv``,
``trials.json``). The objective is ``--metric`` in the finished run's ``summary.json``: from ``--stage``,
else from the last stage that has it. A trial whose run fails is recorded as failed, with its error, and
the sweep goes on. The metric is also reported to Optuna after every stage that has it (step = the stage's
position), so that with a pruner (``--prune``: ``MedianPruner``) a trial that falls behind stops before its
next stage (``run_pipeline(after_stage=...)``) and is recorded as pruned.

W&B: a trial's stages are W&B runs grouped as any pipeline run's (group = the trial's run id, which
``rlft compare`` looks up), and every one carries the tag ``sweep:<sweep id>`` (filter by it in the W&B
UI). ``--wandb-sweep`` runs the same search as a W&B sweep (``wandb_sweep_config``; W&B's controller picks
the values) through the same trial function, recorded in the same study and table.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import math
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from rlft.errors import RecipeError, RlftError, did_you_mean
from rlft.layout import RunLayout
from rlft.recipe import NAME_PATTERN, Recipe, load_recipe
from rlft.recipe.loading import parse_yaml

DISTRIBUTIONS = {
    "loguniform": "loguniform(LOW,HIGH) a float on a log scale",
    "uniform": "uniform(LOW,HIGH) a float",
    "int": "int(LOW,HIGH) an integer, both ends included",
    "choice": "choice(A,B,...) one of the values",
}
OTHER_NAMES = {  # what other tools call them
    "log_uniform": "loguniform",
    "log_uniform_values": "loguniform",
    "reciprocal": "loguniform",
    "randint": "int",
    "int_uniform": "int",
    "integer": "int",
    "categorical": "choice",
    "values": "choice",
    "float": "uniform",
}
WANDB_DISTRIBUTIONS = {"loguniform": "log_uniform_values", "uniform": "uniform", "int": "int_uniform"}
DIRECTIONS = ("maximize", "minimize")
STUDY_FILE = "study.db"
EXAMPLE = "--param stages.rl.trl.learning_rate=loguniform(1e-6,1e-4)"
MAX_TAG = 64  # W&B refuses longer tags


@dataclass(frozen=True)
class ParamSpec:
    """One searched key: ``kind`` is a name in ``DISTRIBUTIONS``; ``values`` are (LOW, HIGH) or the choices."""

    key: str
    kind: str
    values: tuple
    text: str

    @property
    def label(self) -> str:
        return self.key.removeprefix("stages.")

    def suggest(self, trial):
        """The value of this key in an Optuna trial."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.values))
        if self.kind == "int":
            return trial.suggest_int(self.key, *self.values)
        return trial.suggest_float(self.key, *self.values, log=self.kind == "loguniform")

    def override(self, value) -> str:
        """The recipe override setting this key to ``value`` (JSON is YAML, so strings stay strings)."""
        return f"{self.key}={json.dumps(value)}"

    def wandb(self) -> dict:
        """This key's entry under a W&B sweep configuration's ``parameters``."""
        if self.kind == "choice":
            return {"values": list(self.values)}
        low, high = self.values
        return {"distribution": WANDB_DISTRIBUTIONS[self.kind], "min": low, "max": high}


def parse_param(text: str) -> ParamSpec:
    """Parse ``KEY=DIST(ARGS)``; every mistake is an ``RlftError`` naming it and the fix."""
    key, sep, rest = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RlftError(f"--param {text!r} is not KEY=DISTRIBUTION(...)", fix=f"write e.g. {EXAMPLE}")
    where = f"--param {key}"
    match = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*\((.*)\)\s*", rest)
    if not match:
        raise RlftError(
            f"{rest.strip()!r} is not a distribution",
            where=where,
            fix=f"write {key}=loguniform(LOW,HIGH), uniform(LOW,HIGH), int(LOW,HIGH) or choice(A,B,...); "
            f"to fix a value for every trial, pass it as an override: rlft sweep RECIPE {key}={rest.strip()} --param ...",
        )
    name, args = match.groups()
    if name not in DISTRIBUTIONS:
        hint = f"did you mean {OTHER_NAMES[name]!r}? " if name in OTHER_NAMES else did_you_mean(name, DISTRIBUTIONS)
        raise RlftError(f"unknown distribution {name!r}", where=where, fix=f"{hint}distributions: {'; '.join(DISTRIBUTIONS.values())}")
    try:
        values = parse_yaml(f"[{args}]")
    except yaml.YAMLError:
        values = None
    if not isinstance(values, list) or any(isinstance(v, list | dict) for v in values):
        raise RlftError(
            f"cannot read the arguments of {name}({args})", where=where, fix=f"write them comma-separated: {DISTRIBUTIONS[name]}"
        )
    if name == "choice":
        return ParamSpec(key, name, tuple(_choices(values, where)), text)
    return ParamSpec(key, name, _bounds(name, values, where), text)


def _choices(values: list, where: str) -> list:
    if len(values) < 2:
        raise RlftError(
            f"choice() needs at least two values (got {len(values)})",
            where=where,
            fix="list the values to try, e.g. choice(8,16,32); a single value is an override (KEY=VALUE), not a search",
        )
    repeated = sorted({str(v) for i, v in enumerate(values) if v in values[:i]})
    if repeated:
        raise RlftError(f"choice() lists {', '.join(repeated)} more than once", where=where, fix="list each value once")
    return values


def _bounds(name: str, values: list, where: str) -> tuple:
    usage = DISTRIBUTIONS[name]
    if len(values) != 2:
        raise RlftError(f"{name}() takes two bounds, LOW and HIGH (got {len(values)})", where=where, fix=f"write {usage}")
    numbers = (int,) if name == "int" else (int, float)
    if not all(isinstance(v, numbers) and not isinstance(v, bool) for v in values):
        kind = "integers" if name == "int" else "numbers"
        got = ", ".join(repr(v) for v in values)
        raise RlftError(f"the bounds of {name}() must be {kind} (got {got})", where=where, fix=f"write {usage}")
    low, high = values
    if not low < high:
        raise RlftError(f"{name}({low}, {high}): LOW must be below HIGH", where=where, fix=f"write {name}({min(values)}, {max(values)})")
    if name == "loguniform" and low <= 0:
        raise RlftError(
            f"loguniform({low}, {high}): a log scale needs LOW > 0",
            where=where,
            fix="start above zero (e.g. 1e-6), or use uniform(LOW,HIGH)",
        )
    return (low, high) if name == "int" else (float(low), float(high))


def parse_params(texts: list[str]) -> list[ParamSpec]:
    """Parse every ``--param``; at least one, each key once."""
    if not texts:
        raise RlftError("nothing to search: no --param", fix=f"add one or more, e.g. {EXAMPLE}")
    specs = [parse_param(t) for t in texts]
    keys = [s.key for s in specs]
    twice = sorted({k for i, k in enumerate(keys) if k in keys[:i]})
    if twice:
        raise RlftError(f"--param {twice[0]} is given more than once", fix="keep one --param per key")
    return specs


@dataclass
class Sweep:
    """A checked search: what to vary, what to optimise, where it lives."""

    recipe: Path
    overrides: list[str]
    params: list[ParamSpec]
    metric: str
    direction: str
    stage: str | None
    sweep_id: str
    folder: Path
    stages: list[str]  # the recipe's stage names, in order (the steps of intermediate reports)
    tags: list[str]  # tracking.tags of every trial: the recipe's and sweep:<id>


def prepare_sweep(
    recipe_path: str | Path,
    *,
    params: list[str],
    metric: str,
    direction: str,
    overrides: list[str] | None = None,
    stage: str | None = None,
    sweep_id: str | None = None,
    output_dir: str | None = None,
) -> Sweep:
    """Check everything a sweep needs before its first trial; raise ``RlftError`` naming the first problem."""
    path = Path(recipe_path)
    overrides = list(overrides or [])
    if direction not in DIRECTIONS:
        raise RlftError(
            f"--direction must be maximize or minimize, not {direction!r}",
            fix=f"{did_you_mean(direction, DIRECTIONS)}use --direction maximize or minimize",
        )
    if not metric.strip():
        raise RlftError("--metric is empty", fix="name a summary metric, e.g. --metric eval/reward/math_accuracy")
    specs = parse_params(params)
    both = sorted({o.partition("=")[0].strip() for o in overrides} & {s.key for s in specs})
    if both:
        raise RlftError(f"{both[0]} is both an override and a --param", fix="drop the override to search the key, or the --param to fix it")
    checks = [*overrides, *([f"output_dir={json.dumps(output_dir)}"] if output_dir else [])]  # as `rlft run --output-dir` checks it
    base = _checked_recipe(path, checks)
    names = [s.name for s in base.stages]
    if stage is not None and stage not in names:
        raise RlftError(f"--stage {stage!r} is not a stage of {path}", fix=f"{did_you_mean(stage, names)}stages: {', '.join(names)}")
    sweep_id = sweep_id or f"{base.name}-sweep-{dt.datetime.now():%Y%m%d-%H%M%S}"
    if not re.fullmatch(NAME_PATTERN, sweep_id) or len(f"sweep:{sweep_id}") > MAX_TAG:
        raise RlftError(
            f"--sweep-id {sweep_id!r}: use letters, digits, '-' and '_' (starting with a letter or digit), at most {MAX_TAG - 6} characters",
            fix="e.g. --sweep-id lr-search",
        )
    for spec in specs:
        for value in spec.values:
            try:
                _checked_recipe(path, [*checks, spec.override(value)])
            except RecipeError as exc:
                detail = "\n".join(f"  - {where}: {msg}" if where else f"  - {msg}" for where, msg in exc.problems)
                raise RlftError(
                    f"--param {spec.text} does not fit recipe {path} (tried {spec.key}={value!r}):\n{detail}",
                    fix=f"correct the key path or the range of --param {spec.key}",
                ) from None
            except RlftError as exc:
                raise RlftError(f"--param {spec.text} does not fit recipe {path}: {exc.what}", fix=exc.fix) from None
    return Sweep(
        recipe=path,
        overrides=overrides,
        params=specs,
        metric=metric.strip(),
        direction=direction,
        stage=stage,
        sweep_id=sweep_id,
        folder=Path(output_dir or base.output_dir).resolve() / sweep_id,
        stages=names,
        tags=[*base.tracking.tags, f"sweep:{sweep_id}"],
    )


def _checked_recipe(path: Path, overrides: list[str]) -> Recipe:
    """Load, override and check a recipe exactly as ``rlft run`` does."""
    from rlft.pipeline.checks import check_recipe

    recipe = load_recipe(path, overrides)
    check_recipe(recipe, str(path), here=True)
    return recipe


def trial_overrides(sweep: Sweep, values: dict[str, Any]) -> list[str]:
    """A trial's overrides: the sweep's own, the sampled values, the sweep tag, the sweep folder."""
    sampled = [spec.override(values[spec.key]) for spec in sweep.params]
    return [*sweep.overrides, *sampled, f"tracking.tags={json.dumps(sweep.tags)}", f"output_dir={json.dumps(str(sweep.folder))}"]


def read_metric(summary: dict, metric: str, stage: str | None = None) -> float:
    """``metric`` from a run's summary: the named stage's, else the last stage's that has it."""
    stages = [s for s in summary["stages"] if stage is None or s["name"] == stage]
    for entry in reversed(stages):
        value = (entry.get("metrics") or {}).get(metric)
        if value is not None:
            return float(value)
    seen = sorted({k for entry in stages for k in entry.get("metrics") or {}})
    where = f"stage {stage}" if stage else "any stage"
    raise RlftError(
        f"metric {metric!r} is not in {where} of run {summary['run_id']}",
        where=str(RunLayout(Path(summary["run_dir"])).summary),
        fix=f"{did_you_mean(metric, seen)}pass one of its metrics to --metric: {', '.join(seen) or '(none)'}",
    )


class TrialFailed(Exception):
    """A trial's run failed: Optuna records the trial as failed and the sweep goes on."""


def objective(sweep: Sweep, trial, console) -> float:
    """One trial: a pipeline run with the trial's values; returns the metric (the function Optuna optimises)."""
    import optuna

    from rlft.pipeline.run import run_pipeline

    values = {spec.key: spec.suggest(trial) for spec in sweep.params}
    run_id = f"{sweep.sweep_id}-t{trial.number}"
    trial.set_user_attr("run_id", run_id)
    console.print(
        f"[bold]━━ trial {trial.number} ({run_id}): " + ", ".join(f"{spec.label}={_fmt(values[spec.key])}" for spec in sweep.params)
    )

    def after_stage(entry: dict) -> str | None:
        value = (entry.get("metrics") or {}).get(sweep.metric)
        if value is None or math.isnan(value):
            return None
        trial.report(float(value), sweep.stages.index(entry["name"]))
        return f"pruned: {sweep.metric} {value:.4g} after stage {entry['name']}" if trial.should_prune() else None

    try:
        recipe = _checked_recipe(sweep.recipe, trial_overrides(sweep, values))
        summary = run_pipeline(recipe, source=str(sweep.recipe), run_id=run_id, console=console, after_stage=after_stage)
    except RlftError as exc:
        _fail(trial, exc.render())
    except KeyboardInterrupt:
        trial.set_user_attr("error", "interrupted")
        raise
    if summary["status"] == "stopped":
        raise optuna.TrialPruned(summary["stopped"])
    if summary["status"] != "done":
        errors = [f"stage {s['name']}: {s['error']}" for s in summary["stages"] if s.get("error")]
        _fail(trial, "; ".join(errors) or f"the run ended {summary['status']}")
    value = read_metric(summary, sweep.metric, sweep.stage)  # missing: a wrong --metric, which stops the sweep
    if math.isnan(value):
        _fail(trial, f"{sweep.metric} is NaN")
    return value


def _fail(trial, message: str) -> NoReturn:
    trial.set_user_attr("error", message)
    raise TrialFailed(message)


def open_study(sweep: Sweep, *, pruner=None, heartbeat: bool = True):
    """The sweep's Optuna study in ``<folder>/study.db``: created, or loaded to add trials (same metric and direction)."""
    import optuna

    sweep.folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # The heartbeat marks a trial failed once its process is gone (killed), so a resumed sweep does not show it running.
        storage = optuna.storages.RDBStorage(f"sqlite:///{sweep.folder / STUDY_FILE}", heartbeat_interval=60 if heartbeat else None)
    study = optuna.create_study(storage=storage, study_name=sweep.sweep_id, direction=sweep.direction, pruner=pruner, load_if_exists=True)
    goal = {"metric": sweep.metric, "stage": sweep.stage, "direction": sweep.direction}
    if not study.user_attrs:
        for key, value in {**goal, "recipe": str(sweep.recipe)}.items():
            study.set_user_attr(key, value)
    was = {k: study.user_attrs.get(k) for k in goal}
    if was != goal:
        differ = [k for k in goal if was[k] != goal[k]]
        before, now = (" ".join(f"--{k} {v[k]}" if v[k] is not None else f"no --{k}" for k in differ) for v in (was, goal))
        raise RlftError(
            f"sweep {sweep.sweep_id} was started with {before}, not {now}",
            where=str(sweep.folder / STUDY_FILE),
            fix="pass the same --metric/--stage/--direction to add trials to it, or start a new sweep with another --sweep-id",
        )
    return study


@contextlib.contextmanager
def _quiet_optuna():
    """rlft prints one line per trial itself; Optuna's own log lines would repeat them."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def run_sweep(sweep: Sweep, *, trials: int, pruner=None, console=None) -> list[TrialRow]:
    """Run ``trials`` more trials with Optuna (TPE sampler; ``pruner`` e.g. ``MedianPruner()``); return every trial's row."""
    console = console or _console()
    pace = Pace(trials)
    with _quiet_optuna():
        study = open_study(sweep, pruner=pruner)
        try:
            study.optimize(
                lambda trial: objective(sweep, trial, console),
                n_trials=trials,
                catch=(TrialFailed,),
                callbacks=[lambda study, trial: _finished(sweep, study, trial, console, pace)],
            )
        finally:
            rows = trial_rows(study, sweep)
            write_trials(rows, sweep)
    return rows


def run_sweep_on_wandb(sweep: Sweep, *, trials: int, console=None) -> list[TrialRow]:
    """Run ``trials`` runs of a W&B sweep with the same trial function, recorded in the same study and table."""
    from optuna.trial import TrialState

    from rlft.tracking import create_wandb_sweep, require_online, run_wandb_agent

    console = console or _console()
    pace = Pace(trials)
    tracking = load_recipe(sweep.recipe, sweep.overrides).tracking
    require_online(tracking)
    with _quiet_optuna():
        study = open_study(sweep, heartbeat=False)
        wandb_id = study.user_attrs.get("wandb_sweep_id")
        if wandb_id is None:
            wandb_id = create_wandb_sweep(
                wandb_sweep_config(sweep.params, sweep.metric, sweep.direction, sweep.sweep_id), tracking=tracking
            )
            study.set_user_attr("wandb_sweep_id", wandb_id)

        def trial_with(values: dict) -> tuple[str, float | None]:
            study.enqueue_trial(values)  # W&B chose the values; the trial's suggest_* calls return them
            trial = study.ask()
            try:
                value = objective(sweep, trial, console)
            except TrialFailed:
                value, frozen = None, study.tell(trial, state=TrialState.FAIL)
            except BaseException:
                study.tell(trial, state=TrialState.FAIL)
                raise
            else:
                frozen = study.tell(trial, value)
            _finished(sweep, study, frozen, console, pace)
            return trial.user_attrs["run_id"], value

        try:
            run_wandb_agent(wandb_id, tracking=tracking, folder=sweep.folder, count=trials, metric=sweep.metric, trial=trial_with)
        finally:
            rows = trial_rows(study, sweep)
            write_trials(rows, sweep)
    return rows


def wandb_sweep_config(params: list[ParamSpec], metric: str, direction: str, name: str) -> dict:
    """The W&B sweep configuration searching ``params`` (keys stay dotted recipe paths) for ``metric``."""
    return {
        "name": name,
        "method": "bayes",
        "metric": {"name": metric, "goal": direction},
        "parameters": {spec.key: spec.wandb() for spec in params},
    }


@dataclass
class TrialRow:
    """One trial as the table shows it."""

    number: int
    run_id: str
    state: str  # complete | pruned | failed | running | waiting
    value: float | None  # the metric (pruned: its last reported value)
    params: dict[str, Any]
    wall_s: float | None
    error: str | None = None
    by_stage: dict[str, float] = field(default_factory=dict)  # the metric after each stage that had it
    best: bool = False


def trial_rows(study, sweep: Sweep) -> list[TrialRow]:
    """Every trial of the study, the best complete one marked."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        state = {"fail": "failed"}.get(t.state.name.lower(), t.state.name.lower())
        error = t.user_attrs.get("error")
        if state == "failed" and not error:
            error = "no result: the sweep process stopped during this trial"
        rows.append(
            TrialRow(
                number=t.number,
                run_id=t.user_attrs.get("run_id", f"{sweep.sweep_id}-t{t.number}"),
                state=state,
                value=t.value if state in ("complete", "pruned") else None,
                params=dict(t.params),
                wall_s=round(t.duration.total_seconds(), 1) if t.duration else None,
                error=error,
                by_stage={sweep.stages[s] if s < len(sweep.stages) else str(s): v for s, v in sorted(t.intermediate_values.items())},
            )
        )
    complete = [r for r in rows if r.state == "complete" and r.value is not None]
    if complete:
        (max if sweep.direction == "maximize" else min)(complete, key=lambda r: r.value).best = True
    return rows


def write_trials(rows: list[TrialRow], sweep: Sweep) -> None:
    """``trials.json`` (the sweep's settings and every trial) and ``trials.csv`` (one row per trial) in the sweep folder."""
    from rlft.pipeline.run import write_error, write_json

    best = next((r.number for r in rows if r.best), None)
    write_json(
        sweep.folder / "trials.json",
        {
            "sweep_id": sweep.sweep_id,
            "recipe": str(sweep.recipe),
            "metric": sweep.metric,
            "stage": sweep.stage,
            "direction": sweep.direction,
            "best": best,
            "trials": [asdict(r) for r in rows],
        },
    )
    keys = list(dict.fromkeys(k for r in rows for k in r.params))
    path, tmp = sweep.folder / "trials.csv", sweep.folder / "trials.csv.tmp"
    try:
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["number", "run_id", "state", "value", "wall_s", "best", *keys, "error"])
            for r in rows:
                writer.writerow([r.number, r.run_id, r.state, r.value, r.wall_s, r.best, *(r.params.get(k) for k in keys), r.error or ""])
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(path, exc) from None


class Pace:
    """How far this session's trials are: ``sweep: 3/10 trials · 12:00 elapsed · ETA 28:00`` (mean seconds per trial so far)."""

    def __init__(self, total: int):
        self.total, self.done, self.t0 = total, 0, time.monotonic()

    def line(self, now: float | None = None) -> str:
        from rlft.progress import clock

        elapsed = (time.monotonic() if now is None else now) - self.t0
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        return f"   sweep: {self.done}/{self.total} trials · {clock(elapsed)} elapsed · ETA {clock(eta)}"


def _finished(sweep: Sweep, study, trial, console, pace: Pace | None = None) -> None:
    """After each trial: one line saying how it ended, one saying how far the sweep is, and the table files brought up to date."""
    from rich.markup import escape

    say = console.print
    run_id = trial.user_attrs.get("run_id", "")
    took = f" in {trial.duration.total_seconds():.0f} s" if trial.duration else ""
    state = trial.state.name.lower()
    if state == "complete":
        say(f"   trial {trial.number} ({run_id}) complete{took}: {sweep.metric} {trial.value:.4g}")
    elif state == "pruned":
        say(f"   trial {trial.number} ({run_id}) pruned{took} after {len(trial.intermediate_values)} stage(s)")
    else:
        say(f"   [red]trial {trial.number} ({run_id}) failed{took}:[/red] {escape(trial.user_attrs.get('error', ''))}")
    if pace is not None:
        pace.done += 1
        say(pace.line())
    write_trials(trial_rows(study, sweep), sweep)


def render_trials(rows: list[TrialRow], sweep: Sweep, console) -> None:
    """Print the trials table (best trial in bold green), then the errors of failed trials and where the files are."""
    from rich.markup import escape

    from rlft.analysis.tables import Column, Table, fitted

    best = next((r for r in rows if r.best), None)
    title = f"sweep {sweep.sweep_id}: {sweep.metric}" + (f" of stage {sweep.stage}" if sweep.stage else "") + f" ({sweep.direction})"
    keys = list(dict.fromkeys(k for r in rows for k in r.params))
    heads = ("#", "run id", "state", sweep.metric, "wall", *(k.removeprefix("stages.") for k in keys))
    table = Table(
        columns=[Column(h, no_wrap=True if h in ("#", "wall") else None) for h in heads],
        rows=[
            [
                f"★ {r.number}" if r.best else str(r.number),
                r.run_id,
                r.state,
                r.value,
                f"{r.wall_s:.0f} s" if r.wall_s is not None else None,
                *(r.params.get(k) for k in keys),
            ]
            for r in rows
        ],
        title=title + (f" — best: trial {best.number}" if best else " — no complete trial"),
        styles={
            i: "bold green" if r.best else {"pruned": "yellow", "failed": "red"}[r.state]
            for i, r in enumerate(rows)
            if r.best or r.state in ("pruned", "failed")
        },
    )
    console.print(fitted(table))
    for r in rows:
        if r.error:
            console.print(f"[red]trial {r.number} ({r.run_id}) {r.state}:[/red] {escape(r.error)}")
    console.print(f"sweep folder: {sweep.folder} (trials.csv, trials.json, study.db, one run folder per trial)")
    if best:
        console.print(
            f"best run: {sweep.folder / best.run_id}; compare runs with: rlft compare {best.run_id} ... --runs-dir {sweep.folder}"
        )


def _console():
    from rich.console import Console

    return Console(highlight=False)


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
