"""Weight averaging ("model soups"): models of one architecture averaged tensor by tensor in fp32.

``resolve_members`` turns a merge stage's ``models:`` into folders with weights that sum to 1;
``check_members`` refuses, before any weights load, a member whose architecture or tokenizer
vocabulary differs from the first member's; ``average`` then loads one member at a time (a PEFT
adapter folder is merged into its base first) and adds it into the first, so that at most two
models are in memory, and refuses a member whose parameter names or shapes differ, naming the first
mismatching tensor. The soup is ``sum_i w_i * theta_i`` over parameters (tied weights once); buffers
(rotary tables and the like, computed from the config) come from the first member.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rlft.errors import RlftError
from rlft.recipe import MergeStage
from rlft.stages.context import StageContext

SAME_BASE_FIX = "merge only models fine-tuned from the same base model (same architecture, size and tokenizer)"


@dataclass(frozen=True)
class Member:
    """One model of a soup: ``folder`` holds full weights, or a PEFT adapter whose base is ``base``."""

    label: str  # the stage name, base, or the folder's name: metrics use it (member/<label>/...)
    folder: str  # a from_pretrained reference (a folder; a hub id for a hub `base`)
    weight: float  # normalised: the weights of one soup sum to 1
    base: str | None = None  # an adapter's base model, resolved

    @property
    def weights_from(self) -> str:
        """Where config and tokenizer come from: the adapter's base, else the folder itself."""
        return self.base or self.folder

    @property
    def tokenizer_from(self) -> str:
        return self.folder if self.base is None or (Path(self.folder) / "tokenizer_config.json").exists() else self.base


def resolve_members(cfg: MergeStage, ctx: StageContext) -> list[Member]:
    """The members of ``cfg`` as folders, with weights normalised to sum 1; a missing one is an error naming it."""
    from rlft.models import resolve_model

    total = sum(m.weight for m in cfg.models)
    members: list[Member] = []
    folders: dict[str, str] = {}  # label -> folder, so two different folders never share a label
    for i, spec in enumerate(cfg.models):
        where = f"stages.{cfg.name}.models[{i}]"
        if spec.stage is not None:
            folder = ctx.model_ref(spec.stage)
        else:
            path = spec.folder(ctx.recipe_dir)
            if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
                raise RlftError(
                    f"merge member {spec.path} is not a model folder ({path} {'has no config.json' if path.is_dir() else 'does not exist'})",
                    where=where,
                    fix="point path: at a folder written by save_pretrained (full weights or a PEFT adapter), or name a stage with stage:",
                )
            folder = str(path)
        base = None
        adapter = Path(folder) / "adapter_config.json"
        if adapter.exists():
            name = json.loads(adapter.read_text()).get("base_model_name_or_path")
            if not name:
                raise RlftError(f"adapter {folder} does not name its base model", where=where, fix="set base_model_name_or_path in it")
            base = resolve_model(name)
        label = spec.label if folders.get(spec.label, folder) == folder else f"{spec.label}-{i}"
        folders[label] = folder
        members.append(Member(label=label, folder=folder, weight=spec.weight / total, base=base))
    return members


def check_members(members: list[Member], *, where: str, trust_remote_code: bool = False) -> None:
    """Refuse a member that is not a causal LM, or whose architecture or vocabulary differs from the first member's."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from rlft.models import config_source, load_tokenizer

    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    first, first_arch, first_vocab = members[0], None, None
    for m in members:
        config = AutoConfig.from_pretrained(config_source(m.weights_from), trust_remote_code=trust_remote_code)
        arch = (config.model_type, tuple(config.architectures or ()))
        if arch[1] and not causal & set(arch[1]):
            raise RlftError(
                f"merge member {m.label} is a {', '.join(arch[1])}, not a causal language model", where=where, fix=SAME_BASE_FIX
            )
        vocab = load_tokenizer(m.tokenizer_from, trust_remote_code=trust_remote_code).get_vocab()
        if first_arch is None:
            first_arch, first_vocab = arch, vocab
            continue
        if arch != first_arch:
            raise RlftError(
                f"merge member {m.label} is a {'/'.join(arch[1]) or arch[0]} ({arch[0]}), "
                f"but {first.label} is a {'/'.join(first_arch[1]) or first_arch[0]} ({first_arch[0]})",
                where=where,
                fix=SAME_BASE_FIX,
            )
        if vocab != first_vocab:
            token, index = min(set(vocab.items()) ^ set(first_vocab.items()), key=lambda item: (item[1], item[0]))
            raise RlftError(
                f"merge member {m.label} has another tokenizer vocabulary than {first.label} "
                f"({len(vocab)} vs {len(first_vocab)} tokens; first difference: {token!r} at id {index})",
                where=where,
                fix=SAME_BASE_FIX,
            )


def load_member(member: Member, *, trust_remote_code: bool = False):
    """The member as a causal LM in fp32; an adapter folder is loaded onto its base and merged in."""
    from rlft.models import load_causal_lm

    model = load_causal_lm(member.weights_from, trust_remote_code=trust_remote_code)
    if member.base is None:
        return model
    from peft import PeftModel

    return PeftModel.from_pretrained(model, member.folder).merge_and_unload()


def average(members: list[Member], *, where: str, trust_remote_code: bool = False):
    """The weighted average of the members' parameters (fp32), in the first member's model object."""
    import torch

    from rlft.progress import Progress

    with Progress("merge", len(members), unit="members") as progress, torch.no_grad():
        soup = load_member(members[0], trust_remote_code=trust_remote_code)
        ours = dict(soup.named_parameters())  # tied weights appear once
        for p in ours.values():
            p.mul_(members[0].weight)
        progress.update()
        for m in members[1:]:
            model = load_member(m, trust_remote_code=trust_remote_code)
            theirs = dict(model.named_parameters())
            _check_tensors(ours, theirs, members[0].label, m.label, where)
            for name, p in ours.items():
                p.add_(theirs[name].to(p.dtype), alpha=m.weight)
            del model, theirs
            progress.update()
    return soup


def _check_tensors(ours: dict, theirs: dict, first: str, label: str, where: str) -> None:
    """Refuse ``theirs`` unless it has exactly our parameter names and shapes; name the first mismatching tensor."""
    problem = None
    for name, p in ours.items():
        if name not in theirs:
            problem = f"tensor {name} is missing"
        elif theirs[name].shape != p.shape:
            problem = f"tensor {name} has shape {tuple(theirs[name].shape)}, {first} has {tuple(p.shape)}"
        if problem:
            break
    extra = next((name for name in theirs if name not in ours), None)
    problem = problem or (f"tensor {extra} is not in {first}" if extra else None)
    if problem:
        raise RlftError(f"merge member {label} does not match {first}: {problem}", where=where, fix=SAME_BASE_FIX)
