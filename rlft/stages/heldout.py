"""The held-out scorecard of a training stage: the starting model before training, the saved model after."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from rlft.distributed import is_main_process
from rlft.evaluation.scorecard import Scorecard
from rlft.evaluation.statistics import paired_bootstrap
from rlft.stages.context import StageContext

PAIRS = {"chosen", "rejected"}


@dataclass
class HeldOut:
    """What a training stage scores on its held-out rows: generations (``card``) and, for pairs, per-pair wins by model."""

    card: Scorecard | None = None
    pair_wins: dict[str, list[float]] = field(default_factory=dict)  # "baseline" / "eval" -> 1, 0.5 or 0 per pair

    def deltas(self, seed: int = 0) -> dict[str, float]:
        """``eval/delta/...`` for every held-out figure both models have: rewards per prompt, accuracy per pair."""
        out = self.card.deltas(seed=seed) if self.card is not None else {}
        if {"baseline", "eval"} <= set(self.pair_wins):
            out.update(paired_bootstrap(self.pair_wins["baseline"], self.pair_wins["eval"], seed=seed).metrics("eval/delta/accuracy"))
        return out


def begin_scorecard(cfg, ctx: StageContext, held_out, model, tok, rewards: list | None = None) -> tuple[HeldOut, dict]:
    """Build the stage's held-out scorecard and score the starting ``model`` (``baseline/...``).

    ``rewards`` are the stage's resolved rewards (``scorecard.rewards`` wins when set). Returns
    ``(held, metrics)``; ``held.card`` is None when the held-out rows have no prompts or ``scorecard.prompts`` is 0.
    """
    from rlft.evaluation.scorecard import preference_wins, prompts_of

    spec = cfg.scorecard
    metrics: dict[str, float] = {}
    held = HeldOut()
    if not is_main_process():  # generation is not split across ranks: the main process scores
        return held, metrics
    if spec.baseline and PAIRS <= set(held_out.column_names):
        held.pair_wins["baseline"] = preference_wins(model, tok, held_out)
        metrics["baseline/accuracy"] = statistics.fmean(held.pair_wins["baseline"])
    if not spec.prompts or prompts_of(held_out) is None:
        return held, metrics
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
    held.card = card
    return held, metrics


def end_scorecard(held: HeldOut, cfg, ctx: StageContext, model_path: str, held_out=None, scored_as: str | None = None) -> dict:
    """Score the saved model (``eval/...``) against the model it started from, with the paired differences
    (``eval/delta/...``, see ``rlft.evaluation.scorecard``); write ``samples.jsonl``.

    ``scored_as``: the card already scored the saved model under that name (a round of a stage that trains in
    rounds): its completions and scores stand for ``eval/...`` instead of a second generation."""
    from rlft.evaluation.scorecard import preference_wins
    from rlft.models import load_causal_lm, load_tokenizer

    metrics: dict[str, float] = {}
    pairs = held_out is not None and PAIRS <= set(held_out.column_names)
    if not is_main_process() or (held.card is None and not pairs):
        return metrics
    generate = held.card is not None and scored_as is None
    if pairs or generate:
        tok = load_tokenizer(model_path)
        model = load_causal_lm(model_path, trust_remote_code=ctx.recipe.trust_remote_code, model_kwargs=ctx.recipe.model_kwargs_for(cfg))
    if pairs:
        held.pair_wins["eval"] = preference_wins(model, tok, held_out)
        metrics["eval/accuracy"] = statistics.fmean(held.pair_wins["eval"])
    if generate:
        print(f"[{cfg.name}] scorecard: {len(held.card.prompts)} held-out prompts, trained model ...", flush=True)
        kw = ctx.recipe.model_kwargs_for(cfg)
        ref = load_causal_lm(ctx.model_ref(cfg.init_from), trust_remote_code=ctx.recipe.trust_remote_code, model_kwargs=kw)
        # The saved model, loaded as a later stage loads it: an eval stage of the same prompts and settings reuses these.
        source = {"model": cfg.name, "model_kwargs": kw.model_dump(mode="json")}
        metrics.update(held.card.score(model, tok, "eval", ref=ref, source=source))
    elif held.card is not None:
        metrics.update(held.card.adopt(scored_as, "eval"))
    if held.card is not None:
        held.card.write_samples(ctx.paths.samples, ctx.tracker)
        ctx.notes.generation = held.card.generation or None
    metrics.update(held.deltas(seed=ctx.seed_for(cfg)))
    return metrics
