"""On-policy RL by trial and error with TRL's GRPOTrainer and the recipe's reward functions.

Each reward reference resolves to a named, checked callable; its weight becomes TRL's
``reward_weights``. TRL logs ``rewards/<name>/mean`` and ``/std`` per step and the weighted
``reward``; the stage's final metrics keep the last values of each. At the end the stage scores
greedy completions to held-out prompts (``eval_data``, the bundled test split, or ``eval_fraction``)
with the same rewards: ``eval/reward/<name>``, ``eval/kl_to_ref``, ``eval/mean_length`` and the
``baseline/...`` of the starting model (the common scorecard, ``rlft.evaluation.scorecard``). With
``early_stopping:`` it also scores greedy completions to held-out prompts every N steps, stops when
that reward stops improving and ends with the best-scoring weights (``rlft.training.early_stopping``).
With ``beta: 0`` the micro-batches whose completion groups all scored alike are skipped (no gradient,
the same update; ``rlft.training.silent_groups``), and each micro-batch runs every distinct prompt
through the model once, not once per completion (``rlft.training.shared_prefix``; the same
log-probabilities and gradients; ``train/prompt_sharing`` is 1 where it was on). With ``guards:`` it
watches its own logs for a gamed reward (``rlft.training.guards``).
"""

from __future__ import annotations

from rlft.recipe import GRPOStage
from rlft.stages.context import StageContext, StageResult
from rlft.stages.heldout import begin_scorecard, end_scorecard
from rlft.stages.inputs import load_split, load_start_model, lora_config
from rlft.stages.progress import use_rlft_progress
from rlft.stages.saving import save_model
from rlft.stages.train_loop import count_parameters, final_train_metrics
from rlft.stages.trl_config import trl_config_for
from rlft.training.checkpoints import train_resumable
from rlft.training.early_stopping import watch_rewards
from rlft.training.guards import guard_trainer
from rlft.training.shared_prefix import sharing_prompt_prefix
from rlft.training.silent_groups import SKIPPED, skipping_silent_groups


def run(cfg: GRPOStage, ctx: StageContext) -> StageResult:
    import trl

    return run_online(cfg, ctx, rlft_trainer(trl.GRPOTrainer))


def rlft_trainer(trainer_cls):
    """TRL's GRPO or RLOO trainer with rlft's two savings: silent micro-batches skipped, each prompt run once per micro-batch."""
    return sharing_prompt_prefix(skipping_silent_groups(trainer_cls))


def run_online(cfg, ctx: StageContext, trainer_cls) -> StageResult:
    """The on-policy loop shared by GRPO, RLOO and online DPO: same data, rewards and metrics, another TRL trainer
    (any whose constructor takes ``reward_funcs`` as GRPOTrainer's does)."""
    train, test = load_split(cfg, ctx, required=cfg.required_columns)
    label = ctx.notes.data["train"]
    rewards = ctx.resolve_rewards(cfg.rewards, columns=train.column_names, data_label=label, where=f"stages.{cfg.name}.rewards")
    model, tok = load_start_model(ctx, cfg)
    args = trl_config_for(
        cfg.model_copy(update={"trl": {"reward_weights": [r.weight for r in rewards], **cfg.trl}}),
        str(ctx.paths.trainer),
        report_to=ctx.tracker.report_to,
        seed=ctx.seed_for(cfg),
    )
    held, baseline = begin_scorecard(cfg, ctx, test, model, tok, rewards)
    trainer = trainer_cls(
        model=model,
        reward_funcs=[r.reward for r in rewards],
        args=args,
        train_dataset=train,
        processing_class=tok,
        peft_config=lora_config(cfg, model=model),
    )
    use_rlft_progress(trainer, cfg.name, ctx.tracker)
    params = count_parameters(trainer.model)
    stopping = watch_rewards(trainer, cfg, ctx, test, tok, rewards)  # None when the stage has no early_stopping
    weights = {r.reward.__name__: r.weight for r in rewards}
    guards = guard_trainer(trainer, cfg, ctx, weights, stopping) if hasattr(cfg, "guards") else None  # None without guards:
    output = train_resumable(trainer, cfg)

    keys = [*cfg.train_log_keys, *(f"rewards/{r.reward.__name__}/mean" for r in rewards)]
    metrics = {**params, "train/runtime_s": output.metrics.get("train_runtime", 0.0), "train/steps": trainer.state.global_step}
    metrics.update(final_train_metrics(trainer.state.log_history, keys))
    skipped = [e[SKIPPED] for e in trainer.state.log_history if SKIPPED in e]
    if skipped:  # the share of the stage's forward+backward passes that silent groups spared
        metrics[f"train/{SKIPPED}"] = sum(skipped) / len(skipped)
    if hasattr(trainer, "prompt_sharing_off"):
        metrics["train/prompt_sharing"] = float(trainer.prompt_sharing_off is None)
    metrics.update(stopping.metrics if stopping else {})
    if guards is not None:
        metrics.update(guards.metrics())
        ctx.notes.guards = guards.events

    path = save_model(trainer.model, tok, ctx.out_dir, trainer, stage=cfg, notes=ctx.notes)
    metrics.update(baseline)
    metrics.update(end_scorecard(held, cfg, ctx, path))
    return StageResult(name=cfg.name, kind=cfg.kind, status="done", model_path=path, metrics=metrics)
