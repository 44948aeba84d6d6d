"""Saving a stage's trained model: plain safetensors, LoRA merged, only where the weights are whole."""

from __future__ import annotations

from pathlib import Path

from rlft.distributed import is_main_process
from rlft.layout import StageLayout


def save_model(model, tokenizer, out_dir: Path, trainer=None) -> str:
    """Save the trained model as plain safetensors (LoRA merged into the base) under ``out_dir/model``.

    Several processes: with sharded weights (FSDP, DeepSpeed) every rank takes part in the Trainer's
    own gathering save; otherwise (DDP: the same weights on every rank) only rank 0 writes. The config
    keeps the start model's dropout values (a stage's ``dropout:`` is its own).
    """
    from rlft.training.selective import restore_dropout

    restore_dropout(model)
    target = StageLayout(out_dir).model
    if trainer is not None and (getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False)):
        trainer.save_model(str(target))
        if is_main_process():
            tokenizer.save_pretrained(target)
        return str(target)
    if not is_main_process():
        return str(target)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return str(target)
