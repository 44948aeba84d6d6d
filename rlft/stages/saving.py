"""Saving a stage's trained model: plain safetensors (LoRA merged) and, for a LoRA stage, its adapter; only where the weights are whole."""

from __future__ import annotations

from pathlib import Path

from rlft.distributed import is_main_process
from rlft.errors import RlftError
from rlft.layout import StageLayout


def save_model(model, tokenizer, out_dir: Path, trainer=None, *, stage=None, notes=None) -> str:
    """Save the trained model under ``out_dir``: ``model/`` (LoRA merged into the base) and/or ``adapter/`` (the LoRA adapter).

    ``stage`` (its ``save:``) chooses what is written; without it, ``model/`` only. ``notes`` (the stage's
    ``StageNotes``) give the start model, which the adapter names as its ``base_model_name_or_path``, and record
    ``adapter`` (the folder, relative to the stage folder). Returns the folder later stages load: ``model/``, or
    ``adapter/`` with ``save.merged: false`` (``rlft.models.load_causal_lm`` merges it into its base in memory).

    Several processes: with sharded weights (FSDP, DeepSpeed) every rank takes part in the Trainer's own gathering
    save; otherwise (DDP: the same weights on every rank) only rank 0 writes. The config keeps the start model's
    dropout values (a stage's ``dropout:`` is its own).
    """
    from rlft.training.selective import restore_dropout

    restore_dropout(model)
    layout = StageLayout(out_dir)
    merged = stage.save.merged if stage is not None else True
    adapter = stage.saves_adapter if stage is not None else False
    lora = hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")
    if adapter and not lora:
        raise RlftError(
            "the stage asked for its LoRA adapter (save.adapter), but its trained model carries none",
            where=f"stages.{stage.name}.save",
            fix="train with peft: {lora: {r: 16}}, or drop save.adapter",
        )
    if adapter:
        _name_base(model, notes)
    sharded = trainer is not None and (getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False))
    if sharded:
        _save_sharded(model, tokenizer, layout, trainer, merged=merged, adapter=adapter, lora=lora)
    elif is_main_process():
        if adapter:
            model.save_pretrained(layout.adapter, safe_serialization=True)  # a PeftModel writes the adapter alone
            tokenizer.save_pretrained(layout.adapter)
        if merged:
            whole = model.merge_and_unload() if lora else model
            whole.save_pretrained(layout.model, safe_serialization=True)
            tokenizer.save_pretrained(layout.model)
    if adapter and notes is not None:
        notes.adapter = StageLayout.ADAPTER  # relative to the stage folder
    return str(layout.model if merged else layout.adapter)


def _name_base(model, notes) -> None:
    """Make the adapter name the folder or reference the stage started from (absolute for a local folder) as its base."""
    start = getattr(notes, "start_model", None)
    if start is None:
        return
    base = str(Path(start).resolve()) if Path(start).exists() else start
    for config in model.peft_config.values():
        config.base_model_name_or_path = base


def _save_sharded(model, tokenizer, layout: StageLayout, trainer, *, merged: bool, adapter: bool, lora: bool) -> None:
    """FSDP / ZeRO-3: every rank joins ``trainer.save_model``, which gathers the shards and writes on the main process.

    A LoRA model gathers as its adapter (the Trainer saves a PeftModel through PEFT), so ``model/`` is then made on the
    main process the way a later stage loads an adapter: start model + adapter, merged in memory (``load_causal_lm``).
    Not exercised on this CPU machine: the path mirrors the Trainer's own gathering save.
    """
    import shutil

    if not lora:
        trainer.save_model(str(layout.model))
        if is_main_process():
            tokenizer.save_pretrained(layout.model)
        return
    trainer.save_model(str(layout.adapter))
    if is_main_process():
        tokenizer.save_pretrained(layout.adapter)
        if merged:
            from rlft.models import load_causal_lm

            load_causal_lm(str(layout.adapter)).save_pretrained(layout.model, safe_serialization=True)
            tokenizer.save_pretrained(layout.model)
        if not adapter:
            shutil.rmtree(layout.adapter)
    trainer.accelerator.wait_for_everyone()  # no rank goes on while the main one still writes
