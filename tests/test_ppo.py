"""rlft's PPO: the math on hand-computed numbers, then whole runs on the tiny model (reward rises, LoRA saves and reloads)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import sum_rows, write_jsonl
from test_stages import assert_scorecard, load_weights, make_ctx

from rlft.ppo import core
from rlft.recipe import recipe_from_dict
from rlft.tracking import NullRun

# ------------------------------------------------------------------ the math


def test_gae_and_returns_match_hand_computation_with_padding():
    # gamma 0.9, lam 0.8 (gamma * lam = 0.72). Row 0: 3 real tokens + 1 pad; row 1: 2 real + 2 pads.
    # Padded positions hold garbage that must not leak in.
    rewards = torch.tensor([[0.0, 0.0, 1.0, 5.0], [0.2, -1.0, 7.0, 7.0]])
    values = torch.tensor([[0.5, 0.4, 0.3, 9.0], [0.1, 0.5, 3.0, 3.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    advantages, returns = core.gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # row 0: delta2 = 1 - 0.3 = 0.7 (the value after the last token is 0)
    #        delta1 = 0 + 0.9 * 0.3 - 0.4 = -0.13;  delta0 = 0 + 0.9 * 0.4 - 0.5 = -0.14
    #        A2 = 0.7;  A1 = -0.13 + 0.72 * 0.7 = 0.374;  A0 = -0.14 + 0.72 * 0.374 = 0.12928
    # row 1: delta1 = -1 - 0.5 = -1.5;  delta0 = 0.2 + 0.9 * 0.5 - 0.1 = 0.55
    #        A1 = -1.5;  A0 = 0.55 + 0.72 * (-1.5) = -0.53
    expected_adv = torch.tensor([[0.12928, 0.374, 0.7, 0.0], [-0.53, -1.5, 0.0, 0.0]])
    expected_ret = torch.tensor([[0.62928, 0.774, 1.0, 0.0], [-0.43, -1.0, 0.0, 0.0]])  # A + V
    torch.testing.assert_close(advantages, expected_adv)
    torch.testing.assert_close(returns, expected_ret)


def test_rewards_are_kl_penalty_plus_score_on_the_last_real_token_and_whitening_ignores_padding():
    kl = torch.tensor([[0.5, 1.0, 2.0, 9.0], [1.0, -1.0, 9.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    rewards = core.shape_rewards(torch.tensor([1.0, 2.0]), kl, mask, kl_coef=0.1)
    torch.testing.assert_close(rewards, torch.tensor([[-0.05, -0.1, 0.8, 0.0], [-0.1, 2.1, 0.0, 0.0]]))

    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])  # mean 2 and unbiased variance 1 over the real tokens
    torch.testing.assert_close(core.masked_whiten(x, torch.tensor([[1.0, 1.0, 1.0, 0.0]])), torch.tensor([[-1.0, 0.0, 1.0, 0.0]]))


def test_clipped_policy_loss_both_sides_and_clip_fraction():
    # ratio r = exp(new - old); cliprange 0.2; per-token loss max(-A r, -A clip(r, 0.8, 1.2)):
    #   t0: r 1.5, A +1 -> max(-1.5, -1.2) = -1.2   clipped (r > 1 + eps, positive advantage)
    #   t1: r 0.5, A -1 -> max( 0.5,  0.8) =  0.8   clipped (r < 1 - eps, negative advantage)
    #   t2: r 1.5, A -1 -> max( 1.5,  1.2) =  1.5   not clipped (the move is penalised in full)
    #   t3: r 1.0, A +2 -> -2.0                     not clipped
    #   t4: padding (r 3, A 5) ignored
    old = torch.zeros(1, 5)
    new = torch.log(torch.tensor([[1.5, 0.5, 1.5, 1.0, 3.0]])).requires_grad_()
    adv = torch.tensor([[1.0, -1.0, -1.0, 2.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
    out = core.policy_loss(new, old, adv, mask, cliprange=0.2)
    assert out.loss.item() == pytest.approx((-1.2 + 0.8 + 1.5 - 2.0) / 4)  # -0.225
    assert out.clip_fraction.item() == pytest.approx(0.5)
    k3 = [1.5 - 1 - math.log(1.5), 0.5 - 1 - math.log(0.5), 1.5 - 1 - math.log(1.5), 0.0]
    assert out.approx_kl.item() == pytest.approx(sum(k3) / 4)
    out.loss.backward()
    # clipped tokens get no gradient; the others d/dlogp (-A r) / 4 = -A r / 4
    torch.testing.assert_close(new.grad, torch.tensor([[0.0, 0.0, 1.5 / 4, -2.0 / 4, 0.0]]))


def test_clipped_value_loss_and_clip_fraction():
    # cliprange_value 0.2: V_clip = old + clip(new - old, -0.2, 0.2); loss 0.5 * mean(max((V-R)^2, (V_clip-R)^2))
    #   t0: old 0, new 0.5, R 1 -> (0.5-1)^2 = 0.25 vs (0.2-1)^2 = 0.64 -> 0.64  clipped (moved past the range)
    #   t1: old 0, new 0.1, R 1 -> 0.81 vs 0.81 -> 0.81                            inside the range
    #   t2: old 0, new -0.5, R 1 -> 2.25 vs (-0.2-1)^2 = 1.44 -> 2.25             moved away from R: full loss
    #   t3: padding
    old = torch.zeros(1, 4)
    new = torch.tensor([[0.5, 0.1, -0.5, 4.0]])
    returns = torch.tensor([[1.0, 1.0, 1.0, -4.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    out = core.value_loss(new, old, returns, mask, cliprange_value=0.2)
    assert out.loss.item() == pytest.approx(0.5 * (0.64 + 0.81 + 2.25) / 3)
    assert out.clip_fraction.item() == pytest.approx(1 / 3)


def test_kl_controllers_and_estimators():
    fixed = core.FixedKLController(0.05)
    fixed.update(100.0, 8)
    assert fixed.value == 0.05

    adaptive = core.AdaptiveKLController(0.1, target=6.0, horizon=100)
    adaptive.update(12.0, 10)  # error 1.0, clipped to 0.2: coef * (1 + 0.2 * 10 / 100)
    assert adaptive.value == pytest.approx(0.102)
    adaptive.update(6.6, 10)  # error 0.1
    assert adaptive.value == pytest.approx(0.102 * 1.01)
    before = adaptive.value
    adaptive.update(1.0, 10)  # below target: error clipped to -0.2
    assert adaptive.value == pytest.approx(before * 0.98) and adaptive.value < before

    logp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -1.0])
    torch.testing.assert_close(core.per_token_kl(logp, ref, "k1"), torch.tensor([1.0, -1.0]))
    torch.testing.assert_close(core.per_token_kl(logp, ref, "k3"), torch.tensor([math.exp(-1) - 1 + 1, math.exp(1) - 1 - 1]))


def test_completion_mask_stops_at_the_first_eos():
    from rlft.ppo.rollout import completion_mask

    ids = torch.tensor([[5, 6, 2, 0, 0], [5, 2, 2, 7, 0], [5, 6, 7, 8, 9]])  # eos = 2, pad = 0
    mask, ended = completion_mask(ids, [2])
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert ended.tolist() == [True, True, False]


def test_encoding_prompts_left_pads_and_leaves_the_tokenizer_as_it_was(tiny_model):
    from transformers import AutoTokenizer

    from rlft.ppo.rollout import encode_prompts

    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.padding_side, tok.truncation_side = "right", "right"
    ids, mask = encode_prompts(tok, ["1+1=", "12+34="], max_prompt_length=5)
    assert mask.tolist() == [[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]]  # left padding
    assert ids[1].tolist() == tok("2+34=", add_special_tokens=False).input_ids  # an over-long prompt keeps its end
    assert (tok.padding_side, tok.truncation_side) == ("right", "right")


def test_dropout_is_zeroed_under_every_name_a_layer_keeps_it():
    from rlft.ppo.trainer import _disable_dropout

    class Layer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = torch.nn.Dropout(0.3)
            self.attention_dropout, self.hidden_dropout_prob, self.classifier_dropout_rate, self.resid_pdrop = 0.1, 0.2, 0.3, 0.4
            self.layer_norm_eps = 1e-5  # not a dropout: kept

    layer = Layer()
    _disable_dropout(layer)
    assert layer.drop.p == 0.0
    assert (layer.attention_dropout, layer.hidden_dropout_prob, layer.classifier_dropout_rate, layer.resid_pdrop) == (0.0,) * 4
    assert layer.layer_norm_eps == 1e-5


def test_config_rejects_bad_batch_split_and_names_ppo_keys(tiny_model, tmp_path):
    from rlft.errors import RlftError
    from rlft.stages.trl_config import trl_config_for

    def stage(trl):
        recipe = recipe_from_dict(
            {
                "name": "t",
                "model": str(tiny_model),
                "stages": [{"name": "rl", "kind": "ppo", "data": "x.jsonl", "rewards": [{"name": "answer_format"}], "trl": trl}],
            }
        )
        return recipe.stage("rl")

    args = trl_config_for(stage({"gradient_accumulation_steps": 2, "per_device_train_batch_size": 4}), str(tmp_path))
    assert args.rollout_batch_size == 8 and args.bf16 is False and args.activation_checkpointing is False
    with pytest.raises(RlftError, match="num_mini_batches"):
        trl_config_for(stage({"per_device_train_batch_size": 4, "num_mini_batches": 3}), str(tmp_path))
    with pytest.raises(RlftError, match="did you mean 'cliprange'"):
        trl_config_for(stage({"clip_range": 0.1}), str(tmp_path))


# ------------------------------------------------------------------ whole runs on the tiny model

DIGITS_REWARD = '''
def digit_fraction(prompts, completions, **kwargs):
    """Share of the completion's characters that are digits (about 0.1 for the untrained tiny model)."""
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(len(t), 1) for t in texts]
'''


class Recorder(NullRun):
    """A tracker that keeps what the stage logs."""

    def __init__(self):
        self.history: list[tuple[int, dict]] = []

    def log(self, values, step=None):
        self.history.append((step, dict(values)))


def ppo_recipe(tiny_model, tmp_path: Path, trl: dict, **stage):
    write_jsonl(tmp_path / "prompts.jsonl", sum_rows(16, with_completion=False))
    (tmp_path / "toy_rewards.py").write_text(DIGITS_REWARD)
    base = {"name": "rl", "kind": "ppo", "data": "prompts.jsonl", "rewards": [{"name": "./toy_rewards.py:digit_fraction"}]}
    return recipe_from_dict(
        {"name": "t", "model": str(tiny_model), "tracking": {"mode": "disabled"}, "stages": [{**base, **stage, "trl": trl}]}
    )


def test_ppo_stage_raises_reward_with_finite_kl(tiny_model, tmp_path):
    from rlft.stages import ppo

    recipe = ppo_recipe(
        tiny_model,
        tmp_path,
        {
            "max_steps": 40,
            "per_device_train_batch_size": 16,
            "max_completion_length": 8,
            "temperature": 1.0,
            "learning_rate": 1e-2,
            "lr_scheduler_type": "constant",
            "kl_coef": 0.01,
        },
    )
    ctx = make_ctx(recipe, tmp_path, "rl")
    ctx.tracker = Recorder()
    result = ppo.run(recipe.stage("rl"), ctx)

    history = [logs for _, logs in ctx.tracker.history]
    assert [step for step, _ in ctx.tracker.history] == list(range(1, 41))
    rewards = [h["train/reward"] for h in history]
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    # Seeds 0-3, 7 and 42 gave 0.06-0.08 -> 0.51-1.00 (first vs last 5 steps); the untrained model writes ~7% digits.
    assert last > first + 0.25, f"reward did not rise: first 5 steps {first:.3f}, last 5 {last:.3f}: {rewards}"
    assert all(math.isfinite(h["train/kl"]) for h in history) and history[0]["train/kl"] == pytest.approx(0.0, abs=1e-5)
    for key in (
        "ppo/policy_loss",
        "ppo/value_loss",
        "ppo/clip_fraction",
        "ppo/value_clip_fraction",
        "ppo/approx_kl",
        "ppo/explained_variance",
    ):
        assert math.isfinite(history[-1][f"train/{key}"]), key
    assert {"train/rewards/digit_fraction/mean", "train/entropy", "train/completions/mean_length", "train/time/rollout_s"} <= set(
        history[-1]
    )
    assert all(h["train/grad_norm/policy"] > 0 and h["train/grad_norm/value"] > 0 for h in history)  # clipped apart

    m = result.metrics
    assert m["train/steps"] == 40 and m["train/first_reward"] == pytest.approx(rewards[0])
    assert m["train/reward"] == pytest.approx(rewards[-1]) and "train/rewards/digit_fraction/mean" in m
    assert m["params/trainable"] == m["params/total"]  # full fine-tuning
    assert load_weights(result.model_path).keys() == load_weights(tiny_model).keys()
    assert (ctx.out_dir / "value_model" / "model.safetensors").exists()
    assert_scorecard(m, rewards=["digit_fraction"])  # greedy completions to the held-out prompts, before and after


def test_ppo_lora_saves_policy_and_value_model_that_reload(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM, AutoModelForTokenClassification

    from rlft.stages import ppo

    recipe = ppo_recipe(
        tiny_model,
        tmp_path,
        {"max_steps": 2, "per_device_train_batch_size": 8, "max_completion_length": 6, "learning_rate": 1e-2, "num_ppo_epochs": 2},
        peft={"lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
    )
    ctx = make_ctx(recipe, tmp_path, "rl")
    result = ppo.run(recipe.stage("rl"), ctx)
    m = result.metrics
    assert m["params/trainable"] < m["params/total"] / 2 and m["train/steps"] == 2

    # The policy: LoRA merged into plain weights; targeted projections moved, embeddings did not.
    before, after = load_weights(tiny_model), load_weights(result.model_path)
    assert before.keys() == after.keys()
    assert torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])
    assert not torch.equal(before["model.layers.0.self_attn.q_proj.weight"], after["model.layers.0.self_attn.q_proj.weight"])
    policy = AutoModelForCausalLM.from_pretrained(result.model_path, dtype=torch.float32)

    # The critic: a plain token-classification checkpoint, its backbone trained through its own adapter.
    critic = AutoModelForTokenClassification.from_pretrained(ctx.out_dir / "value_model", dtype=torch.float32)
    saved = load_weights(ctx.out_dir / "value_model")
    assert torch.equal(saved["model.embed_tokens.weight"], before["model.embed_tokens.weight"])
    assert not torch.equal(saved["model.layers.0.self_attn.q_proj.weight"], before["model.layers.0.self_attn.q_proj.weight"])
    ids = torch.tensor([[5, 6, 7, 8]])
    assert critic(input_ids=ids).logits.shape == (1, 4, 1)
    assert torch.isfinite(policy(input_ids=ids).logits).all()


def test_lora_reference_is_the_untouched_base_and_shared_critic_with_adaptive_kl(tiny_model):
    """Training moves only the adapter (and the value head); the adapter-disabled reference still equals the start model."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlft.ppo import PPOConfig, PPOTrainer
    from rlft.ppo.rollout import policy_forward

    tok = AutoTokenizer.from_pretrained(tiny_model)
    start = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    rows = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}]} for r in sum_rows(8, with_completion=False)])
    args = PPOConfig(
        output_dir="/tmp/unused",
        report_to="none",
        use_cpu=True,
        bf16=False,
        max_steps=2,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        num_mini_batches=2,
        max_completion_length=5,
        learning_rate=1e-2,
        critic="shared",
        adaptive_kl=True,
        target_kl=0.01,
        kl_horizon=8,
        missing_eos_penalty=1.0,
    )
    trainer = PPOTrainer(
        model,
        tok,
        args,
        rows,
        [lambda prompts, completions, **kw: [1.0] * len(completions)],
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"),
    )
    head = trainer.critic.head.weight.detach().clone()
    output = trainer.train()

    base = {
        k.replace("base_model.model.", "").replace(".base_layer", ""): v for k, v in trainer.model.state_dict().items() if "lora_" not in k
    }
    for key, value in start.state_dict().items():
        assert torch.equal(base[key], value), f"frozen weight {key} changed"
    assert not torch.equal(trainer.critic.head.weight, head)
    ids, attn = torch.tensor([[10, 11, 12, 13, 14]]), torch.ones(1, 5, dtype=torch.long)
    with torch.no_grad():
        ref = trainer._ref_logprobs(ids, attn, 3)
        torch.testing.assert_close(ref, policy_forward(start, ids, attn, 3, args.temperature).logprobs)
        assert not torch.allclose(ref, policy_forward(trainer.model, ids, attn, 3, args.temperature).logprobs)
    coefs = [h["ppo/kl_coef"] for h in output.log_history]
    assert coefs[0] == args.kl_coef and trainer.kl_ctl.value != args.kl_coef  # adapted after a step
    for h in output.log_history:  # every completion is paid 1.0; one that never reached EOS loses missing_eos_penalty (1.0)
        assert h["reward"] == 1.0 and h["ppo/score"] == pytest.approx(1.0 - h["completions/clipped_ratio"])
    assert any(h["completions/clipped_ratio"] > 0 for h in output.log_history), "the penalty must have applied somewhere"


def test_separate_critic_starts_from_the_reward_model(tiny_model, tmp_path):
    """With a ``model:`` reward first, the critic is the reward model's backbone and score head (learning rate 0 keeps them)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rlft.stages import ppo

    rm_path = tmp_path / "rm"
    rm = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=1, dtype=torch.float32)
    rm.config.pad_token_id = rm.config.eos_token_id
    rm.save_pretrained(rm_path)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(rm_path)

    recipe = ppo_recipe(
        tiny_model,
        tmp_path,
        {"max_steps": 1, "per_device_train_batch_size": 4, "max_completion_length": 4, "learning_rate": 0.0},
        rewards=[{"model": str(rm_path)}],
        scorecard={"prompts": 0},
    )
    ctx = make_ctx(recipe, tmp_path, "rl")
    result = ppo.run(recipe.stage("rl"), ctx)
    assert ctx.notes.critic == {"kind": "separate", "start": str(rm_path)}
    assert "train/rewards/rm/mean" in result.metrics

    critic, reward_model = load_weights(ctx.out_dir / "value_model"), load_weights(rm_path)
    assert torch.equal(critic["score.weight"], reward_model["score.weight"])  # the RM's head is the value head
    assert torch.equal(critic["score.bias"], torch.zeros(1))
    assert all(torch.equal(critic[k], v) for k, v in reward_model.items() if k.startswith("model."))


def test_bf16_runs_steps_under_autocast_and_fp16_is_refused(tiny_model):
    """bf16: each step runs under bf16 autocast while the weights stay fp32 (CPU autocast stands in for a GPU's)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlft.ppo import PPOConfig, PPOTrainer

    with pytest.raises(ValueError, match="fp16 needs a loss scaler"):
        PPOConfig(output_dir="/tmp/unused", report_to="none", use_cpu=True, fp16=True)

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    rows = Dataset.from_list([{"prompt": r["prompt"]} for r in sum_rows(4, with_completion=False)])
    args = PPOConfig(
        output_dir="/tmp/unused",
        report_to="none",
        use_cpu=True,
        max_steps=1,
        per_device_train_batch_size=4,
        max_completion_length=4,
        critic="shared",
    )
    args.bf16 = True  # TrainingArguments refuses bf16 without a GPU; what is tested is the trainer's handling of it
    trainer = PPOTrainer(model, tok, args, rows, [lambda prompts, completions, **kw: [1.0] * len(completions)])
    seen = []
    step = trainer.step
    trainer.step = lambda batch: seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))) or step(batch)
    output = trainer.train()
    assert seen == [(True, torch.bfloat16)] and output.global_step == 1
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    assert math.isfinite(output.log_history[0]["ppo/policy_loss"])


def test_interrupted_ppo_resumes_from_its_checkpoint_to_the_same_run(tiny_model, tmp_path):
    """A run stopped after step 4 and resumed from its step-3 checkpoint ends as the uninterrupted run does."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlft.ppo import PPOConfig, PPOTrainer
    from rlft.training.checkpoints import Every, last_checkpoint

    tok = AutoTokenizer.from_pretrained(tiny_model)
    rows = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}]} for r in sum_rows(10, with_completion=False)])
    scope: dict = {}
    exec(DIGITS_REWARD, scope)  # the reward the other runs use
    digit_fraction = scope["digit_fraction"]

    def trainer(out: Path, callbacks=()):
        args = PPOConfig(
            output_dir=str(out),
            report_to="none",
            use_cpu=True,
            bf16=False,
            seed=5,
            max_steps=6,
            per_device_train_batch_size=4,  # 10 rows, 4 per step: the data order wraps into a second shuffle
            max_completion_length=5,
            learning_rate=1e-2,
            critic="shared",
            adaptive_kl=True,
            target_kl=0.01,
            kl_horizon=8,
        )
        model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
        return PPOTrainer(model, tok, args, rows, [digit_fraction], peft_config=LoraConfig(r=4, lora_alpha=8), callbacks=callbacks)

    whole = trainer(tmp_path / "whole")
    expected = whole.train()

    class Crash(Exception):
        pass

    def crash_after_four(step, max_steps, logs):
        if step == 4:
            raise Crash

    first = trainer(tmp_path / "cut", callbacks=[crash_after_four])
    with pytest.raises(Crash):
        first.train(should_save=Every(steps=3, minutes=None))
    ckpt = last_checkpoint(tmp_path / "cut")
    assert ckpt is not None and ckpt.name == "checkpoint-3"
    assert sorted(p.name for p in ckpt.iterdir()) == ["optimizer.pt", "ppo_state.json", "rng.pt", "trainable.safetensors"]

    resumed = trainer(tmp_path / "cut")
    output = resumed.train(resume_from_checkpoint=ckpt, should_save=Every(steps=3, minutes=None))
    assert [h["step"] for h in output.log_history] == [1, 2, 3, 4, 5, 6]
    for got, want in zip(output.log_history, expected.log_history, strict=True):
        assert got["reward"] == pytest.approx(want["reward"], abs=1e-6) and got["kl"] == pytest.approx(want["kl"], abs=1e-6)
    for (name, a), b in zip(whole._trainable().items(), resumed._trainable().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)
    assert resumed.kl_ctl.value == pytest.approx(whole.kl_ctl.value)
    assert [p.name for p in (tmp_path / "cut").iterdir()] == ["checkpoint-3"]  # no checkpoint at the last step; one kept


def test_rollouts_are_sampled_from_the_tempered_policy_even_when_the_model_ships_sampling_settings(tiny_model):
    """A model whose generation config sets repetition_penalty/top_k/min_p (instruct models do) must not shape
    PPO's samples: the distribution generate samples from equals the one PPO's log-probs are computed under."""
    from types import SimpleNamespace

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlft.ppo.rollout import policy_forward, sample

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    model.generation_config.repetition_penalty, model.generation_config.top_k, model.generation_config.min_p = 3.0, 5, 0.2
    scores = []
    plain = model.generate

    def generate_keeping_scores(**kw):
        config = kw.pop("generation_config")
        config.output_scores, config.return_dict_in_generate = True, True
        out = plain(**kw, generation_config=config)
        scores.extend(out.scores)
        return out.sequences

    model.generate = generate_keeping_scores
    args = SimpleNamespace(max_prompt_length=None, max_completion_length=6, temperature=0.7, top_p=1.0)
    torch.manual_seed(0)
    roll = sample(model, tok, ["1+1=", "12+34="], args=args, eos_ids=[tok.eos_token_id], device="cpu")
    assert model.generation_config.repetition_penalty == 3.0  # the model's own settings are back afterwards
    sampled = torch.stack([s.log_softmax(-1) for s in scores], dim=1)  # (B, T, V): what generate drew from
    steps = sampled.shape[1]
    taken = sampled.gather(-1, roll.completion_ids[:, :steps].unsqueeze(-1)).squeeze(-1)
    ids = torch.cat([roll.query_ids, roll.completion_ids], dim=1)
    attn = torch.cat([roll.query_mask, roll.completion_mask.long()], dim=1)
    ppo = policy_forward(model, ids, attn, roll.completion_ids.shape[1], 0.7).logprobs[:, :steps]
    real = roll.completion_mask[:, :steps].bool()
    torch.testing.assert_close(taken[real], ppo[real], rtol=1e-4, atol=1e-4)


def test_top_p_below_one_is_refused_for_ppo():
    from rlft.ppo.config import PPOConfig

    with pytest.raises(ValueError, match="top_p must be 1.0"):
        PPOConfig(output_dir="unused", top_p=0.9, use_cpu=True, bf16=False)


def test_policy_and_critic_gradients_are_clipped_each_on_their_own():
    from rlft.ppo.trainer import clip_each

    policy, critic = torch.zeros(4, requires_grad=True), torch.zeros(4, requires_grad=True)
    policy.grad, critic.grad = torch.full((4,), 0.5), torch.full((4,), 50.0)  # norms 1 and 100
    norms = clip_each({"policy": [policy], "value": [critic]}, max_norm=0.5)
    assert norms == pytest.approx({"policy": 1.0, "value": 100.0})
    # A joint norm (100.005) would have scaled the policy's gradient to ~0.005; alone it is scaled to 0.5.
    assert policy.grad.norm().item() == pytest.approx(0.5, rel=1e-4) and critic.grad.norm().item() == pytest.approx(0.5, rel=1e-4)


def test_huge_log_ratios_are_clamped_before_exp():
    mask = torch.ones(1, 2)
    new, old = torch.tensor([[0.0, -1.0]]), torch.tensor([[-200.0, -1.0]])  # log-ratio 200 on the first token
    out = core.policy_loss(new, old, torch.ones(1, 2), mask, cliprange=0.2)
    assert math.isfinite(out.loss.item()) and math.isfinite(out.approx_kl.item())
    assert out.approx_kl.item() == pytest.approx((math.exp(20) - 1 - 20) / 2)  # the log-ratio counted as 20
    kl = core.per_token_kl(torch.tensor([[-200.0, 0.0]]), torch.tensor([[0.0, -200.0]]), "k3")
    assert torch.isfinite(kl).all() and kl.tolist()[0] == pytest.approx([math.exp(10) - 1 - 10, math.exp(-10) - 1 + 10])
    assert core.per_token_kl(torch.tensor([[0.0]]), torch.tensor([[-50.0]]), "k1").item() == 10.0


def test_k3_is_refused_as_the_reward_penalty():
    from rlft.ppo.config import PPOConfig

    with pytest.raises(ValueError, match="k3 is not a correct per-token reward penalty"):
        PPOConfig(output_dir="unused", kl_estimator="k3", use_cpu=True, bf16=False)


def test_policy_forward_equals_a_plain_forward_in_chunks_and_under_left_padding(tiny_model, monkeypatch):
    from transformers import AutoModelForCausalLM

    from rlft.ppo import rollout
    from rlft.ppo.rollout import policy_forward

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    ids = torch.tensor([[10, 11, 12, 13, 14, 15], [20, 21, 22, 23, 24, 25]])
    attn = torch.ones_like(ids)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attn).logits[:, -4:-1] / 0.7  # predicting the last 3 tokens
        want = logits.log_softmax(-1).gather(-1, ids[:, -3:].unsqueeze(-1)).squeeze(-1)
        want_entropy = -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)
        got = policy_forward(model, ids, attn, 3, 0.7, with_entropy=True)
        torch.testing.assert_close(got.logprobs, want)
        torch.testing.assert_close(got.entropy, want_entropy)
        monkeypatch.setattr(rollout, "LOGIT_CHUNK", 1)  # one row at a time
        torch.testing.assert_close(policy_forward(model, ids, attn, 3, 0.7).logprobs, want)
        padded = torch.cat([torch.zeros(2, 3, dtype=torch.long), ids], dim=1)  # three pad tokens on the left
        pad_mask = torch.cat([torch.zeros(2, 3, dtype=torch.long), attn], dim=1)
        torch.testing.assert_close(policy_forward(model, padded, pad_mask, 3, 0.7).logprobs, want, rtol=1e-5, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert policy_forward(model, ids, attn, 3, 0.7).logprobs.dtype == torch.float32


def test_the_first_update_of_a_rollout_starts_at_ratio_one(tiny_model):
    """One epoch of one minibatch: the update's policy is the rollout's, so approx-KL and clip fraction are exactly 0
    (dropout off, the same forward at rollout and update time), whatever the model learnt in earlier steps."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlft.ppo import PPOConfig, PPOTrainer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    for layer in model.model.layers:
        layer.self_attn.attention_dropout = 0.3  # the rate Llama passes to its attention kernel: the trainer zeroes it
    rows = Dataset.from_list([{"prompt": r["prompt"]} for r in sum_rows(8, with_completion=False)])
    args = PPOConfig(
        output_dir="/tmp/unused", report_to="none", use_cpu=True, bf16=False, max_steps=3, per_device_train_batch_size=2,
        gradient_accumulation_steps=2, num_mini_batches=1, num_ppo_epochs=1, max_completion_length=5, learning_rate=5e-2,
        critic="shared",
    )  # fmt: skip
    reward = lambda prompts, completions, **kw: [float(len(c)) for c in completions]  # noqa: E731
    output = PPOTrainer(model, tok, args, rows, [reward]).train()
    assert len(output.log_history) == 3
    for h in output.log_history:
        assert h["ppo/approx_kl"] == pytest.approx(0.0, abs=1e-6) and h["ppo/clip_fraction"] == 0.0
    assert output.log_history[-1]["kl"] != 0.0  # the policy did move away from its start between rollouts


def test_micro_batches_weighted_by_tokens_give_the_one_big_batch_gradient(tiny_model):
    """Completions of different lengths split into micro-batches: the accumulated gradient (and statistics) equal
    those of the whole minibatch in one pass, because each micro-batch's loss is weighted by its share of tokens."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlft.ppo import PPOConfig, PPOTrainer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    rows = Dataset.from_list([{"prompt": r["prompt"]} for r in sum_rows(8, with_completion=False)])
    args = PPOConfig(
        output_dir="/tmp/unused", report_to="none", use_cpu=True, bf16=False, max_steps=1, per_device_train_batch_size=6,
        gradient_accumulation_steps=1, max_completion_length=8, critic="shared",
    )  # fmt: skip
    reward = lambda prompts, completions, **kw: [float(len(c)) for c in completions]  # noqa: E731
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    trainer = PPOTrainer(model, tok, args, rows, [reward])
    torch.manual_seed(1)
    batch = trainer._next_rows()
    from rlft.ppo.rollout import sample

    rollout = sample(trainer.model, tok, batch["prompt"], args=args, eos_ids=trainer.eos_ids, device="cpu")
    for i, n in enumerate([3, 8, 5, 2, 7, 4]):  # as if they had stopped at EOS after n tokens (the random model never does)
        rollout.completion_mask[i, n:] = 0.0
        rollout.completion_ids[i, n:] = tok.pad_token_id
    exp = trainer._experience(rollout, trainer._score(batch, rollout)[0], trainer.kl_ctl.value)
    params = [p for g in trainer.optimizer.param_groups for p in g["params"]]

    def grads(micro: int):
        trainer.args.per_device_train_batch_size = micro
        trainer.optimizer.zero_grad(set_to_none=True)
        stats = trainer._minibatch(exp, torch.arange(6))
        return [p.grad.clone() for p in params], stats

    whole, whole_stats = grads(6)
    split, split_stats = grads(2)
    for a, b in zip(split, whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert split_stats == pytest.approx(whole_stats, rel=1e-4, abs=1e-6)


def test_dropout_rates_in_the_config_are_zeroed_for_ppo_and_saved_as_they_were(tiny_model, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from rlft.ppo.trainer import _disable_dropout
    from rlft.stages.saving import save_model

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attention_dropout=0.2)
    model.config.resid_pdrop = 0.1  # a rate some architectures read from the config at forward time
    _disable_dropout(model)
    assert model.config.attention_dropout == 0.0 and model.config.resid_pdrop == 0.0
    assert all(layer.self_attn.attention_dropout == 0.0 for layer in model.model.layers)
    path = save_model(model, AutoTokenizer.from_pretrained(tiny_model), tmp_path)
    saved = AutoConfig.from_pretrained(path)
    assert saved.attention_dropout == 0.2 and saved.resid_pdrop == 0.1
