"""Run a GRPO/RLOO micro-batch's prompt once per distinct prompt, not once per completion.

TRL scores a micro-batch by running the whole ``prompt + completion`` of every row through the model.
In a group-based loop the rows of a group share their prompt, so with 16 completions per prompt the
prompt's tokens go through the forward and the backward pass 16 times. ``shared_prefix_logps`` runs
each distinct prompt once (keeping its key/value cache and the last prompt position's hidden state in
the autograd graph), copies that cache to the rows that share it, and runs only the completion tokens
on top. Gradients flow back into the shared prompt pass and sum over its rows, which is what the
repeated passes computed; the log-probabilities equal TRL's up to float rounding (causal attention:
a prompt token never sees a completion token, and rotary positions count from the same start).

On top, only completion positions go through the LM head (TRL scores every position on devices
without Triton, CPUs included, and masks the prompt's afterwards).

``sharing_prompt_prefix(trainer_cls)`` returns a subclass of TRL's GRPOTrainer/RLOOTrainer whose
``_get_per_token_logps_and_entropies`` takes this path whenever it is exact and worthwhile, and TRL's
own otherwise; ``why_not_sharing`` names the reason it is off for a run.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Any

from rlft.decoding import distinct_prompts

_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")
_CHUNK_ROWS = 1024  # completion positions projected through the LM head at once (rows x vocab floats)


def why_not_sharing(trainer) -> str | None:
    """None when this trainer's micro-batches can share their prompts' pass, else the reason it cannot."""
    args = trainer.args
    if trainer.accelerator.num_processes > 1:
        return "several processes (DDP/FSDP/DeepSpeed wrap the model's forward; TRL's path keeps their hooks)"
    if getattr(args, "gradient_checkpointing", False) or getattr(args, "activation_checkpointing", False):
        return "gradient checkpointing does not keep a key/value cache"
    peft_configs = getattr(getattr(trainer.model, "module", trainer.model), "peft_config", None) or {}
    if any(getattr(c, "is_prompt_learning", False) for c in peft_configs.values()):
        return "a prompt-learning PEFT adapter (its virtual tokens are added in PeftModel.forward, which this pass skips)"
    if getattr(args, "use_liger_kernel", False) or getattr(args, "use_liger_loss", False):
        return "the Liger kernel computes the loss from hidden states itself"
    model = base_causal_lm(trainer.model)
    text_config = model.config.get_text_config()
    if text_config is not model.config:
        return "a vision-language model (its prompt carries images)"
    for name in _LOGIT_TRANSFORMS:
        if getattr(text_config, name, None) not in (None, 1.0):
            return f"the model's config sets {name} (its logits are transformed after the LM head)"
    if getattr(text_config, "output_router_logits", False):
        return "a mixture-of-experts model with a router auxiliary loss"
    try:
        model.get_decoder()
    except (AttributeError, NotImplementedError):
        return f"{type(model).__name__} does not expose its decoder (get_decoder)"
    return None


def why_not_sharing_generation(trainer) -> str | None:
    """None when TRL's generation can start from shared prompt caches, else the reason it cannot."""
    args = trainer.args
    if getattr(trainer, "use_vllm", False):
        return "vLLM generates"
    if getattr(trainer, "use_transformers_continuous_batching", False):
        return "transformers' continuous batching generates"
    if getattr(args, "cache_implementation", None) not in (None, "dynamic"):
        return f"cache_implementation {args.cache_implementation!r} (a prefilled dynamic cache is what is shared)"
    return None


def base_causal_lm(model):
    """The transformers causal LM inside a PEFT and/or accelerate wrapper (LoRA layers stay injected in it)."""
    model = getattr(model, "module", model)
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def _cache_kwarg(decoder) -> str:
    params = inspect.signature(decoder.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def shared_prefix_logps(
    model,
    input_ids,
    attention_mask,
    logits_to_keep: int,
    *,
    temperature: float,
    compute_entropy: bool,
    entropy_grad: bool = False,
    lm_head_fp32: bool = False,
):
    """Per-token log-probs (and entropies) of the last ``logits_to_keep`` tokens, each distinct prompt run once.

    ``input_ids``/``attention_mask``: (rows, prompt + completion) as TRL builds them (prompts left-padded,
    completions right-padded). Returns ``(logps, entropies or None)``, each (rows, logits_to_keep) with 0
    at padded completion positions, as TRL's fused LM head returns them.
    """
    import torch

    causal_lm = base_causal_lm(model)
    decoder = causal_lm.get_decoder()
    lm_head = causal_lm.get_output_embeddings()
    prompt_len = input_ids.size(1) - logits_to_keep
    prompt_ids, prompt_mask = input_ids[:, :prompt_len], attention_mask[:, :prompt_len]
    completion_ids, completion_mask = input_ids[:, prompt_len:], attention_mask[:, prompt_len:]
    first, inverse = distinct_prompts(prompt_ids, prompt_mask)

    cache_kw = _cache_kwarg(decoder)
    prefix = decoder(input_ids=prompt_ids[first], attention_mask=prompt_mask[first], use_cache=True)
    cache = getattr(prefix, cache_kw, None) or prefix.past_key_values
    cache.batch_select_indices(inverse)  # each row gets its prompt's keys/values (an indexing op: gradients sum back)
    rest = decoder(input_ids=completion_ids, attention_mask=attention_mask, use_cache=True, **{cache_kw: cache})
    # The hidden state before completion token t: the last prompt position for t = 0, completion position t-1 after.
    hidden = torch.cat([prefix.last_hidden_state[inverse, -1:], rest.last_hidden_state[:, :-1]], dim=1)

    mask = completion_mask.bool()
    rows_h, labels = hidden[mask], completion_ids[mask]
    weight, bias = lm_head.weight, lm_head.bias
    if lm_head_fp32:
        rows_h, weight = rows_h.float(), weight.float()
        bias = None if bias is None else bias.float()
    logps, entropies = [], []
    for start in range(0, rows_h.size(0), _CHUNK_ROWS):
        logits = torch.nn.functional.linear(rows_h[start : start + _CHUNK_ROWS], weight, bias).float() / temperature
        logp_all = logits.log_softmax(dim=-1)
        logps.append(logp_all.gather(-1, labels[start : start + _CHUNK_ROWS].unsqueeze(-1)).squeeze(-1))
        if compute_entropy:
            with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
                entropies.append(-(logp_all.exp() * logp_all).sum(dim=-1))
    out_logps = hidden.new_zeros(mask.shape, dtype=torch.float32).masked_scatter(mask, torch.cat(logps))
    out_entropy = None
    if compute_entropy:
        out_entropy = hidden.new_zeros(mask.shape, dtype=torch.float32).masked_scatter(mask, torch.cat(entropies))
    return out_logps, out_entropy


def prefilled_cache(model, input_ids, attention_mask):
    """A key/value cache of every row's prompt but its last token, each distinct prompt run once; None if none repeats.

    ``generate`` given this cache (and the full ``input_ids``) runs only each row's last prompt token
    and the new ones. Positions are counted as ``generate`` counts them (from the first real token), so
    the cached keys line up with what it adds: greedy outputs equal those without the cache.
    """
    import torch

    if input_ids.size(1) < 2:
        return None
    first, inverse = distinct_prompts(input_ids, attention_mask)
    if first.numel() == input_ids.size(0):
        return None
    decoder = base_causal_lm(model).get_decoder()
    ids, mask = input_ids[first, :-1], attention_mask[first, :-1]
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    with torch.no_grad():
        prefix = decoder(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    cache = getattr(prefix, _cache_kwarg(decoder), None) or prefix.past_key_values
    cache.batch_select_indices(inverse)
    return cache


# generate() arguments that bring their own cache or inputs, or decode in a way a prefilled cache does not fit.
_NOT_SHARED = {"past_key_values", "cache", "inputs_embeds", "assistant_model", "prompt_lookup_num_tokens", "num_beams"}


@contextmanager
def generating_with_shared_prompts(model):
    """Within the block, ``model.generate(input_ids=..., attention_mask=..., **generation_kwargs)`` prefills
    each distinct prompt once (``prefilled_cache``) and copies its cache to the rows that repeat it (as TRL
    calls it, and as rlft samples several completions per prompt: ``rlft.evaluation.scorecard.generate``)."""
    plain = model.generate
    cache_kw = _cache_kwarg(base_causal_lm(model).get_decoder())

    def generate(*args, **kwargs):
        ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        if args or _NOT_SHARED & set(kwargs) or ids is None or mask is None:
            return plain(*args, **kwargs)
        cache = prefilled_cache(model, ids, mask)
        return plain(**kwargs) if cache is None else plain(**kwargs, **{cache_kw: cache})

    model.generate = generate
    try:
        yield model
    finally:
        del model.generate  # the instance attribute goes; the class's method shows again
        if model.generate != plain:
            model.generate = plain


def sharing_prompt_prefix(trainer_cls: type) -> type:
    """``trainer_cls`` (TRL's GRPOTrainer or RLOOTrainer) scoring each distinct prompt of a micro-batch once."""

    class SharingPromptPrefix(trainer_cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.prompt_sharing_off = why_not_sharing(self)
            self.generation_sharing_off = self.prompt_sharing_off or why_not_sharing_generation(self)

        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, *args, **kwargs):
            if self.generation_sharing_off is not None or images is not None or multimodal_fields:
                return super()._generate_single_turn(prompt_ids, images, multimodal_fields, *args, **kwargs)
            # TRL generates with the model that accelerate unwraps, the object patched here for this call.
            with generating_with_shared_prompts(self.accelerator.unwrap_model(self.model_wrapped)):
                return super()._generate_single_turn(prompt_ids, images, multimodal_fields, *args, **kwargs)

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, compute_entropy=False, compute_aux_loss=False, **extra: Any):  # fmt: skip
            if (
                self.prompt_sharing_off is not None
                or compute_aux_loss
                or any(v is not None for v in extra.values())
                or not 0 < logits_to_keep < input_ids.size(1)
                or not self._prompts_repeat(input_ids, attention_mask, logits_to_keep, batch_size)
            ):
                return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss, **extra)  # fmt: skip
            import torch

            step = batch_size or input_ids.size(0)
            logps, entropies = [], []
            for start in range(0, input_ids.size(0), step):
                with self.accelerator.autocast():
                    lp, ent = shared_prefix_logps(
                        model,
                        input_ids[start : start + step],
                        attention_mask[start : start + step],
                        logits_to_keep,
                        temperature=self.temperature,
                        compute_entropy=compute_entropy,
                        entropy_grad=bool(getattr(self, "_entropy_bonus_enabled", False)),
                        lm_head_fp32=bool(getattr(self.args, "cast_lm_head_to_fp32", False)),
                    )
                logps.append(lp)
                entropies.append(ent)
            return torch.cat(logps), (torch.cat(entropies) if compute_entropy else None), None

        @staticmethod
        def _prompts_repeat(input_ids, attention_mask, logits_to_keep: int, batch_size: int | None) -> bool:
            """Some chunk of ``batch_size`` rows holds a prompt twice (else TRL's own pass is as cheap)."""
            prompt_len = input_ids.size(1) - logits_to_keep
            step = batch_size or input_ids.size(0)
            for start in range(0, input_ids.size(0), step):
                ids, mask = input_ids[start : start + step, :prompt_len], attention_mask[start : start + step, :prompt_len]
                if distinct_prompts(ids, mask)[0].numel() < ids.size(0):
                    return True
            return False

    SharingPromptPrefix.__name__ = SharingPromptPrefix.__qualname__ = f"{trainer_cls.__name__}SharingPromptPrefix"
    return SharingPromptPrefix
