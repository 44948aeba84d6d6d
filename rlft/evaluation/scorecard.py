"""The common scorecard: the same held-out metric names for every stage kind.

Every stage ends by scoring its model on rows it did not train on, and writes what applies:

======================  ==========================================================================  =========================
metric                  meaning                                                                     stages
======================  ==========================================================================  =========================
``eval/accuracy``       preference pairs ranked right (chosen above rejected; ties count half):      reward_model, dpo, kto,
                        a reward model by its score, a policy by its mean token log-probability;     orpo, simpo, sft,
                        SFT: held-out next-token accuracy; classifier: held-out texts labelled      classifier
                        right (also ``eval/macro_f1``)
``eval/loss``           the trainer's own held-out loss                                              sft, reward_model, dpo,
                                                                                                     kto, orpo, simpo,
                                                                                                     classifier
``eval/reward/<name>``  mean reward of greedy completions to held-out prompts                        grpo, rloo, ppo, eval;
                                                                                                     others with scorecard.rewards
``eval/kl_to_ref``      mean over held-out prompts of the summed per-token KL(policy ‖ reference)    every stage that makes a
                        along the policy's greedy completion, over the full vocabulary; the         policy, and eval
                        reference is the model the stage started from (eval: its baseline)
``eval/mean_length``    mean tokens in the greedy completions (EOS included)                         as eval/kl_to_ref
``baseline/<metric>``   the same metric for the model the stage started from (eval: the baseline)   all of the above
``eval/delta/<metric>`` ``eval/<metric>`` minus ``baseline/<metric>`` on the same prompts or pairs,      every reward and pair
                        with ``/ci_low``, ``/ci_high`` (95% paired bootstrap over prompts, 2,000       accuracy with both sides
                        seeded resamples), ``/p_value`` (sign-flip test), ``/n``, ``/n_needed``
======================  ==========================================================================  =========================

The KL is exact at each visited position (a sum over the vocabulary, not a sampled log-ratio), so
it is never negative and is deterministic for a given model pair.
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlft.evaluation.statistics import paired_bootstrap
from rlft.progress import Progress
from rlft.reward_refs import require_columns


def prompts_of(rows) -> tuple[list, dict[str, list]] | None:
    """Held-out prompts and their other columns (for rewards), or None when the rows have no prompts.

    ``prompt`` columns are used as they are; ``messages`` conversations lose their last assistant turn;
    preference pairs keep their prompt. The other columns are those TRL's GRPOTrainer hands a reward in training:
    every column but the prompt and the completion (``label``, ``chosen``, ... included), so a reward that reads one
    in training finds it here too.
    """
    cols = rows.column_names
    if "prompt" in cols:
        prompts = list(rows["prompt"])
        skip = {"prompt", "completion", "completion_ids"}
    elif "messages" in cols:
        prompts = [m[:-1] if m and m[-1].get("role") == "assistant" else m for m in rows["messages"]]
        if any(not p for p in prompts):
            return None
        skip = {"messages", "completion", "completion_ids"}  # the conversation is the prompt (and its answer)
    else:
        return None
    return prompts, {c: list(rows[c]) for c in cols if c not in skip}


def _ignore(*args, **kwargs) -> None:
    """Held-out scoring keeps no completions table or extra metrics: what a reward logs there is dropped."""


# TRL hands every reward these two loggers besides the data columns (``log_extra(column, values)``,
# ``log_metric(name, value)``); a reward that calls them must not fail when rlft scores held-out answers.
TRL_LOGGERS = {"log_extra": _ignore, "log_metric": _ignore}


def _render(tok, prompt) -> str:
    return tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False) if isinstance(prompt, list) else prompt


@dataclass
class Generated:
    """Completions of one model, in the order of the prompts: ``texts[i]``, ``ids[i]`` (tokens up to and including the
    first EOS, pad tokens left out) and ``lengths[i]`` (their count) per prompt, and ``kl[i]`` (summed per-token KL to
    the reference) when a reference was given.

    ``seconds``: wall time of the decoding (prefill and token steps; not the KL pass); ``rows_per_batch``: rows decoded
    at once. ``tokens_per_s`` is ``tokens / seconds``.
    """

    texts: list[str] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    ids: list[list[int]] = field(default_factory=list)  # what TRL passes a reward as ``completion_ids``
    seconds: float = 0.0
    rows_per_batch: int = 0

    @property
    def tokens(self) -> int:
        """Completion tokens made (EOS included)."""
        return sum(self.lengths)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")


def accelerator():
    """Where scoring runs: this process's GPU when there is one (``LOCAL_RANK`` under a launcher), else the CPU."""
    import torch

    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else torch.device("cpu")


def _ready(model, device):
    """``model`` in eval mode on ``device`` (moved there if it is elsewhere)."""
    if model is not None:
        if next(model.parameters()).device != device:
            model.to(device)
        model.eval()
    return model


def encode_prompts(tok, prompts: list) -> list[list[int]]:
    """Each prompt's token ids as the model reads them: chat messages through the chat template, no special tokens added."""
    return tok([_render(tok, p) for p in prompts], add_special_tokens=False)["input_ids"] if prompts else []


def pad_id_of(tok) -> int:
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


def rows_at_once(model, encoded: list[list[int]], max_new_tokens: int, batch_size: int | str | None, device) -> int:
    """``batch_size`` when it is a number; for None or ``"auto"``, what free memory allows (``rlft.decoding.rows_per_batch``)."""
    if batch_size is not None and batch_size != "auto":
        return int(batch_size)
    from rlft.decoding import dtype_bytes_of, rows_per_batch

    longest = max((len(e) for e in encoded), default=1)
    return rows_per_batch(model.config, prompt_tokens=longest, new_tokens=max_new_tokens, device=device, dtype_bytes=dtype_bytes_of(model))


def longest_first(encoded: list[list[int]]) -> list[int]:
    """Prompt indices by token count, longest first (batches of like lengths pad little; ties keep their order, so a
    prompt repeated k times stays together and is prefilled once). The first batch is the widest: a batch that does
    not fit in memory fails at once."""
    return sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))


def left_padded(rows: list[list[int]], pad_id: int, device):
    """(input_ids, attention_mask), (B, longest) tensors with each row's tokens at the right, as a left-padding tokenizer makes them."""
    import torch

    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, r in enumerate(rows):
        if r:
            ids[j, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[j, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


def generate(
    model,
    tok,
    prompts: list,
    *,
    max_new_tokens: int,
    batch_size: int | str | None = None,
    ref=None,
    device=None,
    temperature: float | None = None,
    top_p: float = 1.0,
    desc: str = "generate",
) -> Generated:
    """Greedy completions of ``model``; with ``ref``, also the per-prompt KL(model ‖ ref) along them.

    Prompts are decoded longest first, ``batch_size`` at a time (None or ``"auto"``: as many as free memory allows,
    ``rlft.decoding.rows_per_batch``), by ``rlft.decoding.decode``, which drops each row from the batch at its EOS and
    prefills a repeated prompt once (HF ``generate`` when the model's generation config shapes the logits). Everything
    returned is in the order of ``prompts``; greedy completions equal ``generate``'s.
    ``device``: where to generate (default: ``accelerator()``; a model in training passes its own, so it is not moved).
    ``temperature``: sample instead (with ``top_p``), drawing from torch's RNG — seed it for repeatable samples.
    ``desc``: what the progress (``rlft.progress``: batches done/total, tokens/s, ETA, on stderr) calls this generation.
    """
    import torch

    from rlft.decoding import decode, why_not_decode

    device = device or accelerator()
    _ready(model, device)
    _ready(ref, device)
    encoded = encode_prompts(tok, prompts)
    pad_id, eos_id = pad_id_of(tok), tok.eos_token_id
    size = rows_at_once(model, encoded, max_new_tokens, batch_size, device)
    order = longest_first(encoded)
    own_loop = why_not_decode(model, sampling=temperature is not None) is None
    ids: list[list[int]] = [[] for _ in prompts]
    kl: list[float] = [0.0 for _ in prompts]
    seconds = 0.0
    with torch.inference_mode(), Progress(desc, math.ceil(len(prompts) / size)) as progress:
        for start in range(0, len(order), size):
            rows = order[start : start + size]
            input_ids, mask = left_padded([encoded[i] for i in rows], pad_id, device)
            t0 = time.perf_counter()
            if own_loop:
                new = decode(
                    model,
                    input_ids,
                    mask,
                    max_new_tokens=max_new_tokens,
                    eos_ids=[eos_id],
                    pad_id=pad_id,
                    temperature=temperature,
                    top_p=top_p,
                )
            else:
                new = _hf_generate(model, input_ids, mask, max_new_tokens, eos_id, pad_id, temperature, top_p)
            keep = _until_eos(new, eos_id, pad_id)
            made = [row[k.bool()].tolist() for row, k in zip(new, keep, strict=True)]  # (tolist copies to the CPU)
            seconds += time.perf_counter() - t0
            for i, completion in zip(rows, made, strict=True):
                ids[i] = completion
            if ref is not None:
                values = _sequence_kl(
                    model, ref, torch.cat([input_ids, new], dim=1), torch.cat([mask, keep], dim=1), input_ids.shape[1], keep
                )
                for i, value in zip(rows, values.tolist(), strict=True):
                    kl[i] = value
            progress.update(tokens=sum(len(c) for c in made))
    return Generated(
        texts=tok.batch_decode(ids, skip_special_tokens=True) if ids else [],
        lengths=[len(c) for c in ids],
        kl=kl if ref is not None else [],
        ids=ids,
        seconds=seconds,
        rows_per_batch=size,
    )


def _hf_generate(model, input_ids, mask, max_new_tokens: int, eos_id: int, pad_id: int, temperature: float | None, top_p: float):
    """The completion part of HF ``generate``'s output (B, T): rows that ended early padded to the longest."""
    decoding = {"do_sample": False} if temperature is None else {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
    seq = model.generate(
        input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens, **decoding, pad_token_id=pad_id, eos_token_id=eos_id
    )
    return seq[:, input_ids.shape[1] :]


def completion_kl(
    model, ref, tok, prompts: list, completions: list[list[int]], *, batch_size: int | str | None = None, device=None
) -> list[float]:
    """Per prompt, the summed KL(model ‖ ref) along a completion given as token ids (made earlier: reused generations)."""
    import torch

    device = device or accelerator()
    _ready(model, device)
    _ready(ref, device)
    encoded = encode_prompts(tok, prompts)
    pad_id = pad_id_of(tok)
    size = rows_at_once(model, encoded, max(1, max((len(c) for c in completions), default=1)), batch_size, device)
    order = longest_first(encoded)
    kl = [0.0 for _ in prompts]
    with torch.inference_mode():
        for start in range(0, len(order), size):
            rows = order[start : start + size]
            input_ids, mask = left_padded([encoded[i] for i in rows], pad_id, device)
            width = max(1, max(len(completions[i]) for i in rows))
            new = torch.full((len(rows), width), pad_id, dtype=torch.long)
            keep = torch.zeros((len(rows), width), dtype=torch.long)
            for j, i in enumerate(rows):
                new[j, : len(completions[i])] = torch.tensor(completions[i], dtype=torch.long)
                keep[j, : len(completions[i])] = 1
            new, keep = new.to(device), keep.to(device)
            values = _sequence_kl(model, ref, torch.cat([input_ids, new], dim=1), torch.cat([mask, keep], dim=1), input_ids.shape[1], keep)
            for i, value in zip(rows, values.tolist(), strict=True):
                kl[i] = value
    return kl


def _until_eos(new, eos_id: int, pad_id: int):
    """1 for generated tokens up to and including the first EOS, 0 after it (and for padding)."""
    import torch

    is_end = new == eos_id
    after_end = (torch.cumsum(is_end.long(), dim=1) - is_end.long()) > 0
    keep = ~after_end
    if pad_id != eos_id:
        keep &= new != pad_id
    return keep.long()


def _sequence_kl(model, ref, seq, mask, n_prompt: int, keep, chunk: int = 8):
    """Sum over completion positions of KL(model(.|prefix) ‖ ref(.|prefix)), per sequence.

    Only the positions that predict completion tokens get logits (``logits_to_keep``), and rows go
    through in chunks, so the (rows x positions x vocabulary) tensors stay small.
    """
    import torch

    n_new = seq.shape[1] - n_prompt
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    out = []
    for i in range(0, seq.shape[0], chunk):
        rows = slice(i, i + chunk)
        logp = _completion_logprobs(model, seq[rows], mask[rows], position_ids[rows], n_new)
        logq = _completion_logprobs(ref, seq[rows], mask[rows], position_ids[rows], n_new)
        per_token = (logp.exp() * (logp - logq)).sum(-1).clamp(min=0.0)
        out.append((per_token * keep[rows]).sum(1))
    return torch.cat(out)


def _completion_logprobs(model, ids, mask, position_ids, n_new: int):
    """Log-probabilities of the next token at the ``n_new`` positions that predict the completion."""
    import torch

    try:
        logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, logits_to_keep=n_new + 1).logits
    except TypeError:  # a model whose forward has no logits_to_keep
        logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits
    return torch.log_softmax(logits[:, -(n_new + 1) : -1].float(), -1)


def preference_accuracy(model, tok, pairs, *, batch_size: int = 8) -> float:
    """Share of pairs whose chosen answer gets a higher mean token log-probability than the rejected one."""
    return statistics.fmean(preference_wins(model, tok, pairs, batch_size=batch_size))


def preference_wins(model, tok, pairs, *, batch_size: int = 8) -> list[float]:
    """Per pair: 1.0 when the chosen answer gets the higher mean token log-probability, 0.5 for a tie, else 0.0.

    ``pairs`` has the canonical shape of ``rlft.data.preference.normalise_preference`` (prompt messages, one-message
    chosen and rejected). Mean, not sum, so that a shorter answer is not preferred for its length. Ties count half.
    """
    import torch

    def answer(prompt, reply) -> tuple[str, str]:
        head = _render(tok, prompt)
        full = tok.apply_chat_template(prompt + reply, tokenize=False) if isinstance(prompt, list) else prompt + reply
        return head, full

    rows = list(pairs)
    items = [answer(r["prompt"], r[side]) for r in rows for side in ("chosen", "rejected")]
    scores: list[float] = []
    tok.padding_side = "right"
    device = accelerator()
    _ready(model, device)
    with torch.inference_mode():
        for i in range(0, len(items), batch_size):
            chunk = items[i : i + batch_size]
            enc = tok([full for _, full in chunk], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            starts = [len(tok(head, add_special_tokens=False)["input_ids"]) for head, _ in chunk]
            logits = model(**enc).logits[:, :-1].float()
            target = enc["input_ids"][:, 1:]
            logp = torch.log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
            for j, start in enumerate(starts):
                n = int(enc["attention_mask"][j].sum())
                span = logp[j, max(start - 1, 0) : n - 1]
                scores.append(float(span.mean()) if span.numel() else float("-inf"))
    return [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(scores[0::2], scores[1::2], strict=True)]


@dataclass
class Scorecard:
    """The held-out generation part of a stage's scorecard: prompts, rewards, and how to generate.

    ``score(model, prefix)`` returns ``{prefix}/reward/<name>``, ``{prefix}/mean_length``, with a reference
    ``{prefix}/kl_to_ref``, and how fast the completions came: ``{prefix}/tokens_per_s`` (``generated_tokens`` /
    ``generation_s``); completions are kept for ``write_samples``, and how they were made in ``generation[prefix]``
    (the stage's manifest note ``generation``), so that a later stage can reuse them (``reuse``).
    """

    prompts: list
    columns: dict[str, list]
    rewards: list  # ResolvedReward
    max_new_tokens: int = 64
    batch_size: int | str | None = None  # rows generated at once; None or "auto": from free memory
    label: str = "held-out"  # what the progress lines call this card's prompts: held-out, probe, train sample
    samples: dict[str, Generated] = field(default_factory=dict)
    scores: dict[str, dict[str, list]] = field(default_factory=dict)
    generation: dict[str, dict[str, Any]] = field(default_factory=dict)  # prefix -> identity (see ``identity``) and timing

    @classmethod
    def from_rows(
        cls,
        rows,
        rewards: list,
        *,
        first: int | None = None,
        sample: int | None = None,
        seed: int = 0,
        max_new_tokens: int = 64,
        batch_size: int | str | None = None,
        all_columns: bool = False,
        check: tuple[str, str, str] | None = None,
    ) -> Scorecard | None:
        """The scorecard of held-out ``rows`` (a ``datasets.Dataset``): their prompts, their other columns, ``rewards``.

        Every caller builds its card here: a training stage's end-of-stage scorecard and early stopping's
        held-out reward (``first``: the first N rows), an eval stage's guards (``sample``: N rows drawn with
        ``seed``, kept in row order), eval and merge stages and the probe (every row). Prompts come from
        ``prompts_of``; the other columns reach the rewards as keyword arguments (``all_columns``: every column
        but the prompt and completion, as TRL passes them, for rows written for evaluation; else those ``prompts_of`` keeps). ``check``:
        ``(rows, where, fix)`` — each reward must find the columns it needs, else an ``RlftError`` naming them.
        Returns None when the rows have no prompts.
        """
        found = prompts_of(rows)
        if found is None:
            return None
        prompts, columns = found
        if all_columns:  # as TRL's GRPOTrainer passes a reward every column but these
            columns = {c: list(rows[c]) for c in rows.column_names if c not in ("prompt", "completion", "completion_ids")}
        if sample is not None:
            picked = sorted(random.Random(seed).sample(range(len(prompts)), min(sample, len(prompts))))
        else:
            picked = range(len(prompts) if first is None else min(first, len(prompts)))
        if check is not None:
            where_rows, where, fix = check
            require_columns(rewards, columns, rows=where_rows, where=where, fix=fix)
        return cls(
            prompts=[prompts[i] for i in picked],
            columns={k: [v[i] for i in picked] for k, v in columns.items()},
            rewards=rewards,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
        )

    def score(self, model, tok, prefix: str, ref=None, device=None, source: dict[str, Any] | None = None) -> dict[str, float]:
        """Generate greedily with ``model``, score, and return the metrics of ``prefix`` with its generation speed.

        ``source``: which model this is, as a later stage would name it (``{"model": <stage name or "base">,
        "model_kwargs": {...}}``); recorded in ``generation[prefix]`` with the rest of ``identity``.
        """
        device = device or accelerator()
        gen = generate(
            model,
            tok,
            self.prompts,
            max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size,
            ref=ref,
            device=device,
            desc=f"{self.label} {prefix}",
        )
        self._take(prefix, gen)
        self.generation[prefix] = {
            **self.identity(tok, device, source),
            "rows_per_batch": gen.rows_per_batch,
            "tokens": gen.tokens,
            "seconds": round(gen.seconds, 3),
            "tokens_per_s": round(gen.tokens_per_s, 2),
        }
        speed = {f"{prefix}/generated_tokens": float(gen.tokens), f"{prefix}/generation_s": gen.seconds}
        if gen.seconds > 0:
            speed[f"{prefix}/tokens_per_s"] = gen.tokens_per_s
        return {**self.metrics(prefix), **speed}

    def identity(self, tok, device=None, source: dict[str, Any] | None = None) -> dict[str, Any]:
        """What decides this card's greedy completions: the model (``source``), the prompts' token ids (count and
        sha256), ``max_new_tokens``, greedy decoding, the EOS and pad ids, the device type. Two generations whose
        identities are equal (and name a model) made the same completions; rows per batch are left out (they
        change float rounding at most, not the decoding)."""
        import hashlib

        import torch

        encoded = encode_prompts(tok, self.prompts)
        return {
            **(source or {}),
            "prompts": len(self.prompts),
            "prompt_ids_sha256": hashlib.sha256(json.dumps(encoded).encode()).hexdigest(),
            "max_new_tokens": self.max_new_tokens,
            "decoding": "greedy",
            "eos_token_id": tok.eos_token_id,
            "pad_token_id": pad_id_of(tok),
            "device": torch.device(device or accelerator()).type,
        }

    def reuse(self, model, tok, prefix: str, gen: Generated, *, identity: dict[str, Any], reused_from: str, ref=None, device=None) -> dict:
        """Score completions made earlier (``gen``: texts and ids in prompt order) as ``prefix``'s, without generating.

        The caller has checked that ``identity`` (this card's, for ``model``) equals the one recorded with them. With
        ``ref``, the KL along them is computed here (one forward of each model). ``generation[prefix]`` says
        ``reused_from``; no ``tokens_per_s`` is reported for ``prefix`` (nothing was generated).
        """
        if ref is not None:
            gen.kl = completion_kl(model, ref, tok, self.prompts, gen.ids, batch_size=self.batch_size, device=device)
        self._take(prefix, gen)
        self.generation[prefix] = {**identity, "reused_from": reused_from}
        return self.metrics(prefix)

    def _take(self, prefix: str, gen: Generated) -> None:
        """Score ``gen``'s completions with the card's rewards and keep both under ``prefix``."""
        trl_kwargs = {**self.columns, "completion_ids": gen.ids, **TRL_LOGGERS}  # as TRL calls a reward (no trainer_state here)
        self.scores[prefix] = {r.reward.__name__: r.reward(self.prompts, gen.texts, **trl_kwargs) for r in self.rewards}
        self.samples[prefix] = gen

    def metrics(self, prefix: str) -> dict[str, float]:
        """``{prefix}/mean_length``, ``/kl_to_ref`` (when a reference was given) and ``/reward/<name>`` of what was scored as ``prefix``."""
        gen = self.samples[prefix]
        metrics: dict[str, float] = {f"{prefix}/mean_length": statistics.fmean(gen.lengths) if gen.lengths else float("nan")}
        if gen.kl:
            metrics[f"{prefix}/kl_to_ref"] = statistics.fmean(gen.kl)
        for name, values in self.scores[prefix].items():
            applicable = [v for v in values if v is not None]
            metrics[f"{prefix}/reward/{name}"] = statistics.fmean(applicable) if applicable else float("nan")
        return metrics

    def adopt(self, source: str, prefix: str) -> dict[str, float]:
        """Take what was scored as ``source`` as ``prefix``'s too (the same model under two names: no second generation)."""
        self.samples[prefix], self.scores[prefix] = self.samples[source], self.scores[source]
        return self.metrics(prefix)

    def deltas(self, before: str = "baseline", after: str = "eval", *, seed: int = 0) -> dict[str, float]:
        """``{after}/delta/reward/<name>`` with its interval: ``after`` minus ``before`` on the same prompts, per reward.

        A paired percentile bootstrap over prompts (``rlft.evaluation.statistics``): ``.../ci_low``, ``/ci_high``,
        ``/p_value``, ``/n`` (prompts both sides were scored on), ``/n_needed`` (prompts that would separate this effect).
        """
        out: dict[str, float] = {}
        for name, values in self.scores.get(after, {}).items():
            if name in self.scores.get(before, {}):
                out.update(paired_bootstrap(self.scores[before][name], values, seed=seed).metrics(f"{after}/delta/reward/{name}"))
        return out

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for i, prompt in enumerate(self.prompts):
            row: dict[str, Any] = {"prompt": prompt, **{k: v[i] for k, v in self.columns.items()}}
            for prefix, gen in self.samples.items():
                row[f"{prefix}_completion"] = gen.texts[i]
                if gen.ids:
                    row[f"{prefix}_completion_ids"] = gen.ids[i]
                if gen.kl:
                    row[f"{prefix}_kl_to_ref"] = gen.kl[i]
                for name, values in self.scores.get(prefix, {}).items():
                    row[f"{prefix}_{name}"] = values[i]
            out.append(row)
        return out

    def write_samples(self, path: Path, tracker=None, table: str = "eval/samples") -> None:
        """``samples.jsonl`` with every prompt's completions (text and token ids) and scores, and a W&B table (key ``table``,
        without the token ids) of the first 200."""
        rows = self.rows()
        if not rows:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        if tracker is not None:
            keys = [k for k in rows[0] if k != "prompt" and not k.endswith("_completion_ids")]
            tracker.log_table(table, ["prompt", *keys], [[json.dumps(r["prompt"]), *[r[k] for k in keys]] for r in rows[:200]])
