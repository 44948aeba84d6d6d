"""One reward, every path that calls it: the same prompts, completions and columns as in training (issue 16, part 0).

A GSM8K-style file whose prompts are plain strings, and the same rows with chat-message prompts, go through every
place rlft calls a reward: GRPO training, the held-out scorecard, early stopping's evaluations, PPO training, an
expert-iteration round, the eval stage, the merge stage, win rates and ``rlft rewards test``. A probe reward
written the way TRL's docs write one (``completion[0]["content"]``) records what each call handed it; every path
must hand it exactly what training does. rlft makes plain-string prompts chat messages for training, so a reward
sees one assistant message everywhere, whichever way the file was written, and a reward written for plain
strings fails at its first call, in the scorecard or in training alike, with a fix that names the shape.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import sum_rows, write_jsonl
from test_stages import make_ctx

from rlft.errors import RlftError
from rlft.recipe import recipe_from_dict
from rlft.reward_refs import Reward

# Records, per call: which rlft path called it (the first of these modules on the stack), the shape of each prompt
# and completion, the data columns it got as keyword arguments (TRL's extras aside) and whether completion_ids
# came with the completions; then scores the way TRL's documentation does.
PROBE = """
import inspect, json, os

PATHS = [
    ("early_stopping", "rlft.training.early_stopping"),
    ("scorecard", "rlft.stages.heldout"),
    ("eval", "rlft.stages.eval"),
    ("merge", "rlft.stages.merge"),
    ("winrate", "rlft.analysis.winrate"),
    ("rewards_test", "rlft.cli.app"),
    ("expert_iteration", "rlft.stages.self_improve"),
    ("ppo", "rlft.ppo.trainer"),
    ("grpo", "trl.trainer.grpo_trainer"),
]
TRL_EXTRAS = {"completion_ids", "trainer_state", "log_extra", "log_metric"}


def shape(value):
    if isinstance(value, str):
        return "text"
    return [[m["role"], sorted(m), type(m["content"]).__name__] for m in value]


def path():
    modules = {f.frame.f_globals.get("__name__") for f in inspect.stack()}
    return next((tag for tag, module in PATHS if module in modules), "unknown")


def trl_doc_style(prompts, completions, completion_ids, **kwargs):
    columns = sorted(k for k in kwargs if k not in TRL_EXTRAS)
    ids = all(isinstance(i, list) and i and all(isinstance(t, int) for t in i) for i in completion_ids)
    with open(os.environ["PROBE_LOG"], "a") as f:
        for p, c in zip(prompts, completions):
            f.write(json.dumps({"path": path(), "prompt": shape(p), "completion": shape(c), "columns": columns, "ids": ids}) + "\\n")
    return [float(len(c[0]["content"])) for c in completions]


def plain_text_style(prompts, completions, **kwargs):
    return [float(c.strip().count("7")) for c in completions]
"""

# Everything above, for one data file: a shared module-scoped run (tiny model, one or two steps per stage).
EXPECTED_PATHS = {"grpo", "scorecard", "early_stopping", "ppo", "expert_iteration", "eval", "merge", "winrate", "rewards_test"}
ONE_ASSISTANT_MESSAGE = [["assistant", ["content", "role"], "str"]]
TINY_RL = {"per_device_train_batch_size": 2, "max_completion_length": 4}


def _rows(style: str) -> list[dict]:
    """Eight sums with an answer and a reference completion; ``chat``: the prompt and completion as messages."""
    rows = sum_rows(8)
    if style == "chat":
        for r in rows:
            r["prompt"] = [{"role": "user", "content": r["prompt"]}]
            r["completion"] = [{"role": "assistant", "content": r["completion"]}]
    return rows


def _stages(reward: str) -> list[dict]:
    rewards = [{"name": f"./probe.py:{reward}"}]
    held = {"eval_fraction": 0.5, "scorecard": {"prompts": 2, "max_new_tokens": 4}}
    return [
        {"name": "grpo", "kind": "grpo", "data": "data.jsonl", "rewards": rewards, **held,
         "early_stopping": {"every_steps": 1, "patience": 5}, "trl": {"max_steps": 2, "num_generations": 2, **TINY_RL}},
        {"name": "ppo", "kind": "ppo", "data": "data.jsonl", "rewards": rewards, **held, "scorecard": {"prompts": 0},
         "trl": {"max_steps": 1, **TINY_RL}},
        {"name": "ei", "kind": "expert_iteration", "data": "data.jsonl", "rewards": rewards, **held, "rounds": 1,
         "keep": {"min_reward": -1.0}, "sampling": {"prompts": 2, "completions": 2, "max_new_tokens": 4},
         "trl": {"max_steps": 1, "per_device_train_batch_size": 2}},
        {"name": "ev", "kind": "eval", "data": "data.jsonl", "rewards": rewards, "max_new_tokens": 4, "baseline": None},
        {"name": "soup", "kind": "merge", "models": ["base", "base"], "data": "data.jsonl", "rewards": rewards, "max_new_tokens": 4},
    ]  # fmt: skip


def _every_path(tiny_model: Path, root: Path, reward: str) -> None:
    """Call ``./probe.py:<reward>`` through every path, on ``root/data.jsonl``; raises what the first failing call raises."""
    from typer.testing import CliRunner

    from rlft import stages
    from rlft.analysis.winrate import winrates
    from rlft.cli.app import app

    recipe = recipe_from_dict({"name": "t", "model": str(tiny_model), "tracking": {"mode": "disabled"}, "stages": _stages(reward)})
    for cfg in recipe.stages:
        stages.get(cfg.kind).run(cfg, make_ctx(recipe, root, cfg.name))
    winrates({"a": tiny_model, "b": tiny_model}, root / "data.jsonl", [f"{root}/probe.py:{reward}"], max_new_tokens=4, batch_size=4)
    cwd = Path.cwd()
    try:
        os.chdir(root)
        for args in (["--data", "data.jsonl"], ["--prompt", "1+2=", "--completion", "<answer>3</answer>", "--column", "answer=3"]):
            out = CliRunner().invoke(app, ["rewards", "test", f"./probe.py:{reward}", *args, "--tokenizer", str(tiny_model)])
            if out.exit_code != 0:
                raise RlftError(out.output.strip().removeprefix("error: "))
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module", params=["text", "chat"])
def seen(request, tiny_model, tmp_path_factory) -> dict[str, list[dict]]:
    """Path -> the distinct calls (prompt and completion shapes, columns, ids) the probe recorded, for one way of writing the file."""
    import torch

    root = tmp_path_factory.mktemp(request.param)
    write_jsonl(root / "data.jsonl", _rows(request.param))
    (root / "probe.py").write_text(PROBE)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROBE_LOG", str(root / "calls.jsonl"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        try:
            _every_path(tiny_model, root, "trl_doc_style")
        finally:
            torch.set_num_threads(threads)
    by_path: dict[str, list[dict]] = {}
    for line in (root / "calls.jsonl").read_text().splitlines():
        call = json.loads(line)
        found = by_path.setdefault(call.pop("path"), [])
        if call not in found:
            found.append(call)
    return by_path


def test_every_path_calls_the_reward(seen):
    assert set(seen) == EXPECTED_PATHS


def test_every_path_hands_the_reward_what_training_does(seen):
    training = seen["grpo"]
    assert training == [
        {"prompt": [["user", ["content", "role"], "str"]], "completion": ONE_ASSISTANT_MESSAGE, "columns": ["answer"], "ids": True}
    ]
    for path, calls in seen.items():
        assert calls == training, path


def test_a_reward_written_for_plain_strings_fails_alike_in_training_and_before_it(tiny_model, tmp_path):
    """rlft trains on chat messages, so ``c.strip()`` cannot work in training: it fails at the first call, with a fix."""
    from rlft.stages import grpo

    write_jsonl(tmp_path / "data.jsonl", _rows("text"))
    (tmp_path / "probe.py").write_text(PROBE)
    stage = _stages("plain_text_style")[0]
    # first call: the starting model's scorecard; without one, TRL's first training step
    for scorecard, caller in ((2, "rlft/stages/heldout.py"), (0, "trl/trainer/grpo_trainer.py")):
        recipe = recipe_from_dict(
            {"name": "t", "model": str(tiny_model), "stages": [{**stage, "early_stopping": None, "scorecard": {"prompts": scorecard}}]}
        )
        with pytest.raises(RlftError) as err:
            grpo.run(recipe.stage("grpo"), make_ctx(recipe, tmp_path, "grpo"))
        assert any(str(entry.path).endswith(caller) for entry in err.traceback), caller
        assert err.value.what == "reward plain_text_style raised AttributeError: 'list' object has no attribute 'strip'"
        assert err.value.fix.startswith('each completion is a list of chat messages, [{"role": "assistant", "content": ...}], in training')
        assert "rewards.text(completion)" in err.value.fix


def test_a_type_error_on_the_other_shape_says_which_shape_the_reward_got():
    def trl_doc_style(prompts, completions, **kwargs):
        return [float(len(c[0]["content"])) for c in completions]

    with pytest.raises(RlftError) as err:
        Reward("doc", trl_doc_style)(["2+2="], ["4"])  # a text prompt (rlft's own paths never pass one)
    assert err.value.fix.startswith("each completion is plain text here, as TRL passes it when the prompt is text")
    with pytest.raises(RlftError) as err:
        Reward("broken", lambda prompts, completions, **kw: 1 / 0)([[{"role": "user", "content": "q"}]], ["4"])
    assert err.value.fix == "fix the reward function; call it on a few samples by hand to reproduce"  # not a shape problem
