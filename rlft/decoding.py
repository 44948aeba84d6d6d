"""rlft's own decoding loop: batched greedy or sampled completions that drop each row as it reaches EOS.

HF ``generate`` runs every row of a batch until the longest completion ends (a finished row keeps
decoding padding), and each prompt of a batch that repeats it is prefilled again. ``decode`` runs the
same computation — prefill with ``logits_to_keep=1``, then one token per step from a ``DynamicCache``,
positions counted from the first real token, the next token by ``argmax`` (or sampled from the
tempered, top-p-cut softmax with ``torch.multinomial``, as ``generate`` samples) — but removes a row
from the running batch once it has emitted EOS (``DynamicCache.batch_select_indices``) and prefills
each distinct prompt once. Greedy completions equal ``generate``'s token for token (tests check it).

``why_not_decode(model)`` says when a model needs HF ``generate`` instead: its generation config
shapes the logits (a repetition penalty, bad words, a minimum length...), which ``decode`` does not
reproduce.

``rows_per_batch`` sizes a generation batch from memory: what one row holds (its key/value cache for
prompt + new tokens, one layer's prefill activations, the next-token logits) against the memory free
on the device, with a safety share and a cap.

Transformers 5 also ships continuous batching (``model.generate_batch``); on this CPU it was slower
than this loop (its paged attention attends over every request's cache at once), see docs/performance.md.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

# Generation-config fields that make HF generate change the logits before picking a token; decode does
# not apply them, so a model whose config sets any of them is left to generate (value: the neutral one).
LOGIT_SHAPING = {
    "repetition_penalty": (None, 1.0),
    "encoder_repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "encoder_no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,),
    "min_length": (None, 0),
    "min_new_tokens": (None, 0),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "sequence_bias": (None,),
    "exponential_decay_length_penalty": (None,),
    "renormalize_logits": (None, False),
    "guidance_scale": (None, 1.0),
    "watermarking_config": (None,),
    "num_beams": (None, 1),
    "prefill_chunk_size": (None,),
}
# Sampling knobs generate takes from the model's config when sampling (callers pass temperature, top_p and top_k=0
# themselves; decode applies those two and no others).
SAMPLING_SHAPING = {
    "min_p": (None, 0.0),
    "typical_p": (None, 1.0),
    "epsilon_cutoff": (None, 0.0),
    "eta_cutoff": (None, 0.0),
    "top_h": (None, 0.0),
}

CPU_ROW_CAP = 128  # on 2 CPU cores, HF generate gave ~80 tok/s at 16 rows, ~114 at 64, ~136 at 128: little past that
GPU_ROW_CAP = 256
MEMORY_SHARE = 0.5  # of the free memory a generation batch may fill (the rest: fragmentation, the KL pass, other work)


def _cache_kwarg(model) -> str:
    """``cache`` (transformers >= 5) or ``past_key_values``: what the causal LM's forward calls its key/value cache."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def why_not_decode(model, *, sampling: bool = False) -> str | None:
    """None when ``decode`` computes what HF ``generate`` would for ``model``, else the reason (then use ``generate``)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return "an encoder-decoder model"
    params = inspect.signature(base.forward).parameters
    if "position_ids" not in params or not ({"cache", "past_key_values"} & set(params)):
        return f"{type(base).__name__}.forward takes no position_ids or key/value cache"
    gen = getattr(base, "generation_config", None)
    checks = {**LOGIT_SHAPING, **(SAMPLING_SHAPING if sampling else {})}
    for name, neutral in checks.items():
        value = getattr(gen, name, None)
        if value not in neutral:
            return f"its generation config sets {name}={value!r}, which generate applies to the logits"
    return None


def distinct_prompts(prompt_ids, prompt_mask):
    """(index of each distinct prompt's first row, index of each row's distinct prompt); padding compared too."""
    import torch

    keyed = prompt_ids.masked_fill(prompt_mask == 0, -1)
    _, inverse = torch.unique(keyed, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), keyed.size(0), dtype=torch.long, device=keyed.device)
    first = first.scatter_reduce(0, inverse, torch.arange(keyed.size(0), device=keyed.device), reduce="amin")
    return first, inverse


def decode(
    model,
    input_ids,
    attention_mask,
    *,
    max_new_tokens: int,
    eos_ids: list[int],
    pad_id: int,
    temperature: float | None = None,
    top_p: float = 1.0,
):
    """Completions of left-padded prompts: (B, T) token ids, each row up to and including its first EOS, ``pad_id`` after.

    ``input_ids``/``attention_mask``: (B, P) left-padded. ``T`` is the longest completion (at most ``max_new_tokens``).
    ``temperature`` None: greedy; else sample from softmax(logits / temperature) cut to ``top_p``, drawing from torch's
    RNG (seed it for repeatable samples; rows leave the batch as they end, so the draws differ from ``generate``'s).
    Call under ``torch.inference_mode()`` with the model in eval mode.
    """
    import torch
    from transformers import DynamicCache

    rows = input_ids.shape[0]
    device = input_ids.device
    out = torch.full((rows, max_new_tokens), pad_id, dtype=torch.long, device=device)
    if rows == 0 or max_new_tokens < 1:
        return out[:, :0]
    eos = torch.tensor(eos_ids, device=device)
    pick = _picker(temperature, top_p)
    positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)

    # Prefill: each distinct prompt once; its cache and last logits go to every row that repeats it.
    first, inverse = distinct_prompts(input_ids, attention_mask) if rows > 1 else (None, None)
    shared = first is not None and first.numel() < rows
    cache_kw = _cache_kwarg(model)
    cache = DynamicCache(config=getattr(model, "config", None))
    prefill = (input_ids[first], attention_mask[first], positions[first]) if shared else (input_ids, attention_mask, positions)
    logits = _forward(model, *prefill, cache_kw, cache)
    if shared:
        logits = logits[inverse]
        cache.batch_select_indices(inverse)

    alive = torch.arange(rows, device=device)  # the row of `out` each running row fills
    mask = attention_mask
    next_position = positions[:, -1] + 1
    steps = 0
    for step in range(max_new_tokens):
        token = pick(logits)
        out[alive, step] = token
        steps = step + 1
        ended = torch.isin(token, eos)
        if step == max_new_tokens - 1:
            break
        if ended.any():
            running = (~ended).nonzero().squeeze(1)
            if running.numel() == 0:
                break
            alive, token, mask, next_position = alive[running], token[running], mask[running], next_position[running]
            cache.batch_select_indices(running)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        logits = _forward(model, token[:, None], mask, next_position[:, None], cache_kw, cache)
        next_position = next_position + 1
    return out[:, :steps]


def _forward(model, ids, mask, positions, cache_kw: str, cache):
    """The fp32 next-token logits (rows, vocabulary) after ``ids``, extending ``cache`` in place."""
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1, **{cache_kw: cache})
    return out.logits[:, -1].float()


def _picker(temperature: float | None, top_p: float):
    """``pick(logits) -> token ids``: argmax, or a draw as HF generate samples (temperature, then top-p, then multinomial)."""
    import torch

    if temperature is None:
        return lambda logits: torch.argmax(logits, dim=-1)
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

    warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)] + ([TopPLogitsWarper(top_p)] if top_p < 1.0 else []))

    def pick(logits):
        scores = warpers(None, logits)
        return torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)

    return pick


# --- how many rows at once ------------------------------------------------------------------------------------------


def row_bytes(config, *, prompt_tokens: int, new_tokens: int, dtype_bytes: int = 4) -> int:
    """Bytes one generation row needs at its peak: its key/value cache, one layer's prefill activations, the logits.

    - cache: ``2 (keys, values) x layers x kv_heads x head_dim x (prompt + new tokens) x dtype_bytes``, kept to the end;
    - prefill, one layer at a time: the MLP's ``2 x intermediate`` and ``4 x hidden`` activations per prompt token and
      the ``heads x prompt x prompt`` attention scores, ``x dtype_bytes``;
    - logits: ``3 x vocabulary`` fp32 values (the next-token logits, the softmax, the sampler's copy).
    """
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    intermediate = getattr(text, "intermediate_size", None) or 4 * text.hidden_size
    cache = 2 * text.num_hidden_layers * kv_heads * head_dim * (prompt_tokens + new_tokens) * dtype_bytes
    prefill = (prompt_tokens * (2 * intermediate + 4 * text.hidden_size) + heads * prompt_tokens * prompt_tokens) * dtype_bytes
    logits = 3 * text.vocab_size * 4
    return cache + prefill + logits


def free_bytes(device=None) -> int:
    """Memory free for new tensors on ``device``: ``torch.cuda.mem_get_info`` on a GPU, else the system's available memory."""
    if device is not None and getattr(device, "type", str(device)).startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # psutil comes with accelerate; read the kernel's own figure without it
        with open("/proc/meminfo", encoding="ascii") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024


def rows_per_batch(
    config,
    *,
    prompt_tokens: int,
    new_tokens: int,
    device=None,
    dtype_bytes: int = 4,
    free: int | None = None,
    share: float = MEMORY_SHARE,
    cap: int | None = None,
) -> int:
    """The rows to generate at once: ``share`` of the ``free`` memory (default: measured on ``device``) over ``row_bytes``,
    at least 1 and at most ``cap`` (default ``CPU_ROW_CAP``, or ``GPU_ROW_CAP`` on a GPU; ``RLFT_GENERATION_ROW_CAP`` overrides).

    Example: SmolLM2-135M (30 layers, 3 kv heads of 64, vocabulary 49,152), 40-token prompts, 48 new tokens, fp32:
    about 5.6 MB a row, so 20 GB free allows some 1,800 and the CPU cap of 128 decides.
    """
    on_gpu = device is not None and getattr(device, "type", str(device)).startswith("cuda")
    if cap is None:
        cap = int(os.environ.get("RLFT_GENERATION_ROW_CAP", GPU_ROW_CAP if on_gpu else CPU_ROW_CAP))
    free = free_bytes(device) if free is None else free
    per_row = row_bytes(config, prompt_tokens=prompt_tokens, new_tokens=new_tokens, dtype_bytes=dtype_bytes)
    return max(1, min(cap, int(free * share) // per_row))


def dtype_bytes_of(model: Any) -> int:
    """Bytes per value of the model's parameters (the key/value cache is kept in that dtype)."""
    try:
        return next(model.parameters()).element_size()
    except (StopIteration, AttributeError):
        return 4
