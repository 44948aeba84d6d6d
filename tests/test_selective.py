"""Selective fine-tuning (``freeze:``) on the tiny model: frozen weights stay bit-identical, the rest moves, counts are honest."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import sum_rows, write_jsonl
from test_reward_models import separable_pairs
from test_stages import load_weights, make_ctx

from rlft.errors import RecipeError, RlftError
from rlft.recipe import recipe_from_dict
from rlft.stages import progress
from rlft.tracking import NullRun

QUIET = {"scorecard": {"prompts": 0, "baseline": False}}  # no generation: these tests are about weights


class SummaryRun(NullRun):
    """A tracker keeping what the stage puts in the W&B summary."""

    def __init__(self):
        self.summary: dict = {}

    def summary_update(self, values: dict) -> None:
        self.summary.update(values)


class Seen:
    """What the trainer holds when training begins (recorded through rlft's progress callback)."""

    model = None
    args = None
    optimizer = None
    start: dict[str, torch.Tensor]  # the weights as training begins, by parameter name
    trainable: dict[str, int]  # parameters with requires_grad as training begins: name -> numel
    config: dict  # the model config as training begins
    lrs: dict[int, float]


@pytest.fixture
def seen(monkeypatch) -> Seen:
    return record_training(monkeypatch)


def record_training(monkeypatch) -> Seen:
    """Record the trainer's model, arguments, optimizer and logged learning rates of the stage run next."""
    from transformers import TrainerCallback

    record = Seen()
    record.lrs = {}

    class Recording(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
            record.args, record.model, record.optimizer = args, model, optimizer
            record.start = {n: p.detach().clone() for n, p in model.named_parameters()}
            record.trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
            record.config = model.config.to_dict()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "learning_rate" in logs:
                record.lrs[state.global_step] = logs["learning_rate"]

    monkeypatch.setattr(progress, "progress_callback", lambda stage_name: Recording())
    return record


def run_stage(tiny_model, tmp_path, stage: dict):
    """Run one stage in-process; return (result, ctx)."""
    from rlft.stages import get

    recipe = recipe_from_dict({"name": "t", "model": str(tiny_model), "stages": [{**QUIET, **stage}]})
    ctx = make_ctx(recipe, tmp_path, stage["name"])
    ctx.tracker = SummaryRun()
    return get(stage["kind"]).run(recipe.stage(stage["name"]), ctx), ctx


def assert_frozen_exactly(start: dict, after: dict, frozen) -> None:
    """Every weight ``frozen(name)`` names is bit-identical after training; every other one moved."""
    assert start.keys() <= after.keys()
    fixed = [k for k in start if frozen(k)]
    assert fixed, "the mode froze nothing this test can see"
    for name in start:
        same = torch.equal(start[name], after[name])
        assert same == frozen(name), f"{name}: {'unchanged' if same else 'changed'}, but frozen={frozen(name)}"


def embedding(name: str) -> bool:
    return name == "model.embed_tokens.weight"  # the tiny model ties lm_head to it


def block(i: int):
    return lambda name: name.startswith(f"model.layers.{i}.")


ONLY = [r"layers\.1\.mlp\.", r"^model\.norm\."]
SFT_MODES = {
    "embeddings": ({"embeddings": True}, embedding, ["embeddings (with the output head tied to them)"]),
    "bottom_blocks": ({"bottom_blocks": 1}, block(0), ["blocks 0-0 of 2 (model.layers)"]),
    "top_blocks_only": (
        {"top_blocks_only": 1},
        lambda n: embedding(n) or block(0)(n),
        ["embeddings (with the output head tied to them)", "blocks 0-0 of 2 (model.layers)"],
    ),
    "only": ({"only": ONLY}, lambda n: not any(re.search(p, n) for p in ONLY), [f"every parameter not matching {ONLY[0]!r}, {ONLY[1]!r}"]),
}


@pytest.mark.parametrize("mode", list(SFT_MODES))
def test_sft_freezing_keeps_frozen_weights_bit_identical(tiny_model, tmp_path, seen, mode):
    spec, frozen, groups = SFT_MODES[mode]
    write_jsonl(tmp_path / "train.jsonl", sum_rows(16))
    stage = {
        "name": "sft",
        "kind": "sft",
        "data": "train.jsonl",
        "freeze": spec,
        # weight decay would move a frozen weight the optimizer wrongly held
        "trl": {"max_steps": 3, "per_device_train_batch_size": 8, "learning_rate": 1e-2, "weight_decay": 0.1},
    }
    result, ctx = run_stage(tiny_model, tmp_path, stage)

    assert_frozen_exactly(load_weights(tiny_model), load_weights(result.model_path), frozen)
    m = result.metrics
    start = load_weights(tiny_model)
    assert m["params/total"] == sum(t.numel() for t in start.values())
    assert m["params/trainable"] == sum(t.numel() for k, t in start.items() if not frozen(k)) == sum(seen.trainable.values())
    optimised = {id(p) for group in seen.optimizer.param_groups for p in group["params"]}
    assert all(p.requires_grad for p in seen.model.parameters() if id(p) in optimised)  # the optimizer holds no frozen weight
    note = ctx.notes.freeze
    assert note["frozen"] == groups and note["params"]["trainable"] == m["params/trainable"]
    assert ctx.tracker.summary["freeze/frozen"] == "; ".join(groups)


def test_lora_with_top_blocks_only_puts_adapters_on_the_top_block_only(tiny_model, tmp_path, seen):
    write_jsonl(tmp_path / "train.jsonl", sum_rows(16))
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    stage = {
        "name": "sft",
        "kind": "sft",
        "data": "train.jsonl",
        "peft": {"lora": lora},
        "freeze": {"top_blocks_only": 1},
        "trl": {"max_steps": 3, "per_device_train_batch_size": 8, "learning_rate": 1e-2},
    }
    result, ctx = run_stage(tiny_model, tmp_path, stage)

    config = seen.model.peft_config["default"]  # all four LoRA keys reach peft
    assert (config.r, config.lora_alpha, config.lora_dropout, set(config.target_modules)) == (4, 8, 0.0, {"q_proj", "v_proj"})
    assert config.exclude_modules == r"model\.layers\.(?:0)\..*"
    adapted = {n.split(".lora_")[0].removeprefix("base_model.model.") for n in seen.trainable}
    assert adapted == {"model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"}
    assert (
        result.metrics["params/trainable"] == sum(seen.trainable.values()) == 4 * (32 + 32) + 4 * (32 + 16)
    )  # r * (in + out): q 32->32, v 32->16

    moved = {"model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.v_proj.weight"}
    assert_frozen_exactly(load_weights(tiny_model), load_weights(result.model_path), lambda n: n not in moved)
    assert ctx.notes.freeze["frozen"] == ["blocks 0-0 of 2 (model.layers): no LoRA adapters"]


def test_dpo_with_frozen_embeddings_and_bottom_block(tiny_model, tmp_path, seen):
    write_jsonl(tmp_path / "pairs.jsonl", separable_pairs(16))
    stage = {
        "name": "dpo",
        "kind": "dpo",
        "data": "pairs.jsonl",
        "eval_fraction": 0.25,
        "freeze": {"embeddings": True, "bottom_blocks": 1},
        "trl": {"max_steps": 2, "per_device_train_batch_size": 4, "learning_rate": 1e-2},
    }
    result, _ = run_stage(tiny_model, tmp_path, stage)
    assert_frozen_exactly(load_weights(tiny_model), load_weights(result.model_path), lambda n: embedding(n) or block(0)(n))
    assert result.metrics["params/trainable"] == sum(seen.trainable.values()) < result.metrics["params/total"]


def test_reward_model_top_block_trains_with_its_new_head(tiny_model, tmp_path, seen):
    write_jsonl(tmp_path / "pairs.jsonl", separable_pairs(16))
    stage = {
        "name": "rm",
        "kind": "reward_model",
        "data": "pairs.jsonl",
        "eval_fraction": 0.25,
        "freeze": {"top_blocks_only": 1},
        "trl": {"max_steps": 2, "per_device_train_batch_size": 4, "learning_rate": 1e-2},
    }
    result, ctx = run_stage(tiny_model, tmp_path, stage)
    after = load_weights(result.model_path)
    assert not torch.equal(seen.start["score.weight"], after["score.weight"])  # the new head lies above the blocks: it trains
    start = load_weights(tiny_model)
    assert_frozen_exactly(start, {k: after[k] for k in start}, lambda n: embedding(n) or block(0)(n))
    assert result.metrics["params/trainable"] == sum(seen.trainable.values())
    assert ctx.notes.freeze["blocks"] == {"path": "model.layers", "count": 2, "trained": [1]}


def test_grpo_trains_only_named_parameters(tiny_model, tmp_path, seen):
    from test_ppo import DIGITS_REWARD

    write_jsonl(tmp_path / "prompts.jsonl", sum_rows(8, with_completion=False))
    (tmp_path / "toy_rewards.py").write_text(DIGITS_REWARD)  # a graded reward: the group advantages are not all zero
    stage = {
        "name": "rl",
        "kind": "grpo",
        "data": "prompts.jsonl",
        "rewards": [{"name": "./toy_rewards.py:digit_fraction"}],
        "freeze": {"only": [r"layers\.1\."]},
        "trl": {
            "max_steps": 1,
            "num_generations": 4,
            "per_device_train_batch_size": 8,
            "max_completion_length": 6,
            "learning_rate": 1e-2,
        },
    }
    result, _ = run_stage(tiny_model, tmp_path, stage)
    start = load_weights(tiny_model)
    assert_frozen_exactly(start, load_weights(result.model_path), lambda n: not block(1)(n))
    assert result.metrics["params/trainable"] == sum(seen.trainable.values()) == sum(t.numel() for k, t in start.items() if block(1)(k))


def test_ppo_policy_freezing(tiny_model, tmp_path):
    from test_ppo import ppo_recipe

    from rlft.stages import ppo

    trl = {"max_steps": 1, "per_device_train_batch_size": 8, "max_completion_length": 6, "learning_rate": 1e-2, "num_ppo_epochs": 1}
    recipe = ppo_recipe(tiny_model, tmp_path, trl, freeze={"embeddings": True, "bottom_blocks": 1}, **QUIET)
    ctx = make_ctx(recipe, tmp_path, "rl")
    result = ppo.run(recipe.stage("rl"), ctx)
    start = load_weights(tiny_model)
    assert_frozen_exactly(start, load_weights(result.model_path), lambda n: embedding(n) or block(0)(n))
    assert result.metrics["params/trainable"] == sum(t.numel() for k, t in start.items() if not (embedding(k) or block(0)(k)))


def _problems(stage_extra: dict, kind: str = "sft") -> str:
    stage = {"name": "s", "kind": kind, "data": "x.jsonl", **stage_extra}
    if kind == "ppo":
        stage["rewards"] = [{"name": "answer_format"}]
    with pytest.raises(RecipeError) as err:
        recipe_from_dict({"name": "t", "model": "m", "stages": [stage]})
    return str(err.value)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"freeze": {"only": ["mlp"], "bottom_blocks": 1}}, ["freeze.only", "freeze.bottom_blocks"]),
        ({"freeze": {"only": ["mlp"], "embeddings": True}}, ["freeze.only", "freeze.embeddings"]),
        ({"freeze": {"bottom_blocks": 1, "top_blocks_only": 1}}, ["freeze.bottom_blocks", "freeze.top_blocks_only"]),
        ({"freeze": {}}, ["empty freeze: fixes nothing"]),
        ({"freeze": {"only": ["layers.(1"]}}, ["stages.s.freeze.only", "only[0]", "not a regular expression"]),
        ({"freeze": {"bottom_blocks": 0}}, ["stages.s.freeze.bottom_blocks"]),
        ({"freeze": {"bottom_block": 1}}, ["did you mean 'bottom_blocks'"]),
        ({"freeze": {"embeddings": True}, "peft": {"lora": {}}}, ["freeze.embeddings", "peft.lora"]),
        ({"freeze": {"only": ["mlp"]}, "peft": {"lora": {}}}, ["freeze.only", "peft.lora", "target_modules"]),
    ],
)
def test_contradictory_freeze_keys_are_refused_naming_them(extra, named):
    message = _problems(extra)
    for word in named:
        assert word in message, message


@pytest.mark.parametrize(
    ("freeze", "where", "says"),
    [
        ({"bottom_blocks": 2}, "stages.s.freeze.bottom_blocks", "the model has 2 blocks"),
        ({"top_blocks_only": 3}, "stages.s.freeze.top_blocks_only", "only 2 blocks"),
        ({"only": ["lm_head", "no_such_module"]}, "stages.s.freeze.only[1]", "'no_such_module' matches no parameter"),
    ],
)
def test_freeze_beyond_the_model_is_an_error_naming_the_key(tiny_model, freeze, where, says):
    from rlft.models import load_causal_lm
    from rlft.training.selective import apply_freeze

    stage = recipe_from_dict({"name": "t", "model": "m", "stages": [{"name": "s", "kind": "sft", "data": "x", "freeze": freeze}]}).stages[0]
    with pytest.raises(RlftError) as err:
        apply_freeze(load_causal_lm(str(tiny_model)), stage)
    assert err.value.where == where and says in err.value.what, err.value


def test_blocks_are_found_generically_or_named_missing():
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig

    from rlft.training.selective import find_blocks

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=3, n_embd=16, n_head=2, vocab_size=50, n_positions=32))
    path, blocks = find_blocks(gpt2)
    assert path == "transformer.h" and len(blocks) == 3

    class NoBlocks(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = LlamaConfig(num_hidden_layers=2)
            self.proj = torch.nn.Linear(4, 4)

    with pytest.raises(RlftError) as err:
        find_blocks(NoBlocks(), where="stages.s.freeze")
    assert "found no transformer blocks in NoBlocks" in err.value.what and "freeze.only" in err.value.fix


def test_gpt2_embeddings_include_learned_positions():
    from transformers import GPT2Config, GPT2LMHeadModel

    from rlft.training.selective import apply_freeze

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=50, n_positions=32))
    stage = recipe_from_dict(
        {"name": "t", "model": "m", "stages": [{"name": "s", "kind": "sft", "data": "x", "freeze": {"embeddings": True}}]}
    ).stages[0]
    apply_freeze(gpt2, stage)
    frozen = {n for n, p in gpt2.named_parameters() if not p.requires_grad}
    assert frozen == {"transformer.wte.weight", "transformer.wpe.weight"}


def test_classifier_freezing_and_dropout(tiny_model, tmp_path, seen):
    rows = [{"text": ("aaa " if i % 2 else "zzz ") + "xy" * (i % 3), "label": i % 2} for i in range(16)]
    write_jsonl(tmp_path / "train.jsonl", rows)
    stage = {
        "name": "clf",
        "kind": "classifier",
        "data": "train.jsonl",
        "eval_fraction": 0.25,
        "freeze": {"bottom_blocks": 1},
        "dropout": 0.1,
        "scorecard": {"baseline": False},
        "trl": {"max_steps": 2, "per_device_train_batch_size": 4, "learning_rate": 1e-2},
    }
    result, _ = run_stage(tiny_model, tmp_path, stage)
    start, after = load_weights(tiny_model), load_weights(result.model_path)
    assert_frozen_exactly(start, {k: after[k] for k in start}, block(0))
    assert not torch.equal(seen.start["score.weight"], after["score.weight"])
    assert result.metrics["params/trainable"] == sum(seen.trainable.values())
    assert seen.config["attention_dropout"] == 0.1


def test_pipeline_records_freezing_in_the_manifest_and_wandb(tiny_model, tmp_path):
    import json

    import yaml

    from rlft.pipeline.run import run_pipeline
    from rlft.recipe import load_recipe
    from rlft.wandb_files import read_wandb_file

    write_jsonl(tmp_path / "train.jsonl", sum_rows(16))
    stage = {
        **QUIET,
        "name": "sft",
        "kind": "sft",
        "data": "train.jsonl",
        "freeze": {"embeddings": True, "bottom_blocks": 1},
        "dropout": 0.1,
        "trl": {"max_steps": 1, "per_device_train_batch_size": 8},
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"name": "r", "model": str(tiny_model), "stages": [stage]}))
    summary = run_pipeline(load_recipe(path), source=str(path), run_id="f", output_dir=str(tmp_path / "runs"))
    assert summary["status"] == "done", summary

    manifest = json.loads((tmp_path / "runs" / "f" / "sft" / "manifest.json").read_text())
    frozen = ["embeddings (with the output head tied to them)", "blocks 0-0 of 2 (model.layers)"]
    assert manifest["freeze"]["frozen"] == frozen and manifest["freeze"]["blocks"]["trained"] == [1]
    assert manifest["freeze"]["params"]["trainable"] == manifest["result"]["metrics"]["params/trainable"]
    assert manifest["dropout"]["fields"] == ["attention_dropout"]
    (wandb_file,) = (tmp_path / "runs" / "f" / "wandb").glob("offline-run-*/run-*.wandb")
    run = read_wandb_file(wandb_file)
    assert run.summary["freeze/frozen"] == "; ".join(frozen)
    assert run.summary["params/trainable"] == manifest["freeze"]["params"]["trainable"] < run.summary["params/total"]
    assert run.config["stage"]["freeze"] == {"embeddings": True, "bottom_blocks": 1, "top_blocks_only": None, "only": None}
