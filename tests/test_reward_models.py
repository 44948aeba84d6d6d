"""Reward models and ensembles: the reward_model stage, the scorer, reduce rules, recipe references."""

from __future__ import annotations

import json
import pickle
import statistics
from pathlib import Path

import pytest
import yaml
from conftest import sum_rows, write_jsonl
from test_stages import make_ctx

from rewards.ensemble import Ensemble
from rlft.errors import RecipeError
from rlft.pipeline.checks import check_recipe
from rlft.recipe import load_recipe, recipe_from_dict


def separable_pairs(n: int) -> list[dict]:
    """A trivially separable preference set: chosen answers say 'yes', rejected ones 'no'."""
    return [{"prompt": f"q{i % 7}?", "chosen": "yes " * (1 + i % 3), "rejected": "no " * (1 + (i + 1) % 3)} for i in range(n)]


def test_reward_model_stage_learns_a_separable_set(tiny_model, tmp_path):
    from rewards.model import RewardModelScorer
    from rlft.stages import reward_model

    write_jsonl(tmp_path / "pairs.jsonl", separable_pairs(48))
    recipe = recipe_from_dict(
        {
            "name": "t",
            "model": str(tiny_model),
            "stages": [
                {
                    "name": "rm",
                    "kind": "reward_model",
                    "data": "pairs.jsonl",
                    "eval_fraction": 0.25,
                    "trl": {"max_steps": 20, "per_device_train_batch_size": 8, "learning_rate": 1e-2},
                }
            ],
        }
    )
    ctx = make_ctx(recipe, tmp_path, "rm")
    result = reward_model.run(recipe.stage("rm"), ctx)
    m = result.metrics
    assert m["eval/n_pairs"] == 12
    # A random head ranks a perfectly separable set all-right or all-wrong by chance, so the proof of
    # learning is the falling loss, and the held-out accuracy it ends with.
    assert m["train/loss"] < 0.5 * m["train/first_loss"], m
    assert m["eval/accuracy"] >= 0.9, m
    assert "baseline/accuracy" in m and m["eval/loss"] < m["baseline/loss"], m

    # The saved model is usable as a reward: chosen-style answers outscore rejected-style ones.
    scorer = RewardModelScorer(result.model_path, batch_size=3)
    prompts = [[{"role": "user", "content": "q1?"}]] * 4
    completions = [[{"role": "assistant", "content": t}] for t in ("yes yes ", "no no ", "yes ", "no ")]
    scores = scorer(prompts, completions)
    assert scores[0] > scores[1] and scores[2] > scores[3]
    # batching does not change scores; pickling drops the loaded weights but keeps the reference
    assert RewardModelScorer(result.model_path, batch_size=1)(prompts, completions) == pytest.approx(scores, abs=1e-4)
    clone = pickle.loads(pickle.dumps(scorer))
    assert clone._model is None and clone(prompts, completions) == pytest.approx(scores, abs=1e-4)

    normalised = RewardModelScorer(result.model_path, normalize=True)
    first = normalised(prompts, completions)
    assert sum(first) == pytest.approx(0.0, abs=1e-4)
    assert normalised(prompts[:1], completions[:1]) == pytest.approx(first[:1], abs=1e-4)  # stats frozen after batch one
    # A first call of one completion (a one-prompt held-out scorecard) has no spread: it is centred, and the statistics
    # come from the scores pooled until they differ — not std 1 from then on.
    pooled = RewardModelScorer(result.model_path, normalize=True)
    assert pooled(prompts[:1], completions[:1]) == [0.0]
    rest = pooled(prompts[1:], completions[1:])
    mean, std = statistics.fmean(scores), statistics.pstdev(scores)  # the four raw scores, by hand
    assert rest == pytest.approx([(v - mean) / std for v in scores[1:]], abs=1e-4) and abs(std - 1.0) > 0.1  # scaled, not only shifted


def _const(value):
    return lambda prompts, completions, **kw: [value(i) for i in range(len(completions))]


def test_ensemble_reducers():
    a = _const(lambda i: [1.0, 0.0, None][i])
    b = _const(lambda i: [0.0, 0.0, None][i])
    c = _const(lambda i: [0.5, 1.0, 2.0][i])
    args = (["p"] * 3, ["x", "y", "z"])
    assert Ensemble([a, b, c], reduce="mean")(*args) == pytest.approx([0.5, 1 / 3, 2.0])
    assert Ensemble([a, b, c], reduce="min")(*args) == pytest.approx([0.0, 0.0, 2.0])
    # mean - k * population std: sample 0 has values (1, 0, 0.5): mean 0.5, std 0.408
    assert Ensemble([a, b, c], reduce="mean_minus_std", k=2.0)(*args)[0] == pytest.approx(0.5 - 2 * 0.40824829, abs=1e-6)
    assert Ensemble([a, b], reduce="mean")(*args)[2] is None  # no member applies
    assert Ensemble([a, c], weights=[2.0, 1.0])(*args)[0] == pytest.approx((2.0 + 0.5) / 2)
    logged = {}
    named = [_const(lambda i: 1.0), _const(lambda i: 0.0)]
    named[0].__name__, named[1].__name__ = "rm", "fmt"
    Ensemble(named, name="ens")(*args, log_metric=lambda k, v: logged.__setitem__(k, v))
    assert logged == {"rewards/ens/rm/mean": 1.0, "rewards/ens/fmt/mean": 0.0}  # members reach the trainer's log
    with pytest.raises(ValueError, match="reduce must be one of"):
        Ensemble([a, b], reduce="median")


def test_ensemble_from_recipe_refs_combines_functions(tmp_path):
    from rlft.recipe import RewardRef
    from rlft.reward_refs import resolve_ref

    ref = RewardRef.model_validate({"ensemble": [{"name": "math_accuracy"}, {"name": "answer_format"}], "reduce": "min"})
    resolved = resolve_ref(ref)
    assert resolved.required_columns == ("answer",)
    assert resolved.reward.__name__ == "min(math_accuracy,answer_format)"
    scores = resolved.reward(["q", "q"], ["<answer>4</answer>", "so 4"], answer=["4", "4"])
    assert scores == [1.0, 0.0]  # the second is right but unformatted: min takes the format's 0


def _recipe(tmp_path, stages) -> dict:
    return {"name": "t", "model": "bundled:smollm2-135m-instruct", "stages": stages}


def test_model_reference_must_be_an_earlier_reward_model_stage(tmp_path):
    grpo = {"name": "rl", "kind": "grpo", "data": "bundled:arithmetic", "rewards": [{"model": "sft"}]}
    sft = {"name": "sft", "kind": "sft", "data": "bundled:arithmetic-sft"}
    with pytest.raises(RecipeError, match=r"stages.rl.rewards\[0\]: model: 'sft' must name an earlier reward_model stage"):
        recipe_from_dict(_recipe(tmp_path, [sft, grpo]))
    with pytest.raises(RecipeError, match="exactly one of name:, model:, ensemble:"):
        recipe_from_dict(_recipe(tmp_path, [{**grpo, "rewards": [{"name": "math_accuracy", "model": "rm"}]}]))
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump(_recipe(tmp_path, [{**grpo, "rewards": [{"ensemble": [{"model": "./nope"}, {"name": "answer_format"}]}]}]))
    )
    with pytest.raises(RecipeError, match=r"stages.rl.rewards\[0\].ensemble: reward model ./nope is not a folder"):
        check_recipe(load_recipe(path), str(path))


def test_sft_rm_grpo_pipeline_with_an_ensemble(tiny_model, tmp_path):
    from rlft.pipeline.run import run_pipeline

    write_jsonl(tmp_path / "sft.jsonl", sum_rows(8))
    write_jsonl(tmp_path / "pairs.jsonl", separable_pairs(16))
    write_jsonl(tmp_path / "prompts.jsonl", sum_rows(8, with_completion=False))
    recipe = {
        "name": "rmchain",
        "model": str(tiny_model),
        "tracking": {"mode": "disabled"},
        "stages": [
            {"name": "sft", "kind": "sft", "data": "sft.jsonl", "trl": {"max_steps": 1, "per_device_train_batch_size": 8}},
            {
                "name": "rm",
                "kind": "reward_model",
                "init_from": "sft",
                "data": "pairs.jsonl",
                "eval_fraction": 0.25,
                "trl": {"max_steps": 2, "per_device_train_batch_size": 4},
            },
            {
                "name": "rl",
                "kind": "grpo",
                "init_from": "sft",
                "data": "prompts.jsonl",
                "eval_fraction": 0.5,  # a held-out scorecard of 4 prompts: the reward model's first scored batch
                "scorecard": {"max_new_tokens": 8},
                "rewards": [{"ensemble": [{"model": "rm", "normalize": True}, {"name": "answer_format"}], "reduce": "mean_minus_std"}],
                "trl": {"max_steps": 1, "num_generations": 4, "per_device_train_batch_size": 8, "max_completion_length": 6},
            },
        ],
    }
    path = tmp_path / "rm.yaml"
    path.write_text(yaml.safe_dump(recipe))
    r = load_recipe(path)
    check_recipe(r, str(path))
    summary = run_pipeline(r, source=str(path), run_id="x", output_dir=str(tmp_path / "runs"))
    assert [s["status"] for s in summary["stages"]] == ["done", "done", "done"], summary
    rl = summary["stages"][2]["metrics"]
    assert "train/rewards/mean_minus_std(rm,answer_format)/mean" in rl
    assert "eval/accuracy" in summary["stages"][1]["metrics"]

    # What normalize and mean_minus_std do to the numbers, recomputed from the saved reward model by hand. The
    # stage's first call of the reward model scores the starting model's held-out completions (its scorecard);
    # normalize standardises by that batch's mean and population std and keeps those statistics for every later
    # batch (the trained model's completions here). mean - 1 * std of two members is the lower one: (a + b) / 2 - |a - b| / 2.
    rm_path = summary["stages"][1]["model_path"]
    samples = [json.loads(line) for line in (Path(summary["stages"][2]["output_dir"]) / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4
    assert not any("<answer>" in s[f"{p}_completion"] for s in samples for p in ("baseline", "eval"))  # answer_format: 0 for all
    raw = plain_rm_scores(rm_path, [(s["prompt"], s["baseline_completion"]) for s in samples])
    mean, std = statistics.fmean(raw), statistics.pstdev(raw)
    assert std > 1e-4, raw  # the completions differ in their prompts, so their scores do
    for prefix in ("baseline", "eval"):
        scores = plain_rm_scores(rm_path, [(s["prompt"], s[f"{prefix}_completion"]) for s in samples])
        expected = [min((r - mean) / std, 0.0) for r in scores]
        assert [s[f"{prefix}_mean_minus_std(rm,answer_format)"] for s in samples] == pytest.approx(expected, abs=1e-4), prefix
    assert min(expected) < -0.5  # a standardised score: the raw ones are near 0.01

    # Through the same recipe reference, with answers that do and do not carry the format: both members vary.
    from rlft.recipe import RewardRef
    from rlft.reward_refs import resolve_ref

    ensemble = resolve_ref(RewardRef.model_validate(recipe["stages"][2]["rewards"][0]), stage_models={"rm": rm_path}).reward
    prompt = [{"role": "user", "content": "3+4="}]
    first = ["<answer>7</answer>", "7", "<answer>8</answer>", "so 8", "\n\n"]
    formatted = [1.0, 0.0, 1.0, 0.0, 0.0]
    raw = plain_rm_scores(rm_path, [(prompt, c) for c in first])
    mean, std = statistics.fmean(raw), statistics.pstdev(raw)
    expected = [min((r - mean) / std, f) for r, f in zip(raw, formatted, strict=True)]
    assert ensemble([prompt] * 5, first) == pytest.approx(expected, abs=1e-4)
    assert expected[0] < -0.5  # formatted, yet the reward model's low standardised score is the lower member
    # A later batch keeps the first batch's statistics: standardised alone, a batch of one would score min(0, 1) = 0.
    assert ensemble([prompt], first[:1]) == pytest.approx(expected[:1], abs=1e-4)


def plain_rm_scores(path: str, pairs: list[tuple[list[dict], str]]) -> list[float]:
    """The reward model's score of each (prompt messages, completion) as one whole chat, one forward pass each (no padding)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1).eval()
    with torch.no_grad():
        return [
            model(**tok(tok.apply_chat_template(chat, tokenize=False), return_tensors="pt", add_special_tokens=False)).logits[0, 0].item()
            for chat in (prompt + [{"role": "assistant", "content": completion}] for prompt, completion in pairs)
        ]
