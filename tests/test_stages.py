"""Stages on a tiny model, in-process: SFT learns, GRPO runs with rewards and logs per-reward means."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import sum_rows, write_jsonl

from rlft.recipe import recipe_from_dict
from rlft.stages.context import StageContext
from rlft.tracking import NullRun


def make_ctx(recipe, tmp_path: Path, stage: str) -> StageContext:
    out = tmp_path / f".{stage}.partial"
    out.mkdir(parents=True, exist_ok=True)
    return StageContext(recipe=recipe, run_id="t", run_dir=tmp_path, out_dir=out, recipe_dir=tmp_path, results={}, tracker=NullRun())


def assert_scorecard(m: dict, rewards: list[str], moved: bool = True) -> None:
    """The common held-out scorecard names every generating stage writes (rlft.evaluation.scorecard)."""
    for prefix in ("eval", "baseline"):
        assert m[f"{prefix}/mean_length"] >= 1, m
        for name in rewards:
            assert 0.0 <= m[f"{prefix}/reward/{name}"] <= 1.0, m
    for name in rewards:  # the paired difference on the same prompts, with its interval around it
        key = f"eval/delta/reward/{name}"
        assert m[key] == pytest.approx(m[f"eval/reward/{name}"] - m[f"baseline/reward/{name}"]), m
        assert m[f"{key}/ci_low"] <= m[key] <= m[f"{key}/ci_high"] and 0.0 <= m[f"{key}/p_value"] <= 1.0, m
        assert m[f"{key}/n"] >= 1, m
    if moved:  # the trained model moved away from the one it started from
        assert m["eval/kl_to_ref"] > 0.0, m
    else:
        assert m["eval/kl_to_ref"] >= 0.0, m


def load_weights(path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(path) / "model.safetensors"))


def test_sft_lowers_loss_and_changes_weights(tiny_model, tmp_path):
    from rlft.stages import sft

    write_jsonl(tmp_path / "train.jsonl", sum_rows(16))
    recipe = recipe_from_dict(
        {
            "name": "t",
            "model": str(tiny_model),
            "tracking": {"mode": "disabled"},
            "stages": [
                {
                    "name": "sft",
                    "kind": "sft",
                    "data": "train.jsonl",
                    "trl": {"max_steps": 12, "per_device_train_batch_size": 8, "learning_rate": 3e-3},
                }
            ],
        }
    )
    ctx = make_ctx(recipe, tmp_path, "sft")
    result = sft.run(recipe.stage("sft"), ctx)

    before, after = load_weights(tiny_model), load_weights(result.model_path)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) == len(before), f"unchanged: {set(before) - set(changed)}"
    assert result.metrics["train/steps"] == 12
    assert result.metrics["train/loss"] < 0.8 * result.metrics["train/first_loss"], result.metrics
    assert result.metrics["params/trainable"] == result.metrics["params/total"]  # full fine-tuning
    assert ctx.notes.data["rows"] == 14 and ctx.notes.data["held_out_rows"] == 2  # eval_fraction 0.1
    m = result.metrics
    assert m["eval/loss"] < m["baseline/loss"] and m["eval/accuracy"] > m["baseline/accuracy"], m
    assert_scorecard(m, rewards=[])


def test_sft_lora_loss_falls(tiny_model, tmp_path):
    from rlft.stages import sft

    write_jsonl(tmp_path / "train.jsonl", sum_rows(16))
    stage = {
        "name": "sft",
        "kind": "sft",
        "data": "train.jsonl",
        "peft": {"lora": {"r": 8, "alpha": 16, "dropout": 0.0}},
        "trl": {"max_steps": 10, "per_device_train_batch_size": 8, "learning_rate": 1e-2},
    }
    recipe = recipe_from_dict({"name": "t", "model": str(tiny_model), "stages": [stage]})
    result = sft.run(recipe.stage("sft"), make_ctx(recipe, tmp_path, "sft"))
    m = result.metrics
    assert m["params/trainable"] < m["params/total"] / 2
    assert m["train/loss"] < m["train/first_loss"], m
    # LoRA is merged into plain weights: the targeted projections moved, the embeddings did not.
    before, after = load_weights(tiny_model), load_weights(result.model_path)
    assert before.keys() == after.keys()
    assert torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])
    assert not torch.equal(before["model.layers.0.self_attn.q_proj.weight"], after["model.layers.0.self_attn.q_proj.weight"])


def test_grpo_step_logs_per_reward_means(tiny_model, tmp_path):
    from rlft.stages import grpo

    write_jsonl(tmp_path / "prompts.jsonl", sum_rows(8, with_completion=False))
    (tmp_path / "one.py").write_text("def always_one(prompts, completions, **kw):\n    return [1.0] * len(completions)\n")
    recipe = recipe_from_dict(
        {
            "name": "t",
            "model": str(tiny_model),
            "stages": [
                {
                    "name": "rl",
                    "kind": "grpo",
                    "data": "prompts.jsonl",
                    "rewards": [
                        {"name": "math_accuracy"},
                        {"name": "answer_format", "weight": 0.5},
                        {"name": f"{tmp_path}/one.py:always_one", "weight": 0.25},
                    ],
                    "trl": {
                        "max_steps": 2,
                        "num_generations": 4,
                        "per_device_train_batch_size": 4,
                        "gradient_accumulation_steps": 2,
                        "max_completion_length": 8,
                        "learning_rate": 1e-3,
                    },
                }
            ],
        }
    )
    ctx = make_ctx(recipe, tmp_path, "rl")
    result = grpo.run(recipe.stage("rl"), ctx)
    m = result.metrics
    assert m["train/steps"] == 2
    # The random tiny model scores 0 everywhere: every group is silent, so of each step's two micro-batches
    # the one that generates runs and the other is skipped.
    assert m["train/rewards/math_accuracy/mean"] == 0.0 and m["train/rewards/answer_format/mean"] == 0.0
    assert m["train/silent_groups/frac_microbatches_skipped"] == 0.5
    assert m["train/prompt_sharing"] == 1.0  # each distinct prompt ran once per micro-batch (rlft.training.shared_prefix)
    # The logged reward is the weighted sum of the per-reward means: 1 x 0 + 0.5 x 0 + 0.25 x 1.
    assert m["train/rewards/always_one/mean"] == 1.0 and m["train/reward"] == pytest.approx(0.25)
    assert_scorecard(m, rewards=["math_accuracy", "answer_format"])
    assert (ctx.out_dir / "samples.jsonl").exists()
    assert load_weights(result.model_path).keys() == load_weights(tiny_model).keys()


@pytest.mark.parametrize("kind", ["grpo", "ppo", "eval"])
def test_reward_missing_its_column_is_named_before_training(tiny_model, tmp_path, kind):
    from rlft import stages
    from rlft.errors import RlftError

    write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"{i}+1="} for i in range(8)])  # no answer column
    stage = {"name": "s", "kind": kind, "data": "prompts.jsonl", "rewards": [{"name": "math_accuracy"}]}
    recipe = recipe_from_dict({"name": "t", "model": str(tiny_model), "tracking": {"mode": "disabled"}, "stages": [stage]})
    ctx = make_ctx(recipe, tmp_path, "s")
    with pytest.raises(RlftError) as info:
        stages.get(kind).run(recipe.stage("s"), ctx)
    assert "math_accuracy needs column(s) ['answer']" in info.value.what and info.value.where == "stages.s.rewards"
    assert ctx.notes.start_model is None  # no model was loaded


def test_progress_line_names_ensemble_members(capsys):
    from types import SimpleNamespace

    from rlft.stages.progress import progress_callback

    cb = progress_callback("rl")
    state = SimpleNamespace(global_step=1, max_steps=3)
    cb.on_train_begin(None, state, None)
    logs = {"reward": 0.5, "rewards/mean(rm,len)/mean": 0.5, "rewards/mean(rm,len)/rm/mean": 0.25, "rewards/mean(rm,len)/len/mean": 1.0}
    cb.on_log(None, state, None, logs=logs)
    line = capsys.readouterr().out
    assert line.startswith("[rl] step 1/3") and "mean(rm,len) 0.5 · rm 0.25 · len 1" in line


def test_stage_notes_are_typed_and_never_overwrite_a_manifest_key():
    from dataclasses import fields

    from rlft.pipeline.runner import MANIFEST_KEYS
    from rlft.stages.context import StageNotes

    notes = StageNotes()
    assert not {f.name for f in fields(StageNotes)} & set(MANIFEST_KEYS)
    with pytest.raises(AttributeError):
        notes.dat = {"train": "x"}  # a misspelt note fails instead of landing in the manifest
    notes.data, notes.rows_over_max_length = {"train": "bundled:x[train]"}, 0
    assert notes.to_manifest() == {"data": {"train": "bundled:x[train]"}, "rows_over_max_length": 0}
