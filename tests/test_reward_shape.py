"""A reward sees completions in one shape everywhere: the shape TRL's trainers pass (issue 16, part 0).

A reward written the way TRL's docs write one (``completion[0]["content"]``) must work in the held-out
scorecard as it does in training, and a reward model must score held-out answers in the chat format it was
trained on. ``rlft.reward_refs.trl_shaped`` decides the shape; every caller goes through ``Reward``.
"""

from __future__ import annotations

import json

from conftest import sum_rows, write_jsonl
from test_stages import make_ctx

from rlft.recipe import recipe_from_dict
from rlft.reward_refs import Reward, trl_shaped

CHAT = [{"role": "user", "content": "2+2="}]

# Logs the shape of every completion it is handed, whether token ids came with it and whether TRL's trainer
# called it, then scores the way TRL's documentation does: content of the first message.
PROBE = """
import json, os

def trl_doc_style(prompts, completions, completion_ids, log, **kwargs):
    kwargs["log_metric"]("probe/calls", 1.0)  # TRL hands every reward its loggers
    with open(log, "a") as f:
        for c, ids in zip(completions, completion_ids):
            shape = "messages" if isinstance(c, list) and isinstance(c[0], dict) else type(c).__name__
            ids_ok = isinstance(ids, list) and len(ids) >= 1 and all(isinstance(i, int) for i in ids)
            f.write(json.dumps({"shape": shape, "ids": ids_ok, "training": "trainer_state" in kwargs}) + "\\n")
    return [float(len(c[0]["content"]) > 0) for c in completions]
"""


def probe_stage(log, **extra) -> dict:
    """A GRPO stage rewarded by the probe (logging to ``log``) on prompts.jsonl, with 2 held-out prompts scored."""
    return {
        "name": "rl",
        "kind": "grpo",
        "data": "prompts.jsonl",
        "eval_fraction": 0.5,
        "scorecard": {"prompts": 2, "max_new_tokens": 4},
        "rewards": [{"name": "./probe.py:trl_doc_style", "kwargs": {"log": str(log)}}],
        "trl": {"max_steps": 1, "num_generations": 2, "per_device_train_batch_size": 2, "max_completion_length": 4},
        **extra,
    }


def test_text_completions_of_a_conversation_become_one_assistant_message():
    assert trl_shaped([CHAT, "2+2="], ["4", "4"]) == [[{"role": "assistant", "content": "4"}], "4"]
    already = [[{"role": "assistant", "content": "4"}]]
    assert trl_shaped([CHAT], already) == already


def test_a_reward_called_with_text_gets_what_trl_would_pass():
    seen = []

    def record(prompts, completions, **kwargs):
        seen.extend(completions)
        return [0.0] * len(completions)

    Reward("record", record)([CHAT, "1+1="], ["4", "2"])
    assert seen == [[{"role": "assistant", "content": "4"}], "2"]


def test_grpo_training_and_its_scorecard_hand_a_reward_the_same_shape(tiny_model, tmp_path):
    from rlft.stages import grpo

    (tmp_path / "probe.py").write_text(PROBE)
    log = tmp_path / "shapes.jsonl"
    write_jsonl(tmp_path / "prompts.jsonl", sum_rows(8, with_completion=False))  # plain-text prompts: rlft makes them chats
    stage = probe_stage(log)
    recipe = recipe_from_dict({"name": "t", "model": str(tiny_model), "stages": [stage]})
    result = grpo.run(recipe.stage("rl"), make_ctx(recipe, tmp_path, "rl"))
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    training = {c["shape"] for c in calls if c["training"]}
    scoring = {c["shape"] for c in calls if not c["training"]}
    assert training == scoring == {"messages"}, calls
    assert all(c["ids"] for c in calls), calls  # completion_ids in training and in held-out scoring
    assert len([c for c in calls if not c["training"]]) == 4  # 2 held-out prompts, before and after
    assert "eval/reward/trl_doc_style" in result.metrics


def _probe_calls(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_the_eval_stage_and_early_stopping_hand_a_reward_the_same_shape(tiny_model, tmp_path):
    from rlft.stages import eval as eval_stage
    from rlft.stages import grpo

    (tmp_path / "probe.py").write_text(PROBE)
    write_jsonl(tmp_path / "prompts.jsonl", sum_rows(8, with_completion=False))
    log = tmp_path / "eval.jsonl"
    probe = [{"name": "./probe.py:trl_doc_style", "kwargs": {"log": str(log)}}]
    recipe = recipe_from_dict(
        {"name": "t", "model": str(tiny_model), "stages": [{"name": "ev", "kind": "eval", "data": "prompts.jsonl", "rewards": probe, "max_new_tokens": 4, "baseline": None}]}
    )  # fmt: skip
    eval_stage.run(recipe.stage("ev"), make_ctx(recipe, tmp_path, "ev"))
    calls = _probe_calls(log)
    assert calls and {c["shape"] for c in calls} == {"messages"} and all(c["ids"] and not c["training"] for c in calls)

    log = tmp_path / "early.jsonl"
    stage = probe_stage(log, early_stopping={"every_steps": 1, "patience": 5})
    stage["trl"]["max_steps"] = 2
    recipe = recipe_from_dict({"name": "t", "model": str(tiny_model), "stages": [stage]})
    grpo.run(recipe.stage("rl"), make_ctx(recipe, tmp_path, "rl"))
    held_out = [c for c in _probe_calls(log) if not c["training"]]
    # 2 prompts: the scorecard before and after (4) and an early-stopping evaluation at steps 1 and 2 (4)
    assert len(held_out) == 8 and {c["shape"] for c in held_out} == {"messages"} and all(c["ids"] for c in held_out)
