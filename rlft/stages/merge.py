"""Model soups: average several models of one architecture, and say whether the average beats its members.

A recipe names the members and, optionally, held-out prompts and rewards to compare them on::

    - name: soup
      kind: merge
      models: [dpo_a, dpo_b, {stage: grpo, weight: 2}]   # stages, base, or {path: ./folder}
      data: bundled:arithmetic                           # held-out prompts (split test) ...
      rewards: [{name: math_accuracy}]                   # ... and rewards; the first decides who wins

Members are earlier stages (their saved models), ``base`` (the recipe's model) or local folders (full
weights, or a PEFT adapter that is merged into its base first); weights are relative and normalised to
sum 1. The soup (``rlft.stages.merging``: checked, averaged in fp32) is saved like any stage's model, with the
first member's tokenizer, so later stages start from it by name (``init_from: soup``).

With ``data`` and ``rewards``, the soup and every distinct member answer the same prompts greedily
(``rlft.evaluation.scorecard``), and the stage reports ``eval/reward/<name>`` and ``eval/mean_length`` for the
soup, ``member/<label>/reward/<name>`` and ``member/<label>/mean_length`` per member (label: the stage
name, ``base``, or the folder's name), ``soup_minus_best_member`` (the soup's first reward minus the
best member's) and ``soup_beats_members`` (that difference is >= 0). The manifest's ``merge`` entry
lists the members (folder, normalised weight) and the best one; completions go to ``samples.jsonl``.
"""

from __future__ import annotations

import math
from dataclasses import asdict

from rlft.evaluation.statistics import paired_bootstrap
from rlft.recipe import MergeStage
from rlft.stages.context import StageContext, StageResult
from rlft.stages.eval import prompt_card
from rlft.stages.merging import average, check_members, load_member, resolve_members
from rlft.stages.saving import save_model


def run(cfg: MergeStage, ctx: StageContext) -> StageResult:
    from rlft.models import load_tokenizer

    where, trust = f"stages.{cfg.name}.models", ctx.recipe.trust_remote_code
    members = resolve_members(cfg, ctx)
    ctx.notes.merge = {"members": [asdict(m) for m in members]}
    card = prompt_card(cfg, ctx) if cfg.data is not None else None  # data and rewards are checked before any weights load
    check_members(members, where=where, trust_remote_code=trust)
    print(f"[{cfg.name}] averaging {len(members)} models: " + ", ".join(f"{m.label} x{m.weight:.3g}" for m in members), flush=True)
    soup = average(members, where=where, trust_remote_code=trust)
    tok = load_tokenizer(members[0].tokenizer_from, trust_remote_code=trust)
    path = save_model(soup, tok, ctx.out_dir)
    if card is None:
        return StageResult(name=cfg.name, kind=cfg.kind, status="done", model_path=path)

    print(f"[{cfg.name}] generating {len(card.prompts)} greedy completions with the soup ...", flush=True)
    metrics: dict[str, float] = {"eval/n": len(card.prompts), **card.score(soup, tok, "eval")}
    del soup  # one model in memory at a time while the members are scored
    distinct = {m.label: m for m in members}  # a member named twice (same label, same folder) is scored once
    for label, member in distinct.items():
        print(f"[{cfg.name}] generating {len(card.prompts)} greedy completions with {label} ...", flush=True)
        model = load_member(member, trust_remote_code=trust)
        metrics.update(card.score(model, load_tokenizer(member.tokenizer_from, trust_remote_code=trust), f"member/{label}"))
        del model
    reward = card.rewards[0].reward.__name__
    metrics.update(_verdict(metrics, list(distinct), f"reward/{reward}", ctx, per_prompt=card.scores, seed=ctx.seed_for(cfg)))
    card.write_samples(ctx.paths.samples, ctx.tracker)
    return StageResult(name=cfg.name, kind=cfg.kind, status="done", model_path=path, metrics=metrics)


def _verdict(metrics: dict, labels: list[str], key: str, ctx: StageContext, per_prompt: dict | None = None, seed: int = 0) -> dict:
    """``soup_minus_best_member`` and ``soup_beats_members`` on ``key`` (``reward/<name>``); none when the soup or no member
    has a score. With ``per_prompt`` (the card's scores by prefix and reward), the difference gets its paired 95% interval
    over the prompts: ``soup_minus_best_member/ci_low``, ``/ci_high``, ``/p_value``, ``/n``, ``/n_needed``."""
    scored = {label: metrics[f"member/{label}/{key}"] for label in labels if not math.isnan(metrics[f"member/{label}/{key}"])}
    soup = metrics[f"eval/{key}"]
    if not scored or math.isnan(soup):
        return {}
    best = max(scored, key=scored.get)
    ctx.notes.merge["best_member"] = best
    interval = {}
    if per_prompt is not None:
        reward = key.removeprefix("reward/")
        paired = paired_bootstrap(per_prompt[f"member/{best}"][reward], per_prompt["eval"][reward], seed=seed)
        interval = paired.metrics("soup_minus_best_member", value=False)
    return {"soup_minus_best_member": soup - scored[best], "soup_beats_members": soup >= scored[best], **interval}
