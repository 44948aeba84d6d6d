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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rlft.errors import RecipeError
from rlft.recipe_errors import did_you_mean, problems_from
from rlft.recipe_yaml import apply_overrides, parse_yaml, read_yaml  # noqa: F401 - parse_yaml is part of this API

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TransformSpec(BaseModel):
    """One augmentation transform: a registered name (``rlft.augment.TRANSFORMS``), ``p``, and the transform's own options.

    A plain string is shorthand for ``{name: ...}``; the other keys are the transform's options, e.g.
    ``{name: noise, case: 0.2}``, checked against its options model (unknown ones get a did-you-mean).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    p: float = Field(1.0, gt=0.0, le=1.0, description="probability that an augmented copy gets this transform")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value):
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _known(self):
        from rlft.augment import check_transform

        check_transform(self.name, self.model_extra or {})
        return self


class AugmentSpec(Strict):
    """Cheap text transforms that add augmented copies of a training stage's rows (see ``rlft.augment``)."""

    transforms: list[TransformSpec] = Field(
        min_length=1, description="numbers, shuffle_shots, template, noise: each at most once, applied to a copy in that order"
    )
    ratio: float = Field(0.5, gt=0.0, le=1.0, description="share of training rows that get one augmented copy, added to them")
    seed: int | None = Field(None, description="which rows and which variations; default: the stage's seed")

    @field_validator("transforms")
    @classmethod
    def _once_each(cls, transforms):
        names = [t.name for t in transforms]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(
                f"transform {', '.join(map(repr, twice))} is listed twice; list each transform once (options go on that entry)"
            )
        return transforms


class DataSpec(Strict):
    """Where a stage's rows come from. A plain string is shorthand for ``{source: ...}``."""

    source: str = Field(description="bundled:NAME, a .json/.jsonl/.csv/.parquet file, or a datasets hub id")
    split: str | None = Field(None, description="split to read; default: train for training stages, test for eval")
    subset: str | None = Field(None, description="hub data sets: the configuration name (e.g. main for openai/gsm8k)")
    columns: dict[str, str] = Field(default_factory=dict, description="canonical column -> column in the source, e.g. {prompt: question}")
    limit: int | None = Field(None, ge=1, description="use only the first N rows")
    too_long: Literal["truncate", "error"] = Field(
        "truncate", description="rows longer than the stage's trl.max_length: truncate (TRL keeps the start; rlft counts them) or error"
    )
    augment: AugmentSpec | None = Field(None, description="training stages: add augmented copies of training rows (rlft.augment)")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value):
        return {"source": value} if isinstance(value, str) else value


class LoraSpec(Strict):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | str = "all-linear"


class PeftSpec(Strict):
    lora: LoraSpec | None = None


class FreezeSpec(Strict):
    """Selective fine-tuning: which parameters of the start model stay fixed (applied by ``rlft.selective``).

    Blocks are the model's transformer blocks (its decoder layers), counted from the input side.
    ``only`` names everything that trains, so it stands alone; ``bottom_blocks`` and ``top_blocks_only``
    exclude each other. With ``peft.lora`` the block keys choose the blocks that get adapters.
    """

    embeddings: bool = Field(False, description="freeze the input embeddings (token and learned position; an output head tied to them too)")
    bottom_blocks: int | None = Field(None, ge=1, description="freeze the first N blocks (input side); everything else trains")
    top_blocks_only: int | None = Field(
        None,
        ge=1,
        description="train only the last N blocks and what lies above them (final norm, untied output or classification head); "
        "freeze the embeddings and the other blocks",
    )
    only: list[str] | None = Field(
        None, min_length=1, description="train only parameters whose names match one of these regular expressions (re.search)"
    )

    @field_validator("only")
    @classmethod
    def _patterns_compile(cls, patterns):
        import re

        for i, pattern in enumerate(patterns or []):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"only[{i}] {pattern!r} is not a regular expression: {exc}") from None
        return patterns

    @model_validator(mode="after")
    def _one_choice(self):
        chosen = [k for k in ("embeddings", "bottom_blocks", "top_blocks_only") if getattr(self, k)]
        if self.only is not None and chosen:
            raise ValueError(
                f"freeze.only names everything that trains, so freeze.{chosen[0]} cannot go with it; "
                f"drop freeze.{chosen[0]}, or drop freeze.only"
            )
        if self.bottom_blocks and self.top_blocks_only:
            raise ValueError(
                "freeze.bottom_blocks and freeze.top_blocks_only both choose the trained blocks; keep one "
                "(top_blocks_only: N trains the last N blocks, bottom_blocks: N freezes the first N)"
            )
        if not chosen and self.only is None:
            raise ValueError("an empty freeze: fixes nothing; set embeddings, bottom_blocks, top_blocks_only or only, or remove freeze:")
        return self


class RewardRef(Strict):
    """One reward, exactly one of three kinds.

    - ``name``: a registered name, ``module:function`` or ``./file.py:function`` (``kwargs`` go to it);
    - ``model``: a reward model — an earlier ``reward_model`` stage's name, a local folder or a hub id;
    - ``ensemble``: several rewards combined per sample by ``reduce`` (``mean``, ``min`` or
      ``mean_minus_std`` = mean - k * std, the classic guard against one exploited reward model).
    """

    name: str | None = None
    model: str | None = None
    ensemble: list[RewardRef] | None = Field(None, min_length=2)
    weight: float = 1.0
    kwargs: dict[str, Any] = Field(default_factory=dict, description="for name: arguments of the reward")
    reduce: Literal["mean", "min", "mean_minus_std"] = "mean"
    k: float = Field(1.0, ge=0.0, description="for reduce: mean_minus_std")
    normalize: bool = Field(False, description="for model: standardise scores by the first batch's mean and std")
    batch_size: int = Field(8, ge=1, description="for model: completions scored per forward pass")
    timeout_s: float | None = Field(600.0, gt=0, description="seconds one call may take before the stage stops; null: no limit")

    @model_validator(mode="after")
    def _one_kind(self):
        kinds = [k for k in ("name", "model", "ensemble") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a reward needs exactly one of name:, model:, ensemble: (got {', '.join(kinds) or 'none'})")
        return self

    @property
    def label(self) -> str:
        """A short display name, used for metric names (``rewards/<label>/mean``)."""
        if self.name is not None:
            return self.name.rsplit(":", 1)[-1]
        if self.model is not None:
            return self.model.rstrip("/").rsplit("/", 1)[-1]
        return f"{self.reduce}(" + ",".join(m.label for m in self.ensemble) + ")"


class TrackingSpec(Strict):
    project: str = "rlft"
    entity: str | None = None
    mode: Literal["offline", "online", "disabled"] | None = Field(
        None, description="default: offline, or online when WANDB_MODE=online and a key is present"
    )
    tags: list[str] = Field(default_factory=list)
    fallback_offline: bool = Field(False, description="mode: online without a W&B key tracks offline instead of failing")


class LaunchSpec(Strict):
    """How training stages start: one process (default), or ``accelerate launch`` with a config.

    Set recipe-wide (``launch:``), per stage (``stages.<name>.launch``), or from the command line
    (``rlft run --accelerate recipes/accelerate/ddp.yaml --num-processes 8``). ``eval`` stages
    always run in one process.
    """

    accelerate_config: str | None = Field(None, description="an accelerate config file, e.g. recipes/accelerate/ddp.yaml")
    num_processes: int | None = Field(None, ge=1, description="processes in all (overrides the config's)")
    machine_rank: int | None = Field(None, ge=0, description="multi-node: this machine's rank (overrides the config's)")
    main_process_ip: str | None = Field(None, description="multi-node: the address of machine 0")
    extra_args: list[str] = Field(default_factory=list, description="more `accelerate launch` arguments, passed as they are")

    @property
    def distributed(self) -> bool:
        return self.accelerate_config is not None or (self.num_processes or 1) > 1


class StageBase(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    init_from: str | None = Field(None, description="an earlier stage whose model this stage starts from; default: the recipe's model")
    seed: int | None = Field(None, description="default: the recipe's seed")
    launch: LaunchSpec | None = Field(None, description="default: the recipe's launch")

    produces_model: ClassVar[bool] = True
    makes_policy: ClassVar[bool] = True  # its model generates text (an eval stage tests the last such model)
    default_split: ClassVar[str] = "train"
    required_columns: ClassVar[tuple[str, ...]] = ()


class ScorecardSpec(Strict):
    """What a training stage generates on held-out prompts at its end (see ``rlft.scorecard``)."""

    prompts: int = Field(32, ge=0, description="held-out prompts to generate from; 0 = no generation metrics")
    max_new_tokens: int = Field(64, ge=1)
    batch_size: int = Field(16, ge=1)
    baseline: bool = Field(True, description="also score the model the stage starts from (baseline/...)")
    rewards: list[RewardRef] | None = Field(None, description="rewards for eval/reward/<name>; default: the stage's own rewards")


class CheckpointSpec(Strict):
    """When a training stage checkpoints inside itself, so that a killed stage resumes (see ``rlft.checkpoints``)."""

    every_steps: int | None = Field(None, ge=1, description="checkpoint every N optimizer steps")
    every_minutes: float | None = Field(10.0, gt=0, description="checkpoint when this many minutes passed since the last one")
    keep: int = Field(1, ge=1, description="checkpoints kept (the oldest are deleted)")


class EarlyStoppingSpec(Strict):
    """Stop a training stage when its held-out metric stops improving, and keep its best weights (see ``rlft.early_stopping``)."""

    metric: str | None = Field(
        None,
        description="eval/loss (sft, reward_model, dpo, orpo, simpo, kto), eval/accuracy (sft, reward_model), eval/implicit_accuracy "
        "(dpo, orpo, simpo); eval/reward (the weighted sum of the stage's rewards) or eval/reward/<name> (grpo, rloo, ppo); "
        "default: eval/loss, or eval/reward for grpo, rloo and ppo",
    )
    every_steps: int = Field(10, ge=1, description="evaluate every N optimizer steps (and at the last step)")
    patience: int = Field(3, ge=1, description="stop after this many evaluations in a row without improvement")
    min_delta: float = Field(0.0, ge=0.0, description="an evaluation improves only when it beats the best by more than this")
    restore_best: bool = Field(True, description="end with the weights of the best evaluation (else: those of the last step)")
    prompts: int | None = Field(
        None, ge=1, description="reward metrics: held-out prompts completed greedily at each evaluation; default: scorecard.prompts"
    )


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


class OverfitCheckSpec(Strict):
    """An eval stage also scores a sample of one training stage's own prompts (see ``rlft.guards``).

    Reports ``train_sample/reward/<name>`` and ``generalisation_gap/<name>`` (train sample minus held-out)
    for the model under test and, as ``baseline/...``, for the baseline.
    """

    stage: str = Field(description="an earlier training stage; its training rows (its data: after its held-out split) are sampled")
    prompts: int = Field(32, ge=1, description="training prompts scored: a sample of its training rows, seeded by this stage's seed")


class ProbeSpec(Strict):
    """An eval stage also scores the general-ability probe ``bundled:general-probe`` (``rlft.probes``)."""

    limit: int | None = Field(None, ge=1, description="score only the first N questions (round-robin over the categories); default: all")
    max_new_tokens: int = Field(64, ge=1, description="tokens per probe answer")


class ForgettingSpec(Strict):
    """Fail the eval stage when the model's probe accuracy is more than ``max_drop`` below the baseline's."""

    max_drop: float = Field(ge=0.0, le=1.0, description="largest allowed fall of probe/general/accuracy, e.g. 0.05 = 5 points")


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


class MergeMember(Strict):
    """One model of a ``merge`` stage: exactly one of ``stage`` and ``path``, with a relative weight.

    A plain string is shorthand: one that looks like a path (``./``, ``/``, ``~``) is ``{path: ...}``,
    anything else ``{stage: ...}`` (``base`` included).
    """

    stage: str | None = Field(None, description="an earlier stage that made a policy, or 'base' (the recipe's model)")
    path: str | None = Field(None, description="a local model folder: full weights, or a PEFT adapter (merged into its base first)")
    weight: float = Field(1.0, gt=0, description="relative weight; a merge's weights are normalised to sum 1")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value):
        if isinstance(value, str):
            return {"path": value} if value.startswith((".", "/", "~")) else {"stage": value}
        return value

    @model_validator(mode="after")
    def _one_source(self):
        if (self.stage is None) == (self.path is None):
            raise ValueError("a merge member needs exactly one of stage: (an earlier stage, or base) and path: (a model folder)")
        return self

    @property
    def label(self) -> str:
        """The name metrics use (``member/<label>/...``): the stage name, or the folder's own name."""
        return self.stage or self.path.rstrip("/").rsplit("/", 1)[-1]

    def folder(self, recipe_dir: Path) -> Path:
        """A ``path`` member's folder: as written when it is absolute or exists from here, else from the recipe's folder."""
        path = Path(self.path).expanduser()
        return path if path.is_absolute() or path.exists() else recipe_dir / path


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
