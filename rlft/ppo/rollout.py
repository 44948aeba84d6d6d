"""Sampling completions and reading log-probs, entropies and hidden states back from a causal LM.

Sequences are ``prompt (left-padded, P tokens) + completion (right-padded, T tokens)``. Position ids
come from the attention mask, as ``generate`` makes them, so that the log-probs recomputed here are
those of the distribution the tokens were sampled from (tempered by the same temperature).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from rlft.ppo.core import entropy_from_logits, logprobs_of


@dataclass
class Rollout:
    """One batch of sampled completions (B rows).

    ``query_ids``/``query_mask``: (B, P) left-padded prompt tokens; ``completion_ids``: (B, T)
    sampled tokens, padding after EOS; ``completion_mask``: (B, T) float, 1.0 up to and including
    EOS; ``ended``: (B,) bool, the completion stopped at EOS (not at ``max_completion_length``);
    ``texts``: the decoded completions, special tokens dropped.
    """

    query_ids: torch.Tensor
    query_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    ended: torch.Tensor
    texts: list[str]

    @property
    def input_ids(self) -> torch.Tensor:
        """(B, P + T) prompt and completion tokens."""
        return torch.cat([self.query_ids, self.completion_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        """(B, P + T): prompt padding and everything after EOS masked."""
        return torch.cat([self.query_mask, self.completion_mask.to(self.query_mask.dtype)], dim=1)

    def rows(self, index: torch.Tensor | slice) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)`` of some rows."""
        return self.input_ids[index], self.attention_mask[index]


def prompt_texts(tokenizer, prompts: list) -> list[str]:
    """Chat message lists through the chat template (with the generation prompt); strings unchanged."""
    return [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) if isinstance(p, list) else p for p in prompts]


def encode_prompts(tokenizer, prompts: list, max_prompt_length: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids and mask, (B, P); over-long prompts keep their last tokens; the tokenizer is left as it was."""
    sides = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side = tokenizer.truncation_side = "left"
    try:  # the tokenizer is saved with the policy: it keeps the sides the user gave it
        batch = tokenizer(
            prompt_texts(tokenizer, prompts),
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
            truncation=max_prompt_length is not None,
            max_length=max_prompt_length,
        )
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = sides
    return batch["input_ids"], batch["attention_mask"]


def completion_mask(completion_ids: torch.Tensor, eos_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask, ended)`` of right-padded completions: (B, T) float up to the first EOS inclusive, (B,) bool."""
    is_eos = torch.isin(completion_ids, torch.tensor(eos_ids, device=completion_ids.device))
    ended = is_eos.any(dim=1)
    steps = completion_ids.shape[1]
    first_eos = torch.where(ended, is_eos.float().argmax(dim=1), torch.full_like(ended, steps - 1, dtype=torch.long))
    positions = torch.arange(steps, device=completion_ids.device).unsqueeze(0)
    return (positions <= first_eos.unsqueeze(1)).float(), ended


@contextmanager
def neutral_generation_config(model):
    """Within the block the model's generation config holds only its special tokens, so ``generate`` fills nothing
    else from it (transformers fills every field a passed config leaves unset from the model's)."""
    from transformers import GenerationConfig

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    own = base.generation_config
    keep = {k: getattr(own, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")}
    base.generation_config = GenerationConfig(**{k: v for k, v in keep.items() if v is not None})
    try:
        yield
    finally:
        base.generation_config = own


@torch.no_grad()
def sample(model, tokenizer, prompts: list, *, args, eos_ids: list[int], device) -> Rollout:
    """Sample one completion per prompt from the policy tempered by ``args.temperature``, stopping at EOS.

    Nothing else shapes the distribution: the model's own generation config (a ``repetition_penalty``,
    ``top_k``, ``min_p``... as instruct models ship them) is set aside while sampling, since PPO's old
    log-probs, ratios and KL are computed under the plain tempered softmax.
    """
    from transformers import GenerationConfig

    query_ids, query_mask = encode_prompts(tokenizer, prompts, args.max_prompt_length)
    query_ids, query_mask = query_ids.to(device), query_mask.to(device)
    config = GenerationConfig(
        max_new_tokens=args.max_completion_length,
        do_sample=True,
        temperature=args.temperature,
        top_p=1.0,
        top_k=0,  # sample from the tempered distribution itself, whose log-probs PPO uses
        eos_token_id=eos_ids,
        pad_token_id=tokenizer.pad_token_id,
    )
    was_training = model.training
    model.eval()  # generate turns the KV cache off under activation checkpointing in train mode
    with neutral_generation_config(model):
        out = model.generate(input_ids=query_ids, attention_mask=query_mask, generation_config=config)
    model.train(was_training)
    completion_ids = out[:, query_ids.shape[1] :]
    mask, ended = completion_mask(completion_ids, eos_ids)
    completion_ids = torch.where(mask.bool(), completion_ids, tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
    return Rollout(query_ids, query_mask, completion_ids, mask, ended, texts)


LOGIT_CHUNK = 1 << 26  # logits (rows x completion tokens x vocabulary) upcast to fp32 at once: 256 MB


@dataclass
class PolicyOutput:
    """What one forward of the policy gives about the completion tokens (B, T each; ``hidden`` (B, T, H))."""

    logprobs: torch.Tensor
    entropy: torch.Tensor | None
    hidden: torch.Tensor | None  # last-layer states before each completion token, for a shared critic


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, as ``generate`` does with left padding."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


def policy_forward(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    n_completion: int,
    temperature: float,
    *,
    with_entropy: bool = False,
    with_hidden: bool = False,
) -> PolicyOutput:
    """Log-probs of the last ``n_completion`` tokens under the tempered policy (and entropy, hidden states)."""
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids(attention_mask),
        logits_to_keep=n_completion + 1,  # the LM head only where completion tokens are predicted
        output_hidden_states=with_hidden,
        use_cache=False,
    )
    raw, targets = out.logits[:, :-1], input_ids[:, -n_completion:]
    logprobs, entropy = [], []
    rows = max(1, LOGIT_CHUNK // max(1, raw.shape[1] * raw.shape[2]))
    for start in range(0, raw.shape[0], rows):  # fp32 (rows, T, V) at a time, not (B, T, V): vocabularies run to 150k
        logits = raw[start : start + rows].float() / temperature  # upcast before the division under bf16 autocast
        logprobs.append(logprobs_of(logits, targets[start : start + rows]))
        if with_entropy:
            entropy.append(entropy_from_logits(logits))
    return PolicyOutput(
        logprobs=torch.cat(logprobs),
        entropy=torch.cat(entropy) if with_entropy else None,
        hidden=out.hidden_states[-1][:, -n_completion - 1 : -1] if with_hidden else None,
    )
