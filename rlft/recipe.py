"""The recipe schema: typed, nested, frozen and strict; the only place defaults live.

``load_recipe(path, overrides)`` reads YAML, applies dotted overrides (``stages.rl.trl.learning_rate=1e-6``;
both in ``rlft.recipe_yaml``), validates, and reports *every* problem at once as a
``RecipeError`` naming the key path and the fix. ``check_recipe`` goes further (reward references,
TRL's own config checks) and needs trl installed; ``rlft plan`` and ``rlft run`` call both.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from rlft.errors import RecipeError
from rlft.recipe_errors import did_you_mean, problems_from
from rlft.recipe_specs import (  # noqa: F401 - re-exported: rlft.recipe is where recipes are read from
    NAME_PATTERN,
    AugmentSpec,
    CheckpointSpec,
    DataSpec,
    EarlyStoppingSpec,
    ForgettingSpec,
    FreezeSpec,
    LaunchSpec,
    LoraSpec,
    MergeMember,
    OverfitCheckSpec,
    PeftSpec,
    ProbeSpec,
    RewardRef,
    ScorecardSpec,
    Strict,
    TrackingSpec,
    TransformSpec,
)
from rlft.recipe_yaml import apply_overrides, parse_yaml, read_yaml  # noqa: F401 - parse_yaml is part of this API


class StageBase(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    init_from: str | None = Field(None, description="an earlier stage whose model this stage starts from; default: the recipe's model")
    seed: int | None = Field(None, description="default: the recipe's seed")
    launch: LaunchSpec | None = Field(None, description="default: the recipe's launch")

    produces_model: ClassVar[bool] = True
    makes_policy: ClassVar[bool] = True  # its model generates text (an eval stage tests the last such model)
    default_split: ClassVar[str] = "train"
    required_columns: ClassVar[tuple[str, ...]] = ()


class TrainStage(StageBase):
    data: DataSpec
    eval_data: DataSpec | None = Field(
        None, description="held-out rows; default: the same bundled source's test split, or eval_fraction of the data"
    )
    eval_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="share of rows held out when there is no eval_data or test split")
    eval_limit: int | None = Field(100, ge=1, description="score at most the first N held-out rows (null: all)")
    scorecard: ScorecardSpec = ScorecardSpec()
    checkpoint: CheckpointSpec = CheckpointSpec()
    early_stopping: EarlyStoppingSpec | None = None
    peft: PeftSpec | None = None
    freeze: FreezeSpec | None = Field(None, description="selective fine-tuning: parameters that stay fixed (default: full, or LoRA)")
    dropout: float | None = Field(
        None,
        ge=0.0,
        lt=1.0,
        description="set every dropout probability of the model config (attention_dropout, resid_pdrop, ...) for this stage; "
        "default: the model's own",
    )
    trl: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the TRL config class")

    trl_config: ClassVar[str] = ""
    # rlft's own choices where TRL's defaults do not suit a CPU-first, tracked pipeline.
    trl_defaults: ClassVar[dict[str, Any]] = {
        "logging_steps": 1,
        "save_strategy": "no",  # the stage saves its final model itself
        "activation_checkpointing": False,  # TRL turns it on; ~20% slower on CPU, turn on for memory
        "disable_tqdm": True,  # rlft prints its own progress line
        "dataloader_num_workers": 0,
    }

    @model_validator(mode="after")
    def _freeze_with_lora(self):
        if self.freeze is None or self.peft is None or self.peft.lora is None:
            return self
        if self.freeze.embeddings:
            raise ValueError(
                "freeze.embeddings with peft.lora: LoRA keeps the embeddings fixed already (it trains adapters); drop freeze.embeddings"
            )
        if self.freeze.only is not None:
            raise ValueError(
                "freeze.only with peft.lora: LoRA trains adapters, not the named parameters; choose the modules that get "
                "adapters with peft.lora.target_modules, or drop peft.lora to train the named parameters themselves"
            )
        return self


class SFTStage(TrainStage):
    kind: Literal["sft"]
    trl_config: ClassVar[str] = "SFTConfig"
    required_columns: ClassVar[tuple[str, ...]] = ()


class GRPOStage(TrainStage):
    kind: Literal["grpo"]
    rewards: list[RewardRef] = Field(min_length=1)
    trl_config: ClassVar[str] = "GRPOConfig"
    required_columns: ClassVar[tuple[str, ...]] = ("prompt",)


class RLOOStage(GRPOStage):
    kind: Literal["rloo"]
    trl_config: ClassVar[str] = "RLOOConfig"


class PPOStage(GRPOStage):
    """rlft's own PPO (actor-critic, GAE); ``trl:`` holds ``rlft.ppo.PPOConfig`` keys (a TrainingArguments subclass)."""

    kind: Literal["ppo"]
    trl_config: ClassVar[str] = "rlft.ppo:PPOConfig"

    @model_validator(mode="after")
    def _no_dropout(self):
        if self.dropout:
            raise ValueError(
                "dropout does not apply to ppo: rlft's PPO turns dropout off on purpose (its probability ratios need the same "
                "forward pass at rollout and update time); remove dropout:"
            )
        return self


class PairStage(TrainStage):
    """A stage trained on preference pairs, with a held-out split it reports on."""

    required_columns: ClassVar[tuple[str, ...]] = ("chosen", "rejected")


class RewardModelStage(PairStage):
    """Train a one-output sequence-classification head on preference pairs (Bradley-Terry)."""

    kind: Literal["reward_model"]
    trl_config: ClassVar[str] = "RewardConfig"
    makes_policy: ClassVar[bool] = False


class DPOStage(PairStage):
    """Direct preference optimisation (any TRL loss_type, or several with loss_weights)."""

    kind: Literal["dpo"]
    trl_config: ClassVar[str] = "DPOConfig"


class ORPOStage(PairStage):
    """ORPO (odds-ratio preference optimisation, no reference model) — experimental: ``trl.experimental.orpo``."""

    kind: Literal["orpo"]
    trl_config: ClassVar[str] = "trl.experimental.orpo:ORPOConfig"


class SimPOStage(PairStage):
    """SimPO (length-normalised, reference-free) — experimental: ``trl.experimental.cpo`` with ``loss_type: simpo``."""

    kind: Literal["simpo"]
    trl_config: ClassVar[str] = "trl.experimental.cpo:CPOConfig"
    trl_defaults: ClassVar[dict[str, Any]] = {**TrainStage.trl_defaults, "loss_type": "simpo", "cpo_alpha": 0.0}


class KTOStage(PairStage):
    """KTO on unpaired rows (prompt, completion, label); paired data is unpaired automatically."""

    kind: Literal["kto"]
    trl_config: ClassVar[str] = "KTOConfig"
    required_columns: ClassVar[tuple[str, ...]] = ()


class ClassifierStage(TrainStage):
    """A classification head with N labels on the start model, trained with transformers' Trainer on (text, label) rows."""

    kind: Literal["classifier"]
    num_labels: int | None = Field(None, ge=2, description="outputs of the head; default: the labels found in the training rows")
    max_length: int = Field(256, ge=1, description="tokens per text; longer texts are cut (data.too_long: error refuses them)")
    trl: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of transformers.TrainingArguments (the plain Trainer trains this stage)"
    )

    trl_config: ClassVar[str] = "transformers:TrainingArguments"
    required_columns: ClassVar[tuple[str, ...]] = ("text", "label")
    makes_policy: ClassVar[bool] = False

    @model_validator(mode="after")
    def _generates_nothing(self):
        # By value, not by the keys set: a resolved recipe read back (recipe.json) holds every key.
        default = ScorecardSpec().model_dump()
        extra = [k for k, v in self.scorecard.model_dump().items() if k != "baseline" and v != default[k]]
        if extra:
            raise ValueError(
                f"scorecard.{extra[0]} does not apply: a classifier generates no text; only scorecard.baseline "
                "(score the untrained head too) does"
            )
        return self


class EvalStage(StageBase):
    kind: Literal["eval"]
    init_from: str | None = Field(
        None,
        description="the model under test: a stage name; default: the last stage that made a policy (not a reward model or classifier)",
    )
    baseline: str | None = Field("base", description="compare against: 'base' (the recipe's model), a stage name, or null")
    data: DataSpec
    rewards: list[RewardRef] = Field(min_length=1)
    max_new_tokens: int = Field(64, ge=1)
    batch_size: int = Field(16, ge=1)
    overfit_check: OverfitCheckSpec | None = Field(None, description="also score a training stage's own prompts: the generalisation gap")
    probe: ProbeSpec | None = Field(None, description="also score the general-ability probe: probe/general/accuracy, per category, change")
    forgetting: ForgettingSpec | None = Field(None, description="fail when probe accuracy drops more than max_drop; runs the probe")

    produces_model: ClassVar[bool] = False
    makes_policy: ClassVar[bool] = False
    default_split: ClassVar[str] = "test"
    required_columns: ClassVar[tuple[str, ...]] = ("prompt",)

    @property
    def probe_spec(self) -> ProbeSpec | None:
        """The probe to score: ``probe``, or its defaults when only ``forgetting`` is set (forgetting is measured on it)."""
        return self.probe or (ProbeSpec() if self.forgetting else None)


class MergeStage(StageBase):
    """Average the weights of several models of one architecture (a "model soup"), optionally scored against each member.

    With ``data`` and ``rewards``, the soup and every member answer the same held-out prompts greedily;
    the stage reports ``eval/reward/<name>``, ``member/<label>/reward/<name>``, ``soup_beats_members``
    and ``soup_minus_best_member`` (on the first reward).
    """

    kind: Literal["merge"]
    models: list[MergeMember] = Field(min_length=2, description="the members: stage names, base, {stage|path: ..., weight: ...}")
    data: DataSpec | None = Field(None, description="held-out prompts on which the soup and each member are scored; default split: test")
    rewards: list[RewardRef] = Field(default_factory=list, description="rewards for that comparison; the first decides soup_beats_members")
    max_new_tokens: int = Field(64, ge=1)
    batch_size: int = Field(16, ge=1)

    default_split: ClassVar[str] = "test"
    required_columns: ClassVar[tuple[str, ...]] = ("prompt",)

    @model_validator(mode="after")
    def _inputs(self):
        if self.init_from is not None:
            raise ValueError(f"a merge stage takes its models from models:, not init_from; add {self.init_from!r} to models:")
        if (self.data is None) != (not self.rewards):
            raise ValueError("data: and rewards: go together: the soup and its members are scored on data's prompts by rewards")
        return self


Stage = Annotated[
    SFTStage
    | RewardModelStage
    | ClassifierStage
    | DPOStage
    | ORPOStage
    | SimPOStage
    | KTOStage
    | GRPOStage
    | RLOOStage
    | PPOStage
    | EvalStage
    | MergeStage,
    Field(discriminator="kind"),
]
STAGE_KINDS = {
    "sft": SFTStage,
    "reward_model": RewardModelStage,
    "classifier": ClassifierStage,
    "dpo": DPOStage,
    "orpo": ORPOStage,
    "simpo": SimPOStage,
    "kto": KTOStage,
    "grpo": GRPOStage,
    "rloo": RLOOStage,
    "ppo": PPOStage,
    "eval": EvalStage,
    "merge": MergeStage,
}


class Recipe(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    model: str = Field(description="bundled:smollm2-135m-instruct, a local folder, or a hub id")
    seed: int = 42
    output_dir: str = "runs"
    trust_remote_code: bool = False
    tracking: TrackingSpec = TrackingSpec()
    launch: LaunchSpec = LaunchSpec()
    stages: list[Stage] = Field(min_length=1)

    @field_validator("stages")
    @classmethod
    def _unique_names(cls, stages):
        names = [s.name for s in stages]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(
                    f"two stages are named {name!r} (stages {names.index(name)} and {i}); stage names must be unique. "
                    f"rename one, e.g. stages.{i}.name={name}-2"
                )
        return stages

    def stage(self, name: str):
        return next(s for s in self.stages if s.name == name)

    def launch_for(self, stage) -> LaunchSpec:
        """How ``stage`` starts: its own ``launch``, else the recipe's; eval and merge stages always in one process."""
        if stage.kind in ("eval", "merge"):
            return LaunchSpec()
        return stage.launch or self.launch


def _semantic_problems(recipe: Recipe) -> list[tuple[str, str]]:
    """Cross-key checks pydantic cannot express: chaining by name."""
    problems = []
    earlier: dict[str, Any] = {}
    names = [s.name for s in recipe.stages]
    for stage in recipe.stages:
        refs = [("init_from", stage.init_from)]
        if isinstance(stage, EvalStage) and stage.baseline not in (None, "base"):
            refs.append(("baseline", stage.baseline))
        if isinstance(stage, MergeStage):
            refs += [(f"models[{i}].stage", m.stage) for i, m in enumerate(stage.models) if m.stage != "base"]
        for key, ref in refs:
            if ref is None:
                continue
            if ref not in earlier:
                if ref == stage.name:
                    why = "is this stage itself; a stage starts from an earlier stage, or from the recipe's model without init_from"
                else:
                    why = "comes later; stages run in order" if ref in names else "is not a stage of this recipe"
                problems.append(
                    (
                        f"stages.{stage.name}.{key}",
                        f"{ref!r} {why}. {did_you_mean(ref, earlier)}earlier stages: {', '.join(earlier) or '(none)'}",
                    )
                )
            elif not earlier[ref].produces_model:
                problems.append(
                    (
                        f"stages.{stage.name}.{key}",
                        f"stage {ref!r} ({earlier[ref].kind}) makes no model to start from; name a stage that trains one",
                    )
                )
            elif isinstance(stage, EvalStage) and not earlier[ref].makes_policy:
                problems.append(
                    (
                        f"stages.{stage.name}.{key}",
                        f"stage {ref!r} ({earlier[ref].kind}) makes a model that scores text and does not generate it; "
                        "an eval stage generates: name a stage that trains a policy (sft, dpo, grpo, ...)",
                    )
                )
            elif isinstance(stage, MergeStage) and not earlier[ref].makes_policy:
                problems.append(
                    (
                        f"stages.{stage.name}.{key}",
                        f"stage {ref!r} ({earlier[ref].kind}) makes a model that scores text; a merge averages policies: "
                        "name a stage that trains one (sft, dpo, grpo, ...)",
                    )
                )
        for key, ref in stage_reward_refs(stage):
            for model_ref in _model_refs(ref):
                if model_ref in names and not (model_ref in earlier and earlier[model_ref].kind == "reward_model"):
                    problems.append((f"stages.{stage.name}.{key}", f"model: {model_ref!r} must name an earlier reward_model stage"))
        if stage.kind == "ppo" and recipe.launch_for(stage).distributed:
            problems.append(
                (
                    f"stages.{stage.name}.launch",
                    f"rlft's PPO trainer runs in one process; launch this stage alone with stages.{stage.name}.launch.num_processes=1",
                )
            )
        if isinstance(stage, EvalStage) and (stage.overfit_check or stage.forgetting):
            from rlft.guards import spec_problems as guard_problems

            problems += guard_problems(stage, earlier)
        if getattr(stage, "early_stopping", None) is not None:
            from rlft.early_stopping import spec_problems

            problems += spec_problems(stage)
        if any(getattr(getattr(stage, key, None), "augment", None) is not None for key in ("data", "eval_data")):
            from rlft.augment import spec_problems as augment_problems

            problems += augment_problems(stage)
        earlier[stage.name] = stage
    return problems


def stage_reward_refs(stage) -> list[tuple[str, RewardRef]]:
    """Every reward reference of a stage with its key path (``rewards[0]``, ``scorecard.rewards[1]``)."""
    refs = [(f"rewards[{i}]", r) for i, r in enumerate(getattr(stage, "rewards", None) or [])]
    card = getattr(stage, "scorecard", None)
    refs += [(f"scorecard.rewards[{i}]", r) for i, r in enumerate((card.rewards if card else None) or [])]
    return refs


def _model_refs(ref: RewardRef) -> list[str]:
    if ref.model is not None:
        return [ref.model]
    return [m for member in ref.ensemble or [] for m in _model_refs(member)]


def load_recipe(path: str | os.PathLike, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe file; raise ``RecipeError`` with every problem."""
    path = Path(path)
    data = apply_overrides(read_yaml(path), list(overrides or []), str(path))
    return recipe_from_dict(data, str(path))


def recipe_from_dict(data: dict, source: str = "<recipe>") -> Recipe:
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(source, problems_from(exc, data, Recipe, STAGE_KINDS)) from None
    problems = _semantic_problems(recipe)
    if problems:
        raise RecipeError(source, problems)
    return recipe
