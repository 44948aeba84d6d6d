"""Held-out evaluation: greedy generation on prompts no stage trained on, scored by reward functions.

Scores the model under test (``init_from``, default the last stage that made a model) and a
baseline (``baseline: base`` = the recipe's starting model), so the summary shows before/after.
Metrics: ``eval/<reward>`` and ``baseline/<reward>`` (means over rows where the reward applies),
``eval/mean_length`` (characters); samples go to ``samples.jsonl`` and a W&B table.
"""

from __future__ import annotations

import json
import statistics

from rlft.data import load_rows
from rlft.errors import RlftError
from rlft.generation import generate_greedy
from rlft.recipe import EvalStage
from rlft.runtime import StageContext, StageResult


def _model_under_test(cfg: EvalStage, ctx: StageContext) -> str | None:
    if cfg.init_from:
        return cfg.init_from
    made = [name for name, r in ctx.results.items() if r.model_path]
    return made[-1] if made else None


def _score(model_ref, ctx, prompts, columns, rewards, cfg):
    from rlft.models import load_causal_lm, load_tokenizer

    tok = load_tokenizer(model_ref)
    model = load_causal_lm(model_ref, trust_remote_code=ctx.recipe.trust_remote_code)
    completions = generate_greedy(model, tok, prompts, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size)
    scores = {}
    for r in rewards:
        scores[r.reward.__name__] = r.reward(prompts, completions, **columns)
    return completions, scores


def _means(scores: dict[str, list]) -> dict[str, float]:
    out = {}
    for name, values in scores.items():
        applicable = [v for v in values if v is not None]
        out[name] = statistics.fmean(applicable) if applicable else float("nan")
    return out


def run(cfg: EvalStage, ctx: StageContext) -> StageResult:
    rows, fp, label = load_rows(cfg.data, split=cfg.data.split or cfg.default_split, required=cfg.required_columns, base_dir=ctx.recipe_dir)
    ctx.notes["data"] = {"eval": label, "rows": len(rows), "fingerprint": fp}
    rewards = ctx.resolve_rewards(cfg.rewards)
    for r in rewards:
        missing = [c for c in r.required_columns if c not in rows.column_names]
        if missing:
            raise RlftError(
                f"reward {r.reward.__name__} needs column(s) {missing}, which {label} lacks", where=f"stages.{cfg.name}.rewards"
            )
    prompts = list(rows["prompt"])
    columns = {c: list(rows[c]) for c in rows.column_names if c != "prompt"}

    under_test = _model_under_test(cfg, ctx)
    targets = [("eval", under_test)]
    if cfg.baseline is not None:
        targets.append(("baseline", cfg.baseline))

    metrics: dict[str, float] = {"eval/n": len(prompts)}
    samples = [{"prompt": p, **{k: columns[k][i] for k in columns}} for i, p in enumerate(prompts)]
    for prefix, ref in targets:
        print(f"[{cfg.name}] generating {len(prompts)} greedy completions with {ref or 'base'} ...", flush=True)
        completions, scores = _score(ctx.model_ref(ref), ctx, prompts, columns, rewards, cfg)
        for name, mean in _means(scores).items():
            metrics[f"{prefix}/{name}"] = mean
        metrics[f"{prefix}/mean_length"] = statistics.fmean(len(c) for c in completions)
        for i, c in enumerate(completions):
            samples[i][f"{prefix}_completion"] = c
            for name, values in scores.items():
                samples[i][f"{prefix}_{name}"] = values[i]
    ctx.notes["models"] = {prefix: ref or "base" for prefix, ref in targets}

    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    with open(ctx.out_dir / "samples.jsonl", "w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    keys = [k for k in samples[0] if k != "prompt"]
    ctx.tracker.log_table("eval/samples", ["prompt", *keys], [[json.dumps(s["prompt"]), *[s[k] for k in keys]] for s in samples[:200]])
    return StageResult(name=cfg.name, kind=cfg.kind, status="done", metrics=metrics)
