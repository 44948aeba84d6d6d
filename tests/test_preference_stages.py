"""DPO, KTO and RLOO stages on a tiny model: each learns (or runs) and reports held-out metrics."""

from __future__ import annotations

import math

import pytest
from conftest import sum_rows, write_jsonl
from test_reward_models import separable_pairs
from test_stages import assert_scorecard, make_ctx

from rlft.recipe import recipe_from_dict


def _recipe(tiny_model, stage: dict):
    return recipe_from_dict({"name": "t", "model": str(tiny_model), "stages": [stage]})


def against_the_grain(n: int) -> list[dict]:
    """Separable pairs whose chosen side the untrained tiny model likes less ('no' over 'yes')."""
    return [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in separable_pairs(n)]


def test_dpo_raises_held_out_accuracy_over_the_starting_model(tiny_model, tmp_path):
    from rlft.stages import dpo

    write_jsonl(tmp_path / "pairs.jsonl", against_the_grain(40))
    stage = {
        "name": "dpo",
        "kind": "dpo",
        "data": "pairs.jsonl",
        "eval_fraction": 0.2,
        "trl": {"max_steps": 15, "per_device_train_batch_size": 8, "learning_rate": 5e-3, "beta": 0.1},
    }
    recipe = _recipe(tiny_model, stage)
    result = dpo.run(recipe.stage("dpo"), make_ctx(recipe, tmp_path, "dpo"))
    m = result.metrics
    assert m["eval/n_pairs"] == 8
    assert m["eval/implicit_accuracy"] >= 0.75, m
    # the fair "before": the starting model's own preference (mean token log-prob), not the all-ties implicit reward
    assert m["baseline/accuracy"] <= 0.5 <= 0.75 <= m["eval/accuracy"], m
    # the gain, paired over the same 8 held-out pairs, with its bootstrap interval
    assert m["eval/delta/accuracy"] == pytest.approx(m["eval/accuracy"] - m["baseline/accuracy"]) and m["eval/delta/accuracy/n"] == 8
    assert m["eval/delta/accuracy/ci_low"] <= m["eval/delta/accuracy"] <= m["eval/delta/accuracy/ci_high"], m
    # policy == reference at the start: the sigmoid loss is ln 2 by construction, so it is not measured before
    assert m["eval/loss"] < math.log(2) and "baseline/loss" not in m, m
    assert m["eval/kl_to_ref"] > 0.0 and "baseline/kl_to_ref" not in m, m
    assert m["eval/mean_length"] >= 1 and m["baseline/mean_length"] >= 1, m
    assert m["train/loss"] < m["train/first_loss"], m


def test_dpo_combined_losses_with_lora(tiny_model, tmp_path, monkeypatch):
    import trl

    from rlft.stages import dpo

    seen = {}

    class Recording(trl.DPOTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen["loss_type"], seen["loss_weights"] = self.args.loss_type, self.args.loss_weights

    monkeypatch.setattr(trl, "DPOTrainer", Recording)

    write_jsonl(tmp_path / "pairs.jsonl", separable_pairs(16))
    stage = {
        "name": "dpo",
        "kind": "dpo",
        "data": "pairs.jsonl",
        "eval_fraction": 0.25,
        "peft": {"lora": {"r": 4}},
        "trl": {"max_steps": 2, "per_device_train_batch_size": 4, "loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]},
    }
    recipe = _recipe(tiny_model, stage)
    result = dpo.run(recipe.stage("dpo"), make_ctx(recipe, tmp_path, "dpo"))
    assert result.metrics["params/trainable"] < result.metrics["params/total"]
    assert result.metrics["train/steps"] == 2
    assert seen == {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]}  # what the trainer trained with


def test_kto_unpairs_preference_data_and_trains(tiny_model, tmp_path):
    from rlft.stages import kto

    write_jsonl(tmp_path / "pairs.jsonl", separable_pairs(20))
    stage = {
        "name": "kto",
        "kind": "kto",
        "data": "pairs.jsonl",
        "eval_fraction": 0.2,
        "trl": {"max_steps": 10, "per_device_train_batch_size": 8, "learning_rate": 5e-3},
    }
    recipe = _recipe(tiny_model, stage)
    ctx = make_ctx(recipe, tmp_path, "kto")
    result = kto.run(recipe.stage("kto"), ctx)
    assert result.metrics["eval/n_rows"] == 8  # 4 held-out pairs -> 4 desirable + 4 undesirable rows
    # the loss starts at 0.5 by construction (policy = reference), so it is not evaluated before training
    assert result.metrics["eval/loss"] < 0.5 and "baseline/loss" not in result.metrics, result.metrics
    assert 0.0 <= result.metrics["eval/accuracy"] <= 1.0  # held-out pairs kept paired for the scorecard
    assert_scorecard(result.metrics, rewards=[])


def test_rloo_runs_with_the_grpo_reward_references(tiny_model, tmp_path):
    from rlft.stages import rloo

    write_jsonl(tmp_path / "prompts.jsonl", sum_rows(8, with_completion=False))
    stage = {
        "name": "rl",
        "kind": "rloo",
        "data": "prompts.jsonl",
        "rewards": [{"name": "math_accuracy"}, {"name": "answer_format"}],
        "trl": {"max_steps": 1, "num_generations": 4, "per_device_train_batch_size": 8, "max_completion_length": 6, "learning_rate": 1e-3},
    }
    recipe = _recipe(tiny_model, stage)
    result = rloo.run(recipe.stage("rl"), make_ctx(recipe, tmp_path, "rl"))
    assert "train/rewards/math_accuracy/mean" in result.metrics and "train/rewards/answer_format/mean" in result.metrics
    # the untrained tiny model scores 0 on every completion: no advantage, no update, so KL may stay 0
    assert_scorecard(result.metrics, rewards=["math_accuracy", "answer_format"], moved=False)


@pytest.mark.parametrize("kind", ["orpo", "simpo"])
def test_experimental_preference_stages_learn_against_the_grain(tiny_model, tmp_path, kind):
    from rlft import stages

    write_jsonl(tmp_path / "pairs.jsonl", against_the_grain(40))
    stage = {
        "name": kind,
        "kind": kind,
        "data": "pairs.jsonl",
        "eval_fraction": 0.2,
        "trl": {"max_steps": 15, "per_device_train_batch_size": 8, "learning_rate": 5e-3},
    }
    recipe = _recipe(tiny_model, stage)
    result = stages.get(kind).run(recipe.stage(kind), make_ctx(recipe, tmp_path, kind))
    m = result.metrics
    assert m["baseline/accuracy"] <= 0.5 <= 0.75 <= m["eval/accuracy"], m
    assert m["eval/loss"] < m["baseline/loss"], m
    assert_scorecard(m, rewards=[])
