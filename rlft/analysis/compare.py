"""``rlft compare``: the common scorecard of several runs side by side, the best value per column and stage marked.

A row is one stage of one pipeline run. Runs are named by run id (a folder under the runs folder, which
is also the W&B group of its stages), by path, or as ``RUN/STAGE`` for one stage.

Two sources, chosen explicitly and never by probing the network (``source_for``):

- ``local`` (default): figures come from each stage's ``history.jsonl`` (what it logged step by step,
  written whatever the trackers, ``rlft.tracking.History``) with its metrics from ``summary.json``; for
  runs made before rlft wrote that file, from the stage's W&B run as the local ``run-<id>.wandb`` file
  holds it (offline or online runs made on this machine), else from ``summary.json`` alone.
- ``wandb`` (``--source wandb``, or ``WANDB_MODE=online``): the W&B public API. A run id is a W&B group
  of the project; each of its finished W&B runs is a stage (``name`` ``<run id>.<stage>``,
  ``job_type`` the stage kind); the history is read unsampled with ``scan_history``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlft.analysis.tables import Column, Table, fitted, sig3, sig3_whole, write_table
from rlft.errors import RlftError
from rlft.evaluation.statistics import PairedDelta, paired_bootstrap, verdict
from rlft.layout import RunLayout

# column -> (metric, which way is better: +1 higher, -1 lower, 0 no direction)
FIXED_COLUMNS = {
    "accuracy": ("eval/accuracy", +1),
    "kl_to_ref": ("eval/kl_to_ref", -1),
    "mean_length": ("eval/mean_length", 0),
    "train_s": ("train/runtime_s", -1),
    "trainable_params": ("params/trainable", 0),
    "peak_gpu_gb": ("sys/peak_gpu_memory_gb", -1),
    "peak_rss_gb": ("sys/peak_rss_gb", -1),
}


@dataclass
class Row:
    run: str
    stage: str
    kind: str
    metrics: dict[str, float] = field(default_factory=dict)
    source: str = ""  # the .wandb file, summary.json or W&B API path the figures came from
    run_dir: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the resolved recipe the run was made from
    read_history: Callable[[], list[dict]] | None = field(default=None, repr=False)

    def history(self) -> list[dict]:
        """The stage's logged steps (one dict per step); empty when only a summary.json is at hand."""
        return self.read_history() if self.read_history else []


SOURCES = ("local", "wandb")


def source_for(flag: str | None) -> str:
    """``--source`` when given, else ``wandb`` only when ``WANDB_MODE=online``; never a network probe."""
    if flag is not None:
        if flag not in SOURCES:
            raise RlftError(f"unknown source {flag!r}", fix="use --source local (W&B files on disk) or --source wandb (the W&B API)")
        return flag
    return "wandb" if os.environ.get("WANDB_MODE", "").lower() == "online" else "local"


def _stage_metrics(run_dir: Path, stage: dict) -> tuple[dict, str, Callable[[], list[dict]] | None]:
    """What the stage logged: its history.jsonl, else its W&B summary (and history) when its .wandb file is here,
    else summary.json's copy.

    From history.jsonl, the figures are what W&B's summary would hold: the last value logged of each key, then the
    stage's metrics and wall time (``summary.json``) over them.
    """
    from rlft.tracking import HISTORY_META, read_history
    from rlft.wandb_files import read_wandb_files

    path = RunLayout(run_dir).stage(stage["name"]).history
    if path.exists():
        history = read_history(path)
        last = {k: v for row in history for k, v in row.items() if k not in HISTORY_META}
        figures = {**last, **(stage.get("metrics") or {}), **({"wall_s": stage["wall_s"]} if "wall_s" in stage else {})}
        return figures, str(path), lambda: history
    wandb_id = stage.get("wandb_run_id")
    if wandb_id:
        files = sorted(run_dir.glob(f"wandb/*-{wandb_id}/run-{wandb_id}.wandb"))
        if files:  # several when the stage was interrupted and resumed under the same W&B id
            run = read_wandb_files(files)
            return run.summary, run.source, lambda: run.history
    return dict(stage.get("metrics") or {}), str(RunLayout(run_dir).summary), None


def _recipe_of(run_dir: Path) -> dict:
    path = RunLayout(run_dir).recipe
    return json.loads(path.read_text()).get("recipe", {}) if path.exists() else {}


def load_rows(refs: list[str], runs_dir: Path) -> list[Row]:
    """One row per stage of each named run (or just the named stage of ``RUN/STAGE``)."""
    rows: list[Row] = []
    for ref in refs:
        run_dir, only = _resolve(ref, runs_dir)
        summary = json.loads(RunLayout(run_dir).summary.read_text())
        stages = [s for s in summary.get("stages", []) if only is None or s["name"] == only]
        if only is not None and not stages:
            names = [s["name"] for s in summary.get("stages", [])]
            raise RlftError(f"run {run_dir.name} has no stage {only!r}", fix=f"its stages are: {', '.join(names)}")
        config = _recipe_of(run_dir)
        for stage in stages:
            if stage.get("status") not in ("done", "cached"):
                continue
            metrics, source, history = _stage_metrics(run_dir, stage)
            rows.append(
                Row(
                    run=summary.get("run_id", run_dir.name),
                    stage=stage["name"],
                    kind=stage["kind"],
                    metrics=metrics,
                    source=source,
                    run_dir=run_dir,
                    config=config,
                    read_history=history,
                )
            )
    return rows


def load_rows_api(refs: list[str], api, project: str) -> list[Row]:
    """The same rows from the W&B public API (``api`` is a ``wandb.Api()``): one per finished stage run of each group."""
    if "/" not in project:
        entity = os.environ.get("WANDB_ENTITY") or api.default_entity
        if not entity:
            raise RlftError(f"no W&B entity for project {project!r}", fix="pass --project ENTITY/PROJECT or set WANDB_ENTITY")
        project = f"{entity}/{project}"
    rows: list[Row] = []
    for ref in refs:
        group, _, only = ref.partition("/")
        found = list(api.runs(project, filters={"group": group}))
        if not found:
            raise RlftError(
                f"no W&B runs in group {group!r} of project {project}",
                fix="a run id is the W&B group of its stages; check the project (--project) and that the runs were synced",
            )
        for wrun in found:
            stage = (wrun.name or "").removeprefix(f"{group}.")
            if (only and stage != only) or wrun.state != "finished":
                continue
            rows.append(
                Row(
                    run=group,
                    stage=stage,
                    kind=wrun.job_type or "",
                    metrics={k: v for k, v in dict(wrun.summary_metrics).items() if not k.startswith("_")},
                    source=f"wandb:{project}/{wrun.id}",
                    config=dict(wrun.config).get("recipe", {}),
                    read_history=lambda wrun=wrun: [dict(step) for step in wrun.scan_history()],
                )
            )
        if only and not any(r.run == group and r.stage == only for r in rows):
            raise RlftError(f"group {group!r} has no finished stage {only!r} in W&B project {project}", fix="check the stage name")
    return rows


def _resolve(ref: str, runs_dir: Path) -> tuple[Path, str | None]:
    for candidate, stage in ((Path(ref), None), (runs_dir / ref, None)):
        if RunLayout(candidate).summary.exists():
            return candidate, stage
    head, _, stage = ref.rpartition("/")
    if head:
        for candidate in (Path(head), runs_dir / head):
            if RunLayout(candidate).summary.exists():
                return candidate, stage
    known = sorted(p.parent.name for p in runs_dir.glob(f"*/{RunLayout.SUMMARY}")) if runs_dir.exists() else []
    raise RlftError(
        f"no run {ref!r} (looked for a folder with summary.json, also under {runs_dir})",
        fix=f"runs here: {', '.join(known) or '(none)'}; name a run id, a run folder, or RUN/STAGE",
    )


def columns_for(rows: list[Row]) -> dict[str, tuple[str, int]]:
    """The table's columns: one per held-out reward seen (higher is better), then the fixed ones present."""
    rewards = []
    for row in rows:
        for key in row.metrics:
            if key.startswith("eval/reward/") and key not in rewards:
                rewards.append(key)
    cols = {key.removeprefix("eval/"): (key, +1) for key in rewards}
    cols.update({name: spec for name, spec in FIXED_COLUMNS.items() if any(spec[0] in r.metrics for r in rows)})
    return cols


def best_per_column(rows: list[Row], cols: dict[str, tuple[str, int]]) -> dict[str, dict[str, float]]:
    """Per stage name, the best value of each column among the runs: like is compared with like (an SFT stage's
    train time with other SFT stages', an RL stage's KL with other RL stages'), and only where two or more runs have it."""
    best: dict[str, dict[str, float]] = {}
    for stage in dict.fromkeys(r.stage for r in rows):
        group = [r for r in rows if r.stage == stage]
        for name, (key, direction) in cols.items():
            values = [r.metrics[key] for r in group if isinstance(r.metrics.get(key), int | float)]
            if direction and len(values) > 1:
                best.setdefault(stage, {})[name] = max(values) if direction > 0 else min(values)
    return best


@dataclass
class Paired:
    """Run ``b`` against run ``a`` (the first run compared) at one stage and one held-out reward, on the prompts both scored."""

    stage: str
    metric: str
    a: str
    b: str
    delta: PairedDelta

    @property
    def verdict(self) -> str:
        d = self.delta
        return verdict(d.ci_low, d.ci_high, d.n, d.n_needed, p_value=d.p_value, gain="significant: b better", loss="significant: b worse")


def _samples(row: Row) -> dict[str, dict] | None:
    """A stage's held-out samples by prompt and occurrence (its ``samples.jsonl``), or None when the run folder has none."""
    if row.run_dir is None:
        return None
    path = RunLayout(Path(row.run_dir)).stage(row.stage).samples
    if not path.exists():
        return None
    out: dict[str, dict] = {}
    seen: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            sample = json.loads(line)
            prompt = json.dumps(sample["prompt"], sort_keys=True)
            seen[prompt] = seen.get(prompt, 0) + 1  # a prompt held out twice is two prompts: its 1st, its 2nd, ...
            out[f"{seen[prompt]}:{prompt}"] = sample
    return out


def paired_differences(rows: list[Row], *, seed: int = 0) -> list[Paired]:
    """Every run against the first run, stage by stage, per held-out reward, paired on the same prompts.

    The per-prompt scores come from each stage's ``samples.jsonl`` (the ``eval_<reward>`` columns: the model the
    stage made); prompts are matched by content, so two runs with other held-out sets compare on what they share.
    A paired percentile bootstrap over those prompts gives the interval (``rlft.evaluation.statistics``).
    """
    out = []
    for stage in dict.fromkeys(r.stage for r in rows):
        group = [(r, _samples(r)) for r in rows if r.stage == stage]
        group = [(r, s) for r, s in group if s is not None]
        if len(group) < 2:
            continue
        (ref, ref_samples), rest = group[0], group[1:]
        for other, samples in rest:
            common = [k for k in ref_samples if k in samples]
            names = [k.removeprefix("eval/reward/") for k in ref.metrics if k.startswith("eval/reward/") and k in other.metrics]
            for name in names:
                a = [ref_samples[k].get(f"eval_{name}") for k in common]
                b = [samples[k].get(f"eval_{name}") for k in common]
                out.append(Paired(stage, f"reward/{name}", ref.run, other.run, paired_bootstrap(a, b, seed=seed)))
    return out


def _paired_table(paired: list[Paired]) -> Table:
    return Table(
        columns=[Column(h) for h in ("stage", "metric", "a", "b", "n", "b - a", "ci_low", "ci_high", "p_value", "verdict")],
        rows=[
            [p.stage, p.metric, p.a, p.b, p.delta.n, p.delta.delta, p.delta.ci_low, p.delta.ci_high, p.delta.p_value, p.verdict]
            for p in paired
        ],
        title=PAIRED_TITLE,
    )


PAIRED_TITLE = "paired on the same held-out prompts: run b minus run a, 95% bootstrap interval"
SCORECARD_TITLE = "held-out scorecard by run and stage (best per column among the runs' same stage in bold green)"


def short_names(runs: list[str]) -> dict[str, str]:
    """Each run id cut to the parts that differ between the runs: ``lr-low``, ``lr-high`` -> ``low``, ``high``.

    Ids are split at ``-``, ``_`` and ``.``; the leading and trailing parts all share are dropped. An id keeps its
    full form when the cut would leave it empty or the same as another's.
    """
    import re

    parts = {run: re.split(r"(?<=[-_.])", run) for run in runs}  # keep each separator on the part before it
    if len(parts) < 2:
        return {run: run for run in runs}
    lists = list(parts.values())
    head = 0
    while all(len(p) > head + 1 for p in lists) and len({p[head] for p in lists}) == 1:
        head += 1
    tail = 0
    while all(len(p) > head + tail + 1 for p in lists) and len({p[-1 - tail] for p in lists}) == 1:
        tail += 1
    cut = {run: "".join(p[head : len(p) - tail]).rstrip("-_.") for run, p in parts.items()}
    if any(not c for c in cut.values()) or len(set(cut.values())) < len(cut):
        return {run: run for run in runs}
    return cut


def _run_caption(rows: list[Row], names: dict[str, str]) -> str | None:
    """``low = lr-low (sft.learning_rate=0.0001) · high = lr-high (...)``: what each short column name stands for."""
    from rlft.analysis.plots import varied_labels

    runs = list(dict.fromkeys(r.run for r in rows))
    configs = {r.run: r.config for r in rows if r.config}
    varied = varied_labels(configs) if len(configs) == len(runs) else {}
    parts = []
    for run in runs:
        what = varied.get(run, run)
        full = run if names[run] == run else f"{names[run]} = {run}"
        parts.append(full + (f" ({what})" if what != run else ""))
    return "runs: " + " · ".join(parts) if any(names[r] != r or varied.get(r, r) != r for r in runs) else None


def rich_layouts(rows: list[Row], cols: dict[str, tuple[str, int]], best: dict[str, dict[str, float]]) -> list[Table]:
    """The scorecard for the terminal, in order of preference: metrics as rows and runs as columns (few runs),
    one row per run and stage with metrics as columns, then one row per run, stage and metric (any number)."""
    names = short_names(list(dict.fromkeys(r.run for r in rows)))
    caption = _run_caption(rows, names)
    layouts = []
    if len({(r.run, r.stage) for r in rows}) == len(rows):
        runs = list(dict.fromkeys(r.run for r in rows))
        by = {(r.run, r.stage): r for r in rows}
        table_rows, strong = [], set()
        for stage in dict.fromkeys(r.stage for r in rows):
            kind = next(r.kind for r in rows if r.stage == stage)
            for name, (key, _) in cols.items():
                values = [by[run, stage].metrics.get(key) if (run, stage) in by else None for run in runs]
                if all(v is None for v in values):
                    continue
                target = best.get(stage, {}).get(name, object())
                strong |= {(len(table_rows), names[run]) for run, v in zip(runs, values, strict=True) if v == target}
                table_rows.append([f"{stage} ({kind})", name, *values])
        layouts.append(
            Table(
                columns=[Column("stage"), Column("metric"), *[Column(names[run], format=sig3_whole, justify="right") for run in runs]],
                rows=table_rows,
                title="held-out scorecard: a column per run (best per metric among the runs in bold green)",
                caption=caption,
                strong=strong,
            )
        )
    wide = [[names[r.run], r.stage, r.kind, *[r.metrics.get(key) for key, _ in cols.values()]] for r in rows]
    layouts.append(
        Table(
            columns=[Column("run"), Column("stage"), Column("kind"), *[Column(name, format=sig3_whole, justify="right") for name in cols]],
            rows=wide,
            title=SCORECARD_TITLE,
            caption=caption,
            strong=_strong(rows, cols, best),
        )
    )
    long_rows, long_strong = [], set()
    for r in rows:
        for name, (key, _) in cols.items():
            if r.metrics.get(key) is not None:
                if r.metrics[key] == best.get(r.stage, {}).get(name, object()):
                    long_strong.add((len(long_rows), "value"))
                long_rows.append([names[r.run], f"{r.stage} ({r.kind})", name, r.metrics[key]])
    layouts.append(
        Table(
            columns=[Column("run"), Column("stage"), Column("metric"), Column("value", format=sig3_whole, justify="right")],
            rows=long_rows,
            title=SCORECARD_TITLE.replace("per column", "per metric"),
            caption=caption,
            strong=long_strong,
        )
    )
    return layouts


def _strong(rows: list[Row], cols: dict[str, tuple[str, int]], best: dict[str, dict[str, float]]) -> set[tuple[int, str]]:
    return {
        (i, name)
        for i, r in enumerate(rows)
        for name, (key, _) in cols.items()
        if r.metrics.get(key) == best.get(r.stage, {}).get(name, object())
    }


def _paired_rich(paired: list[Paired], names: dict[str, str]) -> Table:
    """The paired differences for the terminal: the change and its interval in one cell, the verdict as prose."""

    def change(d: PairedDelta) -> str:
        return f"{sig3(d.delta, sign=True)} [{sig3(d.ci_low, sign=True)}, {sig3(d.ci_high, sign=True)}]"

    return Table(
        columns=[
            Column("stage"),
            Column("metric"),
            Column("b - a"),
            Column("n", justify="right"),
            Column("change [95% CI]", no_wrap=True),
            Column("p", justify="right"),
            Column("verdict"),
        ],
        rows=[
            [p.stage, p.metric, f"{names.get(p.b, p.b)} - {names.get(p.a, p.a)}", p.delta.n, change(p.delta), p.delta.p_value, p.verdict]
            for p in paired
        ],
        title=PAIRED_TITLE,
    )


def render(rows: list[Row], fmt: str = "rich", console=None) -> str | None:
    """Print (rich) or return the tables as csv, markdown or json text: the scorecard by run and stage, then the runs'
    paired differences (rich and markdown: a second table; json: the ``paired`` list; csv: the scorecard only).

    rich lays the scorecard out for the console's width (``rich_layouts``); csv, markdown and json keep one row per run
    and stage, with the full run ids."""
    cols = columns_for(rows)
    paired = paired_differences(rows) if fmt != "csv" else []
    best = best_per_column(rows, cols)
    if fmt == "rich":
        from rich.console import Console

        console = console or Console(highlight=False)
        console.print(fitted(*rich_layouts(rows, cols, best)))
        if paired:
            console.print(fitted(_paired_rich(paired, short_names(list(dict.fromkeys(r.run for r in rows))))))
        return None
    table = Table(
        columns=[Column("run"), Column("stage"), Column("kind"), *[Column(name, format=sig3_whole) for name in cols]],
        rows=[[r.run, r.stage, r.kind, *[r.metrics.get(key) for key, _ in cols.values()]] for r in rows],
        title=SCORECARD_TITLE,
        strong=_strong(rows, cols, best),
        json_head={
            "columns": {name: {"metric": key, "better": {1: "higher", -1: "lower", 0: None}[d]} for name, (key, d) in cols.items()},
            "best": best,
            **({"paired": [{**_paired_record(p)} for p in paired]} if fmt == "json" else {}),
        },
    )
    text = write_table(table, fmt, console)
    if paired and fmt == "markdown":
        return text + "\n" + write_table(_paired_table(paired), fmt, console)
    return text


def _paired_record(p: Paired) -> dict[str, Any]:
    d = p.delta
    return {"stage": p.stage, "metric": p.metric, "a": p.a, "b": p.b, **d.metrics("delta"), "verdict": p.verdict}
