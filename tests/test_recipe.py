"""Recipe schema: strictness, did-you-mean, key paths, all errors at once, overrides, bundled recipes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rlft.errors import RecipeError, RlftError
from rlft.pipeline.checks import check_recipe
from rlft.recipe import load_recipe, recipe_from_dict

ROOT = Path(__file__).resolve().parents[1]


def base_recipe() -> dict:
    return {
        "name": "t",
        "model": "bundled:smollm2-135m-instruct",
        "stages": [
            {"name": "sft", "kind": "sft", "data": "bundled:arithmetic-sft", "trl": {"max_steps": 2}},
            {"name": "rl", "kind": "grpo", "init_from": "sft", "data": "bundled:arithmetic", "rewards": [{"name": "math_accuracy"}]},
        ],
    }


def write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_unknown_key_names_path_and_suggests(tmp_path):
    data = base_recipe()
    data["stages"][1]["init_fron"] = "sft"
    with pytest.raises(RecipeError) as e:
        load_recipe(write(tmp_path, data))
    msg = str(e.value)
    assert "stages.rl.init_fron" in msg
    assert "did you mean 'init_from'" in msg


def test_unknown_nested_key_in_lora(tmp_path):
    data = base_recipe()
    data["stages"][0]["peft"] = {"lora": {"rank": 8}}
    with pytest.raises(RecipeError) as e:
        load_recipe(write(tmp_path, data))
    assert "stages.sft.peft.lora.rank" in str(e.value)
    assert "allowed here: r, alpha" in str(e.value)


def test_wrong_type_and_all_errors_at_once(tmp_path):
    data = base_recipe()
    data["seed"] = "forty-two"
    data["stages"][0]["peft"] = {"lora": {"r": "big"}}
    data["tracking"] = {"mode": "loud"}
    with pytest.raises(RecipeError) as e:
        load_recipe(write(tmp_path, data))
    assert len(e.value.problems) == 3
    paths = [p for p, _ in e.value.problems]
    assert "seed" in paths and "stages.sft.peft.lora.r" in paths and "tracking.mode" in paths


def test_init_from_missing_or_later_stage(tmp_path):
    data = base_recipe()
    data["stages"][1]["init_from"] = "sfx"
    with pytest.raises(RecipeError) as e:
        load_recipe(write(tmp_path, data))
    assert "stages.rl.init_from" in str(e.value) and "did you mean 'sft'" in str(e.value)

    data = base_recipe()
    data["stages"][0]["init_from"] = "rl"
    with pytest.raises(RecipeError) as e:
        load_recipe(write(tmp_path, data))
    assert "comes later" in str(e.value)


def test_duplicate_stage_names(tmp_path):
    data = base_recipe()
    data["stages"][1]["name"] = "sft"
    data["stages"][1].pop("init_from")
    with pytest.raises(RecipeError, match="two stages are named 'sft'"):
        load_recipe(write(tmp_path, data))


def test_unknown_reward_lists_close_matches(tmp_path):
    data = base_recipe()
    data["stages"][1]["rewards"] = [{"name": "math_acuracy"}]
    path = write(tmp_path, data)
    r = load_recipe(path)
    with pytest.raises(RecipeError) as e:
        check_recipe(r, str(path))
    msg = str(e.value)
    assert "stages.rl.rewards[0].name" in msg and "did you mean math_accuracy" in msg and "answer_format" in msg


def test_a_reward_named_by_a_plain_string_is_shorthand_for_its_record(tmp_path):
    short, long = base_recipe(), base_recipe()
    short["stages"][1]["rewards"] = ["math_accuracy", {"name": "answer_format", "weight": 0.2}]
    short["stages"][1]["scorecard"] = {"rewards": ["math_accuracy"]}
    long["stages"][1]["rewards"] = [{"name": "math_accuracy"}, {"name": "answer_format", "weight": 0.2}]
    long["stages"][1]["scorecard"] = {"rewards": [{"name": "math_accuracy"}]}
    a, b = load_recipe(write(tmp_path, short)), recipe_from_dict(long)
    assert a.stages[1].model_dump() == b.stages[1].model_dump()
    assert [r.name for r in a.stages[1].rewards] == ["math_accuracy", "answer_format"] and a.stages[1].rewards[1].weight == 0.2
    short["stages"][1]["rewards"] = ["math_acuracy"]  # the shorthand is checked like the record it stands for
    path = write(tmp_path, short)
    with pytest.raises(RecipeError, match=r"stages.rl.rewards\[0\].name.*did you mean math_accuracy"):
        check_recipe(load_recipe(path), str(path))


def test_unknown_trl_key_is_an_error(tmp_path):
    data = base_recipe()
    data["stages"][0]["trl"] = {"learning_rat": 1e-4}
    path = write(tmp_path, data)
    with pytest.raises(RecipeError) as e:
        check_recipe(load_recipe(path), str(path))
    assert "stages.sft.trl" in str(e.value) and "did you mean 'learning_rate'" in str(e.value)


def test_trl_config_is_built_with_cpu_defaults(tmp_path):
    from rlft.stages.trl_config import trl_config_for

    r = recipe_from_dict(base_recipe())
    cfg = trl_config_for(r.stage("rl"), str(tmp_path), seed=3)
    assert type(cfg).__name__ == "GRPOConfig"
    assert cfg.bf16 is False and cfg.activation_checkpointing is False and cfg.seed == 3
    assert cfg.max_steps == -1  # the recipe's other stage is untouched
    sft = trl_config_for(r.stage("sft"), str(tmp_path))
    assert sft.max_steps == 2 and sft.logging_steps == 1


def test_trl_rejection_surfaces_before_training(tmp_path):
    data = base_recipe()
    data["stages"][1]["trl"] = {"num_generations": 3, "per_device_train_batch_size": 4}
    path = write(tmp_path, data)
    with pytest.raises(RecipeError, match="stages.rl.trl"):
        check_recipe(load_recipe(path), str(path))


def test_overrides_by_stage_name(tmp_path):
    path = write(tmp_path, base_recipe())
    r = load_recipe(path, ["stages.rl.trl.learning_rate=1e-6", "seed=7", "stages.0.trl.max_steps=5"])
    assert r.stage("rl").trl["learning_rate"] == 1e-6
    assert r.seed == 7
    assert r.stage("sft").trl["max_steps"] == 5
    with pytest.raises(RlftError, match="no stage named 'rll'"):
        load_recipe(path, ["stages.rll.trl.learning_rate=1"])


def test_yaml_syntax_error_names_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\nmodel: m\nstages:\n  - name: a\n   kind: sft\n")
    with pytest.raises(RlftError) as e:
        load_recipe(p)
    assert "line 5" in str(e.value) and str(p) in str(e.value)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RlftError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")


RECIPES = sorted((ROOT / "recipes").glob("*.yaml")) + sorted((ROOT / "recipes" / "gpu").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_every_bundled_recipe_validates(recipe):
    """Every recipe, GPU-sized ones included, validates here (HF_HUB_OFFLINE: nothing is fetched)."""
    r = load_recipe(recipe)
    check_recipe(r, str(recipe))
    text = recipe.read_text()
    for header in ("Purpose:", "Hardware:", "Command:", "Override:"):
        assert header in text, f"{recipe.name} lacks its {header} header line"


def test_gpu_recipe_run_on_cpu_names_the_override(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = ROOT / "recipes" / "gpu" / "sft_dpo.yaml"
    check_recipe(load_recipe(path), str(path))  # rlft plan: fine on a laptop
    with pytest.raises(RecipeError) as info:
        check_recipe(load_recipe(path), str(path), here=True)  # rlft run: bf16 needs a GPU
    text = str(info.value)
    assert "stages.sft.trl.bf16" in text and "stages.sft.trl.bf16=false" in text and "stages.dpo.trl.bf16" in text


def test_help_is_fast_and_does_not_import_torch():
    code = "import sys; from rlft.cli.app import app; import rlft.recipe; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_checkpointing_key_follows_the_installed_transformers():
    """transformers renamed gradient_checkpointing to activation_checkpointing: either name reaches the one the class has."""
    import dataclasses

    from rlft.stages.trl_config import _checkpointing_names

    @dataclasses.dataclass
    class Old:
        gradient_checkpointing: bool = False
        gradient_checkpointing_kwargs: dict | None = None

    @dataclasses.dataclass
    class New:
        activation_checkpointing: bool = False
        activation_checkpointing_kwargs: dict | None = None

    kwargs = {"activation_checkpointing": False, "activation_checkpointing_kwargs": {"use_reentrant": False}}
    _checkpointing_names(Old, kwargs, given={})
    assert kwargs == {"gradient_checkpointing": False, "gradient_checkpointing_kwargs": {"use_reentrant": False}}
    kwargs = {"activation_checkpointing": False, "gradient_checkpointing": True}  # rlft's default, the recipe's old name
    _checkpointing_names(New, kwargs, given={"gradient_checkpointing": True})
    assert kwargs == {"activation_checkpointing": True}
    kwargs = {"activation_checkpointing": True}
    _checkpointing_names(New, kwargs, given={"activation_checkpointing": True})
    assert kwargs == {"activation_checkpointing": True}
