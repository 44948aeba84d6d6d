"""Each distinct prompt of a GRPO/RLOO micro-batch runs through the model once: the log-probabilities,
entropies and gradients equal TRL's per-row pass, generation from a shared prompt cache equals plain
generation, and a training step ends on TRL's weights."""

from __future__ import annotations

import pytest
import torch
from test_silent_groups import train_two_steps

from rlft.decoding import distinct_prompts
from rlft.training import shared_prefix
from rlft.training.shared_prefix import (
    generating_with_shared_prompts,
    prefilled_cache,
    shared_prefix_logps,
    sharing_prompt_prefix,
    why_not_sharing,
)
from rlft.training.silent_groups import GROUP, SILENT, signal_first, skipping_silent_groups


def _batch(vocab: int, pad: int):
    """Three prompts of lengths 7, 4 and 5 (left-padded to 7) repeated 3, 1 and 2 times; completions of 1-5 tokens."""
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(5, vocab, (n,), generator=g) for n in (7, 4, 5)]
    rows = [0, 0, 1, 2, 0, 2]
    lengths = [5, 3, 4, 1, 2, 5]
    ids, mask = torch.full((6, 12), pad), torch.zeros(6, 12, dtype=torch.long)
    for i, (p, n) in enumerate(zip(rows, lengths, strict=True)):
        ids[i, 7 - len(prompts[p]) : 7] = prompts[p]
        mask[i, 7 - len(prompts[p]) : 7] = 1
        ids[i, 7 : 7 + n] = torch.randint(5, vocab, (n,), generator=g)
        mask[i, 7 : 7 + n] = 1
    return ids, mask


def _model(path, lora: bool):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    add_fused_lm_head(model, temperature=0.7, outputs=("log_probs", "entropy"))
    if lora:
        torch.manual_seed(0)  # the adapter's draws: the same numbers whatever ran before in the session
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear"))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5)  # a trained-looking adapter, so a path that skipped LoRA would show
    return model


def test_distinct_prompts_compares_tokens_and_padding():
    ids = torch.tensor([[0, 5, 6], [0, 5, 6], [5, 5, 6], [0, 5, 6], [5, 5, 6]])
    mask = torch.tensor([[0, 1, 1], [0, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1]])  # row 3: same ids, token 0 is real
    first, inverse = distinct_prompts(ids, mask)
    groups = [first[i].item() for i in inverse]
    assert groups == [0, 0, 2, 3, 2]


@pytest.mark.parametrize("lora", [True, False])
def test_log_probs_entropies_and_gradients_equal_trls_pass(tiny_model, lora):
    model = _model(tiny_model, lora)
    model.train()
    ids, mask = _batch(model.config.vocab_size, pad=1)
    keep = 5
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :-keep] = -100
    out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    want_logps, want_ent = out.log_probs[:, -keep:], out.entropy[:, -keep:]
    weights = torch.randn(want_logps.shape, generator=torch.Generator().manual_seed(1))
    params = [p for p in model.parameters() if p.requires_grad]
    want_grads = torch.autograd.grad((want_logps * weights).sum(), params)

    logps, ent = shared_prefix_logps(model, ids, mask, keep, temperature=0.7, compute_entropy=True)
    grads = torch.autograd.grad((logps * weights).sum(), params)
    assert (want_logps != 0).sum() == mask[:, -keep:].sum()  # the comparison covers every real completion token
    torch.testing.assert_close(logps, want_logps, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent, want_ent.detach(), rtol=1e-5, atol=1e-5)
    assert any(g.abs().sum() > 0 for g in grads)
    for got, want in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)  # float32 sums in another order (~1e-6 seen)


def test_generation_from_the_shared_prompt_cache_equals_plain_generation(tiny_model, monkeypatch):
    from transformers import GenerationConfig

    model = _model(tiny_model, lora=True)
    model.eval()
    ids, mask = _batch(model.config.vocab_size, pad=1)
    ids, mask = ids[:, :7], mask[:, :7]
    config = GenerationConfig(max_new_tokens=6, do_sample=False, pad_token_id=1, eos_token_id=3)
    plain = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    cache = prefilled_cache(model, ids, mask)
    assert cache is not None and cache.get_seq_length() == 6 and cache.layers[0].keys.shape[0] == 6
    with generating_with_shared_prompts(model) as patched:
        shared = patched.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    assert torch.equal(shared, plain)
    # as rlft's sampling calls it (keyword generation settings; a seeded draw): the same tokens too
    settings = {"max_new_tokens": 6, "do_sample": True, "temperature": 1.0, "top_k": 0, "pad_token_id": 1, "eos_token_id": 3}
    torch.manual_seed(7)
    drawn = model.generate(input_ids=ids, attention_mask=mask, **settings)
    prefilled = []
    monkeypatch.setattr(shared_prefix, "prefilled_cache", lambda *a: prefilled.append(prefilled_cache(*a)) or prefilled[-1])
    with generating_with_shared_prompts(model) as patched:
        torch.manual_seed(7)
        shared = patched.generate(input_ids=ids, attention_mask=mask, **settings)
    assert torch.equal(shared, drawn) and len(prefilled) == 1 and prefilled[0] is not None  # it ran from the shared cache
    assert "generate" not in vars(model)  # the patch is gone after the block
    assert prefilled_cache(model, ids[[0, 2, 3]], mask[[0, 2, 3]]) is None  # nothing repeats: nothing to share


def test_rows_are_regrouped_within_each_optimizer_step_only():
    group = torch.tensor([0, 1, 0, 1, 2, 3, 3, 2])
    silent = torch.tensor([False, False, False, False, True, False, False, True])
    chunks = [{"row": torch.arange(i, i + 2), SILENT: silent[i : i + 2], GROUP: group[i : i + 2]} for i in range(0, 8, 2)]
    out = signal_first(chunks, window=2)
    assert [c["row"].tolist() for c in out] == [[0, 2], [1, 3], [5, 6], [4, 7]]
    assert [c["row"].tolist() for c in signal_first(chunks)] == [[0, 2], [1, 3], [5, 6], [4, 7]]
    out = signal_first([{**c, GROUP: torch.zeros(2, dtype=torch.long)} for c in chunks])
    assert [c["row"].tolist() for c in out] == [[0, 1], [2, 3], [5, 6], [4, 7]]  # signal first across all four


def test_why_not_sharing_names_what_rules_it_out(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    def trainer(**kw):
        model = AutoModelForCausalLM.from_pretrained(tiny_model)
        for key, value in kw.pop("config", {}).items():
            setattr(model.config, key, value)
        args = GRPOConfig(
            output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[], num_generations=2, per_device_train_batch_size=2, **kw
        )
        data = __import__("datasets").Dataset.from_list([{"prompt": "1+1="}] * 4)
        reward = lambda completions, **_: [0.0] * len(completions)  # noqa: E731
        return sharing_prompt_prefix(GRPOTrainer)(
            model=model, reward_funcs=[reward], args=args, train_dataset=data, processing_class=AutoTokenizer.from_pretrained(tiny_model)
        )

    assert why_not_sharing(trainer(gradient_checkpointing=False)) is None
    assert "gradient checkpointing" in why_not_sharing(trainer(gradient_checkpointing=True))
    assert "final_logit_softcapping" in why_not_sharing(trainer(gradient_checkpointing=False, config={"final_logit_softcapping": 30.0}))
    from peft import PrefixTuningConfig

    prefix = trainer(gradient_checkpointing=False)
    prefix.model.peft_config = {"default": PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2)}  # as PEFT sets it
    assert "prompt-learning" in why_not_sharing(prefix)
    off = trainer(gradient_checkpointing=False, cache_implementation="static")
    assert off.prompt_sharing_off is None and "static" in off.generation_sharing_off


@pytest.mark.parametrize(("trainer", "loss_type"), [("GRPOTrainer", "dr_grpo"), ("RLOOTrainer", None)])
def test_a_step_sharing_prompts_ends_on_trls_weights(tiny_model, tmp_path, monkeypatch, trainer, loss_type):
    import trl

    calls = {"logps": 0, "prefill": 0}
    logps, prefill = shared_prefix.shared_prefix_logps, shared_prefix.prefilled_cache

    def counting_logps(*a, **k):
        calls["logps"] += 1
        return logps(*a, **k)

    def counting_prefill(*a, **k):
        cache = prefill(*a, **k)
        calls["prefill"] += cache is not None
        return cache

    monkeypatch.setattr(shared_prefix, "shared_prefix_logps", counting_logps)
    monkeypatch.setattr(shared_prefix, "prefilled_cache", counting_prefill)
    plain = train_two_steps(getattr(trl, trainer), tiny_model, tmp_path / "plain", loss_type)
    assert calls == {"logps": 0, "prefill": 0}
    fast = train_two_steps(sharing_prompt_prefix(skipping_silent_groups(getattr(trl, trainer))), tiny_model, tmp_path / "fast", loss_type)
    assert fast.prompt_sharing_off is None and fast.generation_sharing_off is None
    assert calls["logps"] > 0 and calls["prefill"] == 2  # two steps, one generation batch each
    plain_w, fast_w = plain.model.state_dict(), fast.model.state_dict()
    # Plain SGD with lr 1 (see train_two_steps): a wrong gradient would show in the weights.
    for k in plain_w:
        torch.testing.assert_close(fast_w[k], plain_w[k], rtol=1e-4, atol=1e-5, msg=k)
