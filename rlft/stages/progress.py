"""What a stage prints: one progress line per logged step, and quiet libraries."""

from __future__ import annotations

import time

from rlft.distributed import SHARD
from rlft.progress import clock


def use_rlft_progress(trainer, stage_name: str, tracker=None) -> None:
    """Replace the Trainer's own printing with one rlft progress line per logged step; record the rows trained on.

    With the stage's ``tracker`` (``ctx.tracker``), each Trainer log also goes to its history.jsonl and other backends
    (``rlft.tracking.trainer_callback``); a trainer whose logs are not the stage's own steps (a round's) passes none.
    """
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(progress_callback(stage_name))
    if tracker is not None:
        from rlft.tracking import trainer_callback

        trainer.add_callback(trainer_callback(tracker))
    SHARD.watch(trainer)


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
    return f"[{stage_name}] step {done}/{total} · {clock(elapsed)} elapsed · ETA {clock(eta)} · " + " · ".join(shown)


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
