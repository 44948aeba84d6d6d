"""`rlft plan` reads every stage's data and reports every problem of a recipe in one list, before anything trains."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import write_jsonl
from typer.testing import CliRunner

from rlft.cli.app import _load, app
from rlft.errors import RecipeError


def _problems(path: Path) -> list[tuple[str, str]]:
    with pytest.raises(RecipeError) as info:
        _load(path, [], deep=True)
    return info.value.problems


def _recipe(tmp_path: Path, model: Path, stages: list[dict]) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "model": str(model), "stages": stages}, sort_keys=False))
    return path


def _sums(tmp_path: Path, name: str, key: str) -> Path:
    return write_jsonl(tmp_path / name, [{key: f"What is {i} + 1?", "answer": str(i + 1), "completion": str(i + 1)} for i in range(6)])


def test_every_stages_columns_are_checked_before_the_first_stage_trains(tiny_model, tmp_path):
    sft = _sums(tmp_path, "sft.jsonl", "question")
    rl = _sums(tmp_path, "rl.jsonl", "question")  # no prompt column, and the GRPO stage maps none
    path = _recipe(
        tmp_path,
        tiny_model,
        [
            {"name": "sft", "kind": "sft", "data": {"source": str(sft), "columns": {"prompt": "qestion"}}},
            {"name": "rl", "kind": "grpo", "init_from": "sft", "data": {"source": str(rl)}, "rewards": ["math_accuracy"]},
        ],
    )
    problems = _problems(path)
    assert [key for key, _ in problems] == ["stages.sft.data", "stages.rl.data"]
    assert "has no column 'qestion'" in problems[0][1] and "question" in problems[0][1]  # the columns it has
    assert "has no column 'prompt'" in problems[1][1] and "columns: {prompt: <source column>}" in problems[1][1]
    out = CliRunner().invoke(app, ["plan", str(path)])
    assert out.exit_code == 2 and "2 problem(s)" in out.output and "qestion" in out.output and "'prompt'" in out.output


def test_a_reward_whose_column_the_data_lacks_is_reported_at_plan_time(tiny_model, tmp_path):
    rows = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"What is {i} + 1?", "solution": str(i + 1)} for i in range(4)])
    path = _recipe(tmp_path, tiny_model, [{"name": "rl", "kind": "grpo", "data": {"source": str(rows)}, "rewards": ["math_accuracy"]}])
    (key, message), *rest = _problems(path)
    assert not rest and key == "stages.rl.rewards"
    assert "reward math_accuracy needs column(s) ['answer']" in message and "solution" in message
    assert "stages.rl.data.columns" in message
    fixed = _recipe(
        tmp_path,
        tiny_model,
        [{"name": "rl", "kind": "grpo", "data": {"source": str(rows), "columns": {"answer": "solution"}}, "rewards": ["math_accuracy"]}],
    )
    _load(fixed, [], deep=True)  # mapping the column is the fix


def test_a_misspelled_init_from_does_not_hide_the_other_problems(tiny_model, tmp_path):
    rows = _sums(tmp_path, "p.jsonl", "prompt")
    path = _recipe(
        tmp_path,
        tiny_model,
        [
            {"name": "sft", "kind": "sft", "data": {"source": str(rows)}},
            {
                "name": "rl",
                "kind": "grpo",
                "init_from": "stf",
                "data": {"source": str(rows)},
                "rewards": ["math_accuracy", "math_acuracy", {"name": "./missing.py:score"}],
                "trl": {"max_step": 3},
            },
        ],
    )
    problems = _problems(path)
    keys = [key for key, _ in problems]
    assert keys == ["stages.rl.init_from", "stages.rl.rewards[1].name", "stages.rl.rewards[2].name", "stages.rl.trl"], problems
    assert "'sft'" in problems[0][1]  # did you mean
    assert "math_accuracy" in problems[1][1]
    assert "missing.py" in problems[2][1]
    assert "max_step" in problems[3][1] and "max_steps" in problems[3][1]


def test_every_bad_trl_key_of_a_stage_is_reported_together(tiny_model, tmp_path):
    rows = _sums(tmp_path, "p.jsonl", "prompt")
    trl = {"max_step": 3, "learning_rate": "fast", "use_cpu": "maybe", "warmup_steps": "1e-1", "logging_steps": True}
    path = _recipe(tmp_path, tiny_model, [{"name": "sft", "kind": "sft", "data": {"source": str(rows)}, "trl": trl}])
    problems = dict(_problems(path))
    assert set(problems) == {"stages.sft.trl", "stages.sft.trl.learning_rate", "stages.sft.trl.use_cpu", "stages.sft.trl.logging_steps"}
    assert "max_step" in problems["stages.sft.trl"]
    assert "'fast' is not a number" in problems["stages.sft.trl.learning_rate"]
    assert "'maybe' is not true or false" in problems["stages.sft.trl.use_cpu"]
    assert "is a switch" in problems["stages.sft.trl.logging_steps"]


def test_numbers_written_as_text_reach_trl_as_numbers(tiny_model, tmp_path):
    from rlft.recipe import load_recipe
    from rlft.stages.trl_config import trl_config_for

    rows = _sums(tmp_path, "p.jsonl", "prompt")
    path = _recipe(tmp_path, tiny_model, [{"name": "sft", "kind": "sft", "data": {"source": str(rows)}, "trl": {"max_steps": 2}}])
    text = path.read_text()
    indent = text.split("max_steps: 2")[0].rsplit("\n", 1)[1]  # the trl: block's indentation
    path.write_text(text.replace("max_steps: 2", f"max_steps: 2\n{indent}learning_rate: '1e-4'\n{indent}warmup_steps: '2'"))
    recipe = load_recipe(path)
    assert recipe.stage("sft").trl["learning_rate"] == "1e-4"  # quoted: text (TRL would keep it so and fail at the optimizer)
    args = trl_config_for(recipe.stage("sft"), str(tmp_path / "out"), check_only=True)
    assert args.learning_rate == 1e-4 and args.warmup_steps == 2


def test_kto_on_unpaired_rows_passes_the_plan_and_half_labelled_rows_are_reported(tiny_model, tmp_path):
    """KTO takes unpaired rows (prompt, completion, label) as they are: the plan must not read them as preference pairs."""
    unpaired = write_jsonl(
        tmp_path / "kto.jsonl", [{"prompt": f"What is {i} + 1?", "completion": str(i + 1 + i % 2), "label": i % 2 == 0} for i in range(6)]
    )
    path = _recipe(tmp_path, tiny_model, [{"name": "kto", "kind": "kto", "data": {"source": str(unpaired)}}])
    _load(path, [], deep=True)  # no problem raised
    no_label = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": f"What is {i} + 1?", "completion": str(i + 1)} for i in range(6)])
    bad = _recipe(tmp_path, tiny_model, [{"name": "kto", "kind": "kto", "data": {"source": str(no_label)}}])
    (key, message), *rest = _problems(bad)  # neither unpaired (no label) nor pairs: still reported, as pairs
    assert not rest and key == "stages.kto.data" and "chosen" in message
