"""scripts/loops_vs_rl.py: each arm is a valid recipe that starts from the same SFT stage and differs only in its learning stage."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from rlft.recipe import recipe_from_dict

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "loops_vs_rl.py"


@pytest.fixture(scope="module")
def script():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("loops_vs_rl", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_arm_is_a_valid_recipe_with_the_same_sft_stage(script):
    recipes = {arm: recipe_from_dict(script.arm_recipe(arm)) for arm in script.ARMS}
    sft = {arm: r.stage("sft").model_dump() for arm, r in recipes.items()}
    assert sft["expert_iteration"] == sft["iterative_dpo"] == sft["grpo"]  # the same start, reused by fingerprint
    kinds = {arm: r.stage("improve").kind for arm, r in recipes.items()}
    assert kinds == {"expert_iteration": "expert_iteration", "iterative_dpo": "iterative_dpo", "grpo": "grpo"}
    ei, idpo, grpo = (recipes[a].stage("improve") for a in script.ARMS)
    assert (idpo.rounds, idpo.sampling, idpo.rewards) == (ei.rounds, ei.sampling, ei.rewards)  # only the learning differs
    assert idpo.trl["beta"] == 0.1 and grpo.trl["num_generations"] == 16 and grpo.rewards == ei.rewards
    assert grpo.data == ei.data and grpo.eval_data is None and grpo.early_stopping is None  # the same prompts and held-out sums
    with pytest.raises(SystemExit, match="unknown arm"):
        script.arm_recipe("ppo")


def test_per_prompt_reads_the_stages_held_out_samples(script, tmp_path):
    run = tmp_path / "run"
    (run / "improve").mkdir(parents=True)
    rows = [{"baseline_math_accuracy": b, "eval_math_accuracy": a} for b, a in ((0.0, 1.0), (1.0, 1.0), (0.0, 0.0))]
    (run / "improve" / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    stages = [{"name": "sft", "metrics": {}}, {"name": "improve", "metrics": {"train/runtime_s": 60.0}}]
    (run / "summary.json").write_text(json.dumps({"stages": stages}))
    before, after, metrics = script.per_prompt(run)
    assert (before, after, metrics["train/runtime_s"]) == ([0.0, 1.0, 0.0], [1.0, 1.0, 0.0], 60.0)
