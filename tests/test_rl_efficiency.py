"""scripts/rl_efficiency.py's parts that decide its verdicts: the paired rate bootstrap, its interval, the time budget."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "rl_efficiency.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("rl_efficiency", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rates_are_paired_over_the_same_prompt_draws(script):
    before = [0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    after = [1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]  # +3/8 over 8 prompts
    draws = script.bootstrap_rates(before, {"a": after, "b": after, "c": before}, {"a": 1.0, "b": 3.0, "c": 1.0})
    assert all(x == pytest.approx(3 * y) for x, y in zip(draws["a"], draws["b"], strict=True))  # same draws, a third the time
    assert set(draws["c"]) == {0.0}
    assert sum(draws["a"]) / len(draws["a"]) == pytest.approx(3 / 8, abs=0.02)


def test_interval_is_the_central_95_percent(script):
    lo, hi = script.interval([float(i) for i in range(1000)])
    assert (lo, hi) == (25.0, 975.0)


def test_plain_trl_arms_stop_at_the_first_step_past_the_budget(script):
    from transformers import TrainerControl

    for seconds, stops in ((0.0, True), (1e9, False)):
        callback, control = script.StopAfter(seconds), TrainerControl()
        callback.on_train_begin(None, None, control)
        callback.on_step_end(None, None, control)
        assert control.should_training_stop is stops


def test_the_arms_get_the_quickstart_rl_stages_own_rows(script):
    """Training rows: the stage's seeded data mixture; held-out rows: its eval_data (the 200 bundled test sums)."""
    from rlft.data.bundled import DATASETS
    from rlft.data.rows import load_rows
    from rlft.recipe import load_recipe

    recipe = load_recipe(script.RECIPE)
    stage = recipe.stage("rl")
    prompts, answers = script.heldout(200)
    assert answers == [r["answer"] for r in DATASETS["arithmetic"]("test")]
    assert prompts[0][0] == {"role": "system", "content": ""}  # the stage's system message
    train = script.rl_rows("train")
    assert list(train["prompt"]) == list(load_rows(stage.data, split="train", seed=recipe.seed)[0]["prompt"])
