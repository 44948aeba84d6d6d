"""KTO with TRL's KTOTrainer: learns from single answers labelled desirable or undesirable.

Unpaired rows (``prompt``, ``completion``, ``label``) are used as they are; preference pairs are
unpaired automatically (chosen -> desirable, rejected -> undesirable). ``desirable_weight`` and
``undesirable_weight`` sit under ``trl:``. Reports held-out loss and reward margin after training, and the common scorecard
(``eval/accuracy`` on held-out pairs when the data is paired, ``eval/kl_to_ref``, ``eval/mean_length``).
"""

from __future__ import annotations

from rlft.data.preference import unpair_preference
from rlft.data.rows import load_rows
from rlft.recipe import KTOStage
from rlft.stages.context import StageContext, StageResult
from rlft.stages.heldout import begin_scorecard, end_scorecard
from rlft.stages.inputs import check_row_lengths, load_pairs, load_split, load_start_model, lora_config
from rlft.stages.saving import save_model
from rlft.stages.train_loop import final_train_metrics, held_out_metrics, train_between_evaluations
from rlft.stages.trl_config import trl_config_for


def _unpaired(cfg: KTOStage, ctx: StageContext):
    """Training rows, held-out rows for KTO's loss, and held-out rows for the scorecard (pairs when there are pairs)."""
    rows, _, _ = load_rows(cfg.data, split=cfg.data.split or cfg.default_split, base_dir=ctx.recipe_dir, seed=ctx.seed_for(cfg))
    if "label" in rows.column_names and "completion" in rows.column_names:
        train, test = load_split(cfg, ctx)
        return train, test, test
    train, test = load_pairs(cfg, ctx)
    return unpair_preference(train), unpair_preference(test), test


def run(cfg: KTOStage, ctx: StageContext) -> StageResult:
    from trl import KTOTrainer

    train, test, held_out = _unpaired(cfg, ctx)
    model, tok = load_start_model(ctx, cfg)
    args = trl_config_for(cfg, str(ctx.paths.trainer), report_to=ctx.tracker.report_to, seed=ctx.seed_for(cfg))
    check_row_lengths(cfg, ctx, train, tok, args)
    held, baseline = begin_scorecard(cfg, ctx, held_out, model, tok)
    trainer = KTOTrainer(
        model=model, args=args, train_dataset=train, eval_dataset=test, processing_class=tok, peft_config=lora_config(cfg, model=model)
    )
    # KTO starts with the policy equal to its reference (the adapter disabled, or a copy of the start model):
    # every log-ratio and the KL estimate are 0, so the held-out loss is 0.5 per row by construction, and
    # TRL's evaluation before training (four forward passes per held-out row) tells nothing the scorecard's
    # baseline does not. On 141 support pairs it cost about 4 of the stage's 13 minutes.
    before, after, metrics = train_between_evaluations(trainer, cfg, before=False, ctx=ctx)
    metrics.update(final_train_metrics(trainer.state.log_history, cfg.train_log_keys))
    metrics.update(held_out_metrics(before, after, {"loss": "eval_loss"}, after_only={"implicit_margin": "eval_rewards/margins"}))
    metrics["eval/n_rows"] = len(test)

    path = save_model(trainer.model, tok, ctx.out_dir, trainer, stage=cfg, notes=ctx.notes)
    metrics.update(baseline)
    metrics.update(end_scorecard(held, cfg, ctx, path, held_out))
    return StageResult(name=cfg.name, kind=cfg.kind, status="done", model_path=path, metrics=metrics)
