"""Supervised fine-tuning with TRL's SFTTrainer, full or LoRA.

Prompt/completion rows train on the completion only; rows with ``messages`` train on the whole
conversation. The saved model is plain safetensors (a LoRA adapter is merged in), so any later
stage loads it with ``init_from: <this stage>``.
"""

from __future__ import annotations

from rlft.data import load_rows
from rlft.errors import RlftError
from rlft.recipe import SFTStage
from rlft.recipe_checks import trl_config_for
from rlft.runtime import (
    StageContext,
    StageResult,
    count_parameters,
    final_train_metrics,
    load_start_model,
    lora_config,
    save_model,
    use_rlft_progress,
)


def run(cfg: SFTStage, ctx: StageContext) -> StageResult:
    from trl import SFTTrainer

    train, fp, label = load_rows(cfg.data, split=cfg.data.split or cfg.default_split, base_dir=ctx.recipe_dir)
    if "completion" not in train.column_names and "messages" not in train.column_names and "text" not in train.column_names:
        raise RlftError(
            f"SFT data {label} needs prompt/completion, messages or text columns",
            fix=f"its columns are {train.column_names}; map them with `columns:`",
        )
    extra = [c for c in train.column_names if c not in ("prompt", "completion", "messages", "text")]
    train = train.remove_columns(extra)
    ctx.notes["data"] = {"train": label, "rows": len(train), "fingerprint": fp}

    model, tok = load_start_model(ctx, cfg)
    args = trl_config_for(cfg, str(ctx.out_dir / "trainer"), report_to=ctx.tracker.report_to, seed=ctx.seed_for(cfg))
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train,
        processing_class=tok,
        peft_config=lora_config(cfg),
    )
    use_rlft_progress(trainer, cfg.name)
    params = count_parameters(trainer.model)
    output = trainer.train()

    metrics = {**params, "train/runtime_s": output.metrics.get("train_runtime", 0.0), "train/steps": trainer.state.global_step}
    metrics.update(final_train_metrics(trainer.state.log_history, ["loss", "mean_token_accuracy", "num_tokens"]))
    path = save_model(trainer.model, tok, ctx.out_dir)
    return StageResult(name=cfg.name, kind=cfg.kind, status="done", model_path=path, metrics=metrics)
