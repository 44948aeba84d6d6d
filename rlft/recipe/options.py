"""The option records of a recipe: data, rewards, LoRA, freezing, tracking, launch, scorecard, checkpoints,
early stopping, augmentation, eval guards and merge members. ``rlft.recipe`` builds stages and the recipe
from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"


def string_shorthand(key: str):
    """A before-validator for a record whose plain-string form stands for ``{key: string}`` (``data: bundled:x``)."""

    def expand(cls, value):
        return {key: value} if isinstance(value, str) else value

    return model_validator(mode="before")(classmethod(expand))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TransformSpec(BaseModel):
    """One augmentation transform: a registered name (``rlft.data.augment.transforms.TRANSFORMS``), ``p``, and the transform's own options.

    A plain string is shorthand for ``{name: ...}``; the other keys are the transform's options, e.g.
    ``{name: noise, case: 0.2}``, checked against its options model (unknown ones get a did-you-mean).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    p: float = Field(1.0, gt=0.0, le=1.0, description="probability that an augmented copy gets this transform")

    _shorthand = string_shorthand("name")

    @model_validator(mode="after")
    def _known(self):
        from rlft.data.augment.transforms import check_transform

        check_transform(self.name, self.model_extra or {})
        return self


class AugmentSpec(Strict):
    """Cheap text transforms that add augmented copies of a training stage's rows (see ``rlft.data.augment``)."""

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


DataFiles = str | list[str] | dict[str, str | list[str]]


class MixMember(Strict):
    """One source of a data mixture (``data: {mix: [...]}``): a source as in ``DataSpec``, and how many of its rows to take.

    ``fraction``: that share of this source's rows, ``rows``: exactly that many (both a seeded sample); neither: all of them.
    A plain string is shorthand for ``{source: ...}``.
    """

    source: str = Field(description="bundled:NAME, a .json/.jsonl/.csv/.parquet file, or a datasets hub id")
    split: str | None = Field(None, description="split to read; default: the stage's")
    subset: str | None = Field(None, description="hub data sets: the configuration name")
    revision: str | None = Field(None, description="hub data sets: a branch, tag or commit")
    data_files: DataFiles | None = Field(None, description="hub data sets: which of its files to read")
    columns: dict[str, str] = Field(default_factory=dict, description="canonical column -> column in this source")
    fraction: float | None = Field(None, gt=0.0, le=1.0, description="take this share of the source's rows (seeded sample)")
    rows: int | None = Field(None, ge=1, description="take exactly this many of the source's rows (seeded sample)")

    _shorthand = string_shorthand("source")

    @model_validator(mode="after")
    def _one_amount(self):
        if self.fraction is not None and self.rows is not None:
            raise ValueError(f"mixture member {self.source!r} sets both fraction: and rows:; keep one")
        return self


class DataSpec(Strict):
    """Where a stage's rows come from: one ``source``, or a seeded ``mix`` of several. A plain string is shorthand for ``{source: ...}``."""

    source: str | None = Field(None, description="bundled:NAME, a .json/.jsonl/.csv/.parquet file, or a datasets hub id")
    mix: list[MixMember] | None = Field(
        None,
        min_length=1,
        description="several sources mixed (seeded by the stage's seed): [{source: A, fraction: 0.7}, {source: B, rows: 500}]",
    )
    split: str | None = Field(None, description="split to read; default: train for training stages, test for eval")
    subset: str | None = Field(None, description="hub data sets: the configuration name (e.g. main for openai/gsm8k)")
    revision: str | None = Field(None, description="hub data sets: a branch, tag or commit to read (datasets.load_dataset revision)")
    data_files: DataFiles | None = Field(None, description="hub data sets: which of its files to read (datasets.load_dataset data_files)")
    columns: dict[str, str] = Field(default_factory=dict, description="canonical column -> column in the source, e.g. {prompt: question}")
    limit: int | None = Field(None, ge=1, description="use only the first N rows")
    too_long: Literal["truncate", "error"] = Field(
        "truncate", description="rows longer than the stage's trl.max_length: truncate (TRL keeps the start; rlft counts them) or error"
    )
    augment: AugmentSpec | None = Field(None, description="training stages: add augmented copies of training rows (rlft.data.augment)")
    system: str | None = Field(
        None,
        description='a system message put first in every chat prompt that has none; "" stops the chat template adding its '
        "default one (SmolLM2's is ~20 tokens on every prompt). Give every stage that sees these prompts the same value",
    )

    _shorthand = string_shorthand("source")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.source is None) == (self.mix is None):
            raise ValueError("data needs exactly one of source: (one data set) and mix: (a list of sources)")
        if self.mix is not None:
            own = [k for k in ("subset", "revision", "data_files") if getattr(self, k) is not None] + (["columns"] if self.columns else [])
            if own:
                raise ValueError(f"with mix:, {own[0]}: belongs to each member (mix[i].{own[0]}), not to data:")
        return self

    @property
    def bundled(self) -> bool:
        """One bundled source (which has its own test split)."""
        return self.source is not None and self.source.startswith("bundled:")

    @property
    def label(self) -> str:
        """The source, or ``mix(A, B)``, for tables and messages."""
        return self.source if self.source is not None else "mix(" + ", ".join(m.source for m in self.mix) + ")"


DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class ModelKwargs(Strict):
    """How a stage loads its start model: the ``from_pretrained`` keywords rlft passes on.

    Recipe-wide (``model_kwargs:``) or per stage (``stages.<name>.model_kwargs``, overriding the recipe's key by key).
    bf16/fp16 weights, ``flash_attention_2`` and ``load_in_4bit`` (QLoRA, with ``peft.lora``) need a CUDA GPU.
    """

    dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None, description="weights' dtype: float32 (default), bfloat16 or float16 (GPU only); also fp32, bf16, fp16"
    )
    attn_implementation: Literal["eager", "sdpa", "flash_attention_2"] | None = Field(
        None, description="attention kernel: sdpa, eager, or flash_attention_2 (CUDA and the flash_attn package); default: transformers'"
    )
    revision: str | None = Field(None, description="hub models: a branch, tag or commit of the recipe's model")
    load_in_4bit: bool | None = Field(None, description="QLoRA: 4-bit NF4 weights via bitsandbytes (CUDA only), trained with peft.lora")

    @field_validator("dtype", mode="before")
    @classmethod
    def _short_names(cls, value):
        return DTYPE_NAMES.get(value, value) if isinstance(value, str) else value

    def over(self, base: ModelKwargs) -> ModelKwargs:
        """These keys over ``base``: each key this record sets replaces ``base``'s (a stage's own over the recipe's)."""
        return base.model_copy(update={k: v for k, v in self.model_dump().items() if v is not None})


class LoraSpec(Strict):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | str = "all-linear"


class PeftSpec(Strict):
    lora: LoraSpec | None = None


class SaveSpec(Strict):
    """What a training stage writes of its model (``rlft.stages.saving``): the merged model, the LoRA adapter, or both."""

    merged: bool = Field(True, description="write <stage>/model: full weights (a LoRA adapter merged in)")
    adapter: bool | None = Field(
        None,
        description="write <stage>/adapter: the LoRA adapter alone (PEFT format); default: yes when the stage trains LoRA "
        "(not for expert_iteration and iterative_dpo, whose rounds each merge their own adapter)",
    )


class PushSpec(Strict):
    """Upload a finished stage's model (or adapter) folder with its model card to the Hugging Face Hub (``rlft.pipeline.outputs``).

    A plain string is shorthand for ``{hub_model_id: ...}``. Offline or without a token, rlft prints the
    ``rlft push`` command that uploads it later.
    """

    hub_model_id: str = Field(pattern=r"^[A-Za-z0-9][\w.-]*/[\w.-]+$", description="the Hub repository, OWNER/NAME")
    private: bool = Field(False, description="create the repository private (an existing one keeps its visibility)")
    adapter_only: bool = Field(False, description="upload <stage>/adapter instead of <stage>/model")

    _shorthand = string_shorthand("hub_model_id")


class FreezeSpec(Strict):
    """Selective fine-tuning: which parameters of the start model stay fixed (applied by ``rlft.training.selective``).

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

    _shorthand = string_shorthand("name")  # rewards: [math_accuracy, answer_format]

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
    backends: list[Literal["wandb", "tensorboard", "trackio"]] = Field(
        default_factory=lambda: ["wandb"],
        description="the trackers each stage logs to (every stage also writes <stage>/history.jsonl); mode is W&B's",
    )


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


# Rows generated at once by rlft's own generation (scorecards, eval, merge, sampling rounds): a number, or null / "auto"
# for as many as free memory allows (rlft.decoding.rows_per_batch: key/value cache and logits per row, capped).
def _generation_rows(value):
    """One clear error for a bad ``batch_size`` (not one per branch of the union)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if value is None or value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ValueError(f"must be a number of rows (1 or more), or auto to choose it from free memory; got {value!r}")


GenerationRows = Annotated[int | Literal["auto"] | None, BeforeValidator(_generation_rows)]
GENERATION_ROWS = "rows generated at once; null or auto: as many as free memory allows (capped: 128 on a CPU, 256 on a GPU)"


class ScorecardSpec(Strict):
    """What a training stage generates on held-out prompts at its end (see ``rlft.evaluation.scorecard``)."""

    prompts: int = Field(32, ge=0, description="held-out prompts to generate from; 0 = no generation metrics")
    max_new_tokens: int = Field(64, ge=1)
    batch_size: GenerationRows = Field(None, description=GENERATION_ROWS)
    baseline: bool = Field(True, description="also score the model the stage starts from (baseline/...)")
    rewards: list[RewardRef] | None = Field(None, description="rewards for eval/reward/<name>; default: the stage's own rewards")


class CheckpointSpec(Strict):
    """When a training stage checkpoints inside itself, so that a killed stage resumes (see ``rlft.training.checkpoints``)."""

    every_steps: int | None = Field(None, ge=1, description="checkpoint every N optimizer steps")
    every_minutes: float | None = Field(10.0, gt=0, description="checkpoint when this many minutes passed since the last one")
    keep: int = Field(1, ge=1, description="checkpoints kept (the oldest are deleted)")


class EarlyStoppingSpec(Strict):
    """Stop a training stage when its held-out metric stops improving, and keep its best weights (see ``rlft.training.early_stopping``)."""

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


class RoundStoppingSpec(Strict):
    """Stop a stage that trains in rounds when its held-out reward stops improving from round to round, keeping the best round."""

    metric: str | None = Field(None, description="eval/reward (the weighted sum of the stage's rewards, the default) or eval/reward/<name>")
    patience: int = Field(1, ge=1, description="stop after this many rounds in a row without improvement")
    min_delta: float = Field(0.0, ge=0.0, description="a round improves only when it beats the best by more than this")
    restore_best: bool = Field(True, description="end with the best round's model (else: the last round's)")


class SamplingSpec(Strict):
    """How a stage that learns in rounds samples its own tries: ``completions`` per prompt for ``prompts`` training prompts a round."""

    prompts: int | None = Field(
        64, ge=1, description="training prompts sampled each round, taken in turn from the shuffled training rows; null: all of them"
    )
    completions: int = Field(8, ge=2, description="completions sampled per prompt (k)")
    temperature: float = Field(1.0, gt=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(64, ge=1)
    batch_size: GenerationRows = Field(None, description=f"completions: {GENERATION_ROWS}")


class KeepSpec(Strict):
    """Which of its own tries an expert-iteration round fine-tunes on: per prompt its best ``per_prompt``, if they clear the bar."""

    min_reward: float | None = Field(None, description="keep a completion only when its weighted reward is at least this")
    top_fraction: float | None = Field(
        None, gt=0.0, le=1.0, description="keep only the prompts whose best completion ranks in this top share of the round"
    )
    per_prompt: int = Field(1, ge=1, description="distinct completions kept per prompt at most (ReST-EM keeps several)")

    @model_validator(mode="after")
    def _a_bar(self):
        if self.min_reward is None and self.top_fraction is None:
            raise ValueError(
                "set keep.min_reward (e.g. 1.0: only completions the reward calls right) or keep.top_fraction (e.g. 0.25), "
                "or both: without a bar expert iteration would fine-tune on its wrong answers too"
            )
        return self


class PairsSpec(Strict):
    """How an iterative-DPO round pairs its own tries: per prompt, the best against the worst by weighted reward."""

    min_margin: float = Field(
        0.0, ge=0.0, description="pair only when best minus worst exceeds this (ties never pair: the margin must be above 0)"
    )
    min_chosen_reward: float | None = Field(None, description="pair only when the best completion's reward is at least this")


GUARD_NAMES = ("length_drift", "length_cap", "kl_spike", "silent_groups", "reward_dominance", "divergence")


class GuardsSpec(Strict):
    """Watch an RL stage for signs that its training reward is being gamed (see ``rlft.training.guards``).

    Every ``every_steps`` steps: completion length against the start and the share cut at the length cap;
    KL to the reference above ``kl_max`` or jumping ``kl_jump`` times since the last check; the share of
    groups whose completions all scored alike (advantage collapse); one reward function holding most of
    the weighted reward's spread; with ``early_stopping``, training reward rising while held-out reward
    falls. Each firing is printed, logged and kept in the manifest; a guard in ``stop_on`` also stops the
    stage (with ``early_stopping``, ending with its best weights).
    """

    every_steps: int = Field(1, ge=1, description="check every N optimizer steps")
    length_drift: float = Field(2.0, gt=1.0, description="fire when mean completion length is this many times its start, or 1/this")
    length_cap: float = Field(0.5, gt=0.0, le=1.0, description="fire when more than this share of completions hit the length cap")
    kl_max: float | None = Field(None, gt=0.0, description="fire when per-token KL to the reference exceeds this (needs a KL term)")
    kl_jump: float = Field(3.0, gt=1.0, description="fire when per-token KL grew this many times since the last check")
    kl_floor: float = Field(0.01, ge=0.0, description="KL jumps count only from at least this per-token KL")
    silent_groups: float = Field(0.9, gt=0.0, le=1.0, description="fire when more than this share of groups scored alike (no signal)")
    reward_dominance: float = Field(0.9, gt=0.0, le=1.0, description="fire when one reward holds more than this share of the spread")
    divergence_evals: int = Field(
        2,
        ge=1,
        description="held-out evaluations in a row with held-out reward below its best (and not rising) while training reward "
        "is above its level at that best",
    )
    stop_on: list[Literal["length_drift", "length_cap", "kl_spike", "silent_groups", "reward_dominance", "divergence"]] = Field(
        default_factory=list, description="guards that stop the stage when they fire (the others only warn)"
    )


class OverfitCheckSpec(Strict):
    """An eval stage also scores a sample of one training stage's own prompts (see ``rlft.stages.guards``).

    Reports ``train_sample/reward/<name>`` and ``generalisation_gap/<name>`` (train sample minus held-out)
    for the model under test and, as ``baseline/...``, for the baseline.
    """

    stage: str = Field(description="an earlier training stage; its training rows (its data: after its held-out split) are sampled")
    prompts: int = Field(32, ge=1, description="training prompts scored: a sample of its training rows, seeded by this stage's seed")


class ProbeSpec(Strict):
    """An eval stage also scores the general-ability probe ``bundled:general-probe`` (``rlft.data.bundled.probe``)."""

    limit: int | None = Field(None, ge=1, description="score only the first N questions (round-robin over the categories); default: all")
    max_new_tokens: int = Field(64, ge=1, description="tokens per probe answer")


class ForgettingSpec(Strict):
    """Fail the eval stage when the model's probe accuracy is more than ``max_drop`` below the baseline's."""

    max_drop: float = Field(ge=0.0, le=1.0, description="largest allowed fall of probe/general/accuracy, e.g. 0.05 = 5 points")


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
