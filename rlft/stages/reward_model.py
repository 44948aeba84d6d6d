"""Reward-model training with TRL's RewardTrainer: a one-output regression head (Bradley-Terry).

Trains on preference pairs (any shape the data layer normalises: explicit prompt/chosen/rejected,
conversational chosen/rejected lists, HH-RLHF single texts), full or LoRA, from the base model or
an earlier stage. Reports held-out pairwise accuracy (chosen scored above rejected) before and
after training as ``baseline/accuracy`` and ``eval/accuracy`` (the common scorecard). The saved model is a plain sequence-classification checkpoint that any later stage
uses as ``rewards: [{model: <this stage>}]``.
"""

from __future__ import annotations

from rlft.recipe import RewardModelStage
from rlft.stages.context import StageContext, StageResult
from rlft.stages.inputs import check_row_lengths, load_pairs, lora_config
from rlft.stages.saving import save_model
from rlft.stages.train_loop import final_train_metrics, held_out_metrics, train_between_evaluations
from rlft.stages.trl_config import trl_config_for


def _load_classifier(ctx: StageContext, cfg: RewardModelStage):
    from transformers import AutoModelForSequenceClassification

    from rlft.models import from_pretrained_kwargs, load_tokenizer, require_safetensors
    from rlft.training.selective import load_start

    ref = ctx.model_ref(cfg.init_from)
    ctx.notes.start_model = ref
    kw = ctx.recipe.model_kwargs_for(cfg)
    tok = load_tokenizer(ref, trust_remote_code=ctx.recipe.trust_remote_code, revision=kw.revision)
    require_safetensors(ref)
    model = load_start(
        ctx,
        cfg,
        ref,
        lambda **dropout: AutoModelForSequenceClassification.from_pretrained(
            ref,
            num_labels=1,
            trust_remote_code=ctx.recipe.trust_remote_code,
            use_safetensors=True,
            **from_pretrained_kwargs(kw),
            **dropout,
        ),
    )
    model.config.pad_token_id = tok.pad_token_id
    return model, tok


def run(cfg: RewardModelStage, ctx: StageContext) -> StageResult:
    from trl import RewardTrainer

    train, test = load_pairs(cfg, ctx)
    model, tok = _load_classifier(ctx, cfg)
    args = trl_config_for(cfg, str(ctx.paths.trainer), report_to=ctx.tracker.report_to, seed=ctx.seed_for(cfg))
    check_row_lengths(cfg, ctx, train, tok, args)
    trainer = RewardTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=test,
        processing_class=tok,
        peft_config=lora_config(cfg, "SEQ_CLS", model=model),
    )
    before, after, metrics = train_between_evaluations(trainer, cfg, ctx=ctx)
    metrics.update(final_train_metrics(trainer.state.log_history, cfg.train_log_keys))
    metrics.update(
        held_out_metrics(before, after, {"accuracy": "eval_accuracy", "loss": "eval_loss"}, after_only={"margin": "eval_margin"})
    )
    metrics["eval/n_pairs"] = len(test)

    path = save_model(trainer.model, tok, ctx.out_dir, trainer, stage=cfg, notes=ctx.notes)
    return StageResult(name=cfg.name, kind=cfg.kind, status="done", model_path=path, metrics=metrics)
