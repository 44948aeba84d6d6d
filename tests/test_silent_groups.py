"""Skipping GRPO/RLOO micro-batches whose groups all scored alike: which rows are silent, how the batch is
repacked, when skipping is allowed, and that a training step ends on the same weights as TRL's own."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import sum_rows

from rlft.training.silent_groups import SILENT, signal_first, silent_rows, skipping_silent_groups, why_not_skipping

nan = math.nan


def test_silent_rows_marks_groups_whose_weighted_rewards_are_all_equal():
    rewards = torch.tensor(
        [
            [1.0, 1.0], [1.0, 1.0], [1.0, 1.0],  # all alike: silent
            [1.0, 1.0], [0.0, 1.0], [1.0, 1.0],  # one differs: signal
            [nan, 1.0], [nan, 1.0], [0.0, 1.0],  # first reward skipped twice: 0.2 vs 0.2 vs 0.2: silent
            [nan, nan], [nan, nan], [nan, nan],  # nobody scored: silent
            [nan, nan], [1.0, 0.0], [1.0, 0.0],  # one unscorable, two alike: silent
            [1.0, 0.0], [0.0, 1.0], [0.0, 0.0],  # 1.0 vs 0.2 vs 0.0: signal
        ]
    )  # fmt: skip
    weights = torch.tensor([1.0, 0.2])
    got = silent_rows(rewards, weights, group_size=3).view(-1, 3)
    assert got.all(dim=1).tolist() == [True, False, True, True, True, False]
    assert (got.all(dim=1) | ~got.any(dim=1)).all()  # a group is silent or not as a whole


def test_silent_rows_tolerates_float_rounding_but_not_real_differences():
    rewards = torch.tensor([[0.1 + 0.2], [0.3], [0.3], [0.3], [0.3], [0.3001]]).float()
    got = silent_rows(rewards, torch.tensor([1.0]), group_size=3)
    assert got.tolist() == [True, True, True, False, False, False]


def test_signal_first_keeps_every_row_and_moves_silent_rows_last():
    ids = torch.arange(8).unsqueeze(1).repeat(1, 3)
    silent = torch.tensor([True, False, True, True, False, True, True, False])
    chunks = [
        {"ids": ids[i : i + 2], "advantages": (~silent[i : i + 2]).float(), SILENT: silent[i : i + 2], "n": torch.tensor(7), "text": ["r" + str(j) for j in range(i, i + 2)], "none": None}
        for i in range(0, 8, 2)
    ]  # fmt: skip
    out = signal_first(chunks)
    assert len(out) == 4 and all(c["ids"].shape == (2, 3) for c in out)
    order = torch.cat([c["ids"][:, 0] for c in out]).tolist()
    assert order == [1, 4, 7, 0, 2, 3, 5, 6]  # signal rows first, each side in its old order
    assert [t for c in out for t in c["text"]] == [f"r{i}" for i in order]
    assert [bool(c[SILENT].all()) for c in out] == [False, False, True, True]
    assert all(int(c["n"]) == 7 and c["none"] is None for c in out)


class _Stub:
    def __init__(self, **kw):
        self.beta, self.loss_type, self.aux_loss_enabled, self._entropy_bonus_enabled = 0.0, "dr_grpo", False, False
        self.__dict__.update(kw)


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({}, None),
        ({"loss_type": "dapo"}, None),
        ({"beta": 0.04}, "beta"),
        ({"loss_type": "bnpo"}, "bnpo"),
        ({"_entropy_bonus_enabled": True}, "entropy"),
        ({"normalize_advantages": True}, "normalize_advantages"),
        ({"multi_objective_aggregation": "normalize_then_sum"}, "normalize_then_sum"),
    ],
)
def test_skipping_only_where_the_gradient_cannot_change(kw, reason):
    got = why_not_skipping(_Stub(**kw))
    assert got is None if reason is None else reason in got


def _reward(prompts, completions, **kwargs):
    """Silent (1.0 for all) unless the prompt starts with 0 or 1; there, the parity of the characters' codes."""
    return [float(sum(map(ord, c)) % 2) if p.startswith(("0", "1")) else 1.0 for p, c in zip(prompts, completions, strict=True)]


def train_two_steps(cls, model_path, out, loss_type):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, RLOOConfig, RLOOTrainer

    rows = [{"prompt": r["prompt"]} for r in sum_rows(40, with_completion=False)]
    rloo = issubclass(cls, RLOOTrainer)
    args = (RLOOConfig if rloo else GRPOConfig)(
        output_dir=str(out), use_cpu=True, bf16=False, max_steps=2, learning_rate=1.0, optim="sgd", num_generations=4,
        per_device_train_batch_size=4, gradient_accumulation_steps=4, max_completion_length=6, beta=0.0,
        report_to=[], save_strategy="no", seed=3, logging_steps=1, gradient_checkpointing=False,
        **({} if rloo else {"loss_type": loss_type}),
    )  # fmt: skip
    tok = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    trainer = cls(model=model, reward_funcs=[_reward], args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    trainer.train()
    return trainer


@pytest.mark.parametrize(("trainer", "loss_type"), [("GRPOTrainer", "dr_grpo"), ("GRPOTrainer", "dapo"), ("RLOOTrainer", None)])
def test_a_step_with_silent_microbatches_skipped_ends_on_trls_weights(tiny_model, tmp_path, trainer, loss_type):
    import trl
    from transformers import AutoModelForCausalLM

    start = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    plain = train_two_steps(getattr(trl, trainer), tiny_model, tmp_path / "plain", loss_type)
    fast = train_two_steps(skipping_silent_groups(getattr(trl, trainer)), tiny_model, tmp_path / "fast", loss_type)
    assert fast.silent_groups_off is None
    skipped = [
        h["silent_groups/frac_microbatches_skipped"] for h in fast.state.log_history if "silent_groups/frac_microbatches_skipped" in h
    ]
    assert skipped and max(skipped) > 0, "the seed must give at least one all-silent micro-batch"
    plain_w, fast_w = plain.model.state_dict(), fast.model.state_dict()
    assert any(not torch.equal(plain_w[k], start[k]) for k in start), "the signal rows must move the weights"
    # Plain SGD (see _train): the update is proportional to the gradient, so a wrongly scaled loss would show.
    for k in plain_w:
        torch.testing.assert_close(fast_w[k], plain_w[k], rtol=1e-5, atol=1e-6, msg=k)


def test_with_a_kl_term_nothing_is_skipped(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, beta=0.1, report_to=[], num_generations=2, per_device_train_batch_size=2
    )
    tok = AutoTokenizer.from_pretrained(tiny_model)
    trainer = skipping_silent_groups(GRPOTrainer)(
        model=AutoModelForCausalLM.from_pretrained(tiny_model), reward_funcs=[_reward], args=args,
        train_dataset=__import__("datasets").Dataset.from_list([{"prompt": "1+1="}] * 4), processing_class=tok,
    )  # fmt: skip
    assert "beta" in trainer.silent_groups_off
