"""Deep recipe checks that need trl (and torch): real TRL configs and resolved reward references.

``rlft plan`` and ``rlft run`` call ``check_recipe`` after ``load_recipe``, so TRL's own validation
and every reward reference fail before any weights load.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rlft.errors import RecipeError, RlftError
from rlft.recipe import Recipe, TrainStage
from rlft.recipe_errors import did_you_mean


def trl_config_for(stage: TrainStage, output_dir: str, *, report_to: str = "none", seed: int = 42):
    """Build the real TRL config of a training stage: rlft defaults < recipe ``trl:`` < fixed keys."""
    import torch
    import trl

    cls = getattr(trl, stage.trl_config)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in stage.trl if k not in fields]
    if unknown:
        raise RlftError(
            "; ".join(f"unknown {cls.__name__} key {k!r}. {did_you_mean(k, fields)}" for k in unknown).strip(),
            where=f"stages.{stage.name}.trl",
            fix=f"see the fields of trl.{cls.__name__}",
        )
    kwargs = dict(stage.trl_defaults)
    if not torch.cuda.is_available():
        kwargs.update(bf16=False, fp16=False, use_cpu=True)  # bf16 is 5-7x slower (and an error) on CPU
    kwargs.update(seed=seed)
    kwargs.update(stage.trl)
    if "gradient_checkpointing" in stage.trl and "activation_checkpointing" not in stage.trl:
        kwargs["activation_checkpointing"] = kwargs.pop("gradient_checkpointing")  # the old name, kept working
    kwargs.update(output_dir=output_dir, report_to=report_to, run_name=None)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise RlftError(f"TRL rejects this config: {exc}", where=f"stages.{stage.name}.trl", fix="change the named key") from exc


def check_recipe(recipe: Recipe, source: str, base_dir: Path | None = None) -> None:
    """Resolve every reward reference and build every TRL config; raise all problems at once."""
    from rlft.reward_refs import resolve_ref

    base_dir = base_dir or Path(source).parent
    problems: list[tuple[str, str]] = []
    from rlft.models import resolve_model

    try:
        resolve_model(recipe.model, convert=False)
    except RlftError as exc:
        problems.append(("model", f"{exc.what}; {exc.fix}"))
    stage_models: dict[str, str | None] = {}
    for stage in recipe.stages:
        for i, ref in enumerate(getattr(stage, "rewards", []) or []):
            try:
                resolve_ref(ref, base_dir=base_dir, stage_models=stage_models)
            except RlftError as exc:
                key = "name" if ref.name is not None else "model" if ref.model is not None else "ensemble"
                problems.append((f"stages.{stage.name}.rewards[{i}].{key}", exc.render().replace("\n  fix:", ";")))
        if stage.kind == "reward_model":
            stage_models[stage.name] = None
        if isinstance(stage, TrainStage):
            try:
                trl_config_for(stage, "/tmp/rlft-check", seed=stage.seed if stage.seed is not None else recipe.seed)
            except RlftError as exc:
                problems.append((exc.where or "", f"{exc.what}; {exc.fix}"))
    if problems:
        raise RecipeError(source, problems)
