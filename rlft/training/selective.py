"""Selective fine-tuning (``freeze:``) and per-stage dropout (``dropout:``), applied where a stage loads its start model.

``freeze:`` (``rlft.recipe.FreezeSpec``) keeps parts of the start model fixed: their ``requires_grad`` is
turned off before the trainer is built, so no optimizer sees them and they stay bit-identical.

- ``embeddings: true`` — the input embeddings (token, and learned positions where the model has them);
  an output head tied to them is the same tensor and stays fixed with them;
- ``bottom_blocks: N`` — the first N transformer blocks (from the input side);
- ``top_blocks_only: N`` — everything but the last N blocks and what lies above them (final norm, an
  untied output head, a classification head): the embeddings and the lower blocks are fixed;
- ``only: [regex, ...]`` — everything but the parameters whose names match one pattern (``re.search``
  on names as ``model.named_parameters()`` gives them, tied aliases such as ``lm_head.weight`` included).

The blocks are the model's ModuleList of decoder layers (``model.layers`` for Llama, Qwen or Mistral,
``transformer.h`` for GPT-2). With ``peft.lora``, ``bottom_blocks`` and ``top_blocks_only`` choose the
blocks that get adapters (peft's ``exclude_modules`` leaves the others alone; ``layers_to_transform``
cannot be used, peft refuses it with ``target_modules: all-linear``); ``embeddings`` and ``only`` with
LoRA are refused when the recipe is validated.

``dropout: p`` sets every dropout probability the model's config has (``attention_dropout``,
``hidden_dropout``, ``resid_pdrop``, ...) while the model loads, for this stage alone: the saved model
keeps the start model's values, so a later stage does not inherit them.
"""

from __future__ import annotations

import re
from typing import Any

from rlft.errors import RlftError

BLOCK_ATTRS = ("layers", "h", "blocks", "block")  # where architectures keep their decoder layers
DROPOUT_SUFFIXES = ("dropout", "dropout_prob", "dropout_rate", "pdrop")
START_DROPOUT = "rlft_start_dropout"  # attribute of a loaded model: the config's dropout values before the stage's dropout:


def load_start(ctx, stage, ref: str, load) -> Any:
    """Load a training stage's start model through ``load(**config_overrides)``, with its ``dropout:`` and ``freeze:`` applied.

    ``load`` is the stage's own ``from_pretrained`` call; it receives the dropout fields to override.
    Records ``dropout`` and ``freeze`` in the manifest (``ctx.notes``) and ``freeze/frozen`` in the W&B summary.
    """
    overrides: dict[str, float] = {}
    start: dict[str, float] = {}
    if stage.dropout is not None:
        from transformers import AutoConfig

        from rlft.models import config_source

        config = AutoConfig.from_pretrained(config_source(ref), trust_remote_code=ctx.recipe.trust_remote_code)
        start = dropout_fields(config, where=f"stages.{stage.name}.dropout")
        overrides = dict.fromkeys(start, stage.dropout)
        ctx.notes.dropout = {"p": stage.dropout, "fields": sorted(start), "start_values": start}
    model = load(**overrides)
    if start:
        setattr(model, START_DROPOUT, start)  # put back by restore_dropout before the model is saved
    note = apply_freeze(model, stage)
    if note is not None:
        ctx.notes.freeze = note
        ctx.tracker.summary_update({"freeze/frozen": "; ".join(note["frozen"]) or "nothing"})
    return model


def dropout_fields(config, *, where: str | None = None) -> dict[str, float]:
    """The dropout probabilities of a model config by field name (``{'attention_dropout': 0.0}``); an error when it has none."""
    found = {
        k: v for k, v in config.to_dict().items() if k.endswith(DROPOUT_SUFFIXES) and isinstance(v, int | float) and not isinstance(v, bool)
    }
    if not found:
        raise RlftError(
            f"the {config.model_type!r} model config has no dropout field (no *dropout, *dropout_prob, *dropout_rate or *pdrop value)",
            where=where,
            fix="remove dropout: (this architecture has no dropout to set)",
        )
    return found


def restore_dropout(model) -> None:
    """Put the start model's dropout values back into ``model.config`` before saving: a stage's ``dropout:`` is its own."""
    for key, value in (getattr(model, START_DROPOUT, None) or {}).items():
        setattr(model.config, key, value)


def check_dropout_kept(stage, args) -> None:
    """Refuse ``dropout: p > 0`` where the TRL config turns dropout off (``disable_dropout``, true for DPO, KTO, ORPO, SimPO, reward models)."""
    if getattr(stage, "dropout", None) and getattr(args, "disable_dropout", False):
        raise RlftError(
            f"dropout: {stage.dropout} would be undone: {type(args).__name__}.disable_dropout is true (its default for {stage.kind}), "
            "as TRL compares the policy with its reference on deterministic forward passes",
            where=f"stages.{stage.name}.dropout",
            fix=f"keep dropout on with stages.{stage.name}.trl.disable_dropout=false, or remove dropout:",
        )


def find_blocks(model, where: str | None = None) -> tuple[str, Any]:
    """The model's transformer blocks: ``(dotted name, ModuleList)``, e.g. ``('model.layers', ModuleList of 30)``.

    Looks at ``get_decoder()`` and the model itself for ``layers``, ``h``, ``blocks`` or ``block``, then
    for the one ModuleList as long as ``num_hidden_layers``.
    """
    from torch import nn

    names = {id(m): name for name, m in model.named_modules()}
    owners = [model]
    try:
        owners.insert(0, model.get_decoder())
    except (AttributeError, NotImplementedError, ValueError):
        pass  # no decoder to ask: look at the model itself
    for owner in owners:
        for attr in BLOCK_ATTRS:
            found = getattr(owner, attr, None)
            if isinstance(found, nn.ModuleList) and len(found) and id(found) in names:
                return names[id(found)], found
    depth = getattr(model.config.get_text_config(), "num_hidden_layers", None)
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and depth and len(m) == depth]
    if len(lists) == 1:
        return lists[0]
    raise RlftError(
        f"found no transformer blocks in {type(model).__name__} (model type {model.config.model_type!r}): no ModuleList of decoder "
        f"layers at get_decoder().{{{','.join(BLOCK_ATTRS)}}}, nor one ModuleList of num_hidden_layers ({depth}) modules",
        where=where,
        fix="name the parameters that train with freeze.only (regular expressions over parameter names) instead",
    )


def apply_freeze(model, stage) -> dict | None:
    """Turn off ``requires_grad`` on what the stage's ``freeze:`` fixes; return the manifest note (None without ``freeze:``).

    With LoRA nothing is turned off here (peft fixes every base weight); the note names the blocks that get adapters.
    """
    spec = stage.freeze
    if spec is None:
        return None
    where = f"stages.{stage.name}.freeze"
    named = list(model.named_parameters(remove_duplicate=False))
    note: dict[str, Any] = {"spec": spec.model_dump(exclude_defaults=True)}
    if spec.only is not None:
        _check_patterns(spec.only, [n for n, _ in named], model, where)
        trained = {id(p) for n, p in named if any(re.search(pattern, n) for pattern in spec.only)}
        frozen = [p for p in model.parameters() if id(p) not in trained]
        note["frozen"] = [f"every parameter not matching {', '.join(repr(p) for p in spec.only)}"]
        note["trained_names"] = sorted({n for n, p in named if id(p) in trained})
    else:
        path, blocks = find_blocks(model, where)
        fixed = frozen_blocks(spec, len(blocks), where)
        note["blocks"] = {"path": path, "count": len(blocks), "trained": [i for i in range(len(blocks)) if i not in fixed]}
        label = f"blocks {fixed[0]}-{fixed[-1]} of {len(blocks)} ({path})" if fixed else ""
        if stage.peft is not None and stage.peft.lora is not None:
            note["frozen"] = [f"{label}: no LoRA adapters"] if fixed else []
            return note
        note["frozen"] = [label] if fixed else []
        frozen = [p for i in fixed for p in blocks[i].parameters()]
        if spec.embeddings or spec.top_blocks_only:
            embeddings = _embedding_parameters(model, path)
            tied = model.get_output_embeddings()
            tied = tied is not None and any(tied.weight is p for p in embeddings)
            note["frozen"].insert(0, "embeddings (with the output head tied to them)" if tied else "embeddings")
            frozen += embeddings
    for p in frozen:
        p.requires_grad_(False)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    note["params"] = {"trainable": trainable, "frozen": total - trainable, "total": total}
    return note


def frozen_blocks(spec, count: int, where: str) -> list[int]:
    """Indices of the blocks ``spec`` fixes (or leaves without LoRA adapters) in a model of ``count`` blocks."""
    if spec.bottom_blocks is not None:
        if spec.bottom_blocks >= count:
            raise RlftError(
                f"freeze.bottom_blocks is {spec.bottom_blocks}, but the model has {count} blocks: that leaves none to train",
                where=f"{where}.bottom_blocks",
                fix=f"freeze at most {count - 1}, or train only the head with freeze.only",
            )
        return list(range(spec.bottom_blocks))
    if spec.top_blocks_only is not None:
        if spec.top_blocks_only > count:
            raise RlftError(
                f"freeze.top_blocks_only is {spec.top_blocks_only}, but the model has only {count} blocks",
                where=f"{where}.top_blocks_only",
                fix=f"choose 1 to {count}",
            )
        return list(range(count - spec.top_blocks_only))
    return []


def lora_exclusions(stage, model) -> str | None:
    """peft ``exclude_modules`` (a regular expression over module names) keeping LoRA adapters off the blocks ``freeze:`` fixes."""
    if stage.freeze is None:
        return None
    where = f"stages.{stage.name}.freeze"
    path, blocks = find_blocks(model, where)
    fixed = frozen_blocks(stage.freeze, len(blocks), where)
    if not fixed:
        return None
    return rf"{re.escape(path)}\.(?:{'|'.join(map(str, fixed))})\..*"


def _embedding_parameters(model, block_path: str) -> list:
    """Parameters of the input embeddings and of every other ``nn.Embedding`` outside the blocks (learned positions)."""
    from torch import nn

    found = {id(p): p for p in model.get_input_embeddings().parameters()}
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) and not name.startswith(block_path + "."):
            found.update({id(p): p for p in module.parameters()})
    return list(found.values())


def _check_patterns(patterns: list[str], names: list[str], model, where: str) -> None:
    for i, pattern in enumerate(patterns):
        if not any(re.search(pattern, n) for n in names):
            shown = ", ".join(names[:3] + names[-2:])
            raise RlftError(
                f"freeze.only pattern {pattern!r} matches no parameter of {type(model).__name__}",
                where=f"{where}.only[{i}]",
                fix=f"parameter names look like: {shown}",
            )
