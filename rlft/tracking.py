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

Besides W&B, every stage writes what it logged, step by step, to ``<stage>/history.jsonl`` (``History``),
also with tracking disabled, and hands the same rows to the other trackers ``tracking.backends`` lists:
TensorBoard event files in ``<stage>/tensorboard/``, a trackio project in ``<runs folder>/trackio/``
(``rlft dashboard``). ``StageTracker`` is the one object a stage logs through (``ctx.tracker``).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rlft.errors import RlftError
from rlft.layout import StageLayout


class NullRun:
    """Stands in for a W&B run when tracking is disabled."""

    id = None
    mode = "disabled"
    report_to = "none"

    def log(self, *args, **kwargs):
        pass

    def record(self, values: dict) -> None:
        pass

    def replay(self, values: dict, step: int | None = None) -> None:
        pass

    def resumed_from(self, step: int) -> None:
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


# --------------------------------------------------------------------------- history.jsonl and the other trackers

HISTORY_META = ("_step", "_timestamp")  # what History adds to each logged dict
# What transformers' W&B callback puts in the run's summary instead of a history row (its on_log): rlft does the same.
TRAINER_SUMMARY_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss", "total_flos")
BACKENDS = {  # backend -> (module that must import, pip package)
    "wandb": ("wandb", "wandb"),
    "tensorboard": ("tensorboard", "tensorboard"),
    "trackio": ("trackio", "trackio"),
}
TRACKIO_FOLDER = "trackio"  # under the runs folder: one local trackio store for every run there


def row_step(row: dict) -> float | None:
    """The training step a history row belongs to: ``train/global_step`` (what the Trainer logs), else ``_step``."""
    value = row.get("train/global_step", row.get("_step"))
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def read_history(path: str | Path) -> list[dict]:
    """The rows of a ``history.jsonl`` file (a torn last line, from a killed process, is left out)."""
    path = Path(path)
    if not path.exists():
        return []
    rows, lines = [], path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break  # the last line, cut short when the process was killed mid-write
            raise RlftError(f"{path} line {number} is not JSON", fix="the stage's history file is damaged; re-run the stage") from None
    return rows


def _plain(value: Any) -> Any:
    """A tensor or numpy number as the Python number it holds (json.dumps' fallback)."""
    return value.item() if hasattr(value, "item") else str(value)


def _identity(row: dict) -> tuple:
    return row_step(row), frozenset(k for k in row if k not in HISTORY_META)


class History:
    """A stage's logged steps in ``<stage>/history.jsonl``, one JSON object a line, appended as they are logged.

    A row is the logged dict with ``_step`` (the step given to ``log``, else one more than the last, as W&B counts)
    and ``_timestamp``; the Trainer's rows are in the shape transformers' W&B callback logs them (``train/<key>``,
    ``eval/<key>``, ``train/global_step``)::

        {"_step": 3, "_timestamp": 1764000000.1, "train/loss": 2.31, "train/learning_rate": 1e-4, "train/global_step": 3}

    A stage resumed from a checkpoint finds the interrupted attempt's rows in the file: ``resumed_from(step)`` drops
    those after the checkpoint (they are redone), and ``close`` drops an earlier row that this attempt logged again
    (the same keys at the same step, e.g. the held-out evaluation before training), so each step is there once.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.earlier = read_history(self.path)  # an interrupted attempt's rows (this attempt resumes it), else none
        self.rows: list[dict] = []
        self._next = max((r["_step"] for r in self.earlier if isinstance(r.get("_step"), int)), default=-1) + 1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.earlier:
            self._rewrite()  # without a torn last line

    def append(self, values: dict, step: int | None = None) -> dict:
        step = self._next if step is None else int(step)
        self._next = max(self._next, step + 1)
        row = {"_step": step, "_timestamp": round(time.time(), 3), **values}
        with self.path.open("a", encoding="utf-8") as f:  # a line at a time: a killed stage keeps what it logged
            f.write(json.dumps(row, default=_plain) + "\n")
        self.rows.append(row)
        return row

    def resumed_from(self, step: int) -> None:
        """This attempt continues from a checkpoint at ``step``: the interrupted attempt's rows after it go (they are redone)."""
        self.earlier = [r for r in self.earlier if (s := row_step(r)) is None or s <= step]
        self._rewrite()

    def close(self) -> None:
        """Drop the earlier attempt's rows that this attempt logged again: each step once."""
        if self.earlier:
            again = {_identity(r) for r in self.rows}
            self.earlier = [r for r in self.earlier if _identity(r) not in again]
            self._rewrite()

    def _rewrite(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(json.dumps(r, default=_plain) + "\n" for r in [*self.earlier, *self.rows]), encoding="utf-8")
        tmp.replace(self.path)


def _numbers(values: dict) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in values.items()
        if k not in HISTORY_META
        and k != "train/global_step"
        and isinstance(v, int | float)
        and not isinstance(v, bool)
        and math.isfinite(v)
    }


class TensorBoardSink:
    """Scalars into TensorBoard event files in ``folder`` (``torch.utils.tensorboard``), at each row's training step."""

    def __init__(self, folder: Path):
        from torch.utils.tensorboard import SummaryWriter

        self._writer_class, self.folder = SummaryWriter, Path(folder)
        self.writer = SummaryWriter(log_dir=str(folder), flush_secs=10)

    def log(self, row: dict) -> None:
        step = row_step(row)
        for key, value in _numbers(row).items():
            self.writer.add_scalar(key, value, None if step is None else int(step))

    def resumed_from(self, step: int) -> None:
        # TensorBoard's own way of forgetting what an interrupted run logged after its checkpoint
        self.writer.close()
        self.writer = self._writer_class(log_dir=str(self.folder), flush_secs=10, purge_step=int(step) + 1)

    def finish(self) -> None:
        self.writer.close()


class TrackioSink:
    """The rows into a local trackio project (``trackio.init``/``log``/``finish``), one trackio run per stage."""

    def __init__(self, folder: Path, *, project: str, name: str, group: str, config: dict):
        import contextlib
        import io

        os.environ["TRACKIO_DIR"] = str(folder)  # read once, when trackio is imported
        import trackio

        with contextlib.redirect_stdout(io.StringIO()):  # its banner; `rlft dashboard` says how to look
            self.run = trackio.init(
                project=project,
                name=name,
                group=group,
                config=config,
                resume="allow",
                embed=False,
                auto_log_cpu=False,
                auto_log_gpu=False,
                capture_console=False,
            )

    def log(self, row: dict) -> None:
        step = row_step(row)
        values = _numbers(row)
        if values:
            self.run.log(values, step=None if step is None else int(step))

    def resumed_from(self, step: int) -> None:
        pass  # trackio keeps both attempts' points of a redone step; history.jsonl is the exact record

    def finish(self) -> None:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            self.run.finish()


class StageTracker:
    """What a stage logs through (``ctx.tracker``): history.jsonl always, W&B when it runs, the other backends listed.

    ``log`` is rlft's own logging (rounds, guards, early stopping, PPO's steps); ``record`` is what the HF Trainer
    logged (``trainer_callback``), which W&B already receives through transformers' own callback. The interface is
    ``NullRun``'s, so that ranks other than 0 log into a ``NullRun``.
    """

    def __init__(self, run, history: History | None = None, sinks: Iterable = ()):
        self.run, self.history, self.sinks = run, history, list(sinks)

    @property
    def id(self) -> str | None:
        return self.run.id

    @property
    def mode(self) -> str:
        return self.run.mode

    @property
    def report_to(self) -> str:
        """The trainer's ``report_to``: only W&B is handed to transformers; the other backends get rlft's rows."""
        return self.run.report_to

    def _rows(self, values: dict, step: int | None = None) -> None:
        row = self.history.append(values, step) if self.history else {**values, **({"_step": step} if step is not None else {})}
        for sink in self.sinks:
            sink.log(row)

    def log(self, values: dict, step: int | None = None) -> None:
        self._rows(values, step)
        self.run.log(values, step=step)

    def record(self, values: dict) -> None:
        self._rows(values)

    def replay(self, values: dict, step: int | None = None) -> None:
        """Log again, to W&B only, steps its file lost with an interrupted process (history.jsonl kept them)."""
        self.run.log(values, step=step)

    def resumed_from(self, step: int) -> None:
        if self.history:
            self.history.resumed_from(step)
        for sink in self.sinks:
            sink.resumed_from(step)

    def summary_update(self, values: dict) -> None:
        self.run.summary_update(values)

    def log_table(self, key: str, columns: list[str], rows: list[list]) -> None:
        self.run.log_table(key, columns, rows)

    def finish(self, exit_code: int = 0) -> None:
        if self.history:
            self.history.close()
        for sink in self.sinks:
            sink.finish()
        self.run.finish(exit_code=exit_code)


def trainer_callback(tracker):
    """A ``TrainerCallback`` recording each Trainer log into ``tracker`` as transformers' W&B callback logs it.

    A resumed Trainer (``on_train_begin`` with a step restored from a checkpoint) tells the tracker where it resumed.
    """
    from transformers import TrainerCallback
    from transformers.integrations.integration_utils import rewrite_logs

    class RecordHistory(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero and state.global_step > 0:
                tracker.resumed_from(state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or not state.is_world_process_zero:
                return
            values = rewrite_logs({k: v for k, v in logs.items() if k not in TRAINER_SUMMARY_KEYS})
            if values:  # the end-of-training log holds only summary keys: W&B puts them in its summary, not a row
                tracker.record({**values, "train/global_step": state.global_step})

    return RecordHistory()


def backend_problems(tracking) -> list[tuple[str, str]]:
    """(key, message) for each backend in ``tracking.backends`` whose package is not installed, with the pip command."""
    import importlib.util

    problems = []
    for backend in tracking.backends:
        module, package = BACKENDS[backend]
        if importlib.util.find_spec(module) is None:
            problems.append(
                (
                    "tracking.backends",
                    f"the {backend} backend needs the {package} package, which is not installed: pip install {package} "
                    f"(or remove {backend} from tracking.backends)",
                )
            )
    return problems


def _check_backends(tracking) -> None:
    problems = backend_problems(tracking)
    if problems:
        what, _, fix = problems[0][1].partition(": ")
        raise RlftError(what, where="tracking.backends", fix=fix)


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
    *,
    tracking,
    run_id: str,
    run_dir: Path,
    stage_name: str,
    stage_kind: str,
    config: dict[str, Any],
    resume_id: str | None = None,
    stage_dir: Path | None = None,
):
    """Start the trackers of one stage (before its trainer is built, so TRL logs into W&B's run).

    ``resume_id``: the W&B run of an interrupted attempt at this stage, continued under the same id
    (``resume="allow"``; offline, wandb writes a second file for it, which ``rlft.wandb_files`` reads as one run).
    ``stage_dir``: the folder the stage writes (``.STAGE.partial``): its ``history.jsonl`` and ``tensorboard/`` go
    there. Without it, the W&B run alone (``StageRun`` or ``NullRun``).
    """
    _check_backends(tracking)
    run = _start_wandb(tracking, run_id, run_dir, stage_name, stage_kind, config, resume_id) if "wandb" in tracking.backends else NullRun()
    if stage_dir is None:
        return run
    stage = StageLayout(Path(stage_dir))
    sinks = []
    if "tensorboard" in tracking.backends:
        sinks.append(TensorBoardSink(stage.tensorboard))
    if "trackio" in tracking.backends:
        sinks.append(
            TrackioSink(
                Path(run_dir).parent / TRACKIO_FOLDER,
                project=tracking.project,
                name=f"{run_id}.{stage_name}",
                group=run_id,
                config={**config, "job_type": stage_kind},
            )
        )
    return StageTracker(run, History(stage.history), sinks)


def _start_wandb(tracking, run_id: str, run_dir: Path, stage_name: str, stage_kind: str, config: dict, resume_id: str | None):
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


def dashboard_command(store: Path, project: str | None = None) -> tuple[list[str], dict[str, str]]:
    """The command (and environment) that serves trackio's local dashboard on ``store`` (a runs folder's ``trackio/``).

    ``project``: open on that project (the recipe's ``tracking.project``); its runs are the stages, named
    ``<run id>.<stage>`` and grouped by run id, as in W&B. Raises ``RlftError`` when trackio or its data is missing.
    """
    import importlib.util
    import sys

    if importlib.util.find_spec("trackio") is None:
        raise RlftError("the dashboard is trackio's, and trackio is not installed", fix="pip install trackio")
    store = Path(store)
    if not any(store.glob("*.db")):
        raise RlftError(
            f"no trackio data in {store}",
            fix="track runs with trackio too: tracking: {backends: [wandb, trackio]} in the recipe (or the override "
            "'tracking.backends=[wandb,trackio]'), then run it",
        )
    cmd = [sys.executable, "-m", "trackio.cli", "show", *(["--project", project] if project else [])]
    return cmd, {**os.environ, "TRACKIO_DIR": str(store)}
