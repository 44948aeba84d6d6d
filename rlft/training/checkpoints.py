"""Checkpoints inside a stage, so that a killed stage resumes where it was instead of starting over.

A training stage writes checkpoints into its temporary folder (``.STAGE.partial/trainer/checkpoint-N``)
every ``checkpoint.every_steps`` optimizer steps and/or ``checkpoint.every_minutes`` of training,
keeping the last ``checkpoint.keep``. HF Trainer stages use the Trainer's own checkpoints (weights,
optimizer, scheduler, RNG states, data position); rlft's PPO writes its own (``rlft.ppo.trainer``).
A checkpoint counts only once it is complete: the Trainer writes ``trainer_state.json`` last, PPO
``ppo_state.json``. When the same stage (same fingerprint) is started again, the pipeline keeps the
temporary folder and the stage resumes from its last complete checkpoint; the folder is renamed to
the stage's own only when the stage finishes, and the checkpoints are dropped then.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

# Written last: a checkpoint folder holding one is complete (a Trainer's, rlft's PPO's, a finished round's: rlft.training.rounds).
MARKERS = ("trainer_state.json", "ppo_state.json", "round_state.json")


def last_checkpoint(folder: str | Path) -> Path | None:
    """The complete ``checkpoint-N`` folder with the highest N under ``folder``, or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = []
    for path in folder.iterdir():
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if match and path.is_dir() and any((path / m).exists() for m in MARKERS):
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


class Every:
    """Whether to checkpoint after ``step``: every N steps and/or every M minutes since the last one."""

    def __init__(self, steps: int | None, minutes: float | None, clock=time.monotonic):
        self.steps, self.seconds, self.clock = steps, None if minutes is None else minutes * 60, clock
        self.last = clock()

    def __call__(self, step: int, max_steps: int) -> bool:
        if step >= max_steps:  # the stage saves its final model itself
            return False
        due = bool(self.steps and step % self.steps == 0) or (self.seconds is not None and self.clock() - self.last >= self.seconds)
        if due:
            self.last = self.clock()
        return due


def trainer_callback(policy: Every):
    """An HF ``TrainerCallback`` that asks the Trainer to checkpoint when ``policy`` says so."""
    from transformers import TrainerCallback

    class CheckpointEvery(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            # a stage that stops here (early stopping) saves its final model itself: no checkpoint to resume from
            if policy(state.global_step, state.max_steps) and not control.should_training_stop:
                control.should_save = True
            return control

    return CheckpointEvery()


def train_resumable(trainer, cfg):
    """``trainer.train()``, checkpointing as ``cfg.checkpoint`` says, resuming from the last complete checkpoint if any."""
    spec = cfg.checkpoint
    trainer.add_callback(trainer_callback(Every(spec.every_steps, spec.every_minutes)))
    trainer.args.save_total_limit = trainer.args.save_total_limit or spec.keep
    resume = last_checkpoint(trainer.args.output_dir)
    if resume is not None:
        print(f"[{cfg.name}] resuming from {resume.name} (optimizer, scheduler, RNG and data position restored)", flush=True)
        state = json.loads((resume / "trainer_state.json").read_text())
        replay_lost_steps([_as_logged(e) for e in state["log_history"] if "step" in e and not any(k.startswith("eval_") for k in e)])
    return trainer.train(resume_from_checkpoint=str(resume) if resume else None)


def _as_logged(entry: dict) -> dict:
    """A Trainer ``log_history`` entry as HF's W&B callback logs it (``train/<key>`` and ``train/global_step``)."""
    return {**{f"train/{k}": v for k, v in entry.items() if k != "step"}, "train/global_step": entry["step"]}


def replay_lost_steps(rows: list[dict], step_key: str = "train/global_step", *, log=None) -> int:
    """Log again the training steps up to a checkpoint that the interrupted attempt's W&B file does not hold.

    A killed process loses what wandb had not yet written to disk (offline, often everything since the
    last 32 KiB block). The steps up to the checkpoint are still in the checkpoint's own log history:
    those after the last step the earlier file(s) hold are logged again into the resumed run, so the
    stitched history (``rlft.wandb_files.merge_attempts``) has every step once. Online, the server already
    holds what was streamed, so nothing is replayed. Returns how many rows were logged.
    """
    import wandb

    from rlft.wandb_files import read_wandb_files

    run = wandb.run
    if run is None or run.settings.mode != "offline":
        return 0
    current = Path(run.dir).parent
    earlier = [p for p in current.parent.glob(f"*-{run.id}/run-{run.id}.wandb") if p.parent != current]
    done = [r.get(step_key) for r in read_wandb_files(earlier).history] if earlier else []
    last = max((s for s in done if isinstance(s, int | float)), default=0)
    lost = [r for r in rows if r[step_key] > last]
    for row in lost:
        (log or run.log)(row)
    if lost:
        print(f"  W&B: logged again steps {lost[0][step_key]}-{lost[-1][step_key]}, lost with the interrupted process", flush=True)
    return len(lost)
