"""The common scorecard: masks, exact KL, preference accuracy, and the summary table."""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_model

from rlft.evaluation.scorecard import Scorecard, _sequence_kl, _until_eos, generate, preference_accuracy, preference_wins

PROMPTS = [[{"role": "user", "content": f"{a}+{b}?"}] for a, b in ((1, 2), (3, 4), (12, 30))]


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    from rlft.models import load_causal_lm, load_tokenizer

    root = tmp_path_factory.mktemp("two")
    a, b = build_tiny_model(root / "a", seed=0), build_tiny_model(root / "b", seed=1)
    return load_causal_lm(str(a)), load_causal_lm(str(b)), load_tokenizer(str(a))


@pytest.fixture(scope="module")
def peaked_ref(two_models):
    """The second model with its logits scaled by 8 (its final norm's weight): peaked where the policy is near uniform.

    Two near-uniform models are so close that KL(p ‖ q) and KL(q ‖ p) agree to a few per cent; against this
    reference they differ by far more, so a KL taken the wrong way round shows.
    """
    import copy

    ref = copy.deepcopy(two_models[1])
    with torch.no_grad():
        ref.model.norm.weight.mul_(8.0)
    return ref.eval()


def plain_kl(policy, ref, tok, prompt, completion: list[int]) -> tuple[float, float]:
    """(KL(policy ‖ ref), KL(ref ‖ policy)) summed over the positions that predict ``completion`` after ``prompt``.

    The plain way: one unpadded sequence, full forward passes of both models, softmax over the whole vocabulary.
    """
    head = tok(tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False), add_special_tokens=False)["input_ids"]
    ids = torch.tensor([head + completion])
    with torch.no_grad():
        logp = torch.log_softmax(policy(input_ids=ids).logits[0].float(), -1)
        logq = torch.log_softmax(ref(input_ids=ids).logits[0].float(), -1)
    at = slice(len(head) - 1, len(head) + len(completion) - 1)  # logits at t predict token t + 1
    p, q = logp[at], logq[at]
    assert p.shape[0] == len(completion)
    return float((p.exp() * (p - q)).sum()), float((q.exp() * (q - p)).sum())


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


def _reply(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def test_preference_wins_follow_the_mean_completion_log_prob_computed_by_hand(two_models):
    """Each pair's outcome is chosen-vs-rejected mean log-probability of the answer's tokens, by plain forward passes.

    The pairs have answers of different lengths, so ranking by the summed log-probability, or the wrong way round,
    gives other outcomes, and so does leaving out the answer's first token (checked below); batches of 4 split the
    pairs and pad their rows.
    """
    a, _, tok = two_models
    q, colour = ([{"role": "user", "content": c}] for c in ("q?", "Name a colour."))
    pairs = [
        {"prompt": q, "chosen": _reply("zzzzzzzz"), "rejected": _reply("4")},  # the longer answer, better per token
        {"prompt": q, "chosen": _reply("7"), "rejected": _reply("4")},  # as long, worse for its first token only
        {"prompt": colour, "chosen": _reply("42"), "rejected": _reply("blue")},
        {"prompt": q, "chosen": _reply("yes"), "rejected": _reply("yes")},
        {"prompt": colour, "chosen": _reply("abc"), "rejected": _reply("a")},
    ]

    def answer_logprobs(prompt, reply) -> torch.Tensor:
        # what the answer adds to the chat: its text and the template's end of turn
        head = tok(tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False), add_special_tokens=False)["input_ids"]
        full = tok(tok.apply_chat_template(prompt + reply, tokenize=False), add_special_tokens=False)["input_ids"]
        assert full[: len(head)] == head and len(full) > len(head)
        with torch.no_grad():
            logp = torch.log_softmax(a(input_ids=torch.tensor([full])).logits[0].float(), -1)
        return torch.stack([logp[t - 1, full[t]] for t in range(len(head), len(full))])

    def outcome(c: float, r: float) -> float:
        return 1.0 if c > r else 0.5 if c == r else 0.0

    by_pair = [(answer_logprobs(p["prompt"], p["chosen"]), answer_logprobs(p["prompt"], p["rejected"])) for p in pairs]
    expected = [outcome(float(c.mean()), float(r.mean())) for c, r in by_pair]
    by_sum = [outcome(float(c.sum()), float(r.sum())) for c, r in by_pair]
    without_first = [outcome(float(c[1:].mean()), float(r[1:].mean())) for c, r in by_pair]
    # the pairs tell the right ranking from the wrong ones, with margins far above float noise
    assert set(expected) == {0.0, 0.5, 1.0}  # wins, losses and a tie: a ranking the wrong way round shows
    assert by_sum != expected and sum(by_sum) != sum(expected) and without_first != expected
    assert all(abs(float(c.mean() - r.mean())) > 1e-3 for (c, r), e in zip(by_pair, expected, strict=True) if e != 0.5)

    assert preference_wins(a, tok, pairs, batch_size=4) == expected
    assert preference_accuracy(a, tok, pairs, batch_size=4) == pytest.approx(sum(expected) / len(expected))
    assert preference_wins(a, tok, pairs, batch_size=1) == expected  # no padding: the same outcomes


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
    assert "2.00 -> 1.00" in text and "0.250 -> 0.750" in text and "0.100 -> 0.400" in text and "0.500" in text
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
    assert f"+0.750 [{big.ci_low:+#.3g}, {big.ci_high:+#.3g}]" in text
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
    assert "0.520 -> 0.410" in text and "0.0500 -> 0.250" in text and "-0.100" in text and "early_stopping/best" in text
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


def test_kl_to_ref_is_the_summed_kl_from_policy_to_reference_along_the_greedy_completion(two_models, peaked_ref):
    """eval/kl_to_ref: per prompt, KL(policy ‖ reference) summed over the completion's positions; then the mean over prompts."""
    a, _, tok = two_models
    card = Scorecard(prompts=PROMPTS, columns={}, rewards=[], max_new_tokens=7, batch_size=2)  # a padded batch of 2, then 1
    metrics = card.score(a, tok, "eval", ref=peaked_ref)
    gen = card.samples["eval"]
    assert [len(ids) for ids in gen.ids] == gen.lengths and all(n >= 1 for n in gen.lengths)
    forward, reverse = zip(*(plain_kl(a, peaked_ref, tok, p, ids) for p, ids in zip(PROMPTS, gen.ids, strict=True)), strict=True)
    assert gen.kl == pytest.approx(forward, rel=1e-4)
    assert metrics["eval/kl_to_ref"] == pytest.approx(sum(forward) / len(forward), rel=1e-4)
    # the other direction is a clearly different number, so a swapped KL would not pass
    assert all(abs(f - r) > 0.25 * f for f, r in zip(forward, reverse, strict=True))


def test_sequence_kl_sums_exactly_the_completion_positions_up_to_the_first_eos(two_models, peaked_ref):
    """Left-padded prompts, completions of different lengths: tokens after the first EOS and padding count nothing."""
    a, _, tok = two_models
    eos, pad = tok.eos_token_id, tok.pad_token_id
    chars = [tok.convert_tokens_to_ids(list(text)) for text in ("4", "7 is it", "42!!")]
    completions = [chars[0] + [eos] + chars[1][:3], chars[1] + [eos], chars[2]]  # as generated: junk after EOS, then pad
    scored = [chars[0] + [eos], chars[1] + [eos], chars[2]]  # what counts
    n_new = max(len(c) for c in completions)
    tok.padding_side = "left"
    enc = tok([tok.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in PROMPTS], return_tensors="pt", padding=True)
    assert len(set(enc["attention_mask"].sum(1).tolist())) > 1  # the prompts really are padded
    new = torch.tensor([c + [pad] * (n_new - len(c)) for c in completions])
    keep = torch.tensor([[1] * len(s) + [0] * (n_new - len(s)) for s in scored])
    seq = torch.cat([enc["input_ids"], new], dim=1)
    mask = torch.cat([enc["attention_mask"], keep], dim=1)
    with torch.inference_mode():
        kl = _sequence_kl(a, peaked_ref, seq, mask, enc["input_ids"].shape[1], keep, chunk=2)
    forward, reverse = zip(*(plain_kl(a, peaked_ref, tok, p, s) for p, s in zip(PROMPTS, scored, strict=True)), strict=True)
    assert kl.tolist() == pytest.approx(forward, rel=1e-4)
    assert all(abs(f - r) > 0.25 * f for f, r in zip(forward, reverse, strict=True))


def test_held_out_rewards_get_every_column_trl_passes_in_training_label_included():
    """TRL's GRPOTrainer hands a reward every column but prompt/completion(_ids): the scorecard keeps the same ones,
    so a reward that reads ``label`` in training is not refused at the held-out scorecard."""
    import datasets

    from rlft.evaluation.scorecard import prompts_of
    from rlft.reward_refs import ResolvedReward

    prompt = [{"role": "user", "content": "Is 2 + 2 = 4?"}]
    rows = datasets.Dataset.from_list(
        [{"prompt": prompt, "completion": [{"role": "assistant", "content": "yes"}], "label": True, "answer": "yes", "chosen": "a"}]
    )
    prompts, columns = prompts_of(rows)
    assert prompts == [prompt] and sorted(columns) == ["answer", "chosen", "label"] and columns["label"] == [True]
    needs_label = ResolvedReward(reward=None, weight=1.0, required_columns=("label",), source="test")
    card = Scorecard.from_rows(rows, [needs_label], check=("the held-out rows", "stages.rl", "map one"))
    assert card.columns["label"] == [True]
    conversation = datasets.Dataset.from_list([{"messages": prompt + [{"role": "assistant", "content": "yes"}], "label": False}])
    prompts, columns = prompts_of(conversation)
    assert prompts == [prompt] and columns == {"label": [False]}  # the answer turn is not part of the prompt
