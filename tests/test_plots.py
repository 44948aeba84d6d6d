"""rlft compare --plot: the PNGs show exactly what the stages logged, each line labelled by what differs between the runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlft.analysis.compare import Row, load_rows
from rlft.analysis.plots import varied_labels, write_plots
from rlft.errors import RlftError

PNG = b"\x89PNG\r\n\x1a\n"
LOW, HIGH = "grpo.learning_rate=1e-05", "grpo.learning_rate=0.0001"


def logged(lr: float) -> dict:
    """What each stage of a run logs, as HF Trainer's W&B callback would, made to differ with the learning rate."""
    k = lr * 1e4
    return {
        "sft": [{"train/global_step": s, "train/loss": 2.0 / s + k} for s in (1, 2, 3)],
        "grpo": [
            {"train/global_step": s, "train/reward": 0.25 * s * k, "train/kl": 0.01 * s * k, "train/loss": 0.1 / s} for s in (1, 2, 3, 4)
        ],
    }


def held_out(lr: float) -> dict:
    """The grpo stage's held-out scorecard (its W&B summary); the first reward is the one the frontier shows."""
    return {"eval/reward/math_accuracy": 0.5 + lr * 1e3, "eval/reward/answer_format": 0.9, "eval/kl_to_ref": 1.75 + lr * 1e4}


def make_run(runs_dir: Path, run_id: str, lr: float) -> None:
    """A pipeline run folder (recipe.json, summary.json, one real offline W&B run per stage) without training."""
    import wandb

    run_dir = runs_dir / run_id
    run_dir.mkdir(parents=True)
    recipe = {
        "name": "sft_grpo",
        "output_dir": f"out-{run_id}",  # bookkeeping: differs, never a label
        "tracking": {"project": f"p-{run_id}", "tags": []},
        "stages": [
            {"name": "sft", "kind": "sft", "trl": {"learning_rate": 1e-4, "output_dir": f"/tmp/{run_id}"}},
            {"name": "grpo", "kind": "grpo", "init_from": "sft", "trl": {"learning_rate": lr, "beta": 0.04}},
        ],
    }
    (run_dir / "recipe.json").write_text(json.dumps({"recipe": recipe, "source": "r.yaml", "recipe_dir": "/r", "run_id": run_id}))
    stages = []
    for stage, steps in logged(lr).items():
        run = wandb.init(
            project="p", group=run_id, name=f"{run_id}.{stage}", dir=str(run_dir), mode="offline", settings=wandb.Settings(console="off")
        )
        for step in steps:
            run.log({"profiling/generate_s": 0.1, "train/global_step": step["train/global_step"] - 1})  # GRPO's in-between rows
            run.log(step)
        run.log({"train/global_step": steps[-1]["train/global_step"], "train/train_loss": 9.0})  # the Trainer's closing row
        if stage == "grpo":
            run.summary.update(held_out(lr))
        run.finish()
        stages.append({"name": stage, "kind": stage, "status": "done", "wandb_run_id": run.id, "metrics": {}})
    (run_dir / "summary.json").write_text(json.dumps({"run_id": run_id, "status": "done", "stages": stages}))


@pytest.fixture
def drawn(monkeypatch) -> dict:
    """file name -> what its figure held when saved: title, axis labels, and label -> (x, y) of every line."""
    from matplotlib.figure import Figure

    seen, save = {}, Figure.savefig

    def record(fig, path, **kwargs):
        ax = fig.axes[0]
        lines = {line.get_label(): ([float(v) for v in line.get_xdata()], [float(v) for v in line.get_ydata()]) for line in ax.lines}
        seen[Path(path).name] = {
            "text": (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()),
            "legend": ax.get_legend() is not None,
            "lines": lines,
        }
        save(fig, path, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return seen


def test_plots_hold_what_was_logged_labelled_by_the_varied_setting(tmp_path, drawn):
    from matplotlib.image import imread

    for run_id, lr in (("lr-low", 1e-5), ("lr-high", 1e-4)):
        make_run(tmp_path / "runs", run_id, lr)
    rows = load_rows(["lr-low", "lr-high"], tmp_path / "runs")
    paths = write_plots(rows, tmp_path / "plots" / "cmp")

    assert [p.name for p in paths] == [
        "reward_vs_step.png",
        "kl_vs_step.png",
        "reward_vs_kl.png",
        "heldout_reward_vs_kl.png",
        "loss_vs_step.png",
    ]
    for path in paths:
        assert path.read_bytes()[:8] == PNG and imread(path).shape[:2] == (600, 960)
        assert drawn[path.name]["legend"] and all(drawn[path.name]["text"])

    def curve(lr, stage, x, y):
        steps = logged(lr)[stage]
        return [float(s[x]) for s in steps], [float(s[y]) for s in steps]

    # one line per run that logged the metric; x is train/global_step, not W&B's _step (the in-between rows shift it)
    assert drawn["reward_vs_step.png"]["lines"] == {
        LOW: curve(1e-5, "grpo", "train/global_step", "train/reward"),
        HIGH: curve(1e-4, "grpo", "train/global_step", "train/reward"),
    }
    assert drawn["kl_vs_step.png"]["lines"] == {
        LOW: curve(1e-5, "grpo", "train/global_step", "train/kl"),
        HIGH: curve(1e-4, "grpo", "train/global_step", "train/kl"),
    }
    # both stages of each run logged a loss: the stage is named
    assert drawn["loss_vs_step.png"]["lines"] == {
        f"{label}/{stage}": curve(lr, stage, "train/global_step", "train/loss")
        for label, lr in ((LOW, 1e-5), (HIGH, 1e-4))
        for stage in ("sft", "grpo")
    }

    # the frontier along training: the (kl, reward) trajectory per step
    assert drawn["reward_vs_kl.png"]["lines"] == {
        LOW: curve(1e-5, "grpo", "train/kl", "train/reward"),
        HIGH: curve(1e-4, "grpo", "train/kl", "train/reward"),
    }

    # and after the stage on held-out prompts: one point, the first eval/reward/<name> against eval/kl_to_ref
    def end(lr):
        return [held_out(lr)["eval/kl_to_ref"]], [held_out(lr)["eval/reward/math_accuracy"]]

    assert drawn["heldout_reward_vs_kl.png"]["lines"] == {LOW: end(1e-5), HIGH: end(1e-4)}


def test_varied_labels_name_what_differs():
    def recipe(lr, beta=0.1, **top):
        return {
            "name": "r",
            "output_dir": top.pop("output_dir", "runs"),
            "tracking": {"project": top.pop("project", "p")},
            "stages": [
                {"name": "sft", "trl": {"learning_rate": 1e-4, "output_dir": top.pop("trl_out", "o")}},
                {"name": "dpo", "peft": {"lora": {"r": top.pop("r", 16)}}, "trl": {"learning_rate": lr, "beta": beta}},
            ],
            **top,
        }

    # stages by name, the trl part dropped, numbers with :g; output dirs and tracking differ but are bookkeeping
    assert varied_labels(
        {"a": recipe(5e-7, output_dir="x", project="q", trl_out="o1"), "b": recipe(0.001, r=8, output_dir="y", trl_out="o2")}
    ) == {"a": "dpo.peft.lora.r=16, dpo.learning_rate=5e-07", "b": "dpo.peft.lora.r=8, dpo.learning_rate=0.001"}
    # a key only some runs have is another rlft version's default or another recipe's stage, not a choice: ignored
    assert varied_labels({"a": recipe(1e-5), "b": recipe(1e-5), "c": recipe(1e-5, seed=3)}) == {"a": "a", "b": "b", "c": "c"}
    # runs the shown values cannot tell apart (they differ beyond the first three keys) keep their id in front
    alike = {run: {f"k{i}": v[i] for i in range(4)} for run, v in (("a", (0, 0, 0, 0)), ("b", (0, 0, 0, 1)), ("c", (1, 1, 1, 1)))}
    assert varied_labels(alike) == {
        "a": "a: k0=0, k1=0, k2=0, +1 more",
        "b": "b: k0=0, k1=0, k2=0, +1 more",
        "c": "k0=1, k1=1, k2=1, +1 more",
    }
    # nothing differs: the run id
    assert varied_labels({"a": recipe(1e-5, output_dir="x"), "b": recipe(1e-5, output_dir="y")}) == {"a": "a", "b": "b"}
    # short names that would clash stay whole: the stage's own seed and its trl seed
    clash = {run: {"stages": [{"name": "s", "seed": seed, "trl": {"seed": seed}}]} for run, seed in (("a", 1), ("b", 2))}
    assert varied_labels(clash) == {"a": "stages.s.seed=1, stages.s.trl.seed=1", "b": "stages.s.seed=2, stages.s.trl.seed=2"}
    # many differences: the first three, then a count
    many = {run: {f"k{i}": i + j for i in range(6)} for j, run in enumerate("ab")}
    assert varied_labels(many)["b"] == "k0=1, k1=2, k2=3, +3 more"


def test_nothing_to_plot_names_the_runs_and_metrics(tmp_path, drawn):
    sft_only = [
        Row(run="a", stage="sft", kind="sft", metrics={"eval/kl_to_ref": 0.3, "train/loss": 1.0}),
        Row(run="b", stage="sft", kind="sft", metrics={"eval/accuracy": 0.5}),
    ]
    with pytest.raises(RlftError, match=r"(?s)nothing to plot for a/sft, b/sft: no stage logged train/reward, train/kl, train/loss.*fix:"):
        write_plots(sft_only, tmp_path / "none")
    assert not (tmp_path / "none").exists()
    # a summary with a held-out point but no step history still makes the held-out frontier: one marker
    held_out = Row(run="c", stage="eval", kind="eval", metrics={"eval/kl_to_ref": 2.0, "eval/reward/acc": 0.75})
    assert [p.name for p in write_plots([*sft_only, held_out], tmp_path / "one")] == ["heldout_reward_vs_kl.png"]
    assert drawn["heldout_reward_vs_kl.png"]["lines"] == {"c": ([2.0], [0.75])}
