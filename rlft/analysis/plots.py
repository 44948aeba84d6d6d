"""``rlft compare --plot DIR``: training curves and the reward–KL frontier of the compared runs, as PNG files.

One line per (run, stage) that logged the metric, from the stage's step history (``Row.history()``: the
stage's ``history.jsonl``, else, for older runs, the local ``run-<id>.wandb`` file; or the W&B API). The x axis is ``train/global_step`` (what HF Trainer's W&B
callback logs), else W&B's own ``_step`` (rlft's PPO logs with ``step=`` its step). The reward-KL frontier
is drawn twice, since the two KLs differ in scale: along training (``train/kl`` per token, ``train/reward``)
and after each stage on held-out prompts (``eval/kl_to_ref`` per completion, the first ``eval/reward/<name>``,
one marker per stage). A line is labelled by
the recipe values that differ between the compared runs (``varied_labels``), e.g.
``grpo.learning_rate=1e-05``, plus ``/<stage>`` where one run has several lines in a plot.

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas, never through pyplot: no window,
no global figure list to leak into, nothing left open after saving.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlft.errors import RlftError

if TYPE_CHECKING:
    from rlft.analysis.compare import Row

STEP_X = "step (train/global_step)"
TRAJECTORY, HELD_OUT = "trajectory", "held-out"  # the two reward-vs-KL plots, which are not per-step metrics
# file -> (what it shows: a per-step metric, TRAJECTORY or HELD_OUT; title; x label; y label), in the order written.
# Training KL (TRL's per-token mean) and held-out KL (summed over a completion) have different scales:
# each gets its own frontier plot rather than one axis.
PLOTS = {
    "reward_vs_step.png": ("train/reward", "training reward vs step", STEP_X, "train/reward (mean over the batch)"),
    "kl_vs_step.png": ("train/kl", "KL to the reference vs step (training)", STEP_X, "train/kl"),
    "reward_vs_kl.png": (
        TRAJECTORY,
        "reward vs KL during training (one point per step)",
        "train/kl (per token, to the reference)",
        "train/reward",
    ),
    "heldout_reward_vs_kl.png": (
        HELD_OUT,
        "held-out reward vs KL after each stage",
        "eval/kl_to_ref (nats per completion, to the model the stage started from)",
        "held-out reward",  # named after the reward drawn (math_accuracy) when the plot is written
    ),
    "loss_vs_step.png": ("train/loss", "training loss vs step", STEP_X, "train/loss"),
}

# Recipe keys that differ between runs without changing what was trained: prose and where logs and
# outputs went. (recipe.json's run_id, source and recipe_dir sit beside the recipe, so they never get here.)
BOOKKEEPING_TOP = ("description", "output_dir", "tracking")
BOOKKEEPING_LEAVES = ("output_dir", "logging_dir", "run_name", "hub_model_id")
MAX_KEYS = 3  # varied values shown in a label; more become "+N more"


@dataclass
class Curve:
    """One line of a plot: a (run, stage)'s points, and for the frontier its held-out end point."""

    run: str
    stage: str
    x: list[float]
    y: list[float]
    label: str = ""
    markers_only: bool = False  # held-out points: one per stage, not joined
    metric: str = ""  # held-out points: the reward they show (its name, e.g. math_accuracy)


def write_plots(rows: list[Row], out_dir: Path) -> list[Path]:
    """Write one PNG per plot that has data into ``out_dir`` (created); return their paths.

    Raises ``RlftError`` naming the runs and the missing metrics when no plot has any data.
    """
    plots = plot_data(rows)
    if not plots:
        runs = ", ".join(dict.fromkeys(f"{r.run}/{r.stage}" for r in rows)) or "(no finished stage)"
        metrics = ", ".join(key for key, *_ in PLOTS.values() if key.startswith("train/"))
        raise RlftError(
            f"nothing to plot for {runs}: no stage logged {metrics} per step, nor eval/kl_to_ref with an eval/reward/<name>",
            fix="plots read each stage's history.jsonl (or, for runs made before rlft wrote one, its W&B file): "
            "log those metrics per step (trl.logging_steps), or compare runs made with this version of rlft",
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, curves in plots.items():
        title, xlabel, ylabel = PLOTS[name][1:]
        if PLOTS[name][0] == HELD_OUT:  # the axis names the reward drawn, not where it came from
            ylabel = " / ".join(dict.fromkeys(c.metric for c in curves)) + " (held-out mean reward)"
        _draw(curves, (title, xlabel, ylabel), out_dir / name)
    return [out_dir / name for name in plots]


def plot_data(rows: list[Row]) -> dict[str, list[Curve]]:
    """What each plot shows, labelled: file name -> its curves, for the plots that have any (in ``PLOTS`` order)."""
    plots: dict[str, list[Curve]] = {name: [] for name in PLOTS}
    for row in rows:
        history = row.history()
        for name, (key, *_) in PLOTS.items():
            curve = _curve(row, history, key)
            if curve.x:
                plots[name].append(curve)
    names = varied_labels({r.run: r.config for r in rows if r.config})
    for curves in plots.values():
        several = {run for run, n in Counter(c.run for c in curves).items() if n > 1}
        for c in curves:
            c.label = names.get(c.run, c.run) + (f"/{c.stage}" if c.run in several else "")
    return {name: curves for name, curves in plots.items() if curves}


def _curve(row: Row, history: list[dict], key: str) -> Curve:
    """A per-step metric against the step, the (train/kl, train/reward) trajectory, or the held-out (KL, reward) point."""
    if key == HELD_OUT:
        reward = next((k for k in row.metrics if k.startswith("eval/reward/")), None)
        if reward and _is_number(row.metrics[reward]) and _is_number(row.metrics.get("eval/kl_to_ref")):
            point = ([row.metrics["eval/kl_to_ref"]], [row.metrics[reward]])
            return Curve(row.run, row.stage, *point, markers_only=True, metric=reward.removeprefix("eval/reward/"))
        return Curve(row.run, row.stage, [], [])
    x_key, y_key = ("train/kl", "train/reward") if key == TRAJECTORY else (None, key)
    points = [
        (s[x_key] if x_key else _step(s), s[y_key]) for s in history if _is_number(s.get(y_key)) and (not x_key or _is_number(s.get(x_key)))
    ]
    return Curve(row.run, row.stage, [x for x, _ in points], [y for _, y in points])


def _step(logged: dict) -> float:
    return logged["train/global_step"] if "train/global_step" in logged else logged["_step"]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _draw(curves: list[Curve], text: tuple[str, str, str], path: Path) -> None:
    """Draw ``curves`` with ``text`` = (title, x label, y label) and save a PNG to ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    title, xlabel, ylabel = text
    held_out = all(c.markers_only for c in curves)
    # held-out points: one panel per stage, since each stage's KL is to its own reference (its start, an eval's baseline)
    groups = (
        {stage: [c for c in curves if c.stage == stage] for stage in dict.fromkeys(c.stage for c in curves)} if held_out else {"": curves}
    )
    fig = Figure(figsize=(8 * max(1, min(len(groups), 3) * 0.75), 5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(groups), squeeze=False)[0]
    for ax, (stage, group) in zip(axes, groups.items(), strict=True):
        for c in group:
            if c.markers_only:
                ax.plot(c.x, c.y, marker="*", markersize=14, linestyle="none", label=c.label.removesuffix(f"/{stage}"))
            else:
                ax.plot(c.x, c.y, marker=".", label=c.label)
        ax.set(title=f"stage {stage}" if stage else title, xlabel=xlabel, ylabel=ylabel)
        if xlabel == STEP_X:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if held_out:
        fig.suptitle(title)
    fig.savefig(path, dpi=120)


# --------------------------------------------------------------------------- line labels


def varied_labels(configs: dict[str, dict]) -> dict[str, str]:
    """Label each run by the recipe values that differ between the runs; the run id when none differ.

    ``configs`` maps run id -> resolved recipe (recipe.json's ``recipe``). Keys are dotted paths with stages
    by name, shown short (``stages.sft.trl.learning_rate`` -> ``sft.learning_rate``) unless that makes two
    keys alike; bookkeeping keys (``BOOKKEEPING_TOP``, ``BOOKKEEPING_LEAVES``) are ignored. Example::

        {"lr-low": "sft.learning_rate=0.0001", "lr-high": "sft.learning_rate=0.005"}

    Runs that the shown values cannot tell apart keep their run id in front (``a: sft.beta=0.1``).
    """
    flat = {run: dict(_flatten(config)) for run, config in configs.items()}
    # keys every run has: recipe.json holds the full resolved recipe, so a key only some runs have comes from a
    # different rlft version (a new key with its default) or a stage the others lack, not from a choice
    keys = [k for k in dict.fromkeys(k for f in flat.values() for k in f) if not _bookkeeping(k) and all(k in f for f in flat.values())]
    varied = [k for k in keys if len({_shown(f, k) for f in flat.values()}) > 1]
    short = {k: _short(k) for k in varied}
    if len(set(short.values())) < len(short):
        short = {k: k for k in varied}
    labels = {}
    for run, f in flat.items():
        parts = [f"{short[k]}={_shown(f, k)}" for k in varied[:MAX_KEYS]]
        parts += [f"+{len(varied) - MAX_KEYS} more"] if len(varied) > MAX_KEYS else []
        labels[run] = ", ".join(parts) or run
    seen = Counter(labels.values())
    return {run: f"{run}: {label}" if seen[label] > 1 and label != run else label for run, label in labels.items()}


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted keys -> leaf values; a list of dicts with distinct names (stages, rewards) is keyed by name, else by index."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        names = [v.get("name") for v in value]
        by_name = all(isinstance(n, str) for n in names) and len(set(names)) == len(names)
        items = zip(names if by_name else map(str, range(len(value))), value, strict=True)
    elif isinstance(value, dict):
        items = value.items()
    else:
        yield prefix, value
        return
    for key, item in items:
        yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))


def _bookkeeping(key: str) -> bool:
    parts = key.split(".")
    return parts[0] in BOOKKEEPING_TOP or parts[-1] in BOOKKEEPING_LEAVES


def _short(key: str) -> str:
    """``stages.<name>.trl.<k>`` -> ``<name>.<k>``, ``stages.<name>.<k>`` -> ``<name>.<k>``."""
    parts = key.split(".")
    if parts[0] != "stages" or len(parts) < 3:
        return key
    return ".".join(parts[1:2] + parts[3:] if parts[2] == "trl" else parts[1:])


def _shown(flat: dict, key: str) -> str:
    return _fmt(flat[key])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ",".join(map(_fmt, value)) + "]"
    return value if isinstance(value, str) else json.dumps(value)
