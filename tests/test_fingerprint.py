"""Stage caching by fingerprint: what reruns after an edit (the stage and what depends on it, nothing upstream), and why."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import sum_rows, write_jsonl

from rlft.pipeline import fingerprint
from rlft.pipeline import run as pipeline_run
from rlft.pipeline.fingerprint import explain, fingerprints, store
from rlft.pipeline.run import plan_status, run_pipeline
from rlft.recipe import load_recipe

REWARD = "def polite(prompts, completions, **kw):\n    return [1.0 if 'please' in str(c) else 0.0 for c in completions]\n"


def write_recipe(tmp: Path, tiny_model: Path) -> Path:
    write_jsonl(tmp / "sft.jsonl", sum_rows(8))
    write_jsonl(tmp / "prompts.jsonl", sum_rows(8, with_completion=False))
    write_jsonl(tmp / "pairs.jsonl", [{"prompt": "2+2?", "chosen": "4", "rejected": "5"}] * 4)
    (tmp / "my_rewards.py").write_text(REWARD)
    spec = {
        "name": "fp",
        "model": str(tiny_model),
        "stages": [
            {"name": "sft", "kind": "sft", "data": "sft.jsonl"},
            {"name": "rm", "kind": "reward_model", "data": "pairs.jsonl"},  # independent of sft
            {
                "name": "rl",
                "kind": "grpo",
                "init_from": "sft",
                "data": "prompts.jsonl",
                "rewards": [{"name": "./my_rewards.py:polite"}, {"model": "rm"}],
            },
            {"name": "eval", "kind": "eval", "data": "prompts.jsonl", "rewards": [{"name": "math_accuracy"}]},  # scores rl by default
        ],
    }
    path = tmp / "fp.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def pretend_finished(run_dir: Path, recipe, source: Path) -> None:
    """Stage folders as a finished run leaves them (manifest + stored fingerprint), without training."""
    for name, fp in fingerprints(recipe, source.parent).items():
        folder = run_dir / name
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps({"result": {"name": name, "kind": "?", "status": "done"}}))
        store(folder, fp)


def would(run_dir: Path, path: Path, overrides=()) -> dict[str, tuple[str, str]]:
    return {name: (what, why) for name, what, why in plan_status(load_recipe(path, list(overrides)), str(path), run_dir)}


@pytest.fixture
def finished(tiny_model, tmp_path):
    path = write_recipe(tmp_path, tiny_model)
    run_dir = tmp_path / "runs" / "r"
    pretend_finished(run_dir, load_recipe(path), path)
    return path, run_dir


def test_unchanged_recipe_is_all_cached(finished):
    path, run_dir = finished
    assert {n: w for n, (w, _) in would(run_dir, path).items()} == dict.fromkeys(["sft", "rm", "rl", "eval"], "cached")


def test_editing_a_stage_reruns_it_and_its_dependents_only(finished):
    path, run_dir = finished
    got = would(run_dir, path, ["stages.sft.trl.learning_rate=1e-3"])
    assert got["sft"] == ("runs", "config changed: trl.learning_rate (absent) -> 0.001")
    assert got["rm"][0] == "cached"  # independent of sft
    assert got["rl"] == ("runs", "upstream stage sft changed")
    assert got["eval"] == ("runs", "upstream stage rl changed")  # eval scores the last model-making stage
    got = would(run_dir, path, ["stages.rm.trl.learning_rate=1e-3"])
    assert [got[n][0] for n in ("sft", "rm", "rl", "eval")] == ["cached", "runs", "runs", "runs"]  # rl scores with rm
    assert got["rl"][1] == "upstream stage rm changed"


def test_data_and_reward_code_content_count(finished):
    path, run_dir = finished
    write_jsonl(path.parent / "prompts.jsonl", sum_rows(9, with_completion=False))  # same name, new content
    got = would(run_dir, path)
    assert got["sft"][0] == "cached" and got["rm"][0] == "cached"
    assert got["rl"] == ("runs", "data changed: data")
    assert got["eval"][0] == "runs" and "data changed: data" in got["eval"][1] and "upstream stage rl changed" in got["eval"][1]

    write_jsonl(path.parent / "prompts.jsonl", sum_rows(8, with_completion=False))  # back as it was
    assert would(run_dir, path)["rl"][0] == "cached"
    (path.parent / "my_rewards.py").write_text(REWARD.replace("please", "thank you"))
    assert would(run_dir, path)["rl"] == ("runs", "code changed: ./my_rewards.py:polite")


def test_new_library_versions_rerun_everything(finished, monkeypatch):
    path, run_dir = finished
    real = fingerprint.versions()
    monkeypatch.setattr(fingerprint, "versions", lambda: {**real, "trl": "9.9.9"})
    got = would(run_dir, path)
    assert all(what == "runs" for what, _ in got.values())
    assert got["sft"][1] == f"versions changed: trl {real['trl']} -> 9.9.9"


def test_interrupted_stage_resumes_and_plan_says_so(finished):
    path, run_dir = finished
    recipe = load_recipe(path, ["stages.rl.trl.max_steps=7"])
    partial = run_dir / ".rl.partial"
    (partial / "trainer" / "checkpoint-4").mkdir(parents=True)
    (partial / "trainer" / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (partial / "trainer" / "checkpoint-6").mkdir()  # no trainer_state.json: cut off while saving
    store(partial, fingerprints(recipe, path.parent)["rl"])
    got = would(run_dir, path, ["stages.rl.trl.max_steps=7"])
    assert got["rl"] == ("resumes", "from checkpoint-4 of an interrupted attempt")
    assert would(run_dir, path, ["stages.rl.trl.max_steps=8"])["rl"][0] == "runs"  # another config: no resume


def test_plan_command_prints_what_would_happen(finished):
    path, run_dir = finished
    out = subprocess.run(
        [sys.executable, "-m", "rlft.cli", "plan", str(path), "stages.rm.seed=9", "--run-id", "r", "--output-dir", str(run_dir.parent)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stderr
    lines = {line.split("│")[1].strip(): line for line in out.stdout.splitlines() if line.count("│") >= 3}
    assert "reuse" in lines["sft"] and "run" in lines["rm"] and "config changed: seed null -> 9" in lines["rm"]
    assert "upstream stage rm changed" in lines["rl"]


def test_a_new_key_from_a_newer_rlft_is_named():
    old = fingerprint.Fingerprint(parts={"config": "a"}, detail={"stage": {"lr": 1}, "shared": {}})
    new = fingerprint.Fingerprint(parts={"config": "b"}, detail={"stage": {"lr": 1, "augment": None}, "shared": {}})
    stored_old = {"digest": old.digest, "parts": old.parts, "detail": old.detail}
    assert explain(stored_old, new) == "config changed: augment (absent) -> null"


def test_explain_without_a_stored_fingerprint():
    fp = fingerprint.Fingerprint(parts={"config": "a"}, detail={})
    assert explain(None, fp) == "not run yet" and explain({"digest": fp.digest}, fp) == ""


@pytest.mark.parametrize("key", ["model", "seed", "trust_remote_code", "launch"])
def test_a_recipe_wide_key_changes_every_stage(finished, tiny_model, tmp_path, key):
    path, run_dir = finished
    recipe = load_recipe(path)
    other = shutil.copytree(tiny_model, tmp_path / "other-model")  # the same files, in another folder
    override, shown = {
        "model": (f"model={other}", f'shared.model "{tiny_model}" -> "{other}"'),
        "seed": (f"seed={recipe.seed + 1}", f"shared.seed {recipe.seed} -> {recipe.seed + 1}"),
        "trust_remote_code": ("trust_remote_code=true", "shared.trust_remote_code false -> true"),
        "launch": ("launch.num_processes=2", "shared.launch.num_processes null -> 2"),
    }[key]
    before, after = fingerprints(recipe, path.parent), fingerprints(load_recipe(path, [override]), path.parent)
    for name in ("sft", "rm", "rl", "eval"):  # in every stage's own config part, not only through upstream or model
        assert after[name].parts["config"] != before[name].parts["config"], name
        assert after[name].digest != before[name].digest, name
    got = would(run_dir, path, [override])
    for name in ("sft", "rm", "rl", "eval"):
        assert got[name][0] == "runs" and f"config changed: {shown}" in got[name][1], (name, got[name])


def test_editing_the_base_model_folder_reruns_what_starts_from_it(tiny_model, tmp_path):
    base = shutil.copytree(tiny_model, tmp_path / "base")
    long_ago = time.time() - 86400  # files from a download yesterday: an edit today is never in the same second
    for f in base.iterdir():
        os.utime(f, (long_ago, long_ago))
    path = write_recipe(tmp_path, base)
    run_dir = tmp_path / "runs" / "r"
    pretend_finished(run_dir, load_recipe(path), path)
    assert {n: w for n, (w, _) in would(run_dir, path).items()} == dict.fromkeys(["sft", "rm", "rl", "eval"], "cached")

    weights = base / "model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))  # one byte of a weight: same size, new mtime
    got = would(run_dir, path)
    assert got["sft"] == got["rm"] == ("runs", "the starting model changed")
    assert got["rl"] == ("runs", "upstream stage sft, rm changed")  # rl starts from sft, not the base folder
    assert got["eval"][0] == "runs"

    weights.write_bytes(original)
    os.utime(weights, (long_ago, long_ago))
    assert would(run_dir, path)["sft"][0] == "cached"  # as it was: the same fingerprint again

    # small files count by content: an edit that keeps the size and the second of modification still counts
    for name, old, new in [
        ("config.json", '"rms_norm_eps": 1e-06', '"rms_norm_eps": 2e-06'),
        ("chat_template.jinja", "<|im_start|>", "<|im_START|>"),
    ]:
        text = (base / name).read_text()
        assert old in text
        (base / name).write_text(text.replace(old, new))
        os.utime(base / name, (long_ago, long_ago))
        assert would(run_dir, path)["sft"] == ("runs", "the starting model changed"), name
        (base / name).write_text(text)
        os.utime(base / name, (long_ago, long_ago))
        assert would(run_dir, path)["sft"][0] == "cached", name


def test_a_failed_stage_is_never_reused(finished, monkeypatch):
    path, run_dir = finished
    recipe = load_recipe(path)
    # what a stage that failed a check its recipe set leaves: its folder, the matching fingerprint, status failed
    (run_dir / "rm" / "manifest.json").write_text(json.dumps({"result": {"name": "rm", "kind": "reward_model", "status": "failed"}}))
    assert fingerprint.stored(run_dir / "rm")["digest"] == fingerprints(recipe, path.parent)["rm"].digest
    got = would(run_dir, path)
    assert got["rm"] == ("runs", "its last attempt did not finish")
    assert got["sft"][0] == "cached"

    launched = []  # the pipeline itself: it launches rm again (the launch fails here: no training in this test)
    fake = SimpleNamespace(run=lambda cmd, **kw: launched.append(cmd) or subprocess.CompletedProcess(cmd, 1))
    monkeypatch.setattr(pipeline_run, "subprocess", fake)
    summary = run_pipeline(recipe, source=str(path), run_id=run_dir.name, output_dir=str(run_dir.parent))
    assert [cmd[-1] for cmd in launched] == ["rm"]
    assert [(s["name"], s["status"]) for s in summary["stages"]] == [
        ("sft", "cached"),
        ("rm", "failed"),
        ("rl", "not run"),
        ("eval", "not run"),
    ]
