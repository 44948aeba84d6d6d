"""Trackers: every stage's history.jsonl (also with tracking disabled), compare and plots read from it,
TensorBoard and trackio as backends, ``trl.report_to`` refused, ``rlft dashboard``."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest
import yaml
from conftest import sum_rows, write_jsonl

from rlft.errors import RecipeError, RlftError
from rlft.pipeline.run import run_pipeline
from rlft.recipe import load_recipe
from rlft.tracking import History, read_history

STEPS = 3


@pytest.fixture(scope="module")
def two_runs(tiny_model, tmp_path_factory):
    """Two runs with W&B disabled that differ by the learning rate; the second also tracks to TensorBoard and trackio."""
    root = tmp_path_factory.mktemp("track")
    write_jsonl(root / "sft.jsonl", sum_rows(20))
    recipe = {
        "name": "lr",
        "model": str(tiny_model),
        "tracking": {"project": "rlft-track", "mode": "disabled"},
        "stages": [
            {
                "name": "sft",
                "kind": "sft",
                "data": "sft.jsonl",
                "scorecard": {"prompts": 2, "max_new_tokens": 4},
                "trl": {"max_steps": STEPS, "per_device_train_batch_size": 8},
            }
        ],
    }
    path = root / "lr.yaml"
    path.write_text(yaml.safe_dump(recipe))
    for run_id, overrides in (
        ("lr-low", ["stages.sft.trl.learning_rate=1e-4"]),
        ("lr-high", ["stages.sft.trl.learning_rate=5e-3", "tracking.backends=[wandb,tensorboard,trackio]"]),
    ):
        summary = run_pipeline(load_recipe(path, overrides), source=str(path), run_id=run_id, output_dir=str(root / "runs"))
        assert summary["status"] == "done", summary
    return root / "runs"


def metrics_of(run_dir, stage="sft") -> dict:
    return json.loads((run_dir / stage / "manifest.json").read_text())["result"]["metrics"]


def losses(rows: list[dict]) -> list[tuple[int, float]]:
    return [(row["train/global_step"], row["train/loss"]) for row in rows if "train/loss" in row]


def test_disabled_tracking_still_writes_each_logged_step(two_runs):
    for run_id in ("lr-low", "lr-high"):
        run_dir = two_runs / run_id
        assert not (run_dir / "wandb").exists()  # W&B was off
        rows = read_history(run_dir / "sft" / "history.jsonl")
        metrics = metrics_of(run_dir)
        # one row per training step, in the shape transformers' W&B callback logs it
        assert [step for step, _ in losses(rows)] == [1, 2, 3]
        assert losses(rows)[0][1] == metrics["train/first_loss"] and losses(rows)[-1][1] == metrics["train/loss"]
        assert all(row["train/learning_rate"] > 0 for row in rows if "train/loss" in row)
        # the held-out evaluations before (step 0) and after training, as eval/<key>
        assert [(r["train/global_step"], r["eval/loss"]) for r in rows if "eval/loss" in r] == [
            (0, metrics["baseline/loss"]),
            (STEPS, metrics["eval/loss"]),
        ]
        assert [r["_step"] for r in rows] == list(range(len(rows)))  # W&B's own counter, one per logged row


def test_compare_and_plots_read_the_history_of_disabled_runs(two_runs, tmp_path):
    plots = tmp_path / "plots"
    cmd = [sys.executable, "-m", "rlft.cli", "compare", "lr-low", "lr-high", "--runs-dir", str(two_runs)]
    out = subprocess.run([*cmd, "--format", "json", "--plot", str(plots)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    table = json.loads(out.stdout)
    assert {"accuracy", "train_s", "trainable_params", "peak_rss_gb"} <= set(table["columns"])
    for row in table["rows"]:
        metrics = metrics_of(two_runs / row["run"], row["stage"])
        for column, spec in table["columns"].items():
            assert row[column] == metrics.get(spec["metric"]), (row["run"], column)
    assert sorted(p.name for p in plots.glob("*.png")) == ["loss_vs_step.png"]

    from rlft.analysis.compare import load_rows
    from rlft.analysis.plots import plot_data

    rows = load_rows(["lr-low", "lr-high"], two_runs)
    assert all(r.source.endswith("history.jsonl") for r in rows)
    curves = {c.label: (c.x, c.y) for c in plot_data(rows)["loss_vs_step.png"]}
    for run_id, label in (("lr-low", "sft.learning_rate=0.0001"), ("lr-high", "sft.learning_rate=0.005")):
        logged = losses(read_history(two_runs / run_id / "sft" / "history.jsonl"))
        assert curves[label] == ([s for s, _ in logged], [v for _, v in logged])


def test_tensorboard_backend_writes_the_logged_steps(two_runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = two_runs / "lr-high" / "sft" / "tensorboard"
    assert list(folder.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(folder))
    events.Reload()
    got = [(e.step, e.value) for e in events.Scalars("train/loss")]
    logged = losses(read_history(two_runs / "lr-high" / "sft" / "history.jsonl"))
    assert [s for s, _ in got] == [s for s, _ in logged]
    assert [v for _, v in got] == pytest.approx([v for _, v in logged], rel=1e-6)  # TensorBoard stores float32
    assert not (two_runs / "lr-low" / "sft" / "tensorboard").exists()  # only where the recipe lists it


def test_trackio_backend_holds_each_stage_as_a_run_of_the_project(two_runs):
    db = two_runs / "trackio" / "rlft-track.db"
    con = sqlite3.connect(db)
    rows = con.execute("select run_name, step, metrics from metrics order by id").fetchall()
    assert {name for name, *_ in rows} == {"lr-high.sft"}  # lr-low did not list trackio
    logged = losses(read_history(two_runs / "lr-high" / "sft" / "history.jsonl"))
    got = [(step, json.loads(m)["train/loss"]) for _, step, m in rows if "train/loss" in json.loads(m)]
    assert got == logged
    (config,) = con.execute("select config from configs where run_name = 'lr-high.sft'").fetchone()
    config = json.loads(config)
    assert config["job_type"] == "sft" and config["run_id"] == "lr-high"


def test_dashboard_serves_trackio_on_the_runs_project(two_runs, monkeypatch):
    from typer.testing import CliRunner

    from rlft.cli import app as cli

    seen = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, env: seen.append((cmd, env)) or subprocess.CompletedProcess(cmd, 0))
    result = CliRunner().invoke(cli.app, ["dashboard", "lr-high", "--runs-dir", str(two_runs)])
    assert result.exit_code == 0, result.output
    ((cmd, env),) = seen
    assert cmd[1:] == ["-m", "trackio.cli", "show", "--project", "rlft-track"] and env["TRACKIO_DIR"] == str(two_runs / "trackio")

    empty = two_runs.parent / "empty-runs"
    empty.mkdir()
    result = CliRunner().invoke(cli.app, ["dashboard", "--runs-dir", str(empty)])
    assert result.exit_code == 2 and len(seen) == 1
    assert f"no trackio data in {empty / 'trackio'}" in result.output and "backends: [wandb, trackio]" in result.output


def test_history_keeps_each_step_once_across_a_resumed_attempt(tmp_path):
    path = tmp_path / "history.jsonl"
    first = History(path)  # the interrupted attempt: evaluation before training, steps 1-4, then killed mid-write
    first.append({"eval/loss": 3.0, "train/global_step": 0})
    for step in (1, 2, 3, 4):
        first.append({"train/loss": 10.0 + step, "train/global_step": step})
    first.append({"guard/kl": 9.0, "train/global_step": 4})  # fired after the checkpoint: gone with the redo
    with path.open("a") as f:
        f.write('{"train/loss": 1')  # the torn last line of a killed process

    again = History(path)  # resumed from the checkpoint at step 2
    again.append({"eval/loss": 3.5, "train/global_step": 0})  # the evaluation before training, run again
    again.resumed_from(2)
    for step in (3, 4, 5):
        again.append({"train/loss": 20.0 + step, "train/global_step": step})
    again.close()
    rows = [{k: v for k, v in r.items() if k not in ("_step", "_timestamp")} for r in read_history(path)]
    assert rows == [
        {"train/loss": 11.0, "train/global_step": 1},
        {"train/loss": 12.0, "train/global_step": 2},
        {"eval/loss": 3.5, "train/global_step": 0},
        {"train/loss": 23.0, "train/global_step": 3},
        {"train/loss": 24.0, "train/global_step": 4},
        {"train/loss": 25.0, "train/global_step": 5},
    ]
    # rlft's own rows logged with step= (PPO, rounds) are resumed by that step
    ppo = History(tmp_path / "ppo.jsonl")
    for step in (1, 2, 3):
        ppo.append({"train/reward": float(step)}, step=step)
    resumed = History(tmp_path / "ppo.jsonl")
    resumed.resumed_from(1)
    resumed.append({"train/reward": 2.5}, step=2)
    resumed.close()
    assert [(r["_step"], r["train/reward"]) for r in read_history(tmp_path / "ppo.jsonl")] == [(1, 1.0), (2, 2.5)]


def test_trl_report_to_is_refused_pointing_to_tracking_backends(tmp_path):
    from rlft.stages.trl_config import trl_config_for

    def stage(trl: dict):
        write_jsonl(tmp_path / "sft.jsonl", sum_rows(4))
        spec = {"name": "r", "model": "x", "stages": [{"name": "sft", "kind": "sft", "data": "sft.jsonl", "trl": trl}]}
        (tmp_path / "r.yaml").write_text(yaml.safe_dump(spec))
        return load_recipe(tmp_path / "r.yaml").stage("sft")

    with pytest.raises(RlftError) as caught:
        trl_config_for(stage({"report_to": "tensorboard"}), str(tmp_path / "out"))
    text = caught.value.render()
    assert "stages.sft.trl.report_to" in text and "not taken" in text and "tracking.backends" in text
    with pytest.raises(RecipeError) as caught:  # with other bad keys: all at once, report_to among them
        trl_config_for(stage({"report_to": ["wandb"], "learning_rat": 1e-4}), str(tmp_path / "out"))
    keys = [k for k, _ in caught.value.problems]
    assert keys == ["stages.sft.trl", "stages.sft.trl.report_to"]
    assert "tracking.backends" in caught.value.problems[1][1]


def test_a_backend_not_installed_fails_before_training_with_the_pip_command(tmp_path, tiny_model, monkeypatch):
    import importlib.util

    from rlft.pipeline.checks import check_recipe

    write_jsonl(tmp_path / "sft.jsonl", sum_rows(4))
    spec = {
        "name": "r",
        "model": str(tiny_model),
        "tracking": {"backends": ["wandb", "tensorboard"]},
        "stages": [{"name": "sft", "kind": "sft", "data": "sft.jsonl", "trl": {"max_steps": 1}}],
    }
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(spec))
    recipe = load_recipe(tmp_path / "r.yaml")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(RecipeError) as caught:
        check_recipe(recipe, str(tmp_path / "r.yaml"), here=True)
    (problem,) = [m for k, m in caught.value.problems if k == "tracking.backends"]
    assert "tensorboard" in problem and "pip install tensorboard" in problem
    with pytest.raises(RecipeError, match=r"tracking\.backends\.1: .*'tensorboard' or 'trackio' \(got 'mlflow'\)"):  # unknown
        load_recipe(tmp_path / "r.yaml", ["tracking.backends=[wandb,mlflow]"])
