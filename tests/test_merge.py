"""The merge stage on tiny models: exact (weighted) averages, refusals naming the member and tensor, adapters, and a pipeline run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import build_tiny_model, sum_rows, write_jsonl
from test_stages import load_weights, make_ctx

from rlft.errors import RecipeError, RlftError
from rlft.pipeline.run import plan_status, run_pipeline
from rlft.recipe import load_recipe, recipe_from_dict
from rlft.stages import merge


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> tuple[Path, Path]:
    """Two different models of one architecture (the same tiny Llama, two random initialisations)."""
    root = tmp_path_factory.mktemp("members")
    return build_tiny_model(root / "a", seed=1), build_tiny_model(root / "b", seed=2)


def run_merge(tmp_path: Path, model: Path, models: list, **extra):
    stage = {"name": "soup", "kind": "merge", "models": models, **extra}
    recipe = recipe_from_dict({"name": "m", "model": str(model), "tracking": {"mode": "disabled"}, "stages": [stage]})
    ctx = make_ctx(recipe, tmp_path, "soup")
    return merge.run(recipe.stage("soup"), ctx), ctx


def variant(src: Path, dst: Path, cls: str = "LlamaForCausalLM", config_cls: str | None = None, **config) -> Path:
    """A model with ``src``'s tokenizer and a changed config (another size, another head, or another architecture)."""
    import transformers

    cfg = transformers.AutoConfig.from_pretrained(src)
    if config_cls:
        cfg = getattr(transformers, config_cls)(**{k: v for k, v in cfg.to_dict().items() if k not in ("model_type", "architectures")})
    for key, value in config.items():
        setattr(cfg, key, value)
    torch.manual_seed(0)
    getattr(transformers, cls)(cfg).save_pretrained(dst)
    transformers.AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return dst


def test_uniform_and_weighted_merges_are_exact_averages(two, tmp_path):
    a, b = two
    wa, wb = load_weights(a), load_weights(b)
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)

    result, ctx = run_merge(tmp_path / "u", a, [{"path": str(a)}, str(b)])
    soup = load_weights(result.model_path)
    assert soup.keys() == wa.keys()
    assert all(soup[k].dtype == torch.float32 and torch.equal(soup[k], (wa[k] + wb[k]) / 2) for k in wa)
    assert [m["weight"] for m in ctx.notes.merge["members"]] == [0.5, 0.5]
    assert (Path(result.model_path) / "tokenizer.json").exists() and result.metrics == {}  # no data: nothing scored

    result, ctx = run_merge(tmp_path / "w", a, [{"path": str(a), "weight": 1}, {"path": str(b), "weight": 3}])
    soup = load_weights(result.model_path)
    assert [m["weight"] for m in ctx.notes.merge["members"]] == [0.25, 0.75]  # normalised to sum 1
    for k in wa:
        torch.testing.assert_close(soup[k], 0.25 * wa[k] + 0.75 * wb[k], rtol=1e-6, atol=1e-7)


def test_merging_a_model_with_itself_returns_it(tiny_model, tmp_path):
    result, ctx = run_merge(tmp_path / "u", tiny_model, ["base", {"path": str(tiny_model)}])
    before, after = load_weights(tiny_model), load_weights(result.model_path)
    assert all(torch.equal(before[k], after[k]) for k in before)  # exactly, in fp32
    assert [m["label"] for m in ctx.notes.merge["members"]] == ["base", "model"]
    result, _ = run_merge(tmp_path / "w", tiny_model, ["base", {"path": str(tiny_model), "weight": 2}])
    after = load_weights(result.model_path)
    for k in before:  # 1/3 + 2/3 of the same tensor: equal up to rounding
        torch.testing.assert_close(after[k], before[k], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "kind, needle",
    [
        ("shape", "tensor model.layers.0.mlp.gate_proj.weight has shape (48, 32), a has (64, 32)"),
        ("head", "is a LlamaForSequenceClassification, not a causal language model"),
        ("arch", "is a Qwen2ForCausalLM (qwen2), but a is a LlamaForCausalLM (llama)"),
        ("vocab", "another tokenizer vocabulary than a (103 vs 102 tokens; first difference: '<extra>' at id 102)"),
    ],
)
def test_mismatching_member_is_refused_naming_member_and_tensor(two, tmp_path, kind, needle):
    a, _ = two
    other = tmp_path / "other"
    if kind == "shape":
        variant(a, other, intermediate_size=48)
    elif kind == "head":
        variant(a, other, cls="LlamaForSequenceClassification", num_labels=1)
    elif kind == "arch":
        variant(a, other, cls="Qwen2ForCausalLM", config_cls="Qwen2Config")
    else:
        shutil.copytree(a, other)
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(a)
        tok.add_tokens(["<extra>"])
        tok.save_pretrained(other)
    with pytest.raises(RlftError) as err:
        run_merge(tmp_path / "run", a, [str(a), str(other)])
    assert err.value.where == "stages.soup.models" and "merge member other" in err.value.what and needle in err.value.what, err.value
    assert "same base model" in err.value.fix
    assert not (tmp_path / "run" / ".soup.partial" / "model").exists()


def test_missing_member_and_bad_recipes_are_refused(two, tmp_path):
    a, _ = two
    with pytest.raises(RlftError) as err:
        run_merge(tmp_path, a, [str(a), "./nowhere"])
    assert err.value.where == "stages.soup.models[1]" and "merge member ./nowhere is not a model folder" in err.value.what
    with pytest.raises(RlftError, match="stage 'sft' has no finished model"):  # named, but not run
        sft = {"name": "sft", "kind": "sft", "data": "x.jsonl"}
        recipe = recipe_from_dict(
            {"name": "m", "model": str(a), "stages": [sft, {"name": "soup", "kind": "merge", "models": ["base", "sft"]}]}
        )
        merge.run(recipe.stage("soup"), make_ctx(recipe, tmp_path, "soup"))

    soups = [
        {"name": "s1", "kind": "merge", "models": ["base", "base"], "init_from": "base"},
        {"name": "s2", "kind": "merge", "models": ["base", "base"], "data": "p.jsonl"},
        {"name": "s3", "kind": "merge", "models": ["base", {"stage": "x", "path": "./y"}]},
    ]
    with pytest.raises(RecipeError) as err:
        recipe_from_dict({"name": "m", "model": str(a), "stages": soups})
    text = str(err.value)
    assert "a merge stage takes its models from models:, not init_from" in text and "data: and rewards: go together" in text
    assert "stages.s3.models.1" in text and "exactly one of stage:" in text
    rm = {"name": "rm", "kind": "reward_model", "data": "pairs.jsonl"}
    later = {"name": "later", "kind": "sft", "data": "x.jsonl"}
    with pytest.raises(RecipeError) as err:
        recipe_from_dict(
            {"name": "m", "model": str(a), "stages": [rm, {"name": "soup", "kind": "merge", "models": ["rm", "later"]}, later]}
        )
    text = str(err.value)
    assert "stages.soup.models[0].stage: stage 'rm' (reward_model) makes a model that scores text" in text
    assert "stages.soup.models[1].stage: 'later' comes later" in text


def test_lora_adapter_member_is_merged_into_its_base_first(two, tmp_path):
    from peft import LoraConfig, get_peft_model

    from rlft.models import load_causal_lm

    a, b = two
    peft_model = get_peft_model(load_causal_lm(str(b)), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(3)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:  # zero at init: give the adapter an effect
            torch.nn.init.normal_(p, std=0.5)
    peft_model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").exists() and not (tmp_path / "adapter" / "config.json").exists()
    full = {k: v.detach().clone() for k, v in peft_model.merge_and_unload().state_dict().items()}

    result, ctx = run_merge(tmp_path / "run", a, ["base", {"path": str(tmp_path / "adapter")}])
    wa, wb, soup = load_weights(a), load_weights(b), load_weights(result.model_path)
    assert ctx.notes.merge["members"][1]["base"] == str(b)
    assert not torch.equal(full["model.layers.0.self_attn.q_proj.weight"], wb["model.layers.0.self_attn.q_proj.weight"])
    assert all(torch.equal(soup[k], (wa[k] + full[k]) / 2) for k in wa)


def test_verdict_compares_the_soup_with_its_best_member(tmp_path, tiny_model):
    recipe = recipe_from_dict(
        {"name": "m", "model": str(tiny_model), "stages": [{"name": "soup", "kind": "merge", "models": ["base", "base"]}]}
    )
    ctx = make_ctx(recipe, tmp_path, "soup")
    ctx.notes.merge = {}
    key = "reward/r"
    scores = {"eval/reward/r": 0.5, "member/a/reward/r": 0.6, "member/b/reward/r": 0.4, "member/c/reward/r": float("nan")}
    assert merge._verdict(scores, ["a", "b", "c"], key, ctx) == {"soup_minus_best_member": pytest.approx(-0.1), "soup_beats_members": False}
    assert ctx.notes.merge["best_member"] == "a"
    assert merge._verdict({**scores, "eval/reward/r": 0.6}, ["a", "b", "c"], key, ctx)["soup_beats_members"] is True  # a tie counts
    assert merge._verdict({**scores, "eval/reward/r": float("nan")}, ["a", "b"], key, ctx) == {}  # nothing to compare
    # with the per-prompt scores, the difference to the best member gets its paired interval
    from rlft.evaluation.statistics import paired_bootstrap

    per_prompt = {"eval": {"r": [1, 0, 1, 0, 0.5]}, "member/a": {"r": [1, 1, 1, 0, 0]}, "member/b": {"r": [0, 1, 0, 1, 0]}}
    with_ci = merge._verdict(scores, ["a", "b", "c"], key, ctx, per_prompt=per_prompt, seed=3)
    expected = paired_bootstrap([1, 1, 1, 0, 0], [1, 0, 1, 0, 0.5], seed=3)
    assert (with_ci["soup_minus_best_member/ci_low"], with_ci["soup_minus_best_member/ci_high"]) == (expected.ci_low, expected.ci_high)
    assert with_ci["soup_minus_best_member/n"] == 5 and with_ci["soup_minus_best_member"] == pytest.approx(-0.1)


def test_a_path_member_is_part_of_the_fingerprint(two, tmp_path):
    from rlft.pipeline.fingerprint import explain, fingerprints

    a, b = two
    member = shutil.copytree(b, tmp_path / "member")
    recipe = recipe_from_dict({"name": "m", "model": str(a), "stages": [{"name": "soup", "kind": "merge", "models": ["base", "./member"]}]})
    before = fingerprints(recipe, tmp_path)["soup"]
    (member / "model.safetensors").write_bytes((member / "model.safetensors").read_bytes() + b" ")
    after = fingerprints(recipe, tmp_path)["soup"]
    assert explain({"digest": before.digest, "parts": before.parts, "detail": before.detail}, after) == "the starting model changed"


def merge_recipe(tmp_path: Path, model: Path) -> Path:
    write_jsonl(tmp_path / "sft.jsonl", sum_rows(16))
    write_jsonl(tmp_path / "prompts.jsonl", sum_rows(4, with_completion=False))
    sft = {"kind": "sft", "data": "sft.jsonl", "scorecard": {"prompts": 0}, "trl": {"max_steps": 2, "per_device_train_batch_size": 8}}
    score = {"data": "prompts.jsonl", "rewards": [{"name": "math_accuracy"}], "max_new_tokens": 4}
    spec = {
        "name": "soup",
        "model": str(model),
        "tracking": {"mode": "disabled"},
        "stages": [
            {"name": "a", **sft, "trl": {**sft["trl"], "learning_rate": 5e-3}},
            {"name": "b", **sft, "seed": 7, "trl": {**sft["trl"], "learning_rate": 1e-2}},
            {"name": "soup", "kind": "merge", "models": ["a", {"stage": "b", "weight": 3}], **score},
            {"name": "check", "kind": "eval", "init_from": "soup", "baseline": "a", **score},
        ],
    }
    path = tmp_path / "soup.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_pipeline_merges_compares_members_and_reruns_when_a_member_changes(tiny_model, tmp_path):
    path = merge_recipe(tmp_path, tiny_model)
    summary = run_pipeline(load_recipe(path), source=str(path), run_id="r", output_dir=str(tmp_path / "runs"))
    assert [s["status"] for s in summary["stages"]] == ["done"] * 4, summary
    run_dir = tmp_path / "runs" / "r"

    m = summary["stages"][2]["metrics"]
    key = "reward/math_accuracy"
    assert m["eval/n"] == 4 and {f"eval/{key}", f"member/a/{key}", f"member/b/{key}", "member/a/mean_length"} <= m.keys(), m
    best = max(m[f"member/a/{key}"], m[f"member/b/{key}"])
    assert m["soup_minus_best_member"] == pytest.approx(m[f"eval/{key}"] - best)
    assert m["soup_beats_members"] is (m["soup_minus_best_member"] >= 0)
    assert m["soup_minus_best_member/ci_low"] <= m["soup_minus_best_member"] <= m["soup_minus_best_member/ci_high"], m
    manifest = json.loads((run_dir / "soup" / "manifest.json").read_text())
    assert [(x["label"], x["folder"], x["weight"]) for x in manifest["merge"]["members"]] == [
        ("a", str(run_dir / "a" / "model"), 0.25),
        ("b", str(run_dir / "b" / "model"), 0.75),
    ]
    member_scores = {label: m[f"member/{label}/{key}"] for label in ("a", "b")}
    assert member_scores[manifest["merge"]["best_member"]] == max(member_scores.values())  # the argmax (either one on a tie)
    assert manifest["result"]["metrics"] == m
    wa, wb, soup = (load_weights(run_dir / s / "model") for s in ("a", "b", "soup"))
    for k in wa:
        torch.testing.assert_close(soup[k], 0.25 * wa[k] + 0.75 * wb[k], rtol=1e-6, atol=1e-7)
    samples = [json.loads(line) for line in (run_dir / "soup" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4 and {"eval_completion", "member/a_completion", "member/b_completion"} <= samples[0].keys()

    # A later stage starts from the soup by name.
    check = json.loads((run_dir / "check" / "manifest.json").read_text())
    assert check["models"] == {"eval": "soup", "baseline": "a"} and summary["stages"][3]["metrics"]["eval/kl_to_ref"] > 0

    # Editing one member reruns it, the merge and what starts from the merge; the other member is reused.
    assert {s: what for s, what, _ in plan_status(load_recipe(path), str(path), run_dir)} == dict.fromkeys(
        ("a", "b", "soup", "check"), "cached"
    )
    plan = {s: (what, why) for s, what, why in plan_status(load_recipe(path, ["stages.b.seed=8"]), str(path), run_dir)}
    assert plan["a"][0] == "cached" and plan["b"] == ("runs", "config changed: seed 7 -> 8")
    assert plan["soup"] == ("runs", "upstream stage b changed") and plan["check"] == ("runs", "upstream stage soup changed")
    plan = {s: what for s, what, _ in plan_status(load_recipe(path, ["stages.soup.models.1.weight=1"]), str(path), run_dir)}
    assert plan == {"a": "cached", "b": "cached", "soup": "runs", "check": "runs"}
