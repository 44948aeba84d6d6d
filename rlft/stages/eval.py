"""Held-out evaluation: greedy generation on prompts no stage trained on, scored by reward functions.

Scores the model under test (``init_from``, default the last stage that made a policy: not a
reward model or a classifier, which do not generate) and a baseline (``baseline: base`` = the
recipe's starting model, or a stage name), with the common scorecard names (``rlft.evaluation.scorecard``):
``eval/reward/<name>`` and ``baseline/reward/<name>`` (means over rows where the reward applies),
``eval/mean_length`` (tokens) and ``eval/kl_to_ref`` (KL of the model under test to the baseline
along its greedy completions; ``kl: false`` skips that pass). Samples go to ``samples.jsonl`` and a W&B table; generation speed to
``eval/tokens_per_s`` and ``baseline/tokens_per_s`` (with ``/generation_s``, ``/generated_tokens``).

The model under test is not run again when its own stage's scorecard already made exactly these
completions: the same saved model loaded the same way, the same prompts (token for token), the same
``max_new_tokens``, greedy decoding, EOS and pad tokens, and device. Then its ``samples.jsonl`` completions
are scored instead (the KL to this stage's baseline is still computed, unless ``kl: false``), and the manifest says so:
``generation.eval.reused_from: <stage>``. Anything different, and it generates.

Guards (``rlft.stages.guards``): ``overfit_check`` also scores a sample of a training stage's own prompts
(``train_sample/reward/<name>``, ``generalisation_gap/<name>``), ``probe`` the general-ability probe
(``probe/general/accuracy``, per category, ``probe/general/change``), and ``forgetting`` fails the
stage when that accuracy dropped more than ``max_drop`` below the baseline's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlft.data.rows import load_rows
from rlft.evaluation.scorecard import Generated, Scorecard
from rlft.layout import StageLayout
from rlft.recipe import STAGE_KINDS, EvalStage
from rlft.stages.context import StageContext, StageResult
from rlft.stages.guards import Guards, check_forgetting


def _model_under_test(cfg: EvalStage, ctx: StageContext) -> str | None:
    if cfg.init_from:
        return cfg.init_from
    made = [name for name, r in ctx.results.items() if r.model_path and STAGE_KINDS[r.kind].makes_policy]
    return made[-1] if made else None


def prompt_card(cfg, ctx: StageContext) -> Scorecard:
    """A scorecard over all prompts of ``cfg.data`` and its ``cfg.rewards`` (eval and merge stages); records the data in the manifest."""
    split = cfg.data.split or cfg.default_split
    rows, fp, label = load_rows(cfg.data, split=split, required=cfg.required_columns, base_dir=ctx.recipe_dir, seed=ctx.seed_for(cfg))
    ctx.notes.data = {"eval": label, "rows": len(rows), "fingerprint": fp}
    rewards = ctx.resolve_rewards(cfg.rewards, columns=rows.column_names, data_label=label, where=f"stages.{cfg.name}.rewards")
    return Scorecard.from_rows(rows, rewards, all_columns=True, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size)


def reusable(ctx: StageContext, stage: str | None, card: Scorecard, identity: dict[str, Any]) -> tuple[Generated | None, str]:
    """``(completions, "")`` when ``stage``'s scorecard made the greedy completions this card would make (its
    ``generation.eval`` record equals ``identity`` key for key, and its ``samples.jsonl`` holds these prompts in
    this order with their token ids), else ``(None, why not)``."""
    result = ctx.results.get(stage) if stage not in (None, "base") else None
    if result is None or result.status != "done" or not result.output_dir:
        return None, ""
    folder = StageLayout(Path(result.output_dir))
    try:
        made = (json.loads(folder.manifest.read_text()).get("generation") or {}).get("eval")
    except (OSError, ValueError):
        return None, ""
    if not made:
        return None, ""
    differ = [k for k, v in identity.items() if made.get(k) != v]
    if differ:
        return None, ", ".join(
            f"{k} {made.get(k)!r} there, {identity[k]!r} here" for k in differ if k != "prompt_ids_sha256"
        ) or "other prompts"
    try:
        rows = [json.loads(line) for line in folder.samples.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError):
        return None, f"{folder.samples} is unreadable"
    if len(rows) != len(card.prompts) or any(
        r.get("prompt") != p or "eval_completion_ids" not in r for r, p in zip(rows, card.prompts, strict=False)
    ):
        return None, f"{folder.samples} does not hold these prompts with their completions' token ids"
    ids = [r["eval_completion_ids"] for r in rows]
    return Generated(texts=[r["eval_completion"] for r in rows], lengths=[len(i) for i in ids], ids=ids), ""


def run(cfg: EvalStage, ctx: StageContext) -> StageResult:
    from rlft.models import load_causal_lm, load_tokenizer

    card = prompt_card(cfg, ctx)
    guards = Guards.build(cfg, ctx, card.rewards)  # overfit_check, probe, forgetting: rows checked before any model loads
    under_test = _model_under_test(cfg, ctx)
    kw = ctx.recipe.model_kwargs_for(cfg)
    load = lambda ref: load_causal_lm(ctx.model_ref(ref), trust_remote_code=ctx.recipe.trust_remote_code, model_kwargs=kw)  # noqa: E731

    source = lambda ref: {"model": ref or "base", "model_kwargs": kw.model_dump(mode="json")}  # noqa: E731  (see Scorecard.identity)

    metrics: dict[str, float] = {"eval/n": len(card.prompts)}
    baseline_model = None
    if cfg.baseline is not None:
        print(f"[{cfg.name}] generating {len(card.prompts)} greedy completions with {cfg.baseline} ...", flush=True)
        baseline_model, baseline_tok = load(cfg.baseline), load_tokenizer(ctx.model_ref(cfg.baseline), revision=kw.revision)
        metrics.update(card.score(baseline_model, baseline_tok, "baseline", source=source(cfg.baseline)))
        metrics.update(guards.score(baseline_model, baseline_tok, "baseline"))
    model, tok = load(under_test), load_tokenizer(ctx.model_ref(under_test), revision=kw.revision)
    kl_ref = baseline_model if cfg.kl else None  # eval/kl_to_ref costs a forward pass of both models over the completions
    identity = card.identity(tok, source=source(under_test))
    earlier, why_not = reusable(ctx, under_test, card, identity)
    if earlier is not None:
        print(
            f"[{cfg.name}] reusing the {len(card.prompts)} greedy completions {under_test}'s scorecard made (same model, prompts, settings)"
        )
        metrics.update(card.reuse(model, tok, "eval", earlier, identity=identity, reused_from=under_test, ref=kl_ref))
    else:
        print(f"[{cfg.name}] generating {len(card.prompts)} greedy completions with {under_test or 'base'} ...", flush=True)
        if why_not:
            print(f"[{cfg.name}] ({under_test}'s scorecard completions differ: {why_not})", flush=True)
        metrics.update(card.score(model, tok, "eval", ref=kl_ref, source=source(under_test)))
    metrics.update(guards.score(model, tok, "eval"))
    metrics.update(guards.differences(metrics))
    metrics.update(card.deltas(seed=ctx.seed_for(cfg)))  # eval/delta/reward/<name>: model minus baseline, with its interval
    metrics.update(guards.intervals(seed=ctx.seed_for(cfg)))
    ctx.notes.models = {"eval": under_test or "base", **({"baseline": cfg.baseline} if cfg.baseline else {})}
    ctx.notes.generation = {**card.generation, **guards.generation()}
    card.write_samples(ctx.paths.samples, ctx.tracker)
    guards.write_samples(ctx)
    result = StageResult(name=cfg.name, kind=cfg.kind, status="done", metrics=metrics)
    check_forgetting(cfg, ctx, result, under_test)  # after the metrics and samples are written: a failure keeps them
    return result
