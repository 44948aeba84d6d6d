"""The common scorecard: masks, exact KL, preference accuracy, and the summary table."""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_model

from rlft.evaluation.scorecard import _until_eos, generate, preference_accuracy

PROMPTS = [[{"role": "user", "content": f"{a}+{b}?"}] for a, b in ((1, 2), (3, 4), (12, 30))]


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    from rlft.models import load_causal_lm, load_tokenizer

    root = tmp_path_factory.mktemp("two")
    a, b = build_tiny_model(root / "a", seed=0), build_tiny_model(root / "b", seed=1)
    return load_causal_lm(str(a)), load_causal_lm(str(b)), load_tokenizer(str(a))


def test_completion_mask_stops_after_the_first_eos():
    eos, pad = 9, 0
    new = torch.tensor([[5, 9, 9, 7], [5, 6, 7, 8], [9, 0, 0, 0], [5, 6, 0, 0]])
    assert _until_eos(new, eos, pad).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]]
    assert _until_eos(new, eos, eos).tolist()[0] == [1, 1, 0, 0]  # pad == eos: the first one still counts


def test_kl_is_zero_to_itself_and_positive_to_another_model(two_models):
    a, b, tok = two_models
    same = generate(a, tok, PROMPTS, max_new_tokens=6, batch_size=2, ref=a)
    other = generate(a, tok, PROMPTS, max_new_tokens=6, batch_size=2, ref=b)
    assert same.texts == other.texts  # greedy, and batching by 2 leaves a padded row
    assert len(same.kl) == len(PROMPTS) and max(same.kl) < 1e-5
    assert min(other.kl) > 0.01
    assert all(1 <= n <= 6 for n in same.lengths)
    # the KL is a sum over positions: a longer completion of the same prompts never has less
    longer = generate(a, tok, PROMPTS, max_new_tokens=12, batch_size=3, ref=b)
    assert all(x >= y - 1e-4 for x, y in zip(longer.kl, other.kl, strict=True))


def test_preference_accuracy_counts_ties_half_and_follows_likelihood(two_models):
    a, _, tok = two_models
    prompt = [{"role": "user", "content": "q?"}]
    ties = [{"prompt": prompt, "chosen": [{"role": "assistant", "content": "yes"}], "rejected": [{"role": "assistant", "content": "yes"}]}]
    assert preference_accuracy(a, tok, ties) == 0.5
    pair = {"prompt": prompt, "chosen": [{"role": "assistant", "content": "abc"}], "rejected": [{"role": "assistant", "content": "xyz"}]}
    flipped = {**pair, "chosen": pair["rejected"], "rejected": pair["chosen"]}
    assert preference_accuracy(a, tok, [pair]) + preference_accuracy(a, tok, [flipped]) == 1.0


def test_summary_prints_one_scorecard_across_stage_kinds():
    from io import StringIO

    from rich.console import Console

    from rlft.cli.tables import scorecard_table

    stages = [
        {"name": "sft", "kind": "sft", "metrics": {"baseline/loss": 2.0, "eval/loss": 1.0, "eval/kl_to_ref": 0.5}},
        {"name": "dpo", "kind": "dpo", "metrics": {"baseline/accuracy": 0.25, "eval/accuracy": 0.75}},
        {"name": "rl", "kind": "grpo", "metrics": {"baseline/reward/math_accuracy": 0.1, "eval/reward/math_accuracy": 0.4}},
        {"name": "x", "kind": "eval", "metrics": {}},
    ]
    out = StringIO()
    Console(file=out, width=200).print(scorecard_table(stages))
    text = out.getvalue()
    assert "2.000 -> 1.000" in text and "0.250 -> 0.750" in text and "0.100 -> 0.400" in text and "0.500" in text
    assert "math_accuracy" in text and "x (eval)" not in text
    assert scorecard_table([{"name": "a", "kind": "sft", "metrics": {"train/loss": 1.0}}]) is None


def test_gains_table_marks_a_significant_gain_and_says_when_a_difference_is_not_separable():
    from io import StringIO

    from rich.console import Console

    from rlft.cli.tables import gains_table
    from rlft.evaluation.statistics import paired_bootstrap

    big = paired_bootstrap([0.0] * 150 + [1.0] * 50, [1.0] * 150 + [1.0] * 50)  # right on 150 prompts the start got wrong
    small = paired_bootstrap([0, 1, 0, 1, 0, 1, 0, 0], [1, 1, 0, 1, 0, 0, 1, 0])  # +1/8 on 8 prompts
    stages = [
        {"name": "rl", "kind": "grpo", "metrics": big.metrics("eval/delta/reward/math_accuracy")},
        {"name": "dpo", "kind": "dpo", "metrics": small.metrics("eval/delta/accuracy")},
    ]
    out = StringIO()
    Console(file=out, width=250).print(gains_table(stages))
    text = out.getvalue()
    assert f"+0.750 [{big.ci_low:+.3f}, {big.ci_high:+.3f}]" in text
    assert big.ci_low > 0 and "significant gain" in text and "200" in text and "<0.001" in text
    assert small.ci_low < 0 < small.ci_high and "not separable at this sample size" in text
    assert f"~{small.n_needed} would separate this effect" in text
    assert gains_table([{"name": "a", "kind": "sft", "metrics": {"eval/loss": 1.0}}]) is None
    same = paired_bootstrap([1, 0, 1], [1, 0, 1]).metrics("eval/delta/reward/x")
    out = StringIO()
    Console(file=out, width=250).print(gains_table([{"name": "rl", "kind": "grpo", "metrics": same}]))
    assert "no difference on any prompt" in out.getvalue() and "not separable" not in out.getvalue()


def test_guards_table_shows_probe_gap_early_stopping_and_soup():
    from io import StringIO

    from rich.console import Console

    from rlft.cli.tables import guards_table

    stages = [
        {"name": "rl", "kind": "grpo", "metrics": {"early_stopping/best": 0.5, "early_stopping/stop_step": 18, "eval/loss": 1.0}},
        {"name": "soup", "kind": "merge", "metrics": {"soup_minus_best_member": -0.1, "soup_minus_best_member/ci_low": -0.3}},
        {
            "name": "eval",
            "kind": "eval",
            "metrics": {
                "probe/general/accuracy": 0.41,
                "baseline/probe/general/accuracy": 0.52,
                "probe/general/accuracy/facts": 0.8,
                "generalisation_gap/math_accuracy": 0.25,
                "baseline/generalisation_gap/math_accuracy": 0.05,
            },
        },
    ]
    out = StringIO()
    Console(file=out, width=200).print(guards_table(stages))
    text = out.getvalue()
    assert "0.520 -> 0.410" in text and "0.050 -> 0.250" in text and "-0.100" in text and "early_stopping/best" in text
    assert "facts" not in text and "stop_step" not in text and "eval/loss" not in text and "ci_low" not in text
    assert guards_table([{"name": "a", "kind": "sft", "metrics": {"eval/loss": 1.0}}]) is None


def test_kl_with_kept_logits_and_chunks_equals_the_full_computation(two_models):
    """logits_to_keep and row chunks are only economies: the KL equals full-logit, one-batch KL."""
    a, b, tok = two_models

    class FullLogitsOnly(torch.nn.Module):  # a forward without logits_to_keep takes the fallback path
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, position_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)

    from rlft.evaluation.scorecard import _sequence_kl

    tok.padding_side = "left"
    enc = tok([tok.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in PROMPTS], return_tensors="pt", padding=True)
    n_prompt = enc["input_ids"].shape[1]
    seq = a.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    keep = _until_eos(seq[:, n_prompt:], tok.eos_token_id, tok.pad_token_id)
    mask = torch.cat([enc["attention_mask"], keep], dim=1)
    with torch.inference_mode():
        fast = _sequence_kl(a, b, seq, mask, n_prompt, keep, chunk=2)
        full = _sequence_kl(FullLogitsOnly(a), FullLogitsOnly(b), seq, mask, n_prompt, keep, chunk=8)
    torch.testing.assert_close(fast, full, rtol=1e-4, atol=1e-5)
    assert (full > 0).all()
