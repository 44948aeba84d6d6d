"""The one module that talks to Weights & Biases.

One W&B run per stage: ``group`` = the pipeline run id, ``job_type`` = the stage kind,
``name`` = ``<run id>.<stage>``, config = the resolved recipe and stage. Runs are written under the
pipeline's folder (``runs/<id>/wandb/``). Mode: ``tracking.mode`` if set; else online only when
``WANDB_MODE=online`` and a key is present; else offline (no key, no network needed).
``disabled`` gives a no-op object with the same interface.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class NullRun:
    """Stands in for a W&B run when tracking is disabled."""

    id = None
    mode = "disabled"
    report_to = "none"

    def log(self, *args, **kwargs):
        pass

    def summary_update(self, values: dict) -> None:
        pass

    def log_table(self, key: str, columns: list[str], rows: list[list]) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


class StageRun:
    """A live W&B run for one stage."""

    report_to = "wandb"

    def __init__(self, run, mode: str):
        self._run = run
        self.id = run.id
        self.mode = mode

    def log(self, values: dict, step: int | None = None) -> None:
        self._run.log(values, step=step)

    def summary_update(self, values: dict) -> None:
        for k, v in values.items():
            self._run.summary[k] = v

    def log_table(self, key: str, columns: list[str], rows: list[list]) -> None:
        import wandb

        self._run.log({key: wandb.Table(columns=columns, data=rows)})

    def finish(self, exit_code: int = 0) -> None:
        self._run.finish(exit_code=exit_code)


def resolve_mode(requested: str | None) -> str:
    if requested:
        return requested
    env = os.environ.get("WANDB_MODE", "").lower()
    if env in ("disabled", "offline"):
        return env
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (Path.home() / ".netrc").exists()
    return "online" if env == "online" and has_key else "offline"


def start_stage_run(*, tracking, run_id: str, run_dir: Path, stage_name: str, stage_kind: str, config: dict[str, Any]):
    """Start the W&B run of one stage (before its trainer is built, so TRL logs into it)."""
    mode = resolve_mode(tracking.mode)
    if mode == "disabled":
        return NullRun()
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ["WANDB_LOG_MODEL"] = "false"  # checkpoints are saved by rlft, not uploaded
    os.environ.setdefault("WANDB_WATCH", "false")
    (run_dir / "wandb").parent.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=tracking.project,
        entity=tracking.entity,
        group=run_id,
        job_type=stage_kind,
        name=f"{run_id}.{stage_name}",
        tags=list(tracking.tags),
        config=config,
        dir=str(run_dir),
        mode=mode,
        reinit="finish_previous",
        settings=wandb.Settings(console="off", x_disable_stats=True),
    )
    return StageRun(run, mode)
