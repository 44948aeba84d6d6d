"""The layout of a run folder, named once.

::

    runs/<run id>/recipe.json            the resolved recipe (after overrides) and where it came from
    runs/<run id>/summary.json           every stage: status, metrics, output folder, W&B run id, error
    runs/<run id>/.lock                  held by the pipeline running this folder (an OS file lock)
    runs/<run id>/wandb/                 the W&B runs (one per stage)
    runs/<run id>/<stage>/               a finished stage:
        manifest.json                    its result, config, versions, data and the notes it recorded
        .fingerprint.json                what it was made from (rlft.pipeline.fingerprint)
        model/                           the trained model (from_pretrained folder), README.md its model card
        adapter/                         a LoRA stage's adapter (PEFT folder), README.md its model card
        samples.jsonl                    its held-out completions (eval stages: train_samples.jsonl, probe_samples.jsonl too)
        history.jsonl                    what it logged, step by step (rlft.tracking.History), also with tracking disabled
        tensorboard/                     TensorBoard event files (tracking.backends: [tensorboard])
        value_model/                     PPO: the trained critic
        rounds/round-<N>/                expert_iteration, iterative_dpo: a round's samples.jsonl (every try),
                                         kept.jsonl or pairs.jsonl (what it trained on), round.json (its figures)
    runs/<run id>/.<stage>.partial/      a stage while it runs (renamed to <stage>/ when it succeeds):
        trainer/                         the trainer's scratch folder and in-stage checkpoints (removed at the end)
        .wandb_id                        its W&B run id, so that a resumed attempt continues that run
        .ranks/                          what each process of a multi-process launch trained on
    runs/<run id>/.<stage>.error.json    why the last attempt of a stage failed
    runs/trackio/                        the local trackio store of every run in the folder (tracking.backends: [trackio])

``RunLayout(run_dir)`` gives the run-level paths; ``StageLayout`` (``layout.stage(name)`` for a finished
stage, ``layout.partial(name)`` for one that runs) the paths inside a stage folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StageLayout:
    """The files of one stage folder (finished, or the ``.STAGE.partial`` folder it runs in)."""

    root: Path

    MANIFEST = "manifest.json"
    FINGERPRINT = ".fingerprint.json"
    MODEL = "model"
    ADAPTER = "adapter"
    CARD = "README.md"  # a model card, in model/ and adapter/
    TRAINER = "trainer"
    SAMPLES = "samples.jsonl"
    TRAIN_SAMPLES = "train_samples.jsonl"
    PROBE_SAMPLES = "probe_samples.jsonl"
    VALUE_MODEL = "value_model"
    WANDB_ID = ".wandb_id"
    RANKS = ".ranks"
    HISTORY = "history.jsonl"
    TENSORBOARD = "tensorboard"
    ROUNDS = "rounds"

    @property
    def manifest(self) -> Path:
        return self.root / self.MANIFEST

    @property
    def fingerprint(self) -> Path:
        return self.root / self.FINGERPRINT

    @property
    def model(self) -> Path:
        return self.root / self.MODEL

    @property
    def adapter(self) -> Path:
        return self.root / self.ADAPTER

    @property
    def saved_model(self) -> Path | None:
        """What a later stage or tool loads: ``model/`` (full weights), else ``adapter/`` (adapter only), else None."""
        if (self.model / "config.json").exists():
            return self.model
        if (self.adapter / "adapter_config.json").exists():
            return self.adapter
        return None

    @property
    def trainer(self) -> Path:
        return self.root / self.TRAINER

    @property
    def samples(self) -> Path:
        return self.root / self.SAMPLES

    @property
    def train_samples(self) -> Path:
        return self.root / self.TRAIN_SAMPLES

    @property
    def probe_samples(self) -> Path:
        return self.root / self.PROBE_SAMPLES

    @property
    def value_model(self) -> Path:
        return self.root / self.VALUE_MODEL

    @property
    def wandb_id(self) -> Path:
        return self.root / self.WANDB_ID

    @property
    def ranks(self) -> Path:
        return self.root / self.RANKS

    @property
    def history(self) -> Path:
        return self.root / self.HISTORY

    @property
    def tensorboard(self) -> Path:
        return self.root / self.TENSORBOARD

    def round(self, n: int) -> RoundLayout:
        """The folder of round ``n`` (1-based) of a stage that learns in rounds."""
        return RoundLayout(self.root / self.ROUNDS / f"round-{n}")


@dataclass(frozen=True)
class RoundLayout:
    """The files of one round of ``expert_iteration`` / ``iterative_dpo`` (``rlft.stages.self_improve``)."""

    root: Path

    SAMPLES = "samples.jsonl"
    KEPT = "kept.jsonl"
    PAIRS = "pairs.jsonl"
    INFO = "round.json"

    @property
    def samples(self) -> Path:
        return self.root / self.SAMPLES

    @property
    def kept(self) -> Path:
        return self.root / self.KEPT

    @property
    def pairs(self) -> Path:
        return self.root / self.PAIRS

    @property
    def info(self) -> Path:
        return self.root / self.INFO

    @property
    def model(self) -> Path:
        return self.root / StageLayout.MODEL


@dataclass(frozen=True)
class RunLayout:
    """The paths of one pipeline run folder, ``runs/<run id>``."""

    root: Path

    RECIPE = "recipe.json"
    SUMMARY = "summary.json"
    LOCK = ".lock"
    WANDB = "wandb"

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def recipe(self) -> Path:
        return self.root / self.RECIPE

    @property
    def summary(self) -> Path:
        return self.root / self.SUMMARY

    @property
    def lock(self) -> Path:
        return self.root / self.LOCK

    @property
    def wandb(self) -> Path:
        return self.root / self.WANDB

    def stage(self, name: str) -> StageLayout:
        """A finished stage's folder, ``<run>/<stage>``."""
        return StageLayout(self.root / name)

    def partial(self, name: str) -> StageLayout:
        """The folder a stage runs in, ``<run>/.<stage>.partial``, renamed to ``<run>/<stage>`` when it succeeds."""
        return StageLayout(self.root / f".{name}.partial")

    def error(self, name: str) -> Path:
        """Why the last attempt of a stage failed, ``<run>/.<stage>.error.json``."""
        return self.root / f".{name}.error.json"
