"""Multi-process launch: a stage under `accelerate launch` with 2 CPU processes (gloo), and the launch commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, sum_rows, write_jsonl
from test_pipeline import read_wandb_records

from rlft.errors import RecipeError, RlftError
from rlft.pipeline.checks import check_recipe
from rlft.pipeline.run import run_pipeline, stage_command
from rlft.recipe import load_recipe, recipe_from_dict

ACCELERATE_CONFIGS = ("ddp", "fsdp", "zero2", "zero3", "multi_node")


def distinct_sums(n: int) -> list[dict]:
    return [{"prompt": f"{i}+{i + 1}=", "answer": str(2 * i + 1), "completion": f"<answer>{2 * i + 1}</answer>"} for i in range(n)]


def sft_recipe(tmp_path: Path, tiny_model: Path) -> Path:
    write_jsonl(tmp_path / "sft.jsonl", distinct_sums(16))
    write_jsonl(tmp_path / "held_out.jsonl", sum_rows(4))
    recipe = {
        "name": "ddp",
        "model": str(tiny_model),
        "tracking": {"project": "rlft-test"},
        "stages": [
            {
                "name": "sft",
                "kind": "sft",
                "data": "sft.jsonl",
                "eval_data": "held_out.jsonl",
                "scorecard": {"prompts": 2, "max_new_tokens": 4},
                # 2 ranks x 4 rows x 2 steps = the 16 training rows, each exactly once
                "trl": {"max_steps": 2, "per_device_train_batch_size": 4, "learning_rate": 5e-3},
            },
            {"name": "eval", "kind": "eval", "data": "held_out.jsonl", "rewards": [{"name": "math_accuracy"}], "max_new_tokens": 4},
        ],
    }
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_stage_on_two_cpu_processes_splits_the_data_and_tracks_once(tiny_model, tmp_path):
    path = sft_recipe(tmp_path, tiny_model)
    overrides = [f"launch.accelerate_config={ROOT / 'recipes/accelerate/ddp.yaml'}", "launch.num_processes=2"]
    recipe = load_recipe(path, overrides)
    summary = run_pipeline(recipe, source=str(path), run_id="r", output_dir=str(tmp_path / "runs"))
    assert summary["status"] == "done", summary
    run_dir = tmp_path / "runs" / "r"

    launch = json.loads((run_dir / "sft" / "manifest.json").read_text())["launch"]
    assert launch["world_size"] == 2 and launch["missing_ranks"] == []
    assert launch["mixed_precision"] == "no"  # ddp.yaml says bf16, which on CPU would mean silent bf16 autocast
    ranks = {r["rank"]: r for r in launch["ranks"]}
    assert set(ranks) == {0, 1}
    assert ranks[0]["distinct_rows"] == ranks[1]["distinct_rows"] == 8  # each rank trained on its own half
    assert launch["rows_on_several_ranks"] == 0
    assert "launch" not in json.loads((run_dir / "eval" / "manifest.json").read_text())  # eval: one process

    # exactly one W&B run per stage although two processes trained: only rank 0 talks to W&B
    files = sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2
    kinds = sorted(next(r for r in read_wandb_records(f) if r.get("type") == "run")["run"]["job_type"] for f in files)
    assert kinds == ["eval", "sft"]
    assert not list(run_dir.glob(".*.partial")) and not list(run_dir.rglob(".ranks"))


def test_launch_commands(tiny_model, tmp_path):
    path = sft_recipe(tmp_path, tiny_model)
    plain = load_recipe(path)
    assert stage_command(plain, plain.stage("sft"), tmp_path, tmp_path) == [
        sys.executable,
        "-m",
        "rlft.pipeline.runner",
        str(tmp_path),
        "sft",
    ]

    ddp = load_recipe(path, ["launch.num_processes=4"])
    cmd = stage_command(ddp, ddp.stage("sft"), tmp_path, tmp_path)
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"] and "--multi_gpu" in cmd
    assert cmd[cmd.index("--num_processes") + 1] == "4" and cmd[-4:] == ["-m", "rlft.pipeline.runner", str(tmp_path), "sft"]
    assert stage_command(ddp, ddp.stage("eval"), tmp_path, tmp_path)[2] == "rlft.pipeline.runner"  # eval stays single-process

    node = load_recipe(path, [f"launch.accelerate_config={ROOT / 'recipes/accelerate/multi_node.yaml'}", "launch.machine_rank=1"])
    cmd = stage_command(node, node.stage("sft"), tmp_path, tmp_path)
    assert cmd[cmd.index("--config_file") + 1] == str(ROOT / "recipes/accelerate/multi_node.yaml")
    assert cmd[cmd.index("--machine_rank") + 1] == "1"


def test_a_stage_can_launch_differently_from_the_recipe(tiny_model, tmp_path):
    path = sft_recipe(tmp_path, tiny_model)
    r = load_recipe(path, ["stages.sft.launch.num_processes=2"])
    assert r.launch_for(r.stage("sft")).num_processes == 2 and not r.launch.distributed


def test_missing_accelerate_config_is_named(tiny_model, tmp_path):
    path = sft_recipe(tmp_path, tiny_model)
    with pytest.raises(RecipeError, match=r"launch.accelerate_config: accelerate config nope.yaml does not exist"):
        check_recipe(load_recipe(path, ["launch.accelerate_config=nope.yaml"]), str(path))
    with pytest.raises(RlftError, match="recipes/accelerate"):
        r = recipe_from_dict({**yaml.safe_load(path.read_text()), "launch": {"accelerate_config": "nope.yaml"}})
        stage_command(r, r.stage("sft"), tmp_path, tmp_path)


@pytest.mark.parametrize("name", ACCELERATE_CONFIGS)
def test_accelerate_configs_load(name):
    """Each shipped config parses as accelerate's own config class."""
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(ROOT / "recipes" / "accelerate" / f"{name}.yaml"))
    assert config.num_processes >= 8 and config.compute_environment.value == "LOCAL_MACHINE"


def test_follower_machine_joins_training_launches_only(tiny_model, tmp_path, monkeypatch):
    """Machine 1 of a multi-node run: no lock, no summary, one launch per training stage, eval left to machine 0."""
    import subprocess

    import rlft.pipeline.run as pipeline

    path = sft_recipe(tmp_path, tiny_model)
    config = ROOT / "recipes/accelerate/multi_node.yaml"
    recipe = load_recipe(path, [f"launch.accelerate_config={config}", "launch.machine_rank=1"])
    run_dir = tmp_path / "runs" / "mn"
    run_dir.mkdir(parents=True)
    (run_dir / "recipe.json").write_text("{}")  # machine 0 has started the run
    launched = []
    monkeypatch.setattr(pipeline.subprocess, "run", lambda cmd, **kw: launched.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    summary = run_pipeline(recipe, source=str(path), run_id="mn", output_dir=str(tmp_path / "runs"))
    assert [s["status"] for s in summary["stages"]] == ["joined", "left to machine 0"]
    assert len(launched) == 1 and launched[0][launched[0].index("--machine_rank") + 1] == "1"
    assert sorted(p.name for p in run_dir.iterdir()) == ["recipe.json"]  # wrote nothing: no lock, summary or stage folder


def test_ppo_refuses_a_multi_process_launch_at_validation(tmp_path, tiny_model):
    base = {"name": "t", "model": str(tiny_model), "launch": {"num_processes": 2}}
    stage = {"name": "rl", "kind": "ppo", "data": "p.jsonl", "rewards": [{"name": "math_accuracy"}]}
    with pytest.raises(RecipeError, match=r"stages.rl.launch: rlft's PPO trainer runs in one process.*num_processes=1"):
        recipe_from_dict({**base, "stages": [stage]})
    recipe_from_dict({**base, "stages": [{**stage, "launch": {"num_processes": 1}}]})  # the named fix works
