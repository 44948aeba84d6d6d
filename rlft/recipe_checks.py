"""Deep recipe checks that need trl (and torch): real TRL configs and resolved reward references.

``rlft plan`` and ``rlft run`` call ``check_recipe`` after ``load_recipe``, so TRL's own validation
and every reward reference fail before any weights load.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rlft.errors import RecipeError, RlftError
from rlft.recipe import Recipe, TrainStage, stage_reward_refs
from rlft.recipe_errors import did_you_mean

# Keys that older transformers/TRL releases (and many published recipes) use, with where they went.
MOVED_KEYS = {"warmup_ratio": "transformers 5 folded it into warmup_steps: a value below 1 is a share of the steps (warmup_steps: 0.1). "}


def config_class(ref: str):
    """``SFTConfig`` -> ``trl.SFTConfig``; ``module.path:Class`` -> that class (rlft's PPO, TRL's experimental trainers)."""
    import importlib
    import os

    module, _, name = ref.rpartition(":") if ":" in ref else ("trl", "", ref)
    if module.startswith("trl.experimental"):
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # the stage kind is documented as experimental
    return getattr(importlib.import_module(module), name)


def trl_config_for(stage: TrainStage, output_dir: str, *, report_to: str = "none", seed: int = 42, check_only: bool = False):
    """Build the real TRL config of a training stage: rlft defaults < recipe ``trl:`` < fixed keys.

    On a machine without CUDA, ``bf16``/``fp16: true`` is an error naming the override that turns it off,
    except with ``check_only`` (``rlft plan`` of a GPU recipe on a laptop), where the rest is still checked.
    """
    import torch

    cls = config_class(stage.trl_config)
    fields = {f.name for f in dataclasses.fields(cls)}
    aliases = {k.replace("activation_", "gradient_") for k in fields} | {k.replace("gradient_", "activation_") for k in fields}
    unknown = [k for k in stage.trl if k not in fields and not (k.endswith(("checkpointing", "checkpointing_kwargs")) and k in aliases)]
    if unknown:
        raise RlftError(
            "; ".join(f"unknown {cls.__name__} key {k!r}. {MOVED_KEYS.get(k) or did_you_mean(k, fields)}" for k in unknown).strip(),
            where=f"stages.{stage.name}.trl",
            fix=f"see the fields of {cls.__module__}.{cls.__name__}",
        )
    kwargs = dict(stage.trl_defaults)
    if not torch.cuda.is_available():
        kwargs.update(bf16=False, fp16=False, use_cpu=True)  # bf16 is 5-7x slower (and an error) on CPU
    kwargs.update(seed=seed)
    kwargs.update(stage.trl)
    half = [k for k in ("bf16", "fp16") if stage.trl.get(k) and not torch.cuda.is_available()]
    if half and check_only:
        kwargs.update(bf16=False, fp16=False, use_cpu=True)
    elif half:
        raise RlftError(
            f"{half[0]}: true needs a GPU, and this machine has none (CPU training runs in fp32)",
            where=f"stages.{stage.name}.trl.{half[0]}",
            fix=f"run it on a GPU machine, or override: stages.{stage.name}.trl.{half[0]}=false",
        )
    _checkpointing_names(cls, kwargs, stage.trl)
    kwargs.update(output_dir=output_dir, report_to=report_to, run_name=None)
    try:
        args = cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise RlftError(f"TRL rejects this config: {exc}", where=f"stages.{stage.name}.trl", fix="change the named key") from exc
    from rlft.selective import check_dropout_kept

    check_dropout_kept(stage, args)
    return args


def _checkpointing_names(cls, kwargs: dict, given: dict) -> None:
    """transformers renamed ``gradient_checkpointing*`` to ``activation_checkpointing*``: accept either, pass what ``cls`` has."""
    fields = {f.name for f in dataclasses.fields(cls)}
    new = "activation_checkpointing" in fields
    for suffix in ("", "_kwargs"):
        old_key, new_key = f"gradient_checkpointing{suffix}", f"activation_checkpointing{suffix}"
        if new and old_key in kwargs and new_key not in given:
            kwargs[new_key] = kwargs.pop(old_key)
        elif not new and new_key in kwargs:
            value = kwargs.pop(new_key)
            kwargs.setdefault(old_key, value)


def _machine_problems(recipe: Recipe) -> list[tuple[str, str]]:
    """What only this machine decides: can this user write the output folder, is there a W&B key for online tracking."""
    import os

    from rlft.tracking import resolve_mode

    problems = []
    target = Path(recipe.output_dir).expanduser().resolve()
    existing = next(p for p in (target, *target.parents) if p.exists())
    # Only a folder the recipe names: `rlft run --output-dir` replaces the default without telling the recipe.
    if "output_dir" in recipe.model_fields_set and not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
        problems.append(
            (
                "output_dir",
                f"{existing} is not a folder this user can write, so rlft cannot make its run folders in {target}; "
                f"choose another folder (output_dir=PATH, or rlft run --output-dir PATH), or make it writable (chmod u+w {existing})",
            )
        )
    try:
        resolve_mode(recipe.tracking.mode, fallback_offline=recipe.tracking.fallback_offline)
    except RlftError as exc:
        problems.append((exc.where or "tracking.mode", f"{exc.what}; {exc.fix}"))
    return problems


def check_recipe(recipe: Recipe, source: str, base_dir: Path | None = None, *, here: bool = False) -> None:
    """Resolve every reward reference and build every TRL config; raise all problems at once.

    ``here``: the recipe is about to run on this machine, so GPU-only keys (bf16) are errors too, and so are
    an output folder this user cannot write and ``tracking.mode: online`` without a W&B key.
    """
    from rlft.reward_refs import resolve_ref

    base_dir = base_dir or Path(source).parent
    problems: list[tuple[str, str]] = []
    from rlft.models import check_model_dir, require_cached_when_offline, resolve_model

    try:
        folder = Path(resolve_model(recipe.model, convert=False))
        if (folder / "config.json").exists():  # a local folder, or the bundled model once converted
            # rlft feeds every stage kind but sft (which takes plain text too) and classifier (plain text only) chat messages
            needs_chat = any(s.kind not in ("sft", "classifier") for s in recipe.stages)
            check_model_dir(folder, trust_remote_code=recipe.trust_remote_code, needs_chat_template=needs_chat)
        elif here and not recipe.model.startswith("bundled:"):  # a hub id: `rlft plan` of a GPU recipe offline is fine
            require_cached_when_offline(recipe.model)
    except RlftError as exc:
        problems.append(("model", f"{exc.what}; {exc.fix}"))
    if here:
        problems += _machine_problems(recipe)
    from rlft.redact import check_no_secrets

    problems += check_no_secrets(recipe.model_dump(mode="json", exclude_defaults=True))
    from rlft.pipeline import accelerate_config_path

    for stage in recipe.stages:
        spec = recipe.launch_for(stage)
        if spec.accelerate_config:
            try:
                accelerate_config_path(spec.accelerate_config, base_dir)
            except RlftError as exc:
                key = f"stages.{stage.name}.launch" if stage.launch else "launch"
                problems.append((f"{key}.accelerate_config", f"{exc.what}; {exc.fix}"))
                break
    stage_models: dict[str, str | None] = {}
    for stage in recipe.stages:
        for path, ref in stage_reward_refs(stage):
            try:
                resolve_ref(ref, base_dir=base_dir, stage_models=stage_models)
            except RlftError as exc:
                key = "name" if ref.name is not None else "model" if ref.model is not None else "ensemble"
                problems.append((f"stages.{stage.name}.{path}.{key}", exc.render().replace("\n  fix:", ";")))
        if stage.kind == "reward_model":
            stage_models[stage.name] = None
        if isinstance(stage, TrainStage):
            try:
                trl_config_for(stage, "/tmp/rlft-check", seed=stage.seed if stage.seed is not None else recipe.seed, check_only=not here)
            except RlftError as exc:
                problems.append((exc.where or "", f"{exc.what}; {exc.fix}"))
    if problems:
        raise RecipeError(source, problems)
