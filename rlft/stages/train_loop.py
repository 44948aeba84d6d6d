"""Running a Trainer the way every training stage does: evaluate, train (resumable), evaluate, and the metrics it reports."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rlft.stages.context import StageContext
from rlft.stages.progress import use_rlft_progress


def train_between_evaluations(trainer, cfg, before: bool = True, ctx: StageContext | None = None) -> tuple[dict, dict, dict]:
    """Evaluate on the held-out set, train (resuming from a checkpoint if one is there), evaluate again.

    Returns (before, after, base metrics). The base metrics hold parameter counts, runtime and step
    count, as every training stage reports them. ``before=False`` skips the first evaluation (an
    empty dict stands for it). With the stage's ``early_stopping:`` (stage kinds that allow it pass
    ``ctx``), training may stop early and end with its best weights, which the second evaluation sees.
    """
    from rlft.training.checkpoints import train_resumable
    from rlft.training.early_stopping import watch_loss

    use_rlft_progress(trainer, cfg.name, ctx.tracker if ctx is not None else None)
    metrics = count_parameters(trainer.model)
    stopping = watch_loss(trainer, cfg, ctx) if ctx is not None else None
    before = trainer.evaluate() if before else {}
    output = train_resumable(trainer, cfg)
    after = trainer.evaluate()
    metrics.update({"train/runtime_s": output.metrics.get("train_runtime", 0.0), "train/steps": trainer.state.global_step})
    metrics.update(stopping.metrics if stopping else {})
    return before, after, metrics


def held_out_metrics(before: dict, after: dict, names: dict[str, str], *, after_only: dict[str, str] | None = None) -> dict[str, float]:
    """rlft's names for what the Trainer's ``evaluate()`` reported: ``eval/<name>`` after training, ``baseline/<name>`` before.

    ``names`` maps rlft's name to the Trainer's key (``{"loss": "eval_loss"}``); ``after_only`` names metrics reported
    for the trained model alone. ``before`` is empty when the stage skipped the evaluation before training: then no
    ``baseline/`` keys. Every stage handles a key the Trainer did not report the same way: the metric is NaN.
    """
    out: dict[str, float] = {}
    for prefix, result, chosen in (("baseline", before, names), ("eval", after, {**names, **(after_only or {})})):
        if result:
            out.update({f"{prefix}/{name}": float(result.get(key, float("nan"))) for name, key in chosen.items()})
    return out


def count_parameters(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"params/total": total, "params/trainable": trainable}


def final_train_metrics(log_history: list[dict], keys: Sequence[str]) -> dict[str, float]:
    """The last logged value of each key (and ``train/<key>``), skipping NaNs."""
    out = {}
    losses = [e["loss"] for e in log_history if isinstance(e.get("loss"), int | float)]
    if losses and "loss" in keys:
        out["train/first_loss"] = float(losses[0])
    for key in keys:
        for entry in reversed(log_history):
            v = entry.get(key)
            if isinstance(v, int | float) and not math.isnan(v):
                out[f"train/{key}"] = float(v)
                break
    return out
