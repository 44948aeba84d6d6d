"""KTO with TRL's KTOTrainer: learns from single answers labelled desirable or undesirable.

Unpaired rows (``prompt``, ``completion``, ``label``) are used as they are; preference pairs are
unpaired automatically (chosen -> desirable, rejected -> undesirable). ``desirable_weight`` and
``undesirable_weight`` sit under ``trl:``. Reports held-out loss and reward margin before and after.
"""

from __future__ import annotations

from rlft.data import load_rows, unpair_preference
from rlft.recipe import KTOStage
from rlft.recipe_checks import trl_config_for
from rlft.runtime import (
    StageContext,
    StageResult,
    final_train_metrics,
    load_pairs,
    load_start_model,
    lora_config,
    save_model,
    train_between_evaluations,
)


def _unpaired(cfg: KTOStage, ctx: StageContext):
    rows, fp, label = load_rows(cfg.data, split=cfg.data.split or cfg.default_split, base_dir=ctx.recipe_dir)
    if "label" in rows.column_names and "completion" in rows.column_names:
        parts = rows.train_test_split(test_size=cfg.eval_fraction, seed=ctx.seed_for(cfg))
        ctx.notes["data"] = {"train": label, "rows": len(parts["train"]), "held_out_rows": len(parts["test"]), "fingerprint": fp}
        return parts["train"], parts["test"]
    train, test = load_pairs(cfg, ctx)
    return unpair_preference(train), unpair_preference(test)


def run(cfg: KTOStage, ctx: StageContext) -> StageResult:
    from trl import KTOTrainer

    train, test = _unpaired(cfg, ctx)
    model, tok = load_start_model(ctx, cfg)
    args = trl_config_for(cfg, str(ctx.out_dir / "trainer"), report_to=ctx.tracker.report_to, seed=ctx.seed_for(cfg))
    trainer = KTOTrainer(model=model, args=args, train_dataset=train, eval_dataset=test, processing_class=tok, peft_config=lora_config(cfg))
    before, after, metrics = train_between_evaluations(trainer, cfg.name)
    metrics.update(final_train_metrics(trainer.state.log_history, ["loss", "rewards/margins"]))
    metrics["eval/loss_before"] = before.get("eval_loss", float("nan"))
    metrics["eval/loss"] = after.get("eval_loss", float("nan"))
    metrics["eval/implicit_margin"] = after.get("eval_rewards/margins", float("nan"))
    metrics["eval/n_rows"] = len(test)
    ctx.tracker.summary_update(metrics)
    path = save_model(trainer.model, tok, ctx.out_dir)
    return StageResult(name=cfg.name, kind=cfg.kind, status="done", model_path=path, metrics=metrics)
