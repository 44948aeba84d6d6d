"""A ``kind: ppo`` stage through the real pipeline (``rlft run``): manifest, W&B history, caching, resume, and PPO's options.

One recipe carries the features at once, to keep the runs few: a ``reward_model`` stage ``rm``, then a PPO stage whose
first reward is ``model: rm`` (so its critic starts from that stage's output), plus two constant rewards weighted 1.0
and 0.5, ``whiten_rewards: true``, ``top_p: 1.0``, a prompt longer than ``max_prompt_length`` and a checkpoint every
``EVERY`` steps. It runs once uninterrupted (the reference), again under the same run id (everything reused), and under
another run id killed after its first PPO checkpoint and run again (resumed). ``top_p`` below 1 is refused before any
stage runs.
"""

from __future__ import annotations

import json
import math
import os
import signal
import string
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
from rlft.training.checkpoints import last_checkpoint
from rlft.wandb_files import read_wandb_file, read_wandb_files

STEPS, EVERY, BATCH, COMPLETION, PROMPT_MAX = 12, 3, 8, 4, 24
ONE, THREE = 1.0, 3.0  # the constant rewards, weighted 1.0 and 0.5
LONG_PROMPT = "Please work this out carefully, step by step, then answer: 3+4="

# The stage runs in its own process, which imports the reward file: the file therefore carries the probe that records
# what the rollout encoded (the prompt ids the policy is sampled from), besides the two constant rewards.
REWARDS = string.Template("""
import json
from pathlib import Path

import rlft.ppo.rollout as rollout

RECORD = Path(__file__).with_name("encoded_prompts.jsonl")
_encode = rollout.encode_prompts


def _recording(tokenizer, prompts, max_prompt_length):
    ids, mask = _encode(tokenizer, prompts, max_prompt_length)
    with RECORD.open("a") as f:
        for prompt, row, keep in zip(prompts, ids.tolist(), mask.tolist()):
            f.write(json.dumps({"prompt": prompt, "ids": [t for t, k in zip(row, keep) if k]}) + "\\n")
    return ids, mask


rollout.encode_prompts = _recording


def one(prompts, completions, **kwargs):
    return [$one] * len(completions)


def three(prompts, completions, **kwargs):
    return [$three] * len(completions)
""").substitute(one=ONE, three=THREE)


def write_recipe(folder: Path, tiny_model: Path) -> Path:
    pairs = [{"prompt": f"q{i % 5}?", "chosen": "yes " * (1 + i % 3), "rejected": "no " * (1 + (i + 1) % 3)} for i in range(16)]
    write_jsonl(folder / "pairs.jsonl", pairs)
    write_jsonl(folder / "prompts.jsonl", [*sum_rows(BATCH - 1, with_completion=False), {"prompt": LONG_PROMPT, "answer": "7"}])
    write_jsonl(folder / "held_out.jsonl", sum_rows(2, with_completion=False))
    (folder / "toy_rewards.py").write_text(REWARDS)
    spec = {
        "name": "ppo-pipeline",
        "model": str(tiny_model),
        "seed": 3,
        "tracking": {"project": "rlft-test"},
        "stages": [
            {
                "name": "rm",
                "kind": "reward_model",
                "data": "pairs.jsonl",
                "trl": {"max_steps": 2, "per_device_train_batch_size": 8, "learning_rate": 1e-2},
            },
            {
                "name": "rl",
                "kind": "ppo",
                "data": "prompts.jsonl",
                "eval_data": "held_out.jsonl",
                "scorecard": {"prompts": 0},
                "checkpoint": {"every_steps": EVERY, "every_minutes": None},
                "rewards": [
                    {"model": "rm"},  # first: the separate critic starts from this stage's output
                    {"name": "./toy_rewards.py:one", "weight": 1.0},
                    {"name": "./toy_rewards.py:three", "weight": 0.5},
                ],
                "trl": {
                    "max_steps": STEPS,
                    "per_device_train_batch_size": BATCH,  # the 8 prompts, the long one included, in every rollout
                    "max_completion_length": COMPLETION,
                    "max_prompt_length": PROMPT_MAX,
                    "num_ppo_epochs": 2,
                    "temperature": 1.0,
                    "top_p": 1.0,
                    "learning_rate": 1e-2,
                    "value_learning_rate": 0.0,  # the critic stays the reward model it started from
                    "whiten_rewards": True,
                    # No KL penalty and lam 1: a token's return is the sum of the (whitened) rewards after it, by hand.
                    "kl_coef": 0.0,
                    "lam": 1.0,
                },
            },
        ],
    }
    path = folder / "ppo.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def rlft_run(path: Path, run_id: str, out: Path, *overrides: str) -> subprocess.Popen:
    """``rlft run`` in its own process, offline and on one thread whatever the fixtures around it set (the module-scoped
    reference run starts before the per-test environment fixtures): runs compared step by step must share both."""
    cmd = [sys.executable, "-m", "rlft.cli", "run", str(path), *overrides, "--run-id", run_id, "--output-dir", str(out)]
    home = path.parent
    env = {k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        WANDB_MODE="offline",
        WANDB_DIR=str(home),
        WANDB_CACHE_DIR=str(home / "wandb-cache"),
        WANDB_CONFIG_DIR=str(home / "wandb-config"),
        OMP_NUM_THREADS="1",
    )
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def manifest(run_dir: Path, stage: str) -> dict:
    return json.loads((run_dir / stage / "manifest.json").read_text())


def wandb_files(run_dir: Path, stage: str) -> list[Path]:
    wandb_id = manifest(run_dir, stage)["wandb"]["run_id"]
    return sorted(run_dir.glob(f"wandb/*-{wandb_id}/run-{wandb_id}.wandb"), key=lambda p: p.parent.name)


def train_rows(history: list[dict]) -> list[dict]:
    """The rows the PPO stage logged per step (``_step`` is its step)."""
    return [row for row in history if "train/reward" in row]


@pytest.fixture(scope="module")
def reference(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ppo")
    path = write_recipe(folder, tiny_model)
    t0 = time.time()
    log = finish(rlft_run(path, "ref", folder / "runs"))
    run_dir = folder / "runs" / "ref"
    assert (run_dir / "summary.json").exists(), log
    print(f"reference run: {time.time() - t0:.1f} s")
    return path, run_dir, log


def test_ppo_stage_runs_through_the_pipeline(reference, tiny_model):
    path, run_dir, log = reference
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "done", log
    assert [(s["name"], s["kind"], s["status"]) for s in summary["stages"]] == [("rm", "reward_model", "done"), ("rl", "ppo", "done")]

    # The manifest: status, the steps, the last step's numbers, and where the critic started.
    m = manifest(run_dir, "rl")
    result = m["result"]
    assert result["status"] == "done" and result["kind"] == "ppo" and result["model_path"] == str(run_dir / "rl" / "model")
    metrics = result["metrics"]
    assert metrics["train/steps"] == STEPS
    rm_model = manifest(run_dir, "rm")["result"]["model_path"]
    assert m["critic"] == {"kind": "separate", "start": rm_model}
    assert m["value_model"] == "value_model"

    # The W&B offline run: every step once, with PPO's numbers.
    files = wandb_files(run_dir, "rl")
    assert len(files) == 1
    run = read_wandb_file(files[0])
    assert run.state == "finished" and run.job_type == "ppo" and run.group == "ref"
    rows = train_rows(run.history)
    assert [row["_step"] for row in rows] == list(range(1, STEPS + 1))
    # the stage's history.jsonl holds the same rows (what rlft's PPO logged, by its step)
    recorded = train_rows(read_history(run_dir / "rl" / "history.jsonl"))
    assert [{k: v for k, v in r.items() if k != "_timestamp"} for r in recorded] == [
        {k: v for k, v in r.items() if not k.startswith("_") or k == "_step"} for r in rows
    ]
    for row in rows:
        for key in ("train/kl", "train/ppo/score", "train/grad_norm/policy", "train/grad_norm/value", "train/ppo/policy_loss"):
            assert math.isfinite(row[key]), (key, row)
        assert row["train/grad_norm/policy"] > 0 and row["train/grad_norm/value"] > 0
        # The score is the weighted sum of the rewards: rm (weight 1) + 1.0 * ONE + 0.5 * THREE.
        assert row["train/rewards/one/mean"] == ONE and row["train/rewards/three/mean"] == THREE
        want = row["train/rewards/rm/mean"] + 1.0 * ONE + 0.5 * THREE
        assert row["train/ppo/score"] == pytest.approx(want, abs=1e-5)
        assert row["train/reward"] == pytest.approx(want, abs=1e-5)
    assert rows[0]["train/kl"] == pytest.approx(0.0, abs=1e-6)  # the first rollout comes from the reference itself
    last = rows[-1]
    for key in ("reward", "kl", "entropy", "completions/mean_length", "rewards/rm/mean", "rewards/one/mean"):
        assert metrics[f"train/{key}"] == pytest.approx(last[f"train/{key}"], rel=1e-6), key
    assert run.summary["train/steps"] == STEPS

    # whiten_rewards: at step 1 every completion ran to COMPLETION tokens, the per-token rewards are the score on the
    # last token (no KL penalty), whitened over the batch's B * T tokens without shifting their mean, and a token's
    # return is the sum of the whitened rewards from it on (gamma = lam = 1). By hand, with S the batch's mean score
    # and s its population std (that of the rm reward: the others are constant), mean m = S / T and
    # var = (B (s^2 + S^2) - 2 m B S + B T m^2) / (B T - 1); each row's returns are s_i / sigma + (T - t) m (1 - 1/sigma),
    # so their mean is S / sigma + m (1 - 1/sigma) (T + 1) / 2. Unwhitened, it would be S itself.
    first = rows[0]
    assert first["train/completions/clipped_ratio"] == 1.0 and first["train/completions/mean_length"] == COMPLETION
    B, T, S, s = BATCH, COMPLETION, first["train/ppo/score"], first["train/rewards/rm/std"]
    mean = S / T
    var = (B * (s**2 + S**2) - 2 * mean * B * S + B * T * mean**2) / (B * T - 1)
    sigma = math.sqrt(var + 1e-8)
    assert first["train/ppo/return_mean"] == pytest.approx(S / sigma + mean * (1 - 1 / sigma) * (T + 1) / 2, rel=1e-4)
    assert abs(first["train/ppo/return_mean"] - S) > 0.1

    # max_prompt_length: the long prompt is cut to its last PROMPT_MAX tokens (the end keeps the question and the
    # generation prompt), the others are whole; every rollout held it.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    encoded = [json.loads(line) for line in (path.parent / "encoded_prompts.jsonl").read_text().splitlines()]
    assert len(encoded) == STEPS * BATCH
    long_seen = 0
    for row in encoded:
        prompt = row["prompt"]
        text = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False) if isinstance(prompt, list) else prompt
        whole = tok(text, add_special_tokens=False).input_ids
        assert row["ids"] == whole[-PROMPT_MAX:]
        if len(whole) > PROMPT_MAX:
            long_seen += 1
            assert LONG_PROMPT in text and len(row["ids"]) == PROMPT_MAX
    assert long_seen == STEPS

    # The critic started from the reward-model stage's output: with its learning rate 0 it is that model still,
    # backbone and score head (a token-classification head's bias is new, and zero).
    critic, rm = load_file(run_dir / "rl" / "value_model" / "model.safetensors"), load_file(Path(rm_model) / "model.safetensors")
    assert set(critic) == set(rm) | {"score.bias"}
    assert all(torch.equal(critic[k], v) for k, v in rm.items())
    base = load_file(tiny_model / "model.safetensors")
    assert not torch.equal(rm["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"])
    # The policy did train.
    policy = load_file(run_dir / "rl" / "model" / "model.safetensors")
    assert any(not torch.equal(policy[k], base[k]) for k in base)


def test_second_run_reuses_the_ppo_stage(reference):
    path, run_dir, _ = reference
    before = {stage: (run_dir / stage / "manifest.json").read_text() for stage in ("rm", "rl")}
    wandb_before = sorted(run_dir.glob("wandb/*/run-*.wandb"))
    proc = rlft_run(path, "ref", run_dir.parent)
    log = finish(proc)
    assert proc.returncode == 0, log
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [s["status"] for s in summary["stages"]] == ["cached", "cached"], log
    assert log.count("already done with this config, reused") == 2
    assert "rlft.pipeline.runner" not in log and "[rl] step" not in log
    assert {stage: (run_dir / stage / "manifest.json").read_text() for stage in ("rm", "rl")} == before  # not retrained
    assert sorted(run_dir.glob("wandb/*/run-*.wandb")) == wandb_before  # no new W&B run


def test_top_p_below_one_is_refused_before_any_stage_runs(tiny_model, tmp_path):
    path = write_recipe(tmp_path, tiny_model)
    proc = rlft_run(path, "nucleus", tmp_path / "runs", "stages.rl.trl.top_p=0.9")
    log = finish(proc)
    assert proc.returncode == 2, log
    assert "stages.rl.trl" in log and "top_p must be 1.0, got 0.9" in log and "lower temperature" in log
    assert not (tmp_path / "runs").exists()  # refused before the reward model stage, or anything else, ran


# ---------------------------------------------------------------------------- resume


def wait_for_checkpoint(partial: Path, proc: subprocess.Popen, timeout: float = 300) -> Path:
    """The first complete PPO checkpoint of the running stage, as soon as it appears."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = last_checkpoint(partial / "trainer")
        if found is not None:
            return found
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint in {partial} after {timeout} s")


def stage_process(pipeline_pid: int) -> psutil.Process:
    """The stage's own process (python -m rlft.pipeline.runner RUN_DIR rl), a child of the pipeline."""
    children = [p for p in psutil.Process(pipeline_pid).children(recursive=True) if "rlft.pipeline.runner" in " ".join(p.cmdline())]
    assert len(children) == 1, children
    return children[0]


def steps_of(history: list[dict]) -> list[int]:
    return [int(row["_step"]) for row in train_rows(history)]


@pytest.mark.slow  # a second reward model and three more stage processes: about a minute on 2 cores, past the reference run
def test_killed_ppo_stage_resumes_and_replays_the_lost_steps(reference, tiny_model, tmp_path):
    _, ref_dir, _ = reference
    path = write_recipe(tmp_path, tiny_model)  # the reference's recipe, in a folder of its own
    out = tmp_path / "runs"
    run_dir, partial = out / "k", out / "k" / ".rl.partial"

    proc = rlft_run(path, "k", out)
    wait_for_checkpoint(partial, proc)
    os.kill(stage_process(proc.pid).pid, signal.SIGKILL)  # the PPO stage dies; the pipeline records it and keeps the checkpoint
    first_log = finish(proc)
    assert proc.returncode != 0, first_log
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [s["status"] for s in summary["stages"]] == ["done", "failed"]
    killed_at = last_checkpoint(partial / "trainer")
    assert summary["stages"][1]["resume_from"] == str(killed_at) and "run the same command again to resume" in first_log
    assert int(killed_at.name.split("-")[1]) < STEPS and not (run_dir / "rl").exists()  # killed mid-stage
    wandb_id = (partial / ".wandb_id").read_text().strip()
    (first_file,) = run_dir.glob(f"wandb/*-{wandb_id}/run-{wandb_id}.wandb")
    kept = steps_of(read_wandb_file(first_file).history)  # what the killed process had written to disk
    assert kept == list(range(1, len(kept) + 1))

    again = rlft_run(path, "k", out)
    log = finish(again)
    assert again.returncode == 0, log
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [s["status"] for s in summary["stages"]] == ["cached", "done"], log
    assert "resuming an interrupted attempt from its checkpoint-" in log
    resumed_at = int(log.split("[rl] resuming from checkpoint-")[1].split()[0])
    assert resumed_at % EVERY == 0 and resumed_at >= int(killed_at.name.split("-")[1])
    trained = [int(line.split("/")[0].removeprefix("[rl] step ")) for line in log.splitlines() if line.startswith("[rl] step ")]
    assert trained == list(range(resumed_at + 1, STEPS + 1))  # only the steps after the checkpoint were trained again

    # One W&B run id, one file per attempt. The second file holds the steps up to the checkpoint that the first one lost
    # (logged again from the checkpoint's history), then the steps trained after the checkpoint.
    files = wandb_files(run_dir, "rl")
    assert len(files) == 2 and files[0] == first_file
    second = read_wandb_file(files[1])
    assert steps_of(second.history) == list(range(min(max(kept, default=0), resumed_at) + 1, STEPS + 1))
    merged = train_rows(read_wandb_files(files).history)
    assert [row["_step"] for row in merged] == list(range(1, STEPS + 1))  # every step once: none missing, none twice
    recorded = train_rows(read_history(run_dir / "rl" / "history.jsonl"))  # rlft's own record: each step once too
    assert [row["_step"] for row in recorded] == list(range(1, STEPS + 1))
    assert [r["train/reward"] for r in recorded] == pytest.approx([r["train/reward"] for r in merged], abs=1e-5)

    # The resumed run is the uninterrupted one: the same numbers at every step, the same final weights.
    ref_rows = train_rows(read_wandb_file(wandb_files(ref_dir, "rl")[0]).history)
    for got, want in zip(merged, ref_rows, strict=True):
        for key in ("train/reward", "train/kl", "train/ppo/policy_loss"):
            assert got[key] == pytest.approx(want[key], abs=1e-5), (got["_step"], key)
    ref_w, got_w = load_file(ref_dir / "rl" / "model" / "model.safetensors"), load_file(run_dir / "rl" / "model" / "model.safetensors")
    diff = max((ref_w[k] - got_w[k]).abs().max().item() for k in ref_w)
    assert diff < 1e-5, diff
    assert not partial.exists() and not (run_dir / "rl" / "trainer").exists()  # checkpoints dropped once finished
    replayed = max(0, resumed_at - max(kept, default=0))
    print(f"killed after checkpoint-{resumed_at}; the killed file kept {len(kept)} steps; {replayed} replayed; max diff {diff:.1e}")
