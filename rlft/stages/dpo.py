"""Direct preference optimisation with TRL's DPOTrainer.

Any ``loss_type`` TRL 1.16 offers (``sigmoid``, ``ipo``, ``hinge``, ``robust``, ``apo_zero``, ...),
or several at once with ``loss_weights`` (e.g. MPO), set under ``trl:`` with ``beta`` and
``label_smoothing``. The reference model is the starting model; with LoRA it is the same weights
with the adapter disabled, so no second copy sits in memory. Reports held-out implicit-reward
accuracy (chosen preferred over rejected) before and after training.
"""

from __future__ import annotations

from rlft.recipe import DPOStage, trl_config_for
from rlft.runtime import (
    StageContext,
    StageResult,
    count_parameters,
    final_train_metrics,
    load_pairs,
    load_start_model,
    lora_config,
    save_model,
    use_rlft_progress,
)


def run(cfg: DPOStage, ctx: StageContext) -> StageResult:
    from trl import DPOTrainer

    train, test = load_pairs(cfg, ctx)
    model, tok = load_start_model(ctx, cfg)
    args = trl_config_for(cfg, str(ctx.out_dir / "trainer"), report_to=ctx.tracker.report_to, seed=ctx.seed_for(cfg))
    trainer = DPOTrainer(model=model, args=args, train_dataset=train, eval_dataset=test, processing_class=tok, peft_config=lora_config(cfg))
    use_rlft_progress(trainer, cfg.name)
    params = count_parameters(trainer.model)
    before = trainer.evaluate()
    output = trainer.train()
    after = trainer.evaluate()

    metrics = {**params, "train/runtime_s": output.metrics.get("train_runtime", 0.0), "train/steps": trainer.state.global_step}
    metrics.update(final_train_metrics(trainer.state.log_history, ["loss", "rewards/accuracies", "rewards/margins"]))
    metrics["eval/implicit_accuracy_before"] = before.get("eval_rewards/accuracies", float("nan"))
    metrics["eval/implicit_accuracy"] = after.get("eval_rewards/accuracies", float("nan"))
    metrics["eval/implicit_margin"] = after.get("eval_rewards/margins", float("nan"))
    metrics["eval/loss"] = after.get("eval_loss", float("nan"))
    metrics["eval/n_pairs"] = len(test)
    ctx.tracker.summary_update(metrics)
    path = save_model(trainer.model, tok, ctx.out_dir)
    return StageResult(name=cfg.name, kind=cfg.kind, status="done", model_path=path, metrics=metrics)
