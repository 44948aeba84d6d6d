"""Supervised fine-tuning with TRL's SFTTrainer, full or LoRA.

Prompt/completion rows train on the completion only; rows with ``messages`` train on the whole
conversation. Held-out rows (``eval_data``, the bundled test split, or ``eval_fraction``) give
``eval/loss`` and ``eval/accuracy`` (next-token accuracy) before and after, and, where they have
prompts, the generation scorecard (``eval/kl_to_ref``, ``eval/mean_length``). The saved model is plain safetensors (a LoRA adapter is merged in), so any later
stage loads it with ``init_from: <this stage>``.
"""

from __future__ import annotations

from rlft.errors import RlftError
from rlft.recipe import SFTStage
from rlft.stages.context import StageContext, StageResult
from rlft.stages.heldout import begin_scorecard, end_scorecard
from rlft.stages.inputs import check_row_lengths, load_split, load_start_model, lora_config
from rlft.stages.saving import save_model
from rlft.stages.train_loop import final_train_metrics, held_out_metrics, train_between_evaluations
from rlft.stages.trl_config import trl_config_for

SFT_COLUMNS = ("prompt", "completion", "messages", "text")


def run(cfg: SFTStage, ctx: StageContext) -> StageResult:
    from trl import SFTTrainer

    train, test = load_split(cfg, ctx)
    label = ctx.notes.data["train"]
    if not {"completion", "messages", "text"} & set(train.column_names):
        raise RlftError(
            f"SFT data {label} needs prompt/completion, messages or text columns",
            where=f"stages.{cfg.name}.data",
            fix=f"its columns are {train.column_names}; map them with `columns:`",
        )
    train = train.remove_columns([c for c in train.column_names if c not in SFT_COLUMNS])

    model, tok = load_start_model(ctx, cfg)
    args = trl_config_for(cfg, str(ctx.paths.trainer), report_to=ctx.tracker.report_to, seed=ctx.seed_for(cfg))
    check_row_lengths(cfg, ctx, train, tok, args)
    held, baseline = begin_scorecard(cfg, ctx, test, model, tok)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=test.remove_columns([c for c in test.column_names if c not in SFT_COLUMNS]),
        processing_class=tok,
        peft_config=lora_config(cfg, model=model),
    )
    before, after, metrics = train_between_evaluations(trainer, cfg, before=cfg.scorecard.baseline, ctx=ctx)
    metrics.update(final_train_metrics(trainer.state.log_history, cfg.train_log_keys))
    metrics.update(held_out_metrics(before, after, {"loss": "eval_loss", "accuracy": "eval_mean_token_accuracy"}))

    path = save_model(trainer.model, tok, ctx.out_dir, trainer, stage=cfg, notes=ctx.notes)
    metrics.update(baseline)
    metrics.update(end_scorecard(held, cfg, ctx, path))
    return StageResult(name=cfg.name, kind=cfg.kind, status="done", model_path=path, metrics=metrics)
