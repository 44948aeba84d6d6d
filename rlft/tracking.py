"""The one module that talks to Weights & Biases.

One W&B run per stage: ``group`` = the pipeline run id, ``job_type`` = the stage kind,
``name`` = ``<run id>.<stage>``, config = the resolved recipe and stage. Runs are written under the
pipeline's folder (``runs/<id>/wandb/``). Mode: ``tracking.mode`` if set; else online only when
``WANDB_MODE=online`` and a key is present; else offline (no key, no network needed).
``tracking.mode: online`` without a key is an error before any stage trains, or offline with
``tracking.fallback_offline: true``. ``disabled`` gives a no-op object with the same interface.

The trials of an ``rlft sweep`` keep that grouping (group = the trial's run id, which ``rlft compare``
looks up) and carry the tag ``sweep:<sweep id>``; ``create_wandb_sweep`` and ``run_wandb_agent`` run the
search as a W&B sweep (``rlft sweep --wandb-sweep``).
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
    (``resume="allow"``; offline, wandb writes a second file for it, which ``rlft.wandb_files`` reads as one run).
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
    Path(run_dir).mkdir(parents=True, exist_ok=True)  # wandb.init(dir=...) makes its wandb/ folder inside
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


# Set by wandb.agent for the run it hands to the sweep's function; stage processes must not inherit them.
AGENT_VARIABLES = ("WANDB_RUN_ID", "WANDB_SWEEP_ID", "WANDB_SWEEP_PARAM_PATH")


def require_online(tracking) -> None:
    """W&B sweeps need W&B's servers: fail at once, before anything is created, when tracking would not be online."""
    if resolve_mode(tracking.mode, fallback_offline=tracking.fallback_offline) != "online":
        raise RlftError(
            "--wandb-sweep needs W&B online (W&B's servers choose the values of a W&B sweep)",
            where="tracking.mode",
            fix="`wandb login` and WANDB_MODE=online (or tracking.mode=online); or leave out --wandb-sweep: Optuna runs the same search offline",
        )


def create_wandb_sweep(config: dict, *, tracking) -> str:
    """Create a W&B sweep from ``config`` (``rlft.analysis.sweep.wandb_sweep_config``) in the recipe's project; return its id."""
    import wandb

    return wandb.sweep(config, project=tracking.project, entity=tracking.entity)


def run_wandb_agent(sweep_id: str, *, tracking, folder: Path, count: int, metric: str, trial) -> None:
    """Run ``count`` runs of W&B sweep ``sweep_id`` in this process (``wandb.agent``).

    For each run the agent starts, ``trial(params)`` runs the values W&B chose (a pipeline run whose stages
    track themselves) and returns ``(name, value)``; the sweep's run takes that name and logs the value as
    ``metric`` (``None``: the trial failed, and the run finishes with exit code 1).
    """
    import wandb

    def one_run() -> None:
        run = wandb.init(dir=str(folder))
        params = dict(run.config)
        for name in AGENT_VARIABLES:
            os.environ.pop(name, None)  # wandb.init has read them; each stage starts a W&B run of its own
        name, value = trial(params)
        run.name = name
        if value is not None:
            run.log({metric: value})
        run.finish(exit_code=0 if value is not None else 1)

    wandb.agent(sweep_id, function=one_run, project=tracking.project, entity=tracking.entity, count=count)
