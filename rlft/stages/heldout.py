"""The held-out scorecard of a training stage: the starting model before training, the saved model after."""

from __future__ import annotations

from typing import Any

from rlft.distributed import is_main_process
from rlft.stages.context import StageContext


def begin_scorecard(cfg, ctx: StageContext, held_out, model, tok, rewards: list | None = None) -> tuple[Any, dict]:
    """Build the stage's held-out scorecard and score the starting ``model`` (``baseline/...``).

    ``rewards`` are the stage's resolved rewards (``scorecard.rewards`` wins when set). Returns
    ``(card, metrics)``; the card is None when the held-out rows have no prompts or ``scorecard.prompts`` is 0.
    """
    from rlft.evaluation.scorecard import Scorecard, preference_accuracy, prompts_of

    spec = cfg.scorecard
    metrics: dict[str, float] = {}
    if not is_main_process():  # generation is not split across ranks: the main process scores
        return None, metrics
    if spec.baseline and {"chosen", "rejected"} <= set(held_out.column_names):
        metrics["baseline/accuracy"] = preference_accuracy(model, tok, held_out)
    if not spec.prompts or prompts_of(held_out) is None:
        return None, metrics
    if spec.rewards is not None:
        rewards = ctx.resolve_rewards(spec.rewards)
    card = Scorecard.from_rows(
        held_out,
        rewards or [],
        first=spec.prompts,
        max_new_tokens=spec.max_new_tokens,
        batch_size=spec.batch_size,
        check=("the held-out rows", f"stages.{cfg.name}.scorecard.rewards", "map one with `eval_data.columns`, or set scorecard.rewards"),
    )
    if spec.baseline:
        print(f"[{cfg.name}] scorecard: {len(card.prompts)} held-out prompts, starting model ...", flush=True)
        metrics.update(card.score(model, tok, "baseline"))
    return card, metrics


def end_scorecard(card, cfg, ctx: StageContext, model_path: str, held_out=None) -> dict:
    """Score the saved model (``eval/...``) against the model it started from; write ``samples.jsonl``."""
    from rlft.evaluation.scorecard import preference_accuracy
    from rlft.models import load_causal_lm, load_tokenizer

    metrics: dict[str, float] = {}
    if not is_main_process():
        return metrics
    if card is None and (held_out is None or not {"chosen", "rejected"} <= set(held_out.column_names)):
        return metrics
    tok = load_tokenizer(model_path)
    model = load_causal_lm(model_path, trust_remote_code=ctx.recipe.trust_remote_code)
    if held_out is not None and {"chosen", "rejected"} <= set(held_out.column_names):
        metrics["eval/accuracy"] = preference_accuracy(model, tok, held_out)
    if card is not None:
        print(f"[{cfg.name}] scorecard: {len(card.prompts)} held-out prompts, trained model ...", flush=True)
        ref = load_causal_lm(ctx.model_ref(cfg.init_from), trust_remote_code=ctx.recipe.trust_remote_code)
        metrics.update(card.score(model, tok, "eval", ref=ref))
        card.write_samples(ctx.paths.samples, ctx.tracker)
    return metrics
