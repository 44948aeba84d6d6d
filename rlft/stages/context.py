"""What a stage runs in and hands on: its context (recipe, run folder, earlier results, tracker, notes) and its result."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rlft.errors import RlftError
from rlft.layout import StageLayout
from rlft.recipe import Recipe


@dataclass
class StageResult:
    """What a stage hands on: later stages refer to it by ``name`` (``init_from: sft``)."""

    name: str
    kind: str
    status: str  # done | failed
    model_path: str | None = None  # a from_pretrained folder, or None for stages that make no model
    wandb_run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    output_dir: str | None = None
    wall_s: float = 0.0
    error: str | None = None

    @classmethod
    def read(cls, stage_dir: Path) -> StageResult:
        data = json.loads(StageLayout(stage_dir).manifest.read_text())
        return cls(**{k: data["result"].get(k) for k in cls.__dataclass_fields__ if k in data["result"]})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(slots=True)
class StageNotes:
    """What a stage records about itself besides its result, each written into its manifest under its own key.

    Typed fields rather than a free dict: a misspelt note is an ``AttributeError`` (``slots``), and no note can
    overwrite one of the keys the runner writes (``MANIFEST_KEYS``; a test checks they never meet).
    """

    start_model: str | None = None  # the folder or model reference the stage started from
    data: dict[str, Any] | None = None  # training stages: train/held_out labels, rows, fingerprint; eval: eval, rows, fingerprint
    augment: dict[str, Any] | None = None  # rlft.data.augment.apply: rows in, copies per transform, rows out
    rows_over_max_length: int | None = None  # training rows longer than the trainer's max_length
    dropout: dict[str, Any] | None = None  # the stage's dropout: and the start model's values (rlft.training.selective)
    freeze: dict[str, Any] | None = None  # what freeze: fixed (rlft.training.selective)
    early_stopping: dict[str, Any] | None = None  # evaluations, best step, stop step (rlft.training.early_stopping)
    guards: list[dict[str, Any]] | None = None  # RL stages with guards: every firing (guard, step, value, message)
    critic: dict[str, Any] | None = None  # PPO: shared or separate value head, and where it started
    value_model: str | None = None  # PPO: the saved critic's folder, relative to the stage folder
    adapter: str | None = None  # LoRA stages: the saved adapter's folder, relative to the stage folder (rlft.stages.saving)
    push: dict[str, Any] | None = None  # push: the Hub repository, what was uploaded, or why not (rlft.pipeline.outputs)
    labels: dict[str, Any] | None = None  # classifier: the label space
    merge: dict[str, Any] | None = None  # merge: the members and the best one
    models: dict[str, Any] | None = None  # eval: the model under test and its baseline
    generation: dict[str, Any] | None = None  # held-out generations by prefix: model, prompts, settings, tokens/s; reused_from
    overfit_check: dict[str, Any] | None = None  # eval: the training stage sampled, rows, sampled
    probe: dict[str, Any] | None = None  # eval: the probe's data, rows, fingerprint
    launch: dict[str, Any] | None = None  # multi-process: world size, rows per rank (rlft.pipeline.runner)

    def to_manifest(self) -> dict[str, Any]:
        """The notes that were recorded, by field name, in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass
class StageContext:
    """Everything a stage's ``run`` needs besides its own config."""

    recipe: Recipe
    run_id: str
    run_dir: Path
    out_dir: Path  # the stage's temporary output folder; renamed on success
    recipe_dir: Path  # relative data/reward paths resolve from here
    results: dict[str, StageResult]  # earlier stages, by name
    tracker: Any = None
    notes: StageNotes = field(default_factory=StageNotes)  # what the stage records in its manifest besides its result

    @property
    def paths(self) -> StageLayout:
        """The files of the folder this stage writes into (``.STAGE.partial``, renamed to ``STAGE`` when it succeeds)."""
        return StageLayout(self.out_dir)

    def seed_for(self, stage) -> int:
        return stage.seed if stage.seed is not None else self.recipe.seed

    def reward_models(self) -> dict[str, str | None]:
        """Earlier reward_model stages by name, with their saved folders (for ``model:`` rewards)."""
        return {name: r.model_path for name, r in self.results.items() if r.kind == "reward_model"}

    def resolve_rewards(self, refs, *, columns: list[str] | None = None, data_label: str = "", where: str | None = None) -> list:
        """Resolve reward references; with ``columns``, check each reward finds the dataset columns it needs."""
        from rlft.reward_refs import resolve_ref

        rewards = [resolve_ref(r, base_dir=self.recipe_dir, stage_models=self.reward_models()) for r in refs]
        for ref, resolved in zip(refs, rewards, strict=True):
            missing = [c for c in resolved.required_columns if columns is not None and c not in columns]
            if missing:
                raise RlftError(
                    f"reward {ref.label} needs column(s) {missing}, which data {data_label} lacks",
                    where=where,
                    fix=f"its columns are {list(columns)}; map one with `data.columns`",
                )
        return rewards

    def model_ref(self, stage_name: str | None) -> str:
        """The folder or reference to load for ``init_from`` (None = the recipe's base model)."""
        from rlft.models import resolve_model

        if stage_name is None or stage_name == "base":
            return resolve_model(self.recipe.model)
        result = self.results.get(stage_name)
        if result is None or result.status != "done" or not result.model_path:
            raise RlftError(
                f"stage {stage_name!r} has no finished model in {self.run_dir}", fix="run the whole recipe, or that stage first"
            )
        return result.model_path
