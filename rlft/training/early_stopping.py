"""Early stopping: evaluate a training stage every N steps, stop when it stops improving, end with its best weights.

A training stage's ``early_stopping:`` key (``rlft.recipe.EarlyStoppingSpec``)::

    early_stopping: {metric: eval/loss, every_steps: 10, patience: 3, min_delta: 0.0, restore_best: true}

=============================  ====================================================================  ===========================
metric                         evaluated as                                                          stage kinds
=============================  ====================================================================  ===========================
``eval/loss`` (default)        the Trainer's held-out loss (lower is better)                         sft, reward_model, dpo,
                                                                                                     orpo, simpo, kto
``eval/accuracy``              held-out next-token accuracy (sft) or pair accuracy (reward_model)    sft, reward_model
``eval/implicit_accuracy``     held-out pairs whose implicit reward ranks chosen first               dpo, orpo, simpo
``eval/reward`` (default)      greedy completions to the first ``prompts`` held-out prompts, scored  grpo, rloo, ppo
                               by the stage's rewards: the weighted sum of their means (by default
                               the prompts and lengths of the end-of-stage scorecard)
``eval/reward/<name>``         the same, one reward's mean                                           grpo, rloo, ppo
=============================  ====================================================================  ===========================

The stage evaluates every ``every_steps`` optimizer steps and at its last step. An evaluation
improves when it beats the best so far by more than ``min_delta``; after ``patience`` evaluations in
a row without improvement the stage stops. With ``restore_best`` it then ends with the weights of
the best evaluation, so what it saves, and what its end-of-stage scorecard scores, is the best
model. The starting model (step 0) is not a candidate: a stage ends with weights it trained. Each
evaluation is logged (``early_stopping/metric``, ``early_stopping/best``,
``early_stopping/evals_without_improvement``); the stage's metrics and manifest get
``early_stopping/stopped_early``, ``/stop_step``, ``/best_step``, ``/best`` and ``/restored_best``
(true when the weights were rolled back to an earlier step).

Why rlft's own callback and not transformers' ``EarlyStoppingCallback`` with ``load_best_model_at_end``:
that pair needs ``eval_strategy`` and ``save_strategy`` on the same steps, so it writes a full checkpoint
(weights and optimizer state) at every evaluation and rotates them against rlft's own in-stage
checkpoints (``checkpoint.keep``); and it has no answer for held-out reward, which TRL never
evaluates. rlft keeps a copy of the best *trainable* weights (with LoRA: the adapter only) on the
CPU instead, one mechanism for every stage kind. That copy costs host memory — the trainable
parameters once (with full fine-tuning in fp32, 4 bytes per parameter) — and does not work with
sharded parameters (FSDP, DeepSpeed), which are refused.

Checkpoints and resume (``rlft.training.checkpoints``): every in-stage checkpoint also holds
``early_stopping.json`` (the evaluations so far, the best, the count without improvement) and
``early_stopping_best.safetensors`` (the best weights), written before the file that marks the
checkpoint complete, so a resumed stage continues with the same best and the same patience left. The
stage writes no checkpoint at the step where it stops: it saves its final model there anyway.

Randomness: an evaluation must not change the training run. Reward evaluations generate greedily
(no sampling) under ``torch.inference_mode`` with every module in eval mode (no dropout), inside a
fork of the torch RNG (CPU and CUDA) and with Python's and NumPy's RNG states put back, so that not
even a reward function drawing random numbers shifts training; each module's train/eval flag and the
tokenizer's padding side are restored afterwards. The Trainer's own held-out evaluations draw no
random numbers (sequential sampler, eval mode). A stage with early stopping therefore trains exactly
as it would without, up to the step where it stops (tests/test_early_stopping.py compares the weights
bit for bit on the CPU); what stays out of reach is GPU kernels that are non-deterministic anyway, and
wall-clock time, which shifts ``checkpoint.every_minutes`` checkpoints (not the weights). In a
multi-process (DDP) launch every process runs the same evaluation, so all stop at the same step.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlft.errors import RlftError

STATE_FILE, WEIGHTS_FILE = "early_stopping.json", "early_stopping_best.safetensors"


class EarlyStopping:
    """The bookkeeping every stage kind shares: the evaluations, the best one and its weights, when to stop, the result.

    ``modules``: (prefix, module) pairs whose trainable parameters are the weights kept (the policy; PPO's
    critic too). ``log(values, step)``: where each evaluation goes (W&B). ``higher``: higher is better.
    """

    def __init__(self, cfg, ctx, metric: str, higher: bool, modules: list[tuple[str, Any]], log: Callable[[dict, int], None]):
        self.spec, self.stage, self.notes = cfg.early_stopping, cfg.name, ctx.notes
        self.metric, self.higher, self.modules, self.log = metric, higher, modules, log
        self.history: list[list[float]] = []  # [step, value] per evaluation
        self.best_step: int | None = None
        self.best: float | None = None
        self.best_weights: dict | None = None
        self.bad = 0  # evaluations in a row without improvement
        self.metrics: dict[str, Any] = {}

    def due(self, step: int, max_steps: int) -> bool:
        return step % self.spec.every_steps == 0 or step >= max_steps

    def update(self, step: int, value: float) -> bool:
        """Record the evaluation at ``step``; keep the weights when it is the best so far. True: stop training now."""
        d = self.spec.min_delta
        improved = math.isfinite(value) and (self.best is None or (value > self.best + d if self.higher else value < self.best - d))
        self.history.append([step, value])
        if improved:
            self.best_step, self.best, self.bad = step, value, 0
            self.best_weights = {k: p.detach().to("cpu", copy=True) for k, p in self._trainable().items()}
        else:
            self.bad += 1
        stop = self.bad >= self.spec.patience
        best = float("nan") if self.best is None else self.best
        self.log({"early_stopping/metric": value, "early_stopping/best": best, "early_stopping/evals_without_improvement": self.bad}, step)
        print(
            f"[{self.stage}] early stopping · {self.metric} {value:.4g} at step {step} · best {best:.4g} at step {self.best_step} · "
            f"{self.bad}/{self.spec.patience} without improvement" + (" · stopping" if stop else ""),
            flush=True,
        )
        return stop

    def finish(self, step: int, max_steps: int) -> dict[str, Any]:
        """At the end of training (``step``): restore the best weights (``restore_best``); record and return the result."""
        import torch

        restored = bool(self.spec.restore_best and self.best_weights is not None and self.best_step != step)
        if restored:
            with torch.no_grad():
                for name, p in self._trainable().items():
                    p.copy_(self.best_weights[name].to(p.device, p.dtype))
            print(
                f"[{self.stage}] early stopping: restored the weights of step {self.best_step} ({self.metric} {self.best:.4g})", flush=True
            )
        self.metrics = {
            "early_stopping/stopped_early": step < max_steps,
            "early_stopping/stop_step": step,
            "early_stopping/best_step": self.best_step,
            "early_stopping/best": self.best,
            "early_stopping/restored_best": restored,
        }
        self.notes.early_stopping = {
            "metric": self.metric,
            **{k.removeprefix("early_stopping/"): v for k, v in self.metrics.items()},
            "evaluations": self.history,
        }
        return self.metrics

    def _trainable(self) -> dict:
        return {f"{prefix}.{name}": p for prefix, module in self.modules for name, p in module.named_parameters() if p.requires_grad}

    def save_to(self, folder: Path) -> None:
        """Write the state and the best weights into a checkpoint folder (before the file that marks it complete)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        if self.best_weights is not None:
            save_file({k: v.contiguous() for k, v in self.best_weights.items()}, folder / WEIGHTS_FILE)
        state = {"history": self.history, "best_step": self.best_step, "best": self.best, "bad": self.bad}
        (folder / STATE_FILE).write_text(json.dumps(state))

    def load_from(self, folder: Path) -> None:
        """Continue from a checkpoint's state and best weights (a resumed stage)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        state = json.loads((folder / STATE_FILE).read_text())
        self.history, self.best_step, self.best, self.bad = state["history"], state["best_step"], state["best"], state["bad"]
        self.best_weights = load_file(folder / WEIGHTS_FILE) if self.best_step is not None else None

    def read(self, results: dict, key: str) -> float:
        """The stage's metric from a Trainer evaluation's ``results``."""
        if key not in results:
            raise RlftError(
                f"the held-out evaluation reported no {key} (it reported {sorted(results)})",
                where=f"stages.{self.stage}.early_stopping.metric",
                fix="choose a metric this stage's trainer reports",
            )
        return float(results[key])


def _stopper(cfg, ctx, modules, log) -> EarlyStopping:
    metric = cfg.early_stopping.metric or cfg.early_stopping_metrics()[0]
    higher = cfg.stops_on_reward or cfg.stop_metrics[metric][1]  # the stage kind says which way is better
    return EarlyStopping(cfg, ctx, metric, higher, modules, log)


def _unsharded(trainer, cfg) -> None:
    if getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False):
        raise RlftError(
            "early_stopping keeps the best weights in this process's memory, which sharded training (FSDP, DeepSpeed) does not allow",
            where=f"stages.{cfg.name}.early_stopping",
            fix="train this stage data-parallel (recipes/accelerate/ddp.yaml), or without early_stopping",
        )


def _trainer_log(ctx):
    """Log as transformers' W&B callback does: against ``train/global_step``."""
    return lambda values, step: ctx.tracker.log({**values, "train/global_step": step})


def watch_loss(trainer, cfg, ctx) -> EarlyStopping | None:
    """Early stopping on the Trainer's own held-out evaluation (sft, reward_model, dpo, orpo, simpo, kto); None without it.

    The callback asks the Trainer to evaluate (``control.should_evaluate``) when due and reads the result.
    """
    if cfg.early_stopping is None:
        return None
    _unsharded(trainer, cfg)
    stopper = _stopper(cfg, ctx, [("model", trainer.model)], _trainer_log(ctx))
    trainer.add_callback(_trainer_callback(stopper, key=cfg.stop_metrics[stopper.metric][0]))
    return stopper


def watch_rewards(trainer, cfg, ctx, held_out, tok, rewards: list) -> EarlyStopping | None:
    """Early stopping on held-out reward for TRL's GRPO and RLOO trainers; None without it."""
    if cfg.early_stopping is None:
        return None
    _unsharded(trainer, cfg)
    stopper = _stopper(cfg, ctx, [("model", trainer.model)], _trainer_log(ctx))
    evaluate = reward_evaluator(cfg, held_out, tok, rewards, stopper.metric)
    trainer.add_callback(_trainer_callback(stopper, evaluate=lambda: evaluate(trainer.model)))
    return stopper


def watch_ppo(trainer, cfg, ctx, held_out, tok, rewards: list, resume: Path | None) -> EarlyStopping | None:
    """Early stopping on held-out reward for rlft's PPO: a step callback; the best weights are the policy's and the critic's.

    ``resume``: the checkpoint the stage resumes from, whose early-stopping state is loaded. Pass
    ``stopper.save_to`` as ``PPOTrainer.train(save_extra=...)`` and call ``stopper.finish`` after training.
    """
    if cfg.early_stopping is None:
        return None
    stopper = _stopper(cfg, ctx, [("policy", trainer.model), ("critic", trainer.critic)], lambda v, step: ctx.tracker.log(v, step=step))
    if resume is not None:
        stopper.load_from(resume)
    evaluate = reward_evaluator(cfg, held_out, tok, rewards, stopper.metric)

    def on_step(step: int, max_steps: int, logs: dict) -> bool:
        return stopper.due(step, max_steps) and stopper.update(step, evaluate(trainer.model))

    trainer.callbacks.append(on_step)
    return stopper


def reward_evaluator(cfg, held_out, tok, rewards: list, metric: str) -> Callable[[Any], float]:
    """``evaluate(model)``: the held-out reward of ``model``'s greedy completions, as the scorecard computes it.

    Completions to the first ``early_stopping.prompts`` (default ``scorecard.prompts``) held-out prompts,
    ``scorecard.max_new_tokens`` long: by default exactly what the end-of-stage scorecard scores.
    ``eval/reward`` is the weighted sum of the rewards' means, ``eval/reward/<name>`` one mean.
    """
    from rlft.evaluation.scorecard import Scorecard

    where = f"stages.{cfg.name}.early_stopping"
    card = Scorecard.from_rows(
        held_out,
        rewards,
        first=cfg.early_stopping.prompts or cfg.scorecard.prompts,
        max_new_tokens=cfg.scorecard.max_new_tokens,
        batch_size=cfg.scorecard.batch_size,
        check=("the held-out rows", where, "map one with `eval_data.columns`"),
    )
    if card is None:
        raise RlftError(
            f"the held-out rows have no prompt or messages column (they have {held_out.column_names})",
            where=where,
            fix="name held-out rows with prompts in `eval_data:`",
        )

    def evaluate(model) -> float:
        with untouched(model, tok):
            scores = card.score(model, tok, "early_stopping", device=next(model.parameters()).device)
        if metric == "eval/reward":
            return sum(r.weight * scores[f"early_stopping/reward/{r.reward.__name__}"] for r in rewards)
        return scores["early_stopping/reward/" + metric.removeprefix("eval/reward/")]

    return evaluate


@contextlib.contextmanager
def untouched(model, tok):
    """Run an evaluation inside training without changing it: every RNG, each module's train/eval flag, the tokenizer's padding side."""
    import random

    import numpy as np
    import torch

    modes = [(m, m.training) for m in model.modules()]
    side, py_state, np_state = tok.padding_side, random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        for m, training in modes:
            m.train(training)
        tok.padding_side = side
        random.setstate(py_state)
        np.random.set_state(np_state)


def _trainer_callback(stopper: EarlyStopping, key: str | None = None, evaluate: Callable[[], float] | None = None):
    """The HF ``TrainerCallback``: evaluates when due (``evaluate``) or asks the Trainer to (``key``: the result to read)."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import ExportableState

    class RlftEarlyStopping(TrainerCallback, ExportableState):
        def __init__(self):
            self.trainer_state = None
            self.folder: Path | None = None  # the Trainer's output folder (checkpoint-N live there)
            self.pending: int | None = None  # the step whose Trainer evaluation is awaited

        def on_train_begin(self, args, state, control, **kwargs):
            self.trainer_state, self.folder = state, Path(args.output_dir)
            if state.global_step > 0:  # resumed from checkpoint-<global_step> (rlft.training.checkpoints.train_resumable)
                stopper.load_from(self.folder / f"checkpoint-{state.global_step}")

        def on_step_end(self, args, state, control, **kwargs):
            if not stopper.due(state.global_step, state.max_steps):
                return
            if evaluate is None:
                self.pending = state.global_step
                control.should_evaluate = True
            elif stopper.update(state.global_step, evaluate()):
                control.should_training_stop = True  # callbacks after this one (rlft's checkpoints) see it: no checkpoint now

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if self.pending != state.global_step:  # the stage's own evaluations before and after training
                return
            self.pending = None
            if stopper.update(state.global_step, stopper.read(metrics or {}, key)):
                control.should_training_stop = True
                control.should_save = False  # the stage saves its final model now; no checkpoint to resume from

        def on_train_end(self, args, state, control, **kwargs):
            stopper.finish(state.global_step, state.max_steps)

        def state(self) -> dict:
            # The Trainer calls this while it writes checkpoint-N: after the weights, optimizer and RNG states and before
            # trainer_state.json, whose presence marks the checkpoint complete (rlft.training.checkpoints). The moment to add the
            # early-stopping state, so that a complete checkpoint always holds it. (Also called once before training.)
            if self.trainer_state is not None:
                folder = self.folder / f"checkpoint-{self.trainer_state.global_step}"
                if folder.is_dir():
                    stopper.save_to(folder)
            return {"args": {}, "attributes": {}}

    return RlftEarlyStopping()
