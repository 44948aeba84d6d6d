"""Safe defaults: no secret in anything a run writes or prints; secrets stay out of recipes; only safetensors load."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml
from conftest import sum_rows, write_jsonl

from rlft.redact import is_secret_key, scrub, secret_paths

SECRETS = {"WANDB_API_KEY": "wandb-secret-7f3a9c", "HF_TOKEN": "hf_secretTokenQ42", "MY_SERVICE_PASSWORD": "hunter2-long"}


def test_no_secret_from_the_environment_reaches_outputs_or_logs(tiny_model, tmp_path):
    write_jsonl(tmp_path / "sft.jsonl", sum_rows(8))
    recipe = {
        "name": "safe",
        "model": str(tiny_model),
        "tracking": {"project": "rlft-test"},  # offline: W&B writes its config, summary and history to disk
        "stages": [
            {"name": "sft", "kind": "sft", "data": "sft.jsonl", "scorecard": {"prompts": 2, "max_new_tokens": 4}, "trl": {"max_steps": 1}},
            {"name": "eval", "kind": "eval", "data": "sft.jsonl", "rewards": [{"name": "math_accuracy"}], "max_new_tokens": 4},
        ],
    }
    (tmp_path / "safe.yaml").write_text(yaml.safe_dump(recipe))
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"} | SECRETS
    cmd = [sys.executable, "-m", "rlft.cli", "run", str(tmp_path / "safe.yaml"), "--run-id", "s", "--output-dir", str(tmp_path / "runs")]
    out = subprocess.run(cmd, capture_output=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    written = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in written) and any(p.name == "manifest.json" for p in written)
    for secret in SECRETS.values():
        assert secret.encode() not in out.stdout + out.stderr
        leaks = [str(p) for p in written if secret.encode() in p.read_bytes()]
        assert not leaks, f"{secret} written to {leaks}"


def test_secret_keys_in_a_recipe_are_found_and_scrubbed(monkeypatch):
    recipe = {"stages": [{"trl": {"hub_token": "hf_x", "learning_rate": 1e-5}}, {"rewards": [{"kwargs": {"api_key": "k", "n": 2}}]}]}
    assert secret_paths(recipe) == ["stages.0.trl.hub_token", "stages.1.rewards.0.kwargs.api_key"]
    assert secret_paths({"trl": {"hub_token": None, "push_to_hub": True}}) == []  # unset, or not a secret
    assert secret_paths({"trl": {"max_new_tokens": 9, "pad_token": "<pad>", "eos_token": "</s>"}, "scorecard": {"max_new_tokens": 4}}) == []
    assert [k for k in ("HF_TOKEN", "WANDB_API_KEY", "TOKENIZERS_PARALLELISM", "DB_PASSWORD") if is_secret_key(k)] == [
        "HF_TOKEN",
        "WANDB_API_KEY",
        "DB_PASSWORD",
    ]
    monkeypatch.setenv("SOME_API_KEY", "sk-verysecret")
    assert scrub("401 for key sk-verysecret") == "401 for key ***"
