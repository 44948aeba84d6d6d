"""model_kwargs: how stages load their models (dtype, attn_implementation, revision, QLoRA), and what this machine refuses."""

from __future__ import annotations

import pytest
import torch
from conftest import sum_rows, write_jsonl

from rlft.errors import RecipeError, RlftError
from rlft.models import load_causal_lm
from rlft.pipeline.checks import check_recipe
from rlft.recipe import ModelKwargs, recipe_from_dict
from rlft.stages.context import StageContext
from rlft.tracking import NullRun

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks what a machine without CUDA refuses")


def _recipe(model, *, top: dict | None = None, **stage) -> dict:
    base = {"name": "sft", "kind": "sft", "data": "d.jsonl", "trl": {"max_steps": 1}}
    return {"name": "r", "model": str(model), "stages": [{**base, **stage}], **(top or {})}


def _ctx(recipe, tmp_path) -> StageContext:
    return StageContext(recipe=recipe, run_id="t", run_dir=tmp_path, out_dir=tmp_path, recipe_dir=tmp_path, results={}, tracker=NullRun())


def test_attn_implementation_reaches_the_loaded_model(tiny_model, tmp_path):
    from rlft.stages import reward_model
    from rlft.stages.inputs import load_start_model

    # Recipe-wide sdpa; the stage's own eager overrides it, key by key (the recipe's dtype stays).
    recipe = recipe_from_dict(
        _recipe(
            tiny_model,
            top={"model_kwargs": {"attn_implementation": "sdpa", "dtype": "fp32"}},
            model_kwargs={"attn_implementation": "eager"},
        )
    )
    stage = recipe.stage("sft")
    assert recipe.model_kwargs_for(stage) == ModelKwargs(attn_implementation="eager", dtype="float32")
    model, _ = load_start_model(_ctx(recipe, tmp_path), stage)
    assert model.config._attn_implementation == "eager"
    recipe = recipe_from_dict(_recipe(tiny_model, top={"model_kwargs": {"attn_implementation": "sdpa"}}))
    model, _ = load_start_model(_ctx(recipe, tmp_path), recipe.stage("sft"))
    assert model.config._attn_implementation == "sdpa" and model.dtype == torch.float32
    # A reward model's start model (a score head on the same weights) honours it too.
    rm = recipe_from_dict(_recipe(tiny_model, kind="reward_model", model_kwargs={"attn_implementation": "eager"}))
    model, _ = reward_model._load_classifier(_ctx(rm, tmp_path), rm.stage("sft"))
    assert model.config._attn_implementation == "eager"


def test_half_precision_weights_refused_on_cpu(tiny_model, tmp_path):
    write_jsonl(tmp_path / "d.jsonl", sum_rows(4))
    recipe = recipe_from_dict(_recipe(tiny_model, top={"model_kwargs": {"dtype": "bf16"}}))
    assert recipe.model_kwargs.dtype == "bfloat16"  # the short name is the torch dtype's
    with pytest.raises(RecipeError) as err:
        check_recipe(recipe, str(tmp_path / "r.yaml"), here=True)
    [(key, message)] = [p for p in err.value.problems if "model_kwargs" in p[0]]
    assert key == "model_kwargs.dtype" and "bfloat16 weights need a GPU" in message and "set it to float32" in message
    check_recipe(recipe, str(tmp_path / "r.yaml"))  # `rlft plan` of a GPU recipe on a laptop: the rest is checked, this is not
    # A stage's own dtype is named by its own key path.
    own = recipe_from_dict(_recipe(tiny_model, model_kwargs={"dtype": "float16"}))
    with pytest.raises(RecipeError, match=r"stages.sft.model_kwargs.dtype"):
        check_recipe(own, str(tmp_path / "r.yaml"), here=True)
    # And at load time, where a stage loads weights.
    with pytest.raises(RlftError, match="bfloat16 weights need a GPU") as err:
        load_causal_lm(str(tiny_model), model_kwargs=ModelKwargs(dtype="bf16"))
    assert err.value.where == "model_kwargs.dtype" and "float32" in err.value.fix


def test_flash_attention_refused_without_cuda(tiny_model):
    with pytest.raises(RlftError, match="flash_attention_2 runs on CUDA GPUs only") as err:
        load_causal_lm(str(tiny_model), model_kwargs=ModelKwargs(attn_implementation="flash_attention_2"))
    assert "sdpa" in err.value.fix


def test_qlora_refused_on_cpu_and_without_lora(tiny_model, tmp_path):
    write_jsonl(tmp_path / "d.jsonl", sum_rows(4))
    recipe = recipe_from_dict(_recipe(tiny_model, model_kwargs={"load_in_4bit": True}, peft={"lora": {"r": 4}}))
    with pytest.raises(RecipeError) as err:
        check_recipe(recipe, str(tmp_path / "r.yaml"), here=True)
    [(key, message)] = [p for p in err.value.problems if "model_kwargs" in p[0]]
    assert key == "stages.sft.model_kwargs.load_in_4bit"
    assert "bitsandbytes on a CUDA GPU" in message and "remove load_in_4bit" in message
    with pytest.raises(RlftError, match="4-bit .QLoRA. weights need bitsandbytes on a CUDA GPU"):
        load_causal_lm(str(tiny_model), model_kwargs=ModelKwargs(load_in_4bit=True))
    # Machine-independent: 4-bit weights train only through a LoRA adapter.
    with pytest.raises(RecipeError, match=r"model_kwargs.load_in_4bit.*cannot be trained directly.*peft: \{lora"):
        recipe_from_dict(_recipe(tiny_model, top={"model_kwargs": {"load_in_4bit": True}}))


def test_trl_model_init_kwargs_refused_with_a_pointer():
    with pytest.raises(RecipeError, match=r"trl.model_init_kwargs would be ignored.*set model_kwargs: \{dtype"):
        recipe_from_dict(_recipe("m", trl={"model_init_kwargs": {"dtype": "bfloat16"}}))
    with pytest.raises(RecipeError, match="Input should be 'eager', 'sdpa' or 'flash_attention_2'"):
        recipe_from_dict(_recipe("m", model_kwargs={"attn_implementation": "flash"}))
