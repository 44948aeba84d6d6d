"""Early stopping on the tiny model: SFT on held-out loss, GRPO and PPO on held-out reward, pair stages on
their Trainer's metric; the schema's errors.

Each run is built so that its held-out metric must stop improving (SFT, GRPO, PPO: after first improving), and
the stage must stop and end with the weights of its best evaluation: compared bit for bit with a run of exactly
that many steps (constant learning rate, same seed), which also shows that the evaluations did not
change the training run.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import sum_rows, write_jsonl
from test_ppo import Recorder
from test_reward_models import separable_pairs
from test_stages import load_weights, make_ctx

from rlft.errors import RecipeError
from rlft.recipe import EarlyStoppingSpec, recipe_from_dict
from rlft.stages.context import StageNotes


def one_stage(tiny_model, stage: dict, seed: int = 42):
    recipe = recipe_from_dict({"name": "t", "seed": seed, "model": str(tiny_model), "tracking": {"mode": "disabled"}, "stages": [stage]})
    return recipe, recipe.stage(stage["name"])


def logged(tracker: Recorder) -> list[dict]:
    return [values for _, values in tracker.history if "early_stopping/metric" in values]


def beside(tmp: Path, name: str, files: tuple[str, ...]) -> Path:
    """A fresh run folder next to ``tmp`` holding copies of its data and reward files."""
    folder = tmp / name
    folder.mkdir()
    for file in files:
        shutil.copy(tmp / file, folder / file)
    return folder


# ------------------------------------------------------------------ SFT on held-out loss

# Training rows answer "xxxx", held-out rows "yyyy" inside the same tags: held-out loss falls while the
# model learns the tags, then rises as it grows sure of "xxxx" (lr 1e-2: lowest near step 24 of 40).
SFT_EVERY, SFT_PATIENCE, SFT_MAX = 4, 2, 40
SFT_FILES = ("train.jsonl", "held_out.jsonl")


def sft_stage(max_steps: int, early_stopping: bool = True) -> dict:
    stage = {
        "name": "sft",
        "kind": "sft",
        "data": "train.jsonl",
        "eval_data": "held_out.jsonl",
        "scorecard": {"prompts": 0},
        "checkpoint": {"every_steps": SFT_EVERY, "every_minutes": None},
        "trl": {"max_steps": max_steps, "per_device_train_batch_size": 8, "learning_rate": 1e-2, "lr_scheduler_type": "constant"},
    }
    if early_stopping:
        stage["early_stopping"] = {"every_steps": SFT_EVERY, "patience": SFT_PATIENCE}
    return stage


@pytest.fixture(scope="module")
def sft_stopped(tiny_model, tmp_path_factory):
    from rlft.stages import sft

    tmp = tmp_path_factory.mktemp("sft")
    prompts = [row["prompt"] for row in sum_rows(16)]
    write_jsonl(tmp / "train.jsonl", [{"prompt": p, "completion": "<answer>xxxx</answer>"} for p in prompts])
    write_jsonl(tmp / "held_out.jsonl", [{"prompt": p, "completion": "<answer>yyyy</answer>"} for p in prompts])
    recipe, cfg = one_stage(tiny_model, sft_stage(SFT_MAX))
    ctx = make_ctx(recipe, tmp, "sft")
    ctx.tracker = Recorder()
    result = sft.run(cfg, ctx)
    return tmp, cfg, ctx, result


def test_sft_stops_when_held_out_loss_rises_and_ends_with_the_best_weights(tiny_model, sft_stopped):
    from rlft.stages import sft

    tmp, _, ctx, result = sft_stopped
    es, m = ctx.notes.early_stopping, result.metrics
    steps = [step for step, _ in es["evaluations"]]
    values = [value for _, value in es["evaluations"]]
    assert es["metric"] == "eval/loss" and steps == list(range(SFT_EVERY, es["stop_step"] + 1, SFT_EVERY))
    # it fell, then rose for `patience` evaluations in a row, and the stage stopped there, well before max_steps
    assert values[0] > es["best"] == min(values) and all(v > es["best"] for v in values[-SFT_PATIENCE:])
    assert es["stop_step"] == es["best_step"] + SFT_PATIENCE * SFT_EVERY < SFT_MAX and es["best_step"] > SFT_EVERY
    assert es["stopped_early"] is True and es["restored_best"] is True
    assert m["train/steps"] == es["stop_step"] and m["early_stopping/best_step"] == es["best_step"]
    assert m["early_stopping/stopped_early"] is True and m["early_stopping/restored_best"] is True
    # the stage's evaluation after training scores the restored model: the best held-out loss again
    assert m["eval/loss"] == pytest.approx(es["best"], abs=1e-6)
    rows = logged(ctx.tracker)
    assert [r["train/global_step"] for r in rows] == steps and [r["early_stopping/metric"] for r in rows] == values
    assert rows[-1]["early_stopping/best"] == es["best"] and rows[-1]["early_stopping/evals_without_improvement"] == SFT_PATIENCE

    # A run of exactly best_step steps without early stopping ends with the same weights, bit for bit.
    recipe, cfg = one_stage(tiny_model, sft_stage(es["best_step"], early_stopping=False))
    reference = sft.run(cfg, make_ctx(recipe, beside(tmp, "reference", SFT_FILES), "sft"))
    got, want = load_weights(result.model_path), load_weights(reference.model_path)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)


def test_sft_resumed_from_a_checkpoint_keeps_the_best_it_had(sft_stopped):
    """The stage stopped at step 32; its last checkpoint (28) holds the early-stopping state and the best weights (24)."""
    from rlft.stages import sft

    tmp, cfg, first_ctx, first = sft_stopped
    es = first_ctx.notes.early_stopping
    trainer_dir = first_ctx.out_dir / "trainer"
    checkpoint = trainer_dir / f"checkpoint-{es['stop_step'] - SFT_EVERY}"
    assert sorted(p.name for p in trainer_dir.glob("checkpoint-*")) == [checkpoint.name]  # none at the stop step
    assert (checkpoint / "early_stopping.json").exists() and (checkpoint / "early_stopping_best.safetensors").exists()
    weights = load_weights(first.model_path)

    again = beside(tmp, "again", SFT_FILES)
    shutil.copytree(trainer_dir, again / ".sft.partial" / "trainer")
    ctx = make_ctx(first_ctx.recipe, again, "sft")
    result = sft.run(cfg, ctx)
    # it resumed at step 28, evaluated once more (32), stopped, and restored step 24's weights from the checkpoint
    assert ctx.notes.early_stopping == es and result.metrics["train/steps"] == es["stop_step"]
    got = load_weights(result.model_path)
    assert all(torch.equal(got[k], weights[k]) for k in weights)


# ------------------------------------------------------------------ GRPO and PPO on held-out reward

# The share of digits in a completion; while training, from step `flip_at` on, its negative. Held out
# (the scorecard calls rewards without trainer_state) it is never flipped, so held-out reward rises
# while training follows it and falls once training is turned against it.
FLIPPED_DIGITS = """
class FlippedDigits:
    def __init__(self, flip_at):
        self.flip_at = flip_at

    def __call__(self, prompts, completions, trainer_state=None, **kwargs):
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        values = [sum(ch.isdigit() for ch in t) / max(len(t), 1) for t in texts]
        flipped = trainer_state is not None and trainer_state.global_step >= self.flip_at
        return [-v for v in values] if flipped else values
"""
RL_EVERY, RL_PATIENCE, RL_MAX, FLIP_AT = 3, 4, 30, 9
RL_FILES = ("prompts.jsonl", "toy_rewards.py")


def rl_stage(kind: str, max_steps: int, early_stopping: bool = True) -> dict:
    trl = {
        "max_steps": max_steps,
        "per_device_train_batch_size": 8,
        "max_completion_length": 8,
        "temperature": 1.0,
        "learning_rate": 3e-2 if kind == "grpo" else 1e-2,
        "lr_scheduler_type": "constant",
    }
    trl.update({"num_generations": 4} if kind == "grpo" else {"kl_coef": 0.01})
    stage = {
        "name": "rl",
        "kind": kind,
        "data": "prompts.jsonl",
        "eval_fraction": 0.5,
        "rewards": [{"name": "./toy_rewards.py:FlippedDigits", "kwargs": {"flip_at": FLIP_AT}}],
        "scorecard": {"prompts": 8, "max_new_tokens": 8},
        "checkpoint": {"every_steps": RL_EVERY, "every_minutes": None},
        "trl": trl,
    }
    if early_stopping:
        stage["early_stopping"] = {"every_steps": RL_EVERY, "patience": RL_PATIENCE}  # prompts: the scorecard's 8
    return stage


@pytest.mark.parametrize("kind", ["grpo", "ppo"])
def test_rl_stops_when_held_out_reward_falls_and_restores_the_best(tiny_model, tmp_path, kind):
    from rlft import stages

    write_jsonl(tmp_path / "prompts.jsonl", sum_rows(16, with_completion=False))
    (tmp_path / "toy_rewards.py").write_text(FLIPPED_DIGITS)
    recipe, cfg = one_stage(tiny_model, rl_stage(kind, RL_MAX))
    ctx = make_ctx(recipe, tmp_path, "rl")
    ctx.tracker = Recorder()
    result = stages.get(kind).run(cfg, ctx)

    es, m = ctx.notes.early_stopping, result.metrics
    values = [value for _, value in es["evaluations"]]
    assert es["metric"] == "eval/reward" and m["baseline/reward/FlippedDigits"] < es["best"] == max(values)  # it rose ...
    # ... it fell, and the stage stopped. The evaluation at step FLIP_AT scores a model trained on unflipped rewards only
    # (the reward flips from the step that starts at global_step FLIP_AT), so it may be the best.
    assert es["best_step"] <= FLIP_AT < es["stop_step"] < RL_MAX and values[-1] < es["best"]
    assert es["stop_step"] == es["best_step"] + RL_PATIENCE * RL_EVERY and m["train/steps"] == es["stop_step"]
    assert es["stopped_early"] is True and es["restored_best"] is True
    # the end-of-stage scorecard scores the saved (restored) model: the same held-out reward as the best evaluation
    assert m["eval/reward/FlippedDigits"] == pytest.approx(es["best"], abs=1e-12)
    rows = logged(ctx.tracker)
    assert [r["early_stopping/metric"] for r in rows] == values and rows[-1]["early_stopping/best"] == es["best"]

    # A run of exactly best_step steps without early stopping: the same policy weights, bit for bit (so the
    # evaluations, greedy generation included, did not disturb training either).
    recipe, cfg = one_stage(tiny_model, rl_stage(kind, es["best_step"], early_stopping=False))
    reference = stages.get(kind).run(cfg, make_ctx(recipe, beside(tmp_path, "reference", RL_FILES), "rl"))
    saved = weights_of(result, kind)
    assert saved.keys() == weights_of(reference, kind).keys()
    assert all(torch.equal(saved[k], v) for k, v in weights_of(reference, kind).items())

    # Resumed from its last checkpoint (none at the stop step), which holds the best weights, it ends the same way.
    trainer_dir = ctx.out_dir / "trainer"
    assert [p.name for p in trainer_dir.glob("checkpoint-*")] == [f"checkpoint-{es['stop_step'] - RL_EVERY}"]
    again = beside(tmp_path, "again", RL_FILES)
    shutil.copytree(trainer_dir, again / ".rl.partial" / "trainer")
    recipe, cfg = one_stage(tiny_model, rl_stage(kind, RL_MAX))
    again_ctx = make_ctx(recipe, again, "rl")
    resumed = stages.get(kind).run(cfg, again_ctx)
    assert again_ctx.notes.early_stopping == es
    assert all(torch.equal(saved[k], v) for k, v in weights_of(resumed, kind).items())


def weights_of(result, kind: str) -> dict[str, torch.Tensor]:
    """The saved policy's weights, and PPO's critic's (kept from the best step too)."""
    weights = load_weights(result.model_path)
    if kind == "ppo":
        weights.update({f"critic.{k}": v for k, v in load_weights(Path(result.model_path).parent / "value_model").items()})
    return weights


# ------------------------------------------------------------------ pair stages on the Trainer's own metric

# Training pairs prefer 'yes', held-out pairs 'no': every step trains against the held-out preference, so the
# first evaluation is the best and the metric never improves on it (accuracy stays at 0, KTO's loss rises).
PAIR_EVERY, PAIR_PATIENCE, PAIR_MAX = 2, 2, 12
PAIR_FILES = ("pairs.jsonl", "held_out.jsonl")


def pair_stage(kind: str, metric: str, max_steps: int, early_stopping: bool = True) -> dict:
    stage = {
        "name": "s",
        "kind": kind,
        "data": "pairs.jsonl",
        "eval_data": "held_out.jsonl",
        "scorecard": {"prompts": 0},
        "trl": {"max_steps": max_steps, "per_device_train_batch_size": 8, "learning_rate": 5e-3, "lr_scheduler_type": "constant"},
    }
    if early_stopping:
        stage["early_stopping"] = {"metric": metric, "every_steps": PAIR_EVERY, "patience": PAIR_PATIENCE}
    return stage


@pytest.mark.parametrize(("kind", "metric"), [("reward_model", "eval/accuracy"), ("dpo", "eval/implicit_accuracy"), ("kto", "eval/loss")])
def test_pair_stages_stop_on_the_trainer_metric_they_name(tiny_model, tmp_path, kind, metric):
    """Each named metric is read from the Trainer's own evaluation; the stage stops and ends with its best weights."""
    from transformers import set_seed

    from rlft import stages

    write_jsonl(tmp_path / "pairs.jsonl", separable_pairs(32))
    write_jsonl(tmp_path / "held_out.jsonl", [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in separable_pairs(8)])
    recipe, cfg = one_stage(tiny_model, pair_stage(kind, metric, PAIR_MAX))
    ctx = make_ctx(recipe, tmp_path, "s")
    ctx.tracker = Recorder()
    set_seed(ctx.seed_for(cfg))  # as rlft's stage runner does: the reward model's new head is drawn from the global RNG
    result = stages.get(kind).run(cfg, ctx)

    es, m = ctx.notes.early_stopping, result.metrics
    steps = [step for step, _ in es["evaluations"]]
    values = [value for _, value in es["evaluations"]]
    # the first evaluation was the best; `patience` evaluations without an improvement followed, and the stage stopped
    assert es["metric"] == metric and steps == [PAIR_EVERY * (i + 1) for i in range(PAIR_PATIENCE + 1)], es
    assert es["best_step"] == PAIR_EVERY and es["best"] == values[0], es
    if metric == "eval/loss":  # lower is better: the held-out loss rose at each evaluation
        assert values == sorted(values) and len(set(values)) == len(values), values
    else:  # higher is better: the held-out accuracy is 0 throughout (ties are no improvement)
        assert values == [0.0] * len(values), values
    assert es["stop_step"] == es["best_step"] + PAIR_PATIENCE * PAIR_EVERY < PAIR_MAX
    assert es["stopped_early"] is True and es["restored_best"] is True
    assert m["train/steps"] == es["stop_step"] and m["early_stopping/stopped_early"] is True and m["early_stopping/best_step"] == PAIR_EVERY
    # the stage's evaluation after training reads the restored model: the best figure again
    assert m[metric] == pytest.approx(es["best"], abs=1e-6)
    rows = logged(ctx.tracker)
    assert [r["train/global_step"] for r in rows] == steps and [r["early_stopping/metric"] for r in rows] == values
    assert rows[-1]["early_stopping/evals_without_improvement"] == PAIR_PATIENCE

    # A run of exactly best_step steps without early stopping ends with the same weights, bit for bit.
    recipe, cfg = one_stage(tiny_model, pair_stage(kind, metric, es["best_step"], early_stopping=False))
    set_seed(ctx.seed_for(cfg))
    reference = stages.get(kind).run(cfg, make_ctx(recipe, beside(tmp_path, "reference", PAIR_FILES), "s"))
    got, want = load_weights(result.model_path), load_weights(reference.model_path)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)


# ------------------------------------------------------------------ the rules


def test_patience_counts_evaluations_without_an_improvement_larger_than_min_delta():
    from rlft.training.early_stopping import EarlyStopping

    spec = EarlyStoppingSpec(every_steps=5, patience=2, min_delta=0.1)
    cfg, ctx = SimpleNamespace(early_stopping=spec, name="s"), SimpleNamespace(notes=StageNotes())
    stopper = EarlyStopping(cfg, ctx, "eval/loss", higher=False, modules=[], log=lambda values, step: None)
    assert [stopper.due(s, 12) for s in (4, 5, 10, 11, 12)] == [False, True, True, False, True]  # every 5 steps and the last
    # 1.0 is the first best; 0.95 is better by less than min_delta: no improvement; 0.85 is one; then two without.
    assert [stopper.update(step, v) for step, v in [(5, 1.0), (10, 0.95), (15, 0.85), (20, float("nan")), (25, 0.8)]] == [
        False,
        False,
        False,
        False,
        True,
    ]
    assert (stopper.best_step, stopper.best) == (15, 0.85)
    assert stopper.finish(25, 40) == {
        "early_stopping/stopped_early": True,
        "early_stopping/stop_step": 25,
        "early_stopping/best_step": 15,
        "early_stopping/best": 0.85,
        "early_stopping/restored_best": True,
    }


def test_schema_errors_name_the_key_and_the_metrics_the_stage_kind_has(tiny_model):
    def stage(name, kind, early_stopping, **extra):
        base = {"name": name, "kind": kind, "data": "d.jsonl", "early_stopping": early_stopping, "trl": {"max_steps": 20}}
        if kind in ("grpo", "rloo", "ppo"):
            base["rewards"] = [{"name": "math_accuracy"}, {"name": "./r.py:tidy"}]
        return {**base, **extra}

    with pytest.raises(RecipeError) as info:
        recipe_from_dict(
            {
                "name": "t",
                "model": str(tiny_model),
                "stages": [
                    stage("a", "sft", {"metric": "eval/reward"}),
                    stage("b", "grpo", {"metric": "eval/reward/math_acc"}),
                    stage("c", "dpo", {"prompts": 4}),
                    stage("d", "kto", {"every_steps": 20}),
                    stage("e", "reward_model", {"metric": "eval/loss"}, trl={"restore_callback_states_from_checkpoint": True}),
                    stage("f", "rloo", {}, scorecard={"prompts": 0}),
                ],
            }
        )
    problems = dict(info.value.problems)
    assert "eval/loss, eval/accuracy" in problems["stages.a.early_stopping.metric"]
    assert "did you mean 'eval/reward/math_accuracy'?" in problems["stages.b.early_stopping.metric"]
    assert "eval/reward, eval/reward/math_accuracy, eval/reward/tidy" in problems["stages.b.early_stopping.metric"]
    assert "remove it" in problems["stages.c.early_stopping.prompts"]
    assert "stages.d.early_stopping.every_steps=4" in problems["stages.d.early_stopping.every_steps"]
    assert "stages.e.trl.restore_callback_states_from_checkpoint" in problems
    assert "stages.f.early_stopping.prompts=16" in problems["stages.f.early_stopping.prompts"]
    assert len(problems) == 6

    # the defaults are valid for every kind that has early stopping: eval/loss, or eval/reward for RL stages
    ok = recipe_from_dict({"name": "t", "model": "m", "stages": [stage("a", "kto", {}), stage("b", "ppo", {"metric": "eval/reward/tidy"})]})
    assert ok.stage("a").early_stopping.metric is None and ok.stage("a").early_stopping.every_steps == 10
    assert recipe_from_dict(ok.model_dump(mode="json")) == ok  # the stage process reads the resolved recipe back

    with pytest.raises(RecipeError) as info:
        recipe_from_dict({"name": "t", "model": "m", "stages": [stage("a", "sft", {"patience": 0, "every_step": 5})]})
    text = str(info.value)
    assert "stages.a.early_stopping.patience" in text and "stages.a.early_stopping.every_step" in text and "every_steps" in text
