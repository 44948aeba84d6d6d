"""Resume after a crash: a stage killed with SIGKILL mid-training continues from its last checkpoint.

The same recipe runs once without interruption and once killed and re-run with the same command; the
final weights must match, and the stage's W&B run (one id, one file per attempt) must hold every
training step exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml
from conftest import sum_rows, write_jsonl
from safetensors.torch import load_file

from rlft.tracking import read_history
from rlft.training.checkpoints import Every, last_checkpoint
from rlft.wandb_files import read_wandb_files

STEPS, EVERY = 40, 5


def recipe(tmp_path: Path, tiny_model: Path) -> Path:
    write_jsonl(tmp_path / "sft.jsonl", sum_rows(64))
    spec = {
        "name": "resume",
        "model": str(tiny_model),
        "seed": 3,
        "tracking": {"project": "rlft-test"},
        "stages": [
            {
                "name": "sft",
                "kind": "sft",
                "data": "sft.jsonl",
                "scorecard": {"prompts": 0},
                "checkpoint": {"every_steps": EVERY, "every_minutes": None},
                "trl": {"max_steps": STEPS, "per_device_train_batch_size": 8, "learning_rate": 3e-3},
            }
        ],
    }
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def rlft_run(path: Path, run_id: str, out: Path, **kw):
    cmd = [sys.executable, "-m", "rlft.cli", "run", str(path), "--run-id", run_id, "--output-dir", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def wait_for_checkpoint(partial: Path, step: int, proc, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = last_checkpoint(partial / "trainer")
        if found is not None and int(found.name.split("-")[1]) >= step:
            return
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint-{step} in {partial} after {timeout} s")


def stage_process(pipeline_pid: int) -> psutil.Process:
    """The stage's own process (python -m rlft.pipeline.runner ...), a child of the pipeline."""
    children = [p for p in psutil.Process(pipeline_pid).children(recursive=True) if "rlft.pipeline.runner" in " ".join(p.cmdline())]
    assert len(children) == 1, children
    return children[0]


def logged_steps(run_dir: Path) -> tuple[list[int], list[Path]]:
    summary = json.loads((run_dir / "summary.json").read_text())
    wandb_id = summary["stages"][0]["wandb_run_id"]
    files = sorted(run_dir.glob(f"wandb/*-{wandb_id}/run-{wandb_id}.wandb"))
    history = read_wandb_files(files).history
    return [int(row["train/global_step"]) for row in history if "train/loss" in row], files


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "sft" / "model" / "model.safetensors")


@pytest.fixture(scope="module")
def reference(tiny_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    path = recipe(tmp, tiny_model)
    proc = rlft_run(path, "ref", tmp / "runs")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return path, tmp / "runs" / "ref"


@pytest.mark.parametrize("victim", ["stage", "pipeline"])
def test_killed_stage_resumes_to_the_same_weights(reference, tmp_path, victim):
    path, ref_dir = reference
    out = tmp_path / "runs"
    run_dir, partial = out / "k", out / "k" / ".sft.partial"

    proc = rlft_run(path, "k", out)
    wait_for_checkpoint(partial, 2 * EVERY, proc)
    child = stage_process(proc.pid)
    if victim == "stage":  # the stage process dies; the pipeline records the failure and keeps the checkpoint
        os.kill(child.pid, signal.SIGKILL)
        first, _ = proc.communicate(timeout=120)
        assert proc.returncode != 0
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "failed" and summary["stages"][0]["resume_from"].startswith(str(partial))
        assert "run the same command again to resume" in first
    else:  # kill -9 of the pipeline itself: its stage process must not live on, writing
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        child.wait(timeout=30)
        assert not child.is_running()
    assert not (run_dir / "sft").exists()  # nothing that looks finished
    killed_at = last_checkpoint(partial / "trainer")
    assert killed_at is not None and int(killed_at.name.split("-")[1]) < STEPS  # killed mid-training

    again = rlft_run(path, "k", out)
    log, _ = again.communicate(timeout=600)
    assert again.returncode == 0, log
    assert "resuming an interrupted attempt from its checkpoint-" in log and "resuming from checkpoint-" in log
    steps, files = logged_steps(run_dir)
    assert len(files) == 2  # one W&B run id, one file per attempt
    assert steps == list(range(1, STEPS + 1))  # every step once: none missing, none twice
    history = read_history(run_dir / "sft" / "history.jsonl")  # rlft's own record: each step once too
    assert [int(r["train/global_step"]) for r in history if "train/loss" in r] == list(range(1, STEPS + 1))
    assert [int(r["train/global_step"]) for r in history if "eval/loss" in r] == [0, STEPS]  # before and after training, once
    ref_losses = [r["train/loss"] for r in read_history(ref_dir / "sft" / "history.jsonl") if "train/loss" in r]
    assert [r["train/loss"] for r in history if "train/loss" in r] == pytest.approx(ref_losses, abs=1e-5)
    resumed_at = int(log.split("resuming from checkpoint-")[1].split()[0])
    assert resumed_at >= 2 * EVERY and resumed_at % EVERY == 0
    ref, got = weights(ref_dir), weights(run_dir)
    diff = max((ref[k] - got[k]).abs().max().item() for k in ref)
    assert diff < 1e-5, diff
    assert not partial.exists() and not list((run_dir / "sft").glob("trainer"))  # checkpoints dropped once finished
    print(f"{victim} killed after checkpoint-{resumed_at}; {STEPS - resumed_at} steps after it; max weight difference {diff:.2e}")


def test_checkpoint_policy_steps_and_minutes():
    now = [0.0]
    every = Every(steps=3, minutes=None, clock=lambda: now[0])
    assert [s for s in range(1, 11) if every(s, 10)] == [3, 6, 9]
    timed = Every(steps=None, minutes=1.0, clock=lambda: now[0])
    due = []
    for step in range(1, 8):
        now[0] += 25.0  # 25 s per step: due every third step (75 s >= 60 s), never at the last step
        if timed(step, 7):
            due.append(step)
    assert due == [3, 6]
