"""The one module that talks to Weights & Biases.

One W&B run per stage: ``group`` = the pipeline run id, ``job_type`` = the stage kind,
``name`` = ``<run id>.<stage>``, config = the resolved recipe and stage. Runs are written under the
pipeline's folder (``runs/<id>/wandb/``). Mode: ``tracking.mode`` if set; else online only when
``WANDB_MODE=online`` and a key is present; else offline (no key, no network needed).
``tracking.mode: online`` without a key is an error before any stage trains, or offline with
``tracking.fallback_offline: true``. ``disabled`` gives a no-op object with the same interface.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rlft.errors import RlftError


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


def has_api_key() -> bool:
    """A W&B key is there: ``WANDB_API_KEY``, or a netrc entry for the W&B host (what `wandb login` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    try:
        return host in Path(os.environ.get("NETRC") or Path.home() / ".netrc").read_text()
    except OSError:
        return False


def resolve_mode(requested: str | None, *, fallback_offline: bool = False) -> str:
    """The W&B mode of a stage: ``requested`` (``tracking.mode``), else as the environment says.

    ``online`` without a key fails here, before any stage trains, unless ``fallback_offline`` allows offline instead.
    """
    if requested == "online" and not has_api_key():
        if fallback_offline:
            return "offline"
        raise RlftError(
            "tracking.mode is online, but there is no W&B API key (WANDB_API_KEY, or `wandb login`)",
            where="tracking.mode",
            fix="run `wandb login` (or export WANDB_API_KEY), or track offline and upload later with `wandb sync`: "
            "tracking.mode=offline, or let rlft do that when there is no key: tracking.fallback_offline=true",
        )
    if requested:
        return requested
    env = os.environ.get("WANDB_MODE", "").lower()
    if env in ("disabled", "offline"):
        return env
    return "online" if env == "online" and has_api_key() else "offline"


def start_stage_run(
    *, tracking, run_id: str, run_dir: Path, stage_name: str, stage_kind: str, config: dict[str, Any], resume_id: str | None = None
):
    """Start the W&B run of one stage (before its trainer is built, so TRL logs into it).

    ``resume_id``: the W&B run of an interrupted attempt at this stage, continued under the same id
    (``resume="allow"``; offline, wandb writes a second file for it, which ``rlft.runs`` reads as one run).
    """
    mode = resolve_mode(tracking.mode, fallback_offline=tracking.fallback_offline)
    if tracking.mode == "online" and mode == "offline":  # fell back: no key
        print(f"[{stage_name}] no W&B API key: tracking offline (tracking.fallback_offline); upload later with `wandb sync`", flush=True)
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
        id=resume_id,
        resume="allow" if resume_id else None,
        settings=wandb.Settings(console="off", x_disable_stats=True),
    )
    return StageRun(run, mode)
