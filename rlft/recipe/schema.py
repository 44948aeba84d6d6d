"""The recipe schema: one record per stage kind and the ``Recipe``; typed, nested, frozen and strict; the only place
defaults live. Each stage class also carries the facts of its kind (TRL config class and rlft's defaults, required
columns, early-stopping metrics, what it logs, how it stays near its start), so no other module keeps a per-kind table.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from rlft.recipe.options import (
    GENERATION_ROWS,
    NAME_PATTERN,
    CheckpointSpec,
    DataSpec,
    EarlyStoppingSpec,
    ForgettingSpec,
    FreezeSpec,
    GenerationRows,
    GuardsSpec,
    KeepSpec,
    LaunchSpec,
    MergeMember,
    ModelKwargs,
    OverfitCheckSpec,
    PairsSpec,
    PeftSpec,
    ProbeSpec,
    PushSpec,
    RewardRef,
    RoundStoppingSpec,
    SamplingSpec,
    SaveSpec,
    ScorecardSpec,
    Strict,
    TrackingSpec,
)

# rlft's metric name -> (the key in the Trainer's evaluate() output, higher is better)
LOSS = ("eval_loss", False)
IMPLICIT_ACCURACY = ("eval_rewards/accuracies", True)


class StageBase(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    init_from: str | None = Field(None, description="an earlier stage whose model this stage starts from; default: the recipe's model")
    seed: int | None = Field(None, description="default: the recipe's seed")
    launch: LaunchSpec | None = Field(None, description="default: the recipe's launch")
    model_kwargs: ModelKwargs | None = Field(None, description="how this stage loads its models; each key set overrides the recipe's")
    push: PushSpec | None = Field(None, description="upload the finished stage's model and its card to the Hugging Face Hub")

    produces_model: ClassVar[bool] = True
    makes_policy: ClassVar[bool] = True  # its model generates text (an eval stage tests the last such model)
    default_split: ClassVar[str] = "train"
    required_columns: ClassVar[tuple[str, ...]] = ()
    # Early stopping: the Trainer metrics this kind can stop on (the first is the default), or held-out reward.
    stop_metrics: ClassVar[dict[str, tuple[str, bool]]] = {}
    stops_on_reward: ClassVar[bool] = False
    # How this kind keeps a model near where it started (the fix of a forgetting failure); {s}: the stage name.
    stay_close: ClassVar[str] = "train a LoRA adapter (stages.{s}.peft.lora) instead of every weight"
    # What the trainer logs that the stage reports as train/<key> (its last value); rewards add their own means.
    train_log_keys: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _push_a_model(self):
        if self.push is None:
            return self
        if not self.produces_model:
            raise ValueError(f"push: a {self.kind} stage saves no model to upload; remove push:")
        if self.push.adapter_only and not getattr(self, "saves_adapter", False):
            raise ValueError("push.adapter_only: this stage saves no LoRA adapter (it needs peft.lora, and save.adapter not false)")
        save = getattr(self, "save", None)
        if not self.push.adapter_only and save is not None and not save.merged:
            raise ValueError("push: this stage saves only its adapter (save.merged: false); set push.adapter_only: true")
        return self

    def early_stopping_metrics(self) -> list[str]:
        """The metrics this stage can stop on (its default first); empty for kinds without early stopping."""
        if self.stops_on_reward:
            return ["eval/reward", *(f"eval/reward/{r.label}" for r in self.rewards)]
        return list(self.stop_metrics)


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
    save: SaveSpec = SaveSpec()

    trl_config: ClassVar[str] = ""
    one_adapter: ClassVar[bool] = True  # its LoRA adapter sits on the stage's start model (rounds stages: on the last round's)
    # rlft's own choices where TRL's defaults do not suit a CPU-first, tracked pipeline.
    trl_defaults: ClassVar[dict[str, Any]] = {
        "logging_steps": 1,
        "save_strategy": "no",  # the stage saves its final model itself
        "activation_checkpointing": False,  # TRL turns it on; ~20% slower on CPU, turn on for memory
        "disable_tqdm": True,  # rlft prints its own progress line
        "dataloader_num_workers": 0,
    }

    @property
    def trains_lora(self) -> bool:
        return self.peft is not None and self.peft.lora is not None

    @property
    def saves_adapter(self) -> bool:
        """Whether the stage writes ``<stage>/adapter``: ``save.adapter``, by default when it trains one LoRA adapter."""
        return self.save.adapter if self.save.adapter is not None else self.trains_lora and self.one_adapter

    @field_validator("trl")
    @classmethod
    def _no_trl_push(cls, trl):
        if trl.get("push_to_hub"):
            raise ValueError(
                "trl.push_to_hub would upload only the trainer's in-stage checkpoints, not the stage's saved model and card; "
                "remove it and set push: {hub_model_id: OWNER/NAME} on the stage (or run `rlft push runs/RUN/STAGE` later)"
            )
        return trl

    @model_validator(mode="after")
    def _what_to_save(self):
        save = self.save
        if save.adapter and not self.trains_lora:
            raise ValueError(
                "save.adapter: this stage trains no LoRA adapter (no peft.lora); add peft: {lora: {r: 16}}, or drop save.adapter"
            )
        if save.adapter and not self.one_adapter:
            raise ValueError(
                f"save.adapter: each round of a {self.kind} stage merges its own adapter into the next round's start, so there is "
                "no one adapter over the stage's start model; drop save.adapter"
            )
        if save.merged:
            return self
        if not self.trains_lora or not self.one_adapter:
            why = "trains no LoRA adapter (no peft.lora)" if not self.trains_lora else f"is a {self.kind} stage, which keeps no one adapter"
            raise ValueError(f"save.merged: false keeps only the LoRA adapter, and this stage {why}; drop save.merged: false")
        if save.adapter is False:
            raise ValueError("save.merged: false with save.adapter: false saves nothing; keep one of them")
        if not self.makes_policy:
            raise ValueError(
                f"save.merged: false: a {self.kind} stage's model is loaded whole (a model: reward, a score head); keep save.merged: true"
            )
        return self

    @field_validator("trl")
    @classmethod
    def _no_model_init_kwargs(cls, trl):
        if "model_init_kwargs" in trl:
            raise ValueError(
                "trl.model_init_kwargs would be ignored: rlft loads the model itself and hands TRL the loaded model; "
                "remove it and set model_kwargs: {dtype: bfloat16, attn_implementation: sdpa, ...} on the stage or the recipe"
            )
        return trl

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
    stop_metrics: ClassVar[dict[str, tuple[str, bool]]] = {"eval/loss": LOSS, "eval/accuracy": ("eval_mean_token_accuracy", True)}
    train_log_keys: ClassVar[tuple[str, ...]] = ("loss", "mean_token_accuracy", "num_tokens")
    required_columns: ClassVar[tuple[str, ...]] = ()


class GRPOStage(TrainStage):
    kind: Literal["grpo"]
    rewards: list[RewardRef] = Field(min_length=1)
    guards: GuardsSpec | None = Field(None, description="watch for a gamed reward: length drift, KL spikes, collapse, divergence")
    trl_config: ClassVar[str] = "GRPOConfig"
    stops_on_reward: ClassVar[bool] = True
    train_log_keys: ClassVar[tuple[str, ...]] = ("reward", "reward_std", "kl", "completions/mean_length")
    stay_close: ClassVar[str] = "raise stages.{s}.trl.beta (its KL coefficient; TRL's default is 0)"
    required_columns: ClassVar[tuple[str, ...]] = ("prompt",)


class RLOOStage(GRPOStage):
    kind: Literal["rloo"]
    trl_config: ClassVar[str] = "RLOOConfig"
    stay_close: ClassVar[str] = "raise stages.{s}.trl.beta (its KL coefficient)"


class PPOStage(GRPOStage):
    """rlft's own PPO (actor-critic, GAE); ``trl:`` holds ``rlft.ppo.PPOConfig`` keys (a TrainingArguments subclass)."""

    kind: Literal["ppo"]
    trl_config: ClassVar[str] = "rlft.ppo:PPOConfig"
    stay_close: ClassVar[str] = "raise stages.{s}.trl.kl_coef"
    train_log_keys: ClassVar[tuple[str, ...]] = (
        "reward",
        "reward_std",
        "kl",
        "entropy",
        "completions/mean_length",
        "ppo/explained_variance",
        "ppo/kl_coef",
    )

    @model_validator(mode="after")
    def _no_dropout(self):
        if self.dropout:
            raise ValueError(
                "dropout does not apply to ppo: rlft's PPO turns dropout off on purpose (its probability ratios need the same "
                "forward pass at rollout and update time); remove dropout:"
            )
        return self


class RoundsStage(TrainStage):
    """Self-improvement in rounds (``rlft.stages.self_improve``): each round the model samples its own tries on training
    prompts, the stage's rewards judge them, and the model learns from the judged tries; held-out reward after every round."""

    rewards: list[RewardRef] = Field(min_length=1)
    rounds: int = Field(3, ge=1)
    sampling: SamplingSpec = SamplingSpec()
    early_stopping: RoundStoppingSpec | None = Field(None, description="stop when a round no longer improves the held-out reward")
    stops_on_reward: ClassVar[bool] = True
    required_columns: ClassVar[tuple[str, ...]] = ("prompt",)
    one_adapter: ClassVar[bool] = False


class ExpertIterationStage(RoundsStage):
    """Rejection-sampling fine-tuning (expert iteration; RAFT, ReST-EM, STaR): fine-tune on the best of its own tries."""

    kind: Literal["expert_iteration"]
    keep: KeepSpec
    trl_config: ClassVar[str] = "SFTConfig"
    train_log_keys: ClassVar[tuple[str, ...]] = ("loss", "mean_token_accuracy")


class IterativeDPOStage(RoundsStage):
    """Iterative DPO: each round trains DPO on pairs of its own tries (best against worst), the round's start as reference."""

    kind: Literal["iterative_dpo"]
    pairs: PairsSpec = PairsSpec()
    trl_config: ClassVar[str] = "DPOConfig"
    train_log_keys: ClassVar[tuple[str, ...]] = ("loss", "rewards/accuracies", "rewards/margins")
    stay_close: ClassVar[str] = "raise stages.{s}.trl.beta (keeps each round closer to the model it started from)"


class OnlineDPOStage(TrainStage):
    """Online DPO (``trl.experimental.online_dpo``): two samples per prompt, the stage's rewards pick the chosen one."""

    kind: Literal["online_dpo"]
    rewards: list[RewardRef] = Field(min_length=1)
    trl_config: ClassVar[str] = "trl.experimental.online_dpo:OnlineDPOConfig"
    stops_on_reward: ClassVar[bool] = True
    train_log_keys: ClassVar[tuple[str, ...]] = ("loss", "objective/kl", "objective/rlhf_reward", "rewards/accuracies", "rewards/margins")
    stay_close: ClassVar[str] = "raise stages.{s}.trl.beta (its KL coefficient)"
    required_columns: ClassVar[tuple[str, ...]] = ("prompt",)


class PairStage(TrainStage):
    """A stage trained on preference pairs, with a held-out split it reports on."""

    train_log_keys: ClassVar[tuple[str, ...]] = ("loss", "rewards/accuracies", "rewards/margins")

    required_columns: ClassVar[tuple[str, ...]] = ("chosen", "rejected")


class RewardModelStage(PairStage):
    """Train a one-output sequence-classification head on preference pairs (Bradley-Terry)."""

    kind: Literal["reward_model"]
    trl_config: ClassVar[str] = "RewardConfig"
    stop_metrics: ClassVar[dict[str, tuple[str, bool]]] = {"eval/loss": LOSS, "eval/accuracy": ("eval_accuracy", True)}
    train_log_keys: ClassVar[tuple[str, ...]] = ("loss", "accuracy", "margin")
    makes_policy: ClassVar[bool] = False


class DPOStage(PairStage):
    """Direct preference optimisation (any TRL loss_type, or several with loss_weights)."""

    kind: Literal["dpo"]
    trl_config: ClassVar[str] = "DPOConfig"
    stop_metrics: ClassVar[dict[str, tuple[str, bool]]] = {"eval/loss": LOSS, "eval/implicit_accuracy": IMPLICIT_ACCURACY}
    stay_close: ClassVar[str] = "raise stages.{s}.trl.beta (keeps it closer to its reference)"


class ORPOStage(PairStage):
    """ORPO (odds-ratio preference optimisation, no reference model) — experimental: ``trl.experimental.orpo``."""

    kind: Literal["orpo"]
    trl_config: ClassVar[str] = "trl.experimental.orpo:ORPOConfig"
    stop_metrics: ClassVar[dict[str, tuple[str, bool]]] = {"eval/loss": LOSS, "eval/implicit_accuracy": IMPLICIT_ACCURACY}


class SimPOStage(PairStage):
    """SimPO (length-normalised, reference-free) — experimental: ``trl.experimental.cpo`` with ``loss_type: simpo``."""

    kind: Literal["simpo"]
    trl_config: ClassVar[str] = "trl.experimental.cpo:CPOConfig"
    stop_metrics: ClassVar[dict[str, tuple[str, bool]]] = {"eval/loss": LOSS, "eval/implicit_accuracy": IMPLICIT_ACCURACY}
    trl_defaults: ClassVar[dict[str, Any]] = {**TrainStage.trl_defaults, "loss_type": "simpo", "cpo_alpha": 0.0}


class KTOStage(PairStage):
    """KTO on unpaired rows (prompt, completion, label); paired data is unpaired automatically."""

    kind: Literal["kto"]
    trl_config: ClassVar[str] = "KTOConfig"
    stop_metrics: ClassVar[dict[str, tuple[str, bool]]] = {"eval/loss": LOSS}
    train_log_keys: ClassVar[tuple[str, ...]] = ("loss", "rewards/margins")
    stay_close: ClassVar[str] = "raise stages.{s}.trl.beta (keeps it closer to its reference)"
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
    stop_metrics: ClassVar[dict[str, tuple[str, bool]]] = {
        "eval/loss": LOSS,
        "eval/accuracy": ("eval_accuracy", True),
        "eval/macro_f1": ("eval_macro_f1", True),
    }
    train_log_keys: ClassVar[tuple[str, ...]] = ("loss",)
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
    batch_size: GenerationRows = Field(None, description=GENERATION_ROWS)
    kl: bool = Field(
        True,
        description="also eval/kl_to_ref: the summed KL(model ‖ baseline) along each of the model's completions (one forward pass "
        "of each model over them: on a CPU about as long as generating them); false skips it",
    )
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
    batch_size: GenerationRows = Field(None, description=GENERATION_ROWS)

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
    | ExpertIterationStage
    | IterativeDPOStage
    | OnlineDPOStage
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
    "expert_iteration": ExpertIterationStage,
    "iterative_dpo": IterativeDPOStage,
    "online_dpo": OnlineDPOStage,
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
    model_kwargs: ModelKwargs = Field(ModelKwargs(), description="how stages load their models (dtype, attn_implementation, ...)")
    system_prompt: str | None = Field(
        None,
        description="the default data.system of every stage (and its eval_data) whose data does not set system: itself; "
        "a stage opts out with data: {..., system: null}. Classifier stages (plain text) are left alone",
    )
    stages: list[Stage] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _system_prompt_to_stages(cls, value):
        # Filled in before validation, so each stage's data.system says what its rows get (and the fingerprint covers it).
        # Keyed by presence: a stage's explicit `system: null` opts out, and a resolved recipe read back keeps what it had.
        if not isinstance(value, dict) or value.get("system_prompt") is None or not isinstance(value.get("stages"), list):
            return value
        stages = []
        for stage in value["stages"]:
            if isinstance(stage, dict) and stage.get("kind") != "classifier":
                stage = dict(stage)
                for key in ("data", "eval_data"):
                    spec = {"source": stage[key]} if isinstance(stage.get(key), str) else stage.get(key)
                    if isinstance(spec, dict) and "system" not in spec:
                        stage[key] = {**spec, "system": value["system_prompt"]}
            stages.append(stage)
        return {**value, "stages": stages}

    def model_kwargs_for(self, stage) -> ModelKwargs:
        """How ``stage`` loads its models: its own ``model_kwargs`` keys over the recipe's."""
        return stage.model_kwargs.over(self.model_kwargs) if stage.model_kwargs is not None else self.model_kwargs

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
