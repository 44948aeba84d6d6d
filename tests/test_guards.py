"""Reward-hacking guards: each check on logs built to trip it, and a GRPO stage stopped by one on the tiny model."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import sum_rows, write_jsonl
from test_stages import make_ctx

from rlft.recipe import GuardsSpec, recipe_from_dict
from rlft.training.guards import Guards


def _guards(weights=None, stopper=None, **spec):
    logged = []
    g = Guards(GuardsSpec(**spec), "rl", weights or {"acc": 1.0}, lambda v, step: logged.append((step, v)), stopper)
    return g, logged


def _run(g, rows):
    return [g.check(step, logs) for step, logs in enumerate(rows, start=1)]


def test_length_drift_and_length_cap():
    g, logged = _guards(length_drift=2.0, length_cap=0.5, stop_on=["length_cap"])
    stops = _run(
        g,
        [
            {"completions/mean_length": 10.0, "completions/clipped_ratio": 0.0},
            {"completions/mean_length": 19.0, "completions/clipped_ratio": 0.5},  # 1.9x, half at the cap: nothing yet
            {"completions/mean_length": 21.0, "completions/clipped_ratio": 0.75},  # 2.1x and 75% cut
            {"completions/mean_length": 4.0, "completions/clipped_ratio": 0.0},  # 0.4x: shorter counts too
        ],
    )
    assert stops == [False, False, True, False]
    assert [(e["guard"], e["step"]) for e in g.events] == [("length_drift", 3), ("length_cap", 3), ("length_drift", 4)]
    assert g.events[0]["value"] == pytest.approx(2.1) and g.events[2]["value"] == pytest.approx(0.4)
    assert (3, {"guards/length_cap": 1.0, "guards/length_cap/value": 0.75}) in logged
    m = g.metrics()
    assert m["guards/fired"] == "length_drift, length_cap" and m["guards/stopped_by"] == "length_cap"
    assert m["guards/length_drift/first_step"] == 3 and m["guards/active"] == "length_cap, length_drift"


def test_kl_spike_by_ceiling_and_by_jump_from_a_floor():
    g, _ = _guards(kl_max=1.0, kl_jump=3.0, kl_floor=0.01)
    _run(g, [{"kl": 0.001}, {"kl": 0.009}, {"kl": 0.02}, {"kl": 0.07}, {"kl": 0.1}, {"kl": 1.5}])
    # 0.001 -> 0.009 is 9x but below the floor; 0.02 -> 0.07 is 3.5x: a jump; 1.5 is above kl_max
    assert [(e["guard"], e["step"]) for e in g.events] == [("kl_spike", 4), ("kl_spike", 6)]
    assert "jumped 3.5x" in g.events[0]["message"] and "kl_max" in g.events[1]["message"]


def test_silent_groups_and_reward_dominance():
    g, _ = _guards(weights={"acc": 1.0, "fmt": 0.2}, silent_groups=0.9, reward_dominance=0.9)
    _run(
        g,
        [
            {"frac_reward_zero_std": 0.5, "rewards/acc/std": 0.5, "rewards/fmt/std": 0.5},  # spread 0.5 vs 0.1: 83%
            {"frac_reward_zero_std": 0.95, "rewards/acc/std": 0.5, "rewards/fmt/std": 0.1},  # 0.5 vs 0.02: 96%
        ],
    )
    assert [(e["guard"], e["step"]) for e in g.events] == [("silent_groups", 2), ("reward_dominance", 2)]
    assert "acc" in g.events[1]["message"] and g.events[1]["value"] == pytest.approx(0.5 / 0.52)
    one, _ = _guards(weights={"acc": 1.0})
    _run(one, [{"rewards/acc/std": 1.0}])
    assert one.events == [] and "reward_dominance" not in one.active  # one reward cannot dominate others


def test_divergence_needs_held_out_falling_while_training_reward_rises():
    stopper = SimpleNamespace(history=[])
    g, _ = _guards(stopper=stopper, divergence_evals=2, stop_on=["divergence"])
    evals = {2: 0.50, 4: 0.45, 6: 0.40, 8: 0.41}  # held-out reward at each early-stopping evaluation
    train = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]  # training reward keeps rising
    stops = []
    for step, reward in enumerate(train, start=1):
        if step in evals:
            stopper.history.append([step, evals[step]])
        stops.append(g.check(step, {"reward": reward, "loss": 0.0}))
    # step 4: fell once (1 of 2); step 6: twice in a row -> fires and stops; step 8: held-out rose again
    assert [e["step"] for e in g.events] == [6] and stops == [False] * 5 + [True] + [False] * 2
    assert g.metrics()["guards/stopped_by"] == "divergence"


def test_unreadable_guards_stay_silent_and_are_not_active():
    g, _ = _guards(kl_max=0.1)
    _run(g, [{"reward": 1.0, "loss": 0.1}] * 3)  # beta 0: TRL logs no kl; no lengths either
    assert g.events == [] and g.metrics()["guards/active"] == "" and g.metrics()["guards/stopped_by"] == ""


def test_divergence_in_stop_on_needs_early_stopping(tiny_model):
    from rlft.errors import RecipeError

    stage = {"name": "rl", "kind": "grpo", "data": {"source": "bundled:arithmetic"}, "rewards": ["math_accuracy"]}
    with pytest.raises(RecipeError, match="only early_stopping evaluates"):
        recipe_from_dict({"name": "t", "model": str(tiny_model), "stages": [{**stage, "guards": {"stop_on": ["divergence"]}}]})


REWARDS = """
def longer(prompts, completions, **kw):  # pays for length: the gamed reward
    return [float(len(c[0]['content'])) for c in completions]


def same(prompts, completions, **kw):  # pays everyone alike: no signal
    return [1.0] * len(completions)


def noisy(prompts, completions, **kw):  # a different score for every completion
    return [float(i % 3) for i in range(len(completions))]
"""


def _grpo(tiny_model, tmp_path, rewards, guards, **trl):
    from rlft.stages import grpo

    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": r["prompt"]} for r in sum_rows(16, with_completion=False)])
    (tmp_path / "toy.py").write_text(REWARDS)
    stage = {
        "name": "rl",
        "kind": "grpo",
        "data": {"source": str(data)},
        "eval_limit": 2,
        "scorecard": {"prompts": 2, "max_new_tokens": 4},
        "rewards": [{"name": f"{tmp_path}/toy.py:{name}"} for name in rewards],
        "guards": guards,
        "trl": {"max_steps": 3, "num_generations": 2, "per_device_train_batch_size": 2, "max_completion_length": 6, **trl},
    }
    recipe = recipe_from_dict({"name": "t", "model": str(tiny_model), "stages": [stage]}, source=str(tmp_path / "r.yaml"))
    ctx = make_ctx(recipe, tmp_path, "rl")
    return grpo.run(recipe.stage("rl"), ctx).metrics, ctx


# Each guard tripped on the tiny model by a reward built for it; the random model never ends a completion.
@pytest.mark.parametrize(
    ("guard", "rewards", "trl"),
    [
        ("length_cap", ["longer"], {}),  # every completion runs to the cap
        ("silent_groups", ["same"], {}),  # every group scores alike
        ("reward_dominance", ["noisy", "same"], {}),  # all the spread is one reward's
        ("kl_spike", ["longer"], {"beta": 0.1, "learning_rate": 1e-2, "max_steps": 8}),  # kl_max below any KL an update makes
    ],
)
def test_each_guard_stops_a_grpo_stage_on_the_tiny_model(tiny_model, tmp_path, guard, rewards, trl):
    guards = {"stop_on": [guard], "kl_max": 1e-9}
    m, ctx = _grpo(tiny_model, tmp_path, rewards, guards, **trl)
    assert m["guards/stopped_by"] == guard and guard in m["guards/fired"].split(", ")
    assert m["train/steps"] == m[f"guards/{guard}/first_step"] < trl.get("max_steps", 3)  # stopped where it fired, early
    assert any(e["guard"] == guard for e in ctx.notes.guards)


def test_a_guard_not_in_stop_on_only_warns(tiny_model, tmp_path):
    m, ctx = _grpo(tiny_model, tmp_path, ["longer"], {"length_cap": 0.5})
    assert m["train/steps"] == 3 and m["guards/stopped_by"] == "" and m["guards/length_cap/first_step"] == 1
    assert [e["step"] for e in ctx.notes.guards if e["guard"] == "length_cap"] == [1, 2, 3]


def test_ppo_gets_the_guards_as_a_step_callback_that_can_stop_it():
    from rlft.training.guards import guard_ppo

    logged = []
    trainer = SimpleNamespace(callbacks=[])
    ctx = SimpleNamespace(tracker=SimpleNamespace(log=lambda values, step: logged.append((step, values))))
    cfg = SimpleNamespace(name="rl", guards=GuardsSpec(length_cap=0.5, stop_on=["length_cap"]))
    guards = guard_ppo(trainer, cfg, ctx, {"r": 1.0})
    (callback,) = trainer.callbacks
    assert callback(1, 10, {"completions/clipped_ratio": 0.2, "kl": 0.1}) is False
    assert callback(2, 10, {"completions/clipped_ratio": 0.9, "kl": 0.1}) is True  # PPO ends training on True
    assert guards.metrics()["guards/stopped_by"] == "length_cap" and logged[-1][0] == 2
    assert guard_ppo(trainer, SimpleNamespace(name="rl", guards=None), ctx, {}) is None


# ------------------------------------------------------------------ length drift and divergence through a real stage run

# A start model that answers "7" and stops (SFT on one-token answers: 2 tokens with the end of turn), and a reward
# that pays for length: the RL stage learns to stop stopping, and the mean completion length leaves its start.
SHORT_SFT_STEPS = 40  # fewer leave it answering long; more leave every group alike (no advantage) for several steps
LONGER = """
def longer(prompts, completions, **kw):
    return [float(len(c[0]["content"])) for c in completions]
"""

# Training pays for digits (the proxy the stage can game); held out, early stopping scores the share of other
# characters (what is wanted, weight 0: it does not train). As the model learns digits, held-out reward falls.
PROXY = """
def _digits(completions):
    return [sum(ch.isdigit() for ch in c[0]["content"]) / max(len(c[0]["content"]), 1) for c in completions]


def digits(prompts, completions, **kw):
    return _digits(completions)


def letters(prompts, completions, **kw):
    return [1.0 - d for d in _digits(completions)]
"""


@pytest.fixture(scope="module")
def short_model(tiny_model, tmp_path_factory) -> str:
    import torch

    from rlft.stages import sft

    root = tmp_path_factory.mktemp("short")
    write_jsonl(root / "short.jsonl", [{"prompt": r["prompt"], "completion": "7"} for r in sum_rows(16)])
    trl = {"max_steps": SHORT_SFT_STEPS, "per_device_train_batch_size": 8, "learning_rate": 1e-2, "lr_scheduler_type": "constant"}
    stage = {"name": "sft", "kind": "sft", "data": "short.jsonl", "scorecard": {"prompts": 0}, "trl": trl}
    recipe = recipe_from_dict({"name": "t", "seed": 42, "model": str(tiny_model), "tracking": {"mode": "disabled"}, "stages": [stage]})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as every tiny-model test runs (the result is seeded for it)
    try:
        return sft.run(recipe.stage("sft"), make_ctx(recipe, root, "sft")).model_path
    finally:
        torch.set_num_threads(threads)


def _rl_stage(tmp_path, model: str, kind: str, rewards: list, guards: dict, trl: dict, **extra):
    from test_ppo import Recorder

    from rlft import stages

    write_jsonl(tmp_path / "prompts.jsonl", sum_rows(16, with_completion=False))
    trl = {"max_steps": 12, "temperature": 1.0, "lr_scheduler_type": "constant", **trl}
    trl.update({"num_generations": 4} if kind == "grpo" else {"kl_coef": 0.01})
    stage = {"name": "rl", "kind": kind, "data": "prompts.jsonl", "eval_fraction": 0.5, "rewards": rewards, "guards": guards}
    stage.update(scorecard={"prompts": 4, "max_new_tokens": 8}, trl=trl, **extra)
    recipe = recipe_from_dict({"name": "t", "seed": 42, "model": model, "tracking": {"mode": "disabled"}, "stages": [stage]})
    ctx = make_ctx(recipe, tmp_path, "rl")
    ctx.tracker = Recorder()
    return stages.get(kind).run(recipe.stage("rl"), ctx).metrics, ctx


def _assert_stopped_by(guard: str, step: int, m: dict, ctx, printed: str) -> dict:
    """The stage stopped at ``step`` because ``guard`` fired there, and said so everywhere; returns the firing."""
    assert m["train/steps"] == step and m["guards/stopped_by"] == guard and m[f"guards/{guard}/first_step"] == step
    assert guard in m["guards/fired"].split(", ")
    (event,) = [e for e in ctx.notes.to_manifest()["guards"] if e["guard"] == guard]  # the manifest's guards entry
    assert event["step"] == step
    logged = [(s, v) for s, v in ctx.tracker.history if f"guards/{guard}" in v]
    assert len(logged) == 1 and logged[0][1][f"guards/{guard}"] == 1.0 and logged[0][1][f"guards/{guard}/value"] == event["value"]
    assert logged[0][0] == step or logged[0][1]["train/global_step"] == step  # PPO logs at a step; TRL stages against train/global_step
    assert f"[rl] guard {guard} at step {step}: {event['message']}" in printed
    assert f"[rl] guard {guard} is in stop_on: stopping the stage at step {step}" in printed
    return event


# Seeded, on one CPU thread: the steps where the stages stop are where these runs, as set up here, stop.
@pytest.mark.parametrize(("kind", "stop_step"), [("grpo", 3), ("ppo", 2)])
def test_a_reward_that_pays_for_length_trips_length_drift(short_model, tmp_path, capsys, kind, stop_step):
    (tmp_path / "toy.py").write_text(LONGER)
    guards = {"length_drift": 2.0, "length_cap": 1.0, "stop_on": ["length_drift"]}
    trl = {"per_device_train_batch_size": 16, "max_completion_length": 16, "learning_rate": 1e-2}
    m, ctx = _rl_stage(tmp_path, short_model, kind, [{"name": f"{tmp_path}/toy.py:longer"}], guards, trl)
    event = _assert_stopped_by("length_drift", stop_step, m, ctx, capsys.readouterr().out)
    assert event["value"] > 2.0 and event["message"].startswith("mean completion length ")
    assert m["baseline/mean_length"] == 2.0 and m["eval/mean_length"] > 4.0  # greedily "7" and the end of turn; then longer


@pytest.mark.parametrize(("kind", "stop_step"), [("grpo", 6), ("ppo", 10)])
def test_a_gamed_proxy_trips_divergence_and_the_stage_keeps_its_best_model(tiny_model, tmp_path, capsys, kind, stop_step):
    (tmp_path / "toy.py").write_text(PROXY)
    rewards = [{"name": f"{tmp_path}/toy.py:digits"}, {"name": f"{tmp_path}/toy.py:letters", "weight": 0.0}]
    guards = {"divergence_evals": 2, "reward_dominance": 1.0, "length_cap": 1.0, "stop_on": ["divergence"]}
    early = {"every_steps": 2, "patience": 20, "metric": "eval/reward/letters"}  # patience: only the guard stops it
    trl = {"per_device_train_batch_size": 8, "max_completion_length": 8, "learning_rate": 3e-2 if kind == "grpo" else 1e-2}
    m, ctx = _rl_stage(tmp_path, str(tiny_model), kind, rewards, guards, trl, early_stopping=early)
    printed = capsys.readouterr().out
    event = _assert_stopped_by("divergence", stop_step, m, ctx, printed)
    es = ctx.notes.early_stopping
    held_out = dict(es["evaluations"])
    assert held_out[stop_step] <= held_out[stop_step - 2] and held_out[stop_step] < es["best"]  # down from its best, not back up
    assert event["value"] == pytest.approx(held_out[stop_step] - es["best"]) and event["value"] < 0
    assert "while training reward rose" in event["message"] and m["guards/fired"] == "divergence"  # the only guard that fired
    # it stopped there, and ended with early stopping's best weights: its held-out reward is the best evaluation's again
    assert es["stop_step"] == stop_step and es["best_step"] == 2 and es["restored_best"] is True
    assert "[rl] early stopping: restored the weights of step 2" in printed
    assert m["eval/reward/letters"] == es["best"] > held_out[stop_step]
