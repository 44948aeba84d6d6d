"""Learning-rate schedules, weight decay, gradient clipping, KL coefficients and dropout reach training (docs/training_knobs.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import sum_rows, write_jsonl
from test_selective import Seen, record_training, run_stage

from rlft.errors import RecipeError, RlftError
from rlft.recipe import recipe_from_dict
from rlft.stages.trl_config import trl_config_for

LR, WARMUP, STEPS = 1e-3, 3, 12


def _linear(s):
    return s / WARMUP if s < WARMUP else (STEPS - s) / (STEPS - WARMUP)


def _cosine(s):
    return s / WARMUP if s < WARMUP else 0.5 * (1 + math.cos(math.pi * (s - WARMUP) / (STEPS - WARMUP)))


def _constant(s):
    return s / WARMUP if s < WARMUP else 1.0


def _inverse_sqrt(s):
    return s / WARMUP if s < WARMUP else math.sqrt(WARMUP / s)


SCHEDULES = {"linear": _linear, "cosine": _cosine, "constant_with_warmup": _constant, "inverse_sqrt": _inverse_sqrt}


@pytest.fixture
def seen(monkeypatch) -> Seen:
    return record_training(monkeypatch)


def sft_stage(trl: dict, **extra) -> dict:
    return {
        "name": "sft",
        "kind": "sft",
        "data": "train.jsonl",
        "trl": {"per_device_train_batch_size": 4, "learning_rate": LR, **trl},
        **extra,
    }


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_logged_learning_rates_follow_the_schedule(tiny_model, tmp_path, seen, schedule):
    write_jsonl(tmp_path / "train.jsonl", sum_rows(16))
    # warmup as a share of the steps for one schedule (transformers 5: warmup_steps below 1 is a ratio), as a count for the others
    warmup = WARMUP / STEPS if schedule == "linear" else WARMUP
    run_stage(tiny_model, tmp_path, sft_stage({"max_steps": STEPS, "lr_scheduler_type": schedule, "warmup_steps": warmup}))

    # The Trainer logs at step s the rate that step used: the scheduler's after s - 1 steps.
    logged = [seen.lrs[s] / LR for s in range(1, STEPS + 1)]
    assert logged == pytest.approx([SCHEDULES[schedule](s - 1) for s in range(1, STEPS + 1)], abs=1e-6), logged
    assert logged[0] < logged[1] < logged[2] < logged[3] == pytest.approx(1.0)  # warmup rises from 0 to the peak
    after = logged[WARMUP:]  # steps WARMUP + 1 .. STEPS, i.e. scheduler steps WARMUP .. STEPS - 1
    if schedule == "constant_with_warmup":
        assert after == pytest.approx([1.0] * len(after))
    elif schedule == "inverse_sqrt":  # lr * sqrt(step) stays constant
        assert [v * math.sqrt(s) for s, v in zip(range(WARMUP, STEPS), after, strict=True)] == pytest.approx(
            [math.sqrt(WARMUP)] * len(after)
        )
    else:
        assert all(a > b for a, b in zip(after, after[1:], strict=False))
        assert after[-1] < (0.04 if schedule == "cosine" else 0.12)  # one step short of zero: cosine 0.03, linear 1/9


def test_weight_decay_and_clipping_reach_the_trainer_and_its_optimizer(tiny_model, tmp_path, seen):
    write_jsonl(tmp_path / "train.jsonl", sum_rows(16))
    run_stage(tiny_model, tmp_path, sft_stage({"max_steps": 1, "weight_decay": 0.05, "max_grad_norm": 0.5}))
    assert seen.args.weight_decay == 0.05 and seen.args.max_grad_norm == 0.5
    decays = {g["weight_decay"] for g in seen.optimizer.param_groups}
    assert decays == {0.05, 0.0}  # the Trainer exempts biases and norms from decay


def _stage(kind: str, **extra):
    stage = {"name": "s", "kind": kind, "data": "x.jsonl", **extra}
    if kind in ("grpo", "rloo", "ppo"):
        stage["rewards"] = [{"name": "answer_format"}]
    return recipe_from_dict({"name": "t", "model": "m", "stages": [stage]}).stages[0]


@pytest.mark.parametrize(
    ("kind", "trl", "field", "value"),
    [
        ("grpo", {"beta": 0.04}, "beta", 0.04),
        ("rloo", {"beta": 0.1}, "beta", 0.1),
        ("ppo", {"kl_coef": 0.2}, "kl_coef", 0.2),
        ("dpo", {"beta": 0.3}, "beta", 0.3),
        ("ppo", {"lr_scheduler_type": "cosine", "warmup_steps": 0.1, "weight_decay": 0.01}, "lr_scheduler_type", "cosine"),
    ],
)
def test_kl_coefficients_and_schedules_reach_every_config(kind, trl, field, value):
    assert getattr(trl_config_for(_stage(kind, trl=trl), "/tmp/rlft-knobs"), field) == value


def test_warmup_ratio_names_where_it_went():
    with pytest.raises(RlftError) as err:
        trl_config_for(_stage("sft", trl={"warmup_ratio": 0.1}), "/tmp/rlft-knobs")
    assert "warmup_steps: 0.1" in err.value.what and err.value.where == "stages.s.trl"


@pytest.mark.parametrize("peft", [None, {"lora": {"r": 2}}], ids=["full", "lora"])
def test_dropout_is_set_while_training_and_the_saved_model_keeps_its_own(tiny_model, tmp_path, seen, peft):
    write_jsonl(tmp_path / "train.jsonl", sum_rows(16))
    result, ctx = run_stage(tiny_model, tmp_path, sft_stage({"max_steps": 1}, dropout=0.1, peft=peft))
    assert seen.config["attention_dropout"] == 0.1
    rates = [m.attention_dropout for name, m in seen.model.named_modules() if name.endswith("self_attn")]
    assert rates == [0.1, 0.1]  # what the attention kernels use
    assert ctx.notes.dropout == {"p": 0.1, "fields": ["attention_dropout"], "start_values": {"attention_dropout": 0.0}}
    saved = json.loads((Path(result.model_path) / "config.json").read_text())
    assert saved["attention_dropout"] == 0.0  # a later stage does not inherit this stage's dropout


def test_dropout_fields_by_architecture_and_an_error_without_any():
    from transformers import GPT2Config, MambaConfig

    from rlft.training.selective import dropout_fields

    assert set(dropout_fields(GPT2Config())) == {"resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_first_dropout"}
    with pytest.raises(RlftError) as err:
        dropout_fields(MambaConfig(), where="stages.s.dropout")
    assert "'mamba' model config has no dropout field" in err.value.what and err.value.where == "stages.s.dropout"


@pytest.mark.parametrize("kind", ["dpo", "kto", "orpo", "simpo", "reward_model"])
def test_dropout_where_trl_turns_it_off_is_refused_unless_kept(kind):
    with pytest.raises(RlftError) as err:
        trl_config_for(_stage(kind, dropout=0.1), "/tmp/rlft-knobs")
    assert err.value.where == "stages.s.dropout" and "stages.s.trl.disable_dropout=false" in err.value.fix
    assert trl_config_for(_stage(kind, dropout=0.1, trl={"disable_dropout": False}), "/tmp/rlft-knobs").disable_dropout is False
    trl_config_for(_stage(kind, dropout=0.0), "/tmp/rlft-knobs")  # no dropout agrees with disable_dropout


def test_dropout_is_refused_for_ppo_which_turns_it_off():
    with pytest.raises(RecipeError) as err:
        _stage("ppo", dropout=0.1)
    assert "stages.s" in str(err.value) and "dropout does not apply to ppo" in str(err.value)
    _stage("ppo", dropout=0.0)


def test_ppo_turns_off_attention_dropout_rates_too():
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlft.ppo.trainer import _disable_dropout

    config = LlamaConfig(
        vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, attention_dropout=0.1
    )
    model = LlamaForCausalLM(config)
    _disable_dropout(model)
    assert model.model.layers[0].self_attn.attention_dropout == 0.0


def test_the_knobs_page_documents_every_key_and_its_example_validates():
    import re

    import yaml

    from rlft.recipe import FreezeSpec

    page = (Path(__file__).resolve().parents[1] / "docs" / "training_knobs.md").read_text()
    for key in [*FreezeSpec.model_fields, "dropout", "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm", "kl_coef"]:
        assert key in page, key
    snippet = yaml.safe_load(re.search(r"```yaml\n(.*?)```", page, re.S).group(1))
    recipe = recipe_from_dict({"name": "doc", "model": "bundled:smollm2-135m-instruct", **snippet})
    for stage in recipe.stages:
        trl_config_for(stage, "/tmp/rlft-knobs")
