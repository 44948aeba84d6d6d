"""Setup every stage shares: context, results, starting model, progress, saving, metrics."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rlft.errors import RlftError
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
        data = json.loads((stage_dir / "manifest.json").read_text())
        return cls(**{k: data["result"].get(k) for k in cls.__dataclass_fields__ if k in data["result"]})

    def to_dict(self) -> dict:
        return asdict(self)


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
    notes: dict[str, Any] = field(default_factory=dict)  # extra manifest entries (data fingerprint, ...)

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


def load_start_model(ctx: StageContext, stage):
    """Load the tokenizer and causal LM a stage starts from, with the stage's ``dropout:`` and ``freeze:`` (``rlft.selective``)."""
    from rlft.models import load_causal_lm, load_tokenizer
    from rlft.selective import load_start

    ref = ctx.model_ref(stage.init_from)
    ctx.notes["start_model"] = ref
    tok = load_tokenizer(ref, trust_remote_code=ctx.recipe.trust_remote_code)
    model = load_start(ctx, stage, ref, lambda **dropout: load_causal_lm(ref, trust_remote_code=ctx.recipe.trust_remote_code, **dropout))
    return model, tok


def load_split(cfg, ctx: StageContext, *, kind: str | None = None, required: tuple[str, ...] = ()):
    """Training rows and held-out rows of a training stage.

    Held-out rows: ``eval_data``, else the bundled source's ``test`` split, else a seeded
    ``eval_fraction`` of the rows. Records both in the manifest's ``data`` entry. With ``data.augment``,
    augmented copies of training rows are added (``rlft.augment``; held-out rows stay as they are).
    """
    from rlft.data import load_rows

    rows, fp, label = load_rows(cfg.data, split=cfg.data.split or cfg.default_split, kind=kind, required=required, base_dir=ctx.recipe_dir)
    if cfg.eval_data is not None or cfg.data.source.startswith("bundled:"):
        spec = cfg.eval_data or cfg.data.model_copy(update={"limit": None, "split": "test"})
        test, _, test_label = load_rows(spec, split=spec.split or "test", kind=kind, required=required, base_dir=ctx.recipe_dir)
        train = rows
    else:
        if len(rows) < 2:
            raise RlftError(
                f"data {label} has {len(rows)} row; a held-out share needs at least 2",
                where=f"stages.{cfg.name}.data",
                fix="add rows, or name held-out rows with `eval_data:`",
            )
        parts = rows.train_test_split(test_size=cfg.eval_fraction, seed=ctx.seed_for(cfg))
        train, test, test_label = parts["train"], parts["test"], f"{label} (held-out {cfg.eval_fraction:.0%})"
    if cfg.data.augment is not None:  # training rows only, after the held-out ones are set apart (rlft.augment)
        from rlft.augment import augment_split

        train = augment_split(train, test, cfg, ctx)
    if cfg.eval_limit is not None and len(test) > cfg.eval_limit:
        test = test.select(range(cfg.eval_limit))
    ctx.notes["data"] = {"train": label, "rows": len(train), "held_out": test_label, "held_out_rows": len(test), "fingerprint": fp}
    return train, test


def load_pairs(cfg, ctx: StageContext):
    """Training and held-out preference pairs of a pair stage (reward_model, dpo, kto, orpo, simpo)."""
    return load_split(cfg, ctx, kind="preference")


def begin_scorecard(cfg, ctx: StageContext, held_out, model, tok, rewards: list | None = None) -> tuple[Any, dict]:
    """Build the stage's held-out scorecard and score the starting ``model`` (``baseline/...``).

    ``rewards`` are the stage's resolved rewards (``scorecard.rewards`` wins when set). Returns
    ``(card, metrics)``; the card is None when the held-out rows have no prompts or ``scorecard.prompts`` is 0.
    """
    from rlft.scorecard import Scorecard, preference_accuracy, prompts_of

    spec = cfg.scorecard
    metrics: dict[str, float] = {}
    if not is_main_process():  # generation is not split across ranks: the main process scores
        return None, metrics
    if spec.baseline and {"chosen", "rejected"} <= set(held_out.column_names):
        metrics["baseline/accuracy"] = preference_accuracy(model, tok, held_out)
    found = prompts_of(held_out) if spec.prompts else None
    if found is None:
        return None, metrics
    prompts, columns = found
    n = min(spec.prompts, len(prompts))
    if spec.rewards is not None:
        rewards = ctx.resolve_rewards(spec.rewards)
    card = Scorecard(
        prompts=prompts[:n],
        columns={k: v[:n] for k, v in columns.items()},
        rewards=_applicable(rewards or [], columns, cfg),
        max_new_tokens=spec.max_new_tokens,
        batch_size=spec.batch_size,
    )
    if spec.baseline:
        print(f"[{cfg.name}] scorecard: {n} held-out prompts, starting model ...", flush=True)
        metrics.update(card.score(model, tok, "baseline"))
    return card, metrics


def _applicable(rewards: list, columns: dict, cfg) -> list:
    from rlft.reward_refs import require_columns

    fix = "map one with `eval_data.columns`, or set scorecard.rewards"
    require_columns(rewards, columns, rows="the held-out rows", where=f"stages.{cfg.name}.scorecard.rewards", fix=fix)
    return rewards


def end_scorecard(card, cfg, ctx: StageContext, model_path: str, held_out=None) -> dict:
    """Score the saved model (``eval/...``) against the model it started from; write ``samples.jsonl``."""
    from rlft.models import load_causal_lm, load_tokenizer
    from rlft.scorecard import preference_accuracy

    metrics: dict[str, float] = {}
    if not is_main_process():
        return metrics
    if card is None and (held_out is None or not {"chosen", "rejected"} <= set(held_out.column_names)):
        return metrics
    tok = load_tokenizer(model_path)
    model = load_causal_lm(model_path, trust_remote_code=ctx.recipe.trust_remote_code)
    if held_out is not None and {"chosen", "rejected"} <= set(held_out.column_names):
        metrics["eval/accuracy"] = preference_accuracy(model, tok, held_out)
    if card is not None:
        print(f"[{cfg.name}] scorecard: {len(card.prompts)} held-out prompts, trained model ...", flush=True)
        ref = load_causal_lm(ctx.model_ref(cfg.init_from), trust_remote_code=ctx.recipe.trust_remote_code)
        metrics.update(card.score(model, tok, "eval", ref=ref))
        card.write_samples(ctx.out_dir / "samples.jsonl", ctx.tracker)
    return metrics


def check_row_lengths(cfg, ctx: StageContext, rows, tok, args) -> int:
    """Rows longer than the trainer's ``max_length``: refused (``data.too_long: error``) or counted and reported (TRL cuts them)."""
    from rlft.data import check_lengths

    max_length = getattr(args, "max_length", None)
    if not max_length:
        return 0
    where = f"stages.{cfg.name}.data"
    n = check_lengths(rows, tok, max_length, policy=cfg.data.too_long, label=cfg.data.source, where=where)
    ctx.notes["rows_over_max_length"] = n
    if n:
        print(f"[{cfg.name}] {n} of {len(rows)} training rows are longer than max_length {max_length}: TRL truncates them", flush=True)
    return n


def train_between_evaluations(trainer, cfg, before: bool = True, ctx: StageContext | None = None) -> tuple[dict, dict, dict]:
    """Evaluate on the held-out set, train (resuming from a checkpoint if one is there), evaluate again.

    Returns (before, after, base metrics). The base metrics hold parameter counts, runtime and step
    count, as every training stage reports them. ``before=False`` skips the first evaluation (an
    empty dict stands for it). With the stage's ``early_stopping:`` (stage kinds that allow it pass
    ``ctx``), training may stop early and end with its best weights, which the second evaluation sees.
    """
    from rlft.checkpoints import train_resumable
    from rlft.early_stopping import watch_loss

    use_rlft_progress(trainer, cfg.name)
    metrics = count_parameters(trainer.model)
    stopping = watch_loss(trainer, cfg, ctx) if ctx is not None else None
    before = trainer.evaluate() if before else {}
    output = train_resumable(trainer, cfg)
    after = trainer.evaluate()
    metrics.update({"train/runtime_s": output.metrics.get("train_runtime", 0.0), "train/steps": trainer.state.global_step})
    metrics.update(stopping.metrics if stopping else {})
    return before, after, metrics


def lora_config(stage, task_type: str = "CAUSAL_LM", model=None):
    """A PEFT LoraConfig from the stage's ``peft.lora`` (None for full fine-tuning).

    ``model``: the model the adapter wraps; the blocks its ``freeze:`` fixes then get no adapter
    (``exclude_modules``). Without it (PPO's critic) every block gets one.
    """
    if stage.peft is None or stage.peft.lora is None:
        return None
    from peft import LoraConfig

    from rlft.selective import lora_exclusions

    lo = stage.peft.lora
    exclude = lora_exclusions(stage, model) if model is not None else None
    return LoraConfig(
        r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, target_modules=lo.target_modules, exclude_modules=exclude, task_type=task_type
    )


def count_parameters(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"params/total": total, "params/trainable": trainable}


def is_main_process() -> bool:
    """True in a single-process stage, and in the rank-0 process of a multi-process launch."""
    import os

    return os.environ.get("RANK", "0") == "0"


def save_model(model, tokenizer, out_dir: Path, trainer=None) -> str:
    """Save the trained model as plain safetensors (LoRA merged into the base) under ``out_dir/model``.

    Several processes: with sharded weights (FSDP, DeepSpeed) every rank takes part in the Trainer's
    own gathering save; otherwise (DDP: the same weights on every rank) only rank 0 writes. The config
    keeps the start model's dropout values (a stage's ``dropout:`` is its own).
    """
    from rlft.selective import restore_dropout

    restore_dropout(model)
    target = out_dir / "model"
    if trainer is not None and (getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False)):
        trainer.save_model(str(target))
        if is_main_process():
            tokenizer.save_pretrained(target)
        return str(target)
    if not is_main_process():
        return str(target)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return str(target)


def final_train_metrics(log_history: list[dict], keys: list[str]) -> dict[str, float]:
    """The last logged value of each key (and ``train/<key>``), skipping NaNs."""
    out = {}
    losses = [e["loss"] for e in log_history if isinstance(e.get("loss"), int | float)]
    if losses and "loss" in keys:
        out["train/first_loss"] = float(losses[0])
    for key in keys:
        for entry in reversed(log_history):
            v = entry.get(key)
            if isinstance(v, int | float) and not math.isnan(v):
                out[f"train/{key}"] = float(v)
                break
    return out


def use_rlft_progress(trainer, stage_name: str) -> None:
    """Replace the Trainer's own printing with one rlft progress line per logged step; record the rows trained on."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(progress_callback(stage_name))
    SHARD.watch(trainer)


class ShardRecorder:
    """Digests of the rows this process trained on, so a multi-process launch can show each rank saw its own shard.

    Wraps the Trainer's ``training_step``; a row is identified by its token ids without padding.
    """

    KEYS = (("input_ids", "attention_mask"), ("prompt_ids", "prompt_mask"), ("prompt_input_ids", "prompt_attention_mask"))

    def __init__(self):
        self.rows: set[str] = set()
        self.micro_batches = 0

    def watch(self, trainer) -> None:
        step = trainer.training_step

        def recorded(model, inputs, *args, **kwargs):
            self.record(inputs)
            return step(model, inputs, *args, **kwargs)

        trainer.training_step = recorded

    def record(self, inputs) -> None:
        import hashlib

        self.micro_batches += 1
        if not isinstance(inputs, dict):
            return
        for ids_key, mask_key in self.KEYS:
            ids = inputs.get(ids_key)
            if ids is None or not hasattr(ids, "dim") or ids.dim() != 2:
                continue
            mask = inputs.get(mask_key)
            for i in range(ids.shape[0]):
                row = ids[i][mask[i].bool()] if mask is not None and mask.shape == ids.shape else ids[i]
                self.rows.add(hashlib.sha1(row.cpu().numpy().tobytes()).hexdigest()[:16])
            return

    def report(self, rank: int) -> dict:
        return {"rank": rank, "micro_batches": self.micro_batches, "distinct_rows": len(self.rows), "rows": sorted(self.rows)}


SHARD = ShardRecorder()


def progress_callback(stage_name: str):
    """A TrainerCallback printing one line per step: step/total, elapsed, ETA, headline metrics."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def __init__(self):
            self.t0 = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.t0 = time.time()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or self.t0 is None or "train_runtime" in logs:
                return
            if any(k.startswith("eval_") for k in logs):
                shown = [
                    f"{k.removeprefix('eval_')} {v:.4g}" for k, v in logs.items() if k in ("eval_loss", "eval_accuracy", "eval_margin")
                ]
                print(f"[{stage_name}] held-out eval · " + " · ".join(shown), flush=True)
                return
            print(step_line(stage_name, state.global_step, max(state.max_steps, 1), time.time() - self.t0, logs), flush=True)

    return Progress()


def step_line(stage_name: str, done: int, total: int, elapsed: float, logs: dict) -> str:
    """``[rl] step 3/20 · 00:41 elapsed · ETA 04:10 · reward 0.31 · kl 0.02 · math_accuracy 0.5`` (every trainer's progress)."""
    eta = elapsed / done * (total - done) if done else float("nan")
    shown = [f"{key} {logs[key]:.4g}" for key in ("loss", "reward", "mean_token_accuracy", "kl") if key in logs]
    for key, v in logs.items():
        if key.startswith("rewards/") and key.endswith("/mean"):  # ensemble members by their own name
            shown.append(f"{key.removeprefix('rewards/').removesuffix('/mean').rsplit('/', 1)[-1]} {v:.3g}")
    return f"[{stage_name}] step {done}/{total} · {_fmt(elapsed)} elapsed · ETA {_fmt(eta)} · " + " · ".join(shown)


def _fmt(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    m, s = divmod(int(seconds), 60)
    return f"{m:02d}:{s:02d}"


def quiet_libraries() -> None:
    """Silence per-tensor and per-map progress bars; rlft prints one progress line per step."""
    import warnings

    import datasets
    import transformers

    # transformers 5 renamed gradient -> activation checkpointing; TRL still calls the old name.
    warnings.filterwarnings("ignore", message=".*is deprecated and will be removed in v6.*", category=FutureWarning)
    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
