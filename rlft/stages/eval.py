"""Held-out evaluation: greedy generation on prompts no stage trained on, scored by reward functions.

Scores the model under test (``init_from``, default the last stage that made a model) and a
baseline (``baseline: base`` = the recipe's starting model, or a stage name), with the common
scorecard names (``rlft.scorecard``): ``eval/reward/<name>`` and ``baseline/reward/<name>`` (means
over rows where the reward applies), ``eval/mean_length`` (tokens) and ``eval/kl_to_ref`` (KL of
the model under test to the baseline along its greedy completions). Samples go to ``samples.jsonl``
and a W&B table.
"""

from __future__ import annotations

from rlft.data import load_rows
from rlft.recipe import EvalStage
from rlft.runtime import StageContext, StageResult
from rlft.scorecard import Scorecard


def _model_under_test(cfg: EvalStage, ctx: StageContext) -> str | None:
    if cfg.init_from:
        return cfg.init_from
    made = [name for name, r in ctx.results.items() if r.model_path]
    return made[-1] if made else None


def run(cfg: EvalStage, ctx: StageContext) -> StageResult:
    from rlft.models import load_causal_lm, load_tokenizer

    rows, fp, label = load_rows(cfg.data, split=cfg.data.split or cfg.default_split, required=cfg.required_columns, base_dir=ctx.recipe_dir)
    ctx.notes["data"] = {"eval": label, "rows": len(rows), "fingerprint": fp}
    rewards = ctx.resolve_rewards(cfg.rewards, columns=rows.column_names, data_label=label, where=f"stages.{cfg.name}.rewards")
    card = Scorecard(
        prompts=list(rows["prompt"]),
        columns={c: list(rows[c]) for c in rows.column_names if c != "prompt"},
        rewards=rewards,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
    )
    under_test = _model_under_test(cfg, ctx)
    load = lambda ref: load_causal_lm(ctx.model_ref(ref), trust_remote_code=ctx.recipe.trust_remote_code)  # noqa: E731

    metrics: dict[str, float] = {"eval/n": len(card.prompts)}
    baseline_model = None
    if cfg.baseline is not None:
        print(f"[{cfg.name}] generating {len(card.prompts)} greedy completions with {cfg.baseline} ...", flush=True)
        baseline_model = load(cfg.baseline)
        metrics.update(card.score(baseline_model, load_tokenizer(ctx.model_ref(cfg.baseline)), "baseline"))
    print(f"[{cfg.name}] generating {len(card.prompts)} greedy completions with {under_test or 'base'} ...", flush=True)
    metrics.update(card.score(load(under_test), load_tokenizer(ctx.model_ref(under_test)), "eval", ref=baseline_model))
    ctx.notes["models"] = {"eval": under_test or "base", **({"baseline": cfg.baseline} if cfg.baseline else {})}
    card.write_samples(ctx.out_dir / "samples.jsonl", ctx.tracker)
    return StageResult(name=cfg.name, kind=cfg.kind, status="done", metrics=metrics)
