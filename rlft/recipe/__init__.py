"""The recipe: typed, nested, frozen and strict; the only place defaults live.

``load_recipe(path, overrides)`` reads YAML, applies dotted overrides (``stages.rl.trl.learning_rate=1e-6``),
validates, and reports *every* problem at once as a ``RecipeError`` naming the key path and the fix.
The package imports neither torch nor stage code. Its modules, bottom up:

- ``options``  — the option records (data, rewards, LoRA, freezing, tracking, launch, scorecard, ...);
- ``schema``   — one record per stage kind, with the facts of that kind, and the ``Recipe``;
- ``problems`` — pydantic's errors rendered as the key paths a user wrote;
- ``checks``   — cross-key checks pydantic cannot express (chaining by name, each feature's rules);
- ``loading``  — YAML, overrides, validation.

The deeper checks that need TRL (real TRL configs, resolved reward references, the machine) are
``rlft.pipeline.checks.check_recipe``.
"""

from rlft.recipe.checks import stage_reward_refs
from rlft.recipe.loading import apply_overrides, load_recipe, parse_yaml, read_yaml, recipe_from_dict
from rlft.recipe.options import (
    NAME_PATTERN,
    AugmentSpec,
    CheckpointSpec,
    DataSpec,
    EarlyStoppingSpec,
    ForgettingSpec,
    FreezeSpec,
    GuardsSpec,
    LaunchSpec,
    LoraSpec,
    MergeMember,
    MixMember,
    ModelKwargs,
    OverfitCheckSpec,
    PeftSpec,
    ProbeSpec,
    RewardRef,
    ScorecardSpec,
    Strict,
    TrackingSpec,
    TransformSpec,
)
from rlft.recipe.schema import (
    STAGE_KINDS,
    ClassifierStage,
    DPOStage,
    EvalStage,
    ExpertIterationStage,
    GRPOStage,
    IterativeDPOStage,
    KTOStage,
    MergeStage,
    OnlineDPOStage,
    ORPOStage,
    PairStage,
    PPOStage,
    Recipe,
    RewardModelStage,
    RLOOStage,
    RoundsStage,
    SFTStage,
    SimPOStage,
    Stage,
    StageBase,
    TrainStage,
)

__all__ = [
    "NAME_PATTERN",
    "STAGE_KINDS",
    "AugmentSpec",
    "CheckpointSpec",
    "ClassifierStage",
    "DPOStage",
    "DataSpec",
    "EarlyStoppingSpec",
    "GuardsSpec",
    "EvalStage",
    "ExpertIterationStage",
    "ForgettingSpec",
    "FreezeSpec",
    "GRPOStage",
    "IterativeDPOStage",
    "KTOStage",
    "LaunchSpec",
    "LoraSpec",
    "MergeMember",
    "MergeStage",
    "MixMember",
    "ModelKwargs",
    "ORPOStage",
    "OnlineDPOStage",
    "OverfitCheckSpec",
    "PPOStage",
    "PairStage",
    "PeftSpec",
    "ProbeSpec",
    "RLOOStage",
    "RoundsStage",
    "Recipe",
    "RewardModelStage",
    "RewardRef",
    "SFTStage",
    "ScorecardSpec",
    "SimPOStage",
    "Stage",
    "StageBase",
    "Strict",
    "TrackingSpec",
    "TrainStage",
    "TransformSpec",
    "apply_overrides",
    "load_recipe",
    "parse_yaml",
    "read_yaml",
    "recipe_from_dict",
    "stage_reward_refs",
]
