"""Deep recipe checks that need trl (and torch): real TRL configs and resolved reward references.

``rlft plan`` and ``rlft run`` call ``check_recipe`` after ``load_recipe``, so TRL's own validation
and every reward reference fail before any weights load.
"""

from __future__ import annotations

from pathlib import Path

from rlft.errors import RecipeError, RlftError
from rlft.recipe import KTOStage, PairStage, Recipe, TrainStage, stage_reward_refs
from rlft.stages.trl_config import trl_config_for


def _machine_problems(recipe: Recipe) -> list[tuple[str, str]]:
    """What only this machine decides: can this user write the output folder, is there a W&B key for online tracking."""
    import os

    from rlft.tracking import backend_problems, resolve_mode

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
    problems += backend_problems(recipe.tracking)
    return problems


def _model_kwargs_problems(recipe: Recipe) -> list[tuple[str, str]]:
    """``model_kwargs`` this machine cannot honour (bf16 weights without a GPU, flash_attention_2 without flash_attn, ...), each once."""
    from rlft.models import model_kwargs_problems

    found: dict[str, str] = {}
    for stage in recipe.stages:
        for key, message in model_kwargs_problems(recipe.model_kwargs_for(stage)):
            own = stage.model_kwargs is not None and getattr(stage.model_kwargs, key) is not None
            found.setdefault(f"stages.{stage.name}.model_kwargs.{key}" if own else f"model_kwargs.{key}", message)
    return list(found.items())


def data_problems(recipe: Recipe, base_dir: Path, reward_columns: dict[str, list[tuple[str, tuple[str, ...]]]], *, here: bool):
    """Read every stage's data as the stage will (training rows, held-out rows) and check its columns, rewards' included.

    ``reward_columns``: per stage name, (reward label, columns it needs) of its resolved rewards. Hub data sets are
    read only when the recipe is about to run here (``rlft plan`` of a GPU recipe offline checks the rest).
    Returns (key, message) problems, every stage's at once.
    """
    import datasets

    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a check, not a job: no "Map: 100%" lines for each stage's rows
    try:
        return _data_problems(recipe, base_dir, reward_columns, here=here)
    finally:
        if shown:
            datasets.enable_progress_bars()


def _data_problems(recipe: Recipe, base_dir: Path, reward_columns, *, here: bool) -> list[tuple[str, str]]:
    from rlft.data.rows import load_rows, reads_locally

    problems: list[tuple[str, str]] = []
    for stage in recipe.stages:
        data = getattr(stage, "data", None)
        if data is None:
            continue
        kind = "preference" if isinstance(stage, PairStage) else None
        sources = [("data", data, data.split or stage.default_split)]
        if isinstance(stage, TrainStage) and stage.eval_data is not None:
            sources.append(("eval_data", stage.eval_data, stage.eval_data.split or "test"))
        elif isinstance(stage, TrainStage) and data.bundled:
            sources.append(("data", data.model_copy(update={"limit": None, "split": "test"}), "test"))
        for i, (key, spec, split) in enumerate(sources):
            if not here and not reads_locally(spec, base_dir):
                continue
            try:
                if isinstance(stage, KTOStage) and _unpaired(spec, split, base_dir):  # KTO takes unpaired rows as they are
                    rows, _, label = load_rows(spec, split=split, required=("prompt", "completion", "label"), base_dir=base_dir)
                else:
                    rows, _, label = load_rows(spec, split=split, kind=kind, required=stage.required_columns, base_dir=base_dir)
            except RlftError as exc:
                where = f" ({exc.where})" if exc.where and not exc.where.startswith("stages.") else ""
                problems.append((f"stages.{stage.name}.{key}", f"{exc.what}{where}; {exc.fix}"))
                continue
            if i > 0:
                continue  # rewards are checked on the training rows
            for reward, needed in reward_columns.get(stage.name, []):
                missing = [c for c in needed if c not in rows.column_names]
                if missing:
                    problems.append(
                        (
                            f"stages.{stage.name}.rewards",
                            f"reward {reward} needs column(s) {missing}, which data {label} lacks; its columns are "
                            f"{rows.column_names}: map one with `stages.{stage.name}.data.columns`",
                        )
                    )
    return problems


def _unpaired(spec, split: str, base_dir: Path) -> bool:
    """Whether a KTO stage's rows are unpaired (``completion`` and ``label``), as ``rlft.stages.kto`` decides it."""
    from rlft.data.rows import load_rows

    try:
        rows, _, _ = load_rows(spec, split=split, base_dir=base_dir)
    except RlftError:
        return False  # the pair load reports what is wrong
    return {"completion", "label"} <= set(rows.column_names)


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
        problems += _model_kwargs_problems(recipe)
    from rlft.redact import check_no_secrets

    problems += check_no_secrets(recipe.model_dump(mode="json", exclude_defaults=True))
    from rlft.pipeline.run import accelerate_config_path

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
    reward_columns: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for stage in recipe.stages:
        for path, ref in stage_reward_refs(stage):
            try:
                resolved = resolve_ref(ref, base_dir=base_dir, stage_models=stage_models)
                if path.startswith("rewards"):  # the stage's own rewards read its data rows
                    reward_columns.setdefault(stage.name, []).append((ref.label, tuple(resolved.required_columns)))
            except RlftError as exc:
                key = "name" if ref.name is not None else "model" if ref.model is not None else "ensemble"
                problems.append((f"stages.{stage.name}.{path}.{key}", exc.render().replace("\n  fix:", ";")))
        if stage.kind == "reward_model":
            stage_models[stage.name] = None
        if isinstance(stage, TrainStage):
            try:
                trl_config_for(stage, "/tmp/rlft-check", seed=stage.seed if stage.seed is not None else recipe.seed, check_only=not here)
            except RecipeError as exc:  # several keys of one stage
                problems += exc.problems
            except RlftError as exc:
                problems.append((exc.where or "", f"{exc.what}; {exc.fix}"))
    problems += data_problems(recipe, base_dir, reward_columns, here=here)
    if problems:
        raise RecipeError(source, problems)
