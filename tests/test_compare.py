"""rlft compare: two runs that differ by one override, side by side, figures equal to what was logged."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from conftest import sum_rows, write_jsonl

from rlft.errors import RlftError
from rlft.pipeline.run import run_pipeline
from rlft.recipe import load_recipe
from rlft.wandb_files import read_wandb_file


@pytest.fixture(scope="module")
def two_runs(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    write_jsonl(root / "sft.jsonl", sum_rows(20))
    write_jsonl(root / "prompts.jsonl", sum_rows(8, with_completion=False))
    recipe = {
        "name": "lr",
        "model": str(tiny_model),
        "tracking": {"project": "rlft-test"},
        "stages": [
            {
                "name": "sft",
                "kind": "sft",
                "data": "sft.jsonl",
                "scorecard": {"prompts": 2, "max_new_tokens": 4},
                "trl": {"max_steps": 3, "per_device_train_batch_size": 8},
            },
            {
                "name": "rl",
                "kind": "grpo",
                "init_from": "sft",
                "data": "prompts.jsonl",
                "rewards": [{"name": "math_accuracy"}],
                "scorecard": {"prompts": 2, "max_new_tokens": 4},
                "trl": {"max_steps": 2, "num_generations": 4, "per_device_train_batch_size": 8, "max_completion_length": 6, "beta": 0.1},
            },
        ],
    }
    path = root / "lr.yaml"
    path.write_text(yaml.safe_dump(recipe))
    for run_id, lr in (("lr-low", 1e-4), ("lr-high", 5e-3)):
        summary = run_pipeline(
            load_recipe(path, [f"stages.sft.trl.learning_rate={lr}"]), source=str(path), run_id=run_id, output_dir=str(root / "runs")
        )
        assert summary["status"] == "done", summary
    return root / "runs"


def logged_summary(run_dir, stage: str) -> dict:
    """What the stage's W&B run holds, read from its file."""
    summary = json.loads((run_dir / "summary.json").read_text())
    wandb_id = next(s["wandb_run_id"] for s in summary["stages"] if s["name"] == stage)
    return read_wandb_file(next((run_dir / "wandb").glob(f"offline-run-*-{wandb_id}/run-{wandb_id}.wandb"))).summary


def test_compare_table_holds_what_training_logged(two_runs):
    out = subprocess.run(
        [sys.executable, "-m", "rlft.cli", "compare", "lr-low", "lr-high", "--runs-dir", str(two_runs), "--format", "json"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    table = json.loads(out.stdout)
    rows = {(r["run"], r["stage"]): r for r in table["rows"]}
    assert set(rows) == {(run, stage) for run in ("lr-low", "lr-high") for stage in ("sft", "rl")}
    assert {"accuracy", "reward/math_accuracy", "kl_to_ref", "mean_length", "train_s", "trainable_params", "peak_rss_gb"} <= set(
        table["columns"]
    )
    for (run_id, stage), row in rows.items():
        logged = logged_summary(two_runs / run_id, stage)
        for column, spec in table["columns"].items():
            assert row[column] == logged.get(spec["metric"]), (run_id, stage, column)
        # None == None above holds for a column neither side has: say which ones a stage kind lacks, exactly.
        absent = sorted(c for c in table["columns"] if row[c] is None)
        assert absent == {"sft": ["reward/math_accuracy"], "rl": ["accuracy"]}[stage], (run_id, stage, absent)
        assert row["train_s"] > 0 and row["trainable_params"] > 0
        assert 0.2 < row["peak_rss_gb"] < 24  # the stage process's peak memory (a GPU machine records peak_gpu_gb)
    sft_metrics = json.loads((two_runs / "lr-low" / "summary.json").read_text())["stages"][0]["metrics"]
    assert rows["lr-low", "sft"]["accuracy"] == sft_metrics["eval/accuracy"]
    assert rows["lr-low", "sft"]["accuracy"] != rows["lr-high", "sft"]["accuracy"]  # the override changed the outcome
    assert table["best"]["sft"]["accuracy"] == max(rows[run, "sft"]["accuracy"] for run in ("lr-low", "lr-high"))
    assert table["best"]["rl"]["kl_to_ref"] == min(rows[run, "rl"]["kl_to_ref"] for run in ("lr-low", "lr-high"))
    assert "accuracy" not in table["best"]["rl"]  # best is per stage: an RL stage is not ranked against SFT stages
    assert table["columns"]["kl_to_ref"]["better"] == "lower"
    assert rows["lr-low", "rl"]["kl_to_ref"] is not None


def test_compare_formats_and_bad_references(two_runs, capsys):
    from rlft.analysis.compare import load_rows, render

    rows = load_rows(["lr-low/sft", str(two_runs / "lr-high")], two_runs)
    assert [(r.run, r.stage) for r in rows] == [("lr-low", "sft"), ("lr-high", "sft"), ("lr-high", "rl")]
    csv_text = render(rows, "csv")
    assert csv_text.splitlines()[0].startswith("run,stage,kind,") and len(csv_text.splitlines()) == 4
    md = render(rows, "markdown")
    assert md.count("**") >= 2 and md.startswith("| run | stage | kind |")
    with pytest.raises(RlftError, match=r"(?s)no run 'nope'.*runs here: lr-high, lr-low"):
        load_rows(["nope"], two_runs)
    with pytest.raises(RlftError, match="has no stage 'ppo'"):
        load_rows(["lr-low/ppo"], two_runs)
    with pytest.raises(RlftError, match="unknown format"):
        render(rows, "xml")


# --------------------------------------------------------------------------- the W&B API source


class StandInRun:
    """The attributes of ``wandb.apis.public.Run`` that rlft reads, filled from a local run file."""

    def __init__(self, run, state="finished"):
        self.id, self.name, self.group, self.job_type = run.id, run.name, run.group, run.job_type
        self.state = state
        self.config = run.config
        self.summary_metrics = {**run.summary, "_runtime": 12.5, "_wandb": {"runtime": 12}}
        self._history = run.history
        self.scanned = 0

    def scan_history(self):
        self.scanned += 1
        return iter(self._history)


class StandInApi:
    """Stands in for ``wandb.Api()``: ``runs(path, filters)`` and ``default_entity``, recording each query."""

    default_entity = "team"

    def __init__(self, runs):
        self._runs = runs
        self.queries = []

    def runs(self, path, filters=None):
        self.queries.append((path, filters))
        return [r for r in self._runs if path == "team/rlft-test" and r.group == filters["group"]]


@pytest.fixture
def api(two_runs):
    found = [read_wandb_file(p) for p in sorted(two_runs.glob("*/wandb/offline-run-*/run-*.wandb"))]
    unfinished = StandInRun(found[0], state="running")
    unfinished.name = f"{found[0].group}.crashed-try"
    return StandInApi([StandInRun(r) for r in found] + [unfinished])


def test_api_source_gives_the_local_table(two_runs, api):
    from rlft.analysis.compare import load_rows, load_rows_api, render

    local = json.loads(render(load_rows(["lr-low", "lr-high"], two_runs), "json"))
    online_rows = load_rows_api(["lr-low", "lr-high"], api, "rlft-test")
    assert api.queries == [("team/rlft-test", {"group": "lr-low"}), ("team/rlft-test", {"group": "lr-high"})]
    # same rows, same figures, same best; unfinished run left out. The API holds no samples: no paired differences.
    paired = local.pop("paired")
    assert json.loads(render(online_rows, "json")) == {**local, "paired": []} and paired
    assert all(not k.startswith("_") for r in online_rows for k in r.metrics)
    rl = next(r for r in online_rows if r.run == "lr-high" and r.stage == "rl")
    assert rl.source.startswith("wandb:team/rlft-test/") and rl.kind == "grpo"
    local_rl = next(r for r in load_rows(["lr-high/rl"], two_runs))
    # the same steps from either source (locally history.jsonl, which lacks what TRL writes straight into W&B: profiling/*)
    rewards = lambda history: [(step["train/global_step"], step["train/reward"]) for step in history if "train/reward" in step]  # noqa: E731
    assert rewards(rl.history()) == rewards(local_rl.history()) and rewards(rl.history())
    assert rl.config == local_rl.config and rl.config["stages"][0]["trl"]["learning_rate"] == 5e-3
    with pytest.raises(RlftError, match="no W&B runs in group 'nope' of project team/rlft-test"):
        load_rows_api(["nope"], api, "rlft-test")
    with pytest.raises(RlftError, match="has no finished stage 'ppo'"):
        load_rows_api(["lr-low/ppo"], api, "team/rlft-test")


def test_paired_differences_between_runs_come_from_the_same_prompts(two_runs, capsys):
    from rlft.analysis.compare import load_rows, paired_differences, render
    from rlft.evaluation.statistics import paired_bootstrap

    rows = load_rows(["lr-low", "lr-high"], two_runs)
    paired = paired_differences(rows)
    # the two runs held out the same rows in the same order: pair them line by line
    low, high = (
        [json.loads(line) for line in (two_runs / run / "rl" / "samples.jsonl").read_text().splitlines()] for run in ("lr-low", "lr-high")
    )
    assert [s["prompt"] for s in low] == [s["prompt"] for s in high] and low
    expected = paired_bootstrap([s["eval_math_accuracy"] for s in low], [s["eval_math_accuracy"] for s in high])
    rl = next(p for p in paired if p.stage == "rl" and p.metric == "reward/math_accuracy")
    assert (rl.a, rl.b, rl.delta) == ("lr-low", "lr-high", expected)
    data = json.loads(render(rows, "json"))
    assert {"stage": "rl", "metric": "reward/math_accuracy", "a": "lr-low", "b": "lr-high", "delta/n": expected.n}.items() <= data[
        "paired"
    ][-1].items()
    render(rows, "rich")
    assert "paired on the same held-out prompts" in capsys.readouterr().out
    assert "| rl | reward/math_accuracy | lr-low | lr-high |" in render(rows, "markdown") and "lr-low | lr-high" not in render(rows, "csv")


def test_source_is_chosen_explicitly(monkeypatch):
    from rlft.analysis.compare import source_for

    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert source_for(None) == "local"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert source_for(None) == "wandb"
    assert source_for("local") == "local"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert source_for(None) == "local" and source_for("wandb") == "wandb"
    with pytest.raises(RlftError, match="unknown source 'api'"):
        source_for("api")


def test_cli_reads_the_api_when_told(two_runs, api, monkeypatch):
    from typer.testing import CliRunner

    from rlft.cli import app as cli

    monkeypatch.setattr(cli, "_wandb_api", lambda: api)
    args = ["compare", "lr-low/rl", "--runs-dir", str(two_runs), "--format", "csv"]
    out = CliRunner().invoke(cli.app, [*args, "--source", "wandb"])
    assert out.exit_code == 0, out.output
    assert api.queries == [("team/rlft-test", {"group": "lr-low"})]  # project from the run's recipe, entity from the API
    assert out.output.splitlines()[1].startswith("lr-low,rl,grpo,")
    monkeypatch.setenv("WANDB_MODE", "online")  # the environment chooses the API too
    out = CliRunner().invoke(cli.app, [*args, "--project", "me/other"])
    assert out.exit_code == 2 and "no W&B runs in group 'lr-low' of project me/other" in out.output
    assert api.queries[-1] == ("me/other", {"group": "lr-low"})


def test_report_offline_says_how_to_sync_and_online_builds_one(two_runs, monkeypatch):
    from typer.testing import CliRunner

    from rlft.analysis.compare import load_rows
    from rlft.analysis.report import build_report
    from rlft.cli import app as cli

    monkeypatch.delenv("WANDB_MODE", raising=False)
    out = CliRunner().invoke(cli.app, ["compare", "lr-low", "lr-high", "--runs-dir", str(two_runs), "--format", "csv", "--report"])
    assert out.exit_code == 0, out.output
    assert f"wandb sync {two_runs / 'lr-low' / 'wandb' / 'offline-run-*'}" in out.output
    assert "wandb login" in out.output and "--source wandb" in out.output
    report = build_report(load_rows(["lr-low", "lr-high"], two_runs), entity="team", project="rlft-test", title="lr sweep")
    grid = report.blocks[-1]
    assert [(rs.name, rs.filters) for rs in grid.runsets] == [("lr-low", "Group = 'lr-low'"), ("lr-high", "Group = 'lr-high'")]
    assert [p.y for p in grid.panels[:3]] == [["train/reward"], ["train/kl"], ["train/loss"]]
    assert grid.panels[3].x == "eval/kl_to_ref" and grid.panels[3].y == "eval/reward/math_accuracy"
    assert "| lr-high | rl | grpo |" in report.blocks[2].text


def test_plots_and_winrate_from_the_command(two_runs, tmp_path):
    from rlft.analysis.plots import plot_data

    plots = tmp_path / "plots"
    cmd = [sys.executable, "-m", "rlft.cli", "compare", "lr-low", "lr-high", "--runs-dir", str(two_runs)]
    out = subprocess.run([*cmd, "--format", "csv", "--plot", str(plots)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    written = sorted(p.name for p in plots.glob("*.png"))
    assert written == sorted(["reward_vs_step.png", "kl_vs_step.png", "reward_vs_kl.png", "heldout_reward_vs_kl.png", "loss_vs_step.png"])
    assert all(f"wrote {plots / name}" in out.stderr for name in written)
    # both runs have a reward curve, labelled by the override that tells them apart, with every GRPO step
    from rlft.analysis.compare import load_rows

    curves = {c.label: c for c in plot_data(load_rows(["lr-low", "lr-high"], two_runs))["reward_vs_step.png"]}
    assert set(curves) == {"sft.learning_rate=0.0001", "sft.learning_rate=0.005"}
    assert all(c.x == [1, 2] for c in curves.values())

    prompts = two_runs.parent / "prompts.jsonl"
    out = subprocess.run(
        [*cmd, "--format", "json", "--winrate", "--judge", "math_accuracy", "--prompts", str(prompts), "--max-new-tokens", "4"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    table = json.loads(out.stdout)  # with a file format and --winrate, stdout is the win-rate table alone
    pairs = {(p["model_a"], p["model_b"]): p for p in table["pairs"]}
    assert set(pairs) == {("lr-low", "lr-high"), ("lr-high", "lr-low")}
    ab, ba = pairs["lr-low", "lr-high"], pairs["lr-high", "lr-low"]
    assert ab["prompts"] == 8 and ab["wins_a"] + ab["wins_b"] + ab["ties"] + ab["not_judged"] == 8
    assert ab["wins_a"] == ba["wins_b"] and ab["ties"] == ba["ties"]
    missing = subprocess.run([*cmd, "--winrate"], capture_output=True, text=True)
    assert missing.returncode == 2 and "--winrate needs a judge and prompts" in missing.stderr
