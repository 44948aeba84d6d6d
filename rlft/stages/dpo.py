"""Direct preference optimisation with TRL's DPOTrainer.

Any ``loss_type`` TRL 1.16 offers (``sigmoid``, ``ipo``, ``hinge``, ``robust``, ``apo_zero``, ...),
or several at once with ``loss_weights`` (e.g. MPO), set under ``trl:`` with ``beta`` and
``label_smoothing``. The reference model is the starting model; with LoRA it is the same weights
with the adapter disabled, so no second copy sits in memory. Reports the common scorecard
(``rlft.evaluation.scorecard``): ``eval/accuracy`` and ``baseline/accuracy`` (held-out pairs whose chosen
answer the model itself prefers, by mean token log-probability — a fair "before", where the
implicit reward of a policy equal to its reference ties every pair), ``eval/kl_to_ref`` and
``eval/mean_length`` on held-out prompts; and TRL's implicit-reward accuracy after training.
"""

from __future__ import annotations

from rlft.recipe import DPOStage
from rlft.stages.context import StageContext, StageResult
from rlft.stages.heldout import begin_scorecard, end_scorecard
from rlft.stages.inputs import check_row_lengths, load_pairs, load_start_model, lora_config
from rlft.stages.saving import save_model
from rlft.stages.train_loop import final_train_metrics, held_out_metrics, train_between_evaluations
from rlft.stages.trl_config import trl_config_for


def run(cfg: DPOStage, ctx: StageContext) -> StageResult:
    from trl import DPOTrainer

    return run_preference(cfg, ctx, DPOTrainer)


def run_preference(cfg, ctx: StageContext, trainer_cls) -> StageResult:
    """Evaluate, train and evaluate a preference trainer on pairs (DPO, and ORPO/SimPO from trl.experimental)."""
    train, test = load_pairs(cfg, ctx)
    model, tok = load_start_model(ctx, cfg)
    args = trl_config_for(cfg, str(ctx.paths.trainer), report_to=ctx.tracker.report_to, seed=ctx.seed_for(cfg))
    check_row_lengths(cfg, ctx, train, tok, args)
    held, baseline = begin_scorecard(cfg, ctx, test, model, tok)
    trainer = trainer_cls(
        model=model, args=args, train_dataset=train, eval_dataset=test, processing_class=tok, peft_config=lora_config(cfg, model=model)
    )
    # DPO starts with the policy equal to its reference: every implicit reward is 0 and the loss is ln 2
    # by construction, so TRL's evaluation before training tells nothing (the scorecard's baseline does).
    before, after, metrics = train_between_evaluations(trainer, cfg, before=cfg.kind != "dpo", ctx=ctx)
    metrics.update(final_train_metrics(trainer.state.log_history, cfg.train_log_keys))
    implicit = {"implicit_accuracy": "eval_rewards/accuracies", "implicit_margin": "eval_rewards/margins"}
    metrics.update(held_out_metrics(before, after, {"loss": "eval_loss"}, after_only=implicit))
    metrics["eval/n_pairs"] = len(test)

    path = save_model(trainer.model, tok, ctx.out_dir, trainer, stage=cfg, notes=ctx.notes)
    metrics.update(baseline)
    metrics.update(end_scorecard(held, cfg, ctx, path, test))
    return StageResult(name=cfg.name, kind=cfg.kind, status="done", model_path=path, metrics=metrics)
