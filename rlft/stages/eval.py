"""Held-out evaluation: greedy generation on prompts no stage trained on, scored by reward functions.

Scores the model under test (``init_from``, default the last stage that made a policy: not a
reward model or a classifier, which do not generate) and a baseline (``baseline: base`` = the
recipe's starting model, or a stage name), with the common scorecard names (``rlft.evaluation.scorecard``):
``eval/reward/<name>`` and ``baseline/reward/<name>`` (means over rows where the reward applies),
``eval/mean_length`` (tokens) and ``eval/kl_to_ref`` (KL of the model under test to the baseline
along its greedy completions). Samples go to ``samples.jsonl`` and a W&B table.

Guards (``rlft.stages.guards``): ``overfit_check`` also scores a sample of a training stage's own prompts
(``train_sample/reward/<name>``, ``generalisation_gap/<name>``), ``probe`` the general-ability probe
(``probe/general/accuracy``, per category, ``probe/general/change``), and ``forgetting`` fails the
stage when that accuracy dropped more than ``max_drop`` below the baseline's.
"""

from __future__ import annotations

from rlft.data.rows import load_rows
from rlft.evaluation.scorecard import Scorecard
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


def run(cfg: EvalStage, ctx: StageContext) -> StageResult:
    from rlft.models import load_causal_lm, load_tokenizer

    card = prompt_card(cfg, ctx)
    guards = Guards.build(cfg, ctx, card.rewards)  # overfit_check, probe, forgetting: rows checked before any model loads
    under_test = _model_under_test(cfg, ctx)
    kw = ctx.recipe.model_kwargs_for(cfg)
    load = lambda ref: load_causal_lm(ctx.model_ref(ref), trust_remote_code=ctx.recipe.trust_remote_code, model_kwargs=kw)  # noqa: E731

    metrics: dict[str, float] = {"eval/n": len(card.prompts)}
    baseline_model = None
    if cfg.baseline is not None:
        print(f"[{cfg.name}] generating {len(card.prompts)} greedy completions with {cfg.baseline} ...", flush=True)
        baseline_model, baseline_tok = load(cfg.baseline), load_tokenizer(ctx.model_ref(cfg.baseline), revision=kw.revision)
        metrics.update(card.score(baseline_model, baseline_tok, "baseline"))
        metrics.update(guards.score(baseline_model, baseline_tok, "baseline"))
    print(f"[{cfg.name}] generating {len(card.prompts)} greedy completions with {under_test or 'base'} ...", flush=True)
    model, tok = load(under_test), load_tokenizer(ctx.model_ref(under_test), revision=kw.revision)
    metrics.update(card.score(model, tok, "eval", ref=baseline_model))
    metrics.update(guards.score(model, tok, "eval"))
    metrics.update(guards.differences(metrics))
    metrics.update(card.deltas(seed=ctx.seed_for(cfg)))  # eval/delta/reward/<name>: model minus baseline, with its interval
    metrics.update(guards.intervals(seed=ctx.seed_for(cfg)))
    ctx.notes.models = {"eval": under_test or "base", **({"baseline": cfg.baseline} if cfg.baseline else {})}
    card.write_samples(ctx.paths.samples, ctx.tracker)
    guards.write_samples(ctx)
    result = StageResult(name=cfg.name, kind=cfg.kind, status="done", metrics=metrics)
    check_forgetting(cfg, ctx, result, under_test)  # after the metrics and samples are written: a failure keeps them
    return result
