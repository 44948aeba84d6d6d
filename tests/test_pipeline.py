"""The pipeline end to end on a tiny model: chaining by name, manifests, W&B offline runs, caching, locks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import sum_rows, write_jsonl
from test_stages import load_weights

from rlft.errors import RlftError
from rlft.pipeline.run import RunLock, run_pipeline
from rlft.recipe import load_recipe


def two_stage_recipe(tmp_path: Path, tiny_model: Path, **tracking) -> Path:
    write_jsonl(tmp_path / "sft.jsonl", sum_rows(16))
    write_jsonl(tmp_path / "prompts.jsonl", sum_rows(8, with_completion=False))
    recipe = {
        "name": "chain",
        "model": str(tiny_model),
        "tracking": {"project": "rlft-test", **tracking},
        "stages": [
            {
                "name": "sft",
                "kind": "sft",
                "data": "sft.jsonl",
                "trl": {"max_steps": 3, "per_device_train_batch_size": 8, "learning_rate": 5e-3},
            },
            {
                "name": "rl",
                "kind": "grpo",
                "init_from": "sft",
                "data": "prompts.jsonl",
                "rewards": [{"name": "math_accuracy"}],
                # learning rate 0: the RL output must then equal exactly what it loaded.
                "trl": {
                    "max_steps": 1,
                    "num_generations": 4,
                    "per_device_train_batch_size": 8,
                    "max_completion_length": 6,
                    "learning_rate": 0.0,
                },
            },
        ],
    }
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def read_wandb_records(wandb_file: Path) -> list[dict]:
    """Read a run-<id>.wandb file with the official reader, `wandb leet inspect --json`."""
    exe = Path(sys.executable).parent / "wandb"
    out = subprocess.run([str(exe), "leet", "inspect", "--json", str(wandb_file)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip().startswith("{")]


def test_two_stage_pipeline_chains_and_tracks(tiny_model, tmp_path):
    path = two_stage_recipe(tmp_path, tiny_model)
    summary = run_pipeline(load_recipe(path), source=str(path), run_id="r1", output_dir=str(tmp_path / "runs"))
    assert summary["status"] == "done", summary
    run_dir = tmp_path / "runs" / "r1"

    # The RL stage started from the SFT output, not from the base model.
    sft_manifest = json.loads((run_dir / "sft" / "manifest.json").read_text())
    rl_manifest = json.loads((run_dir / "rl" / "manifest.json").read_text())
    assert rl_manifest["start_model"] == sft_manifest["result"]["model_path"]
    base, sft_w, rl_w = load_weights(tiny_model), load_weights(run_dir / "sft" / "model"), load_weights(run_dir / "rl" / "model")
    assert any(not torch.equal(base[k], sft_w[k]) for k in base)
    assert all(torch.equal(sft_w[k], rl_w[k]) for k in sft_w)

    # Manifests carry what a later reader needs.
    for key in ("versions", "seed", "data", "wandb", "timings", "recipe"):
        assert key in rl_manifest
    assert rl_manifest["data"]["fingerprint"] and rl_manifest["versions"]["trl"] == __import__("trl").__version__
    assert [s["status"] for s in summary["stages"]] == ["done", "done"]
    assert json.loads((run_dir / "summary.json").read_text())["stages"][1]["metrics"]["train/steps"] == 1
    assert not list(run_dir.glob(".*.partial"))

    # One offline W&B run per stage, grouped by the pipeline run, typed by stage kind.
    files = sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2
    seen = {}
    for f in files:
        records = read_wandb_records(f)
        run = next(r for r in records if r.get("type") == "run")["run"]
        assert run["run_group"] == "r1" and run["project"] == "rlft-test"
        stage = run["config"]["update"]["stage"]
        assert run["display_name"] == f"r1.{stage['name']}" and run["job_type"] == stage["kind"]
        assert run["config"]["update"]["recipe"]["name"] == "chain"  # the resolved recipe is logged
        logged = {k for r in records if r.get("type") == "history" for k in r["history"]["item"]}
        seen[run["job_type"]] = logged
    assert set(seen) == {"sft", "grpo"}
    assert "train/loss" in seen["sft"]
    for key in ("train/rewards/math_accuracy/mean", "train/rewards/math_accuracy/std", "train/reward"):  # per reward + weighted total
        assert key in seen["grpo"]
    assert {sft_manifest["wandb"]["run_id"], rl_manifest["wandb"]["run_id"]} == {f.stem.removeprefix("run-") for f in files}

    # Running again with the same run id reuses both finished stages.
    again = run_pipeline(load_recipe(path), source=str(path), run_id="r1", output_dir=str(tmp_path / "runs"))
    assert [s["status"] for s in again["stages"]] == ["cached", "cached"]
    # Changing the second stage reruns it only.
    changed = run_pipeline(load_recipe(path, ["stages.rl.seed=5"]), source=str(path), run_id="r1", output_dir=str(tmp_path / "runs"))
    assert [s["status"] for s in changed["stages"]] == ["cached", "done"]


def test_tracking_disabled_writes_no_wandb(tiny_model, tmp_path):
    path = two_stage_recipe(tmp_path, tiny_model, mode="disabled")
    r = load_recipe(path, ["stages.sft.trl.max_steps=1"])
    r = r.model_copy(update={"stages": r.stages[:1]})
    summary = run_pipeline(r, source=str(path), run_id="r2", output_dir=str(tmp_path / "runs"))
    assert summary["status"] == "done"
    assert not (tmp_path / "runs" / "r2" / "wandb").exists()
    assert summary["stages"][0]["wandb_run_id"] is None


def test_run_folder_in_use_is_refused(tmp_path):
    with RunLock(tmp_path / "busy"):
        with pytest.raises(RlftError, match=r"in use by another rlft pipeline \(pid \d+\)"):
            with RunLock(tmp_path / "busy"):
                pass
    with RunLock(tmp_path / "busy"):  # released after use
        pass


# ---------------------------------------------------------------------------- bad input through the CLI


def rlft(*args, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "rlft"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_cli_missing_recipe(tmp_path):
    out = rlft("run", "nope.yaml", cwd=tmp_path)
    assert out.returncode == 2 and "recipe file nope.yaml does not exist" in out.stderr and "fix:" in out.stderr


def test_cli_bad_yaml_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: x\nmodel: m\nstages:\n  - name: a\n   kind: sft\n")
    out = rlft("plan", "bad.yaml", cwd=tmp_path)
    assert out.returncode == 2 and "bad.yaml, line 5" in out.stderr


def test_cli_model_path_missing_fails_before_any_output(tmp_path, tiny_model):
    path = two_stage_recipe(tmp_path, tiny_model)
    out = rlft("run", str(path), "model=./no-such-model", "--output-dir", "runs", cwd=tmp_path)
    assert out.returncode == 2 and "model: model path ./no-such-model does not exist" in out.stderr
    assert not (tmp_path / "runs").exists()


def test_cli_unresolvable_reward(tmp_path, tiny_model):
    path = two_stage_recipe(tmp_path, tiny_model)
    out = rlft("run", str(path), "stages.rl.rewards=[{name: ./mine.py:polite}]", cwd=tmp_path)
    assert out.returncode == 2 and "stages.rl.rewards[0].name" in out.stderr and "mine.py does not exist" in out.stderr


def test_cli_missing_mapped_column_is_reported_before_any_stage_runs(tmp_path, tiny_model):
    path = two_stage_recipe(tmp_path, tiny_model, mode="disabled")
    out = rlft(
        "run", str(path), "stages.sft.data.columns={completion: answer_text}", "--run-id", "bad", "--output-dir", "runs", cwd=tmp_path
    )
    assert out.returncode == 2  # a recipe problem: rlft run checks every stage's data before the first stage
    assert "stages.sft.data: data" in out.stderr and "sft.jsonl has no column 'answer_text'" in out.stderr
    assert "its columns are: prompt, answer, completion" in out.stderr
    assert not (tmp_path / "runs").exists()  # nothing was started, so nothing is left half-made


def test_cli_plan_prints_stages(tmp_path):
    root = Path(__file__).resolve().parents[1]
    out = rlft("plan", str(root / "recipes" / "quickstart.yaml"), "stages.rl.trl.max_steps=2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "recipe is valid" in out.stdout
    for name in ("sft", "rl", "eval", "math_accuracy"):
        assert name in out.stdout
    bad = rlft("plan", str(root / "recipes" / "quickstart.yaml"), "stages.rl.kind=ppo2", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown stage kind 'ppo2'" in bad.stderr
