"""Run a recipe's stages in order, each in its own process, into ``runs/<run id>/``.

Layout of a run folder::

    runs/<run id>/recipe.json     resolved recipe (after overrides) and where it came from
    runs/<run id>/<stage>/        model/, manifest.json (config, versions, data fingerprint, metrics)
    runs/<run id>/summary.json    every stage: status, metrics, output path, W&B run id, error
    runs/<run id>/wandb/          the W&B runs (one per stage)

A run folder is held by one pipeline at a time (an OS file lock, which a killed holder releases).
Re-running with the same ``--run-id`` skips stages whose fingerprint (``rlft.pipeline.fingerprint``: config,
data content, reward code, starting model, upstream stages, versions) matches a finished output, and
resumes a stage that was interrupted from its last checkpoint (``rlft.training.checkpoints``).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rlft.errors import RlftError
from rlft.layout import RunLayout, StageLayout
from rlft.pipeline.fingerprint import Fingerprint, explain, fingerprints, store, stored
from rlft.progress import clock
from rlft.recipe import Recipe
from rlft.stages.context import StageResult
from rlft.training.checkpoints import last_checkpoint


def accelerate_config_path(ref: str, recipe_dir: Path) -> Path:
    """An accelerate config named in a recipe: relative to the recipe's folder, else to the current one."""
    path = Path(ref).expanduser()
    if not path.is_absolute() and not path.exists() and (recipe_dir / path).exists():
        path = recipe_dir / path
    if not path.exists():
        raise RlftError(
            f"accelerate config {ref} does not exist",
            where="launch.accelerate_config",
            fix="name a file from recipes/accelerate/ (ddp, fsdp, zero2, zero3, multi_node) or write one with `accelerate config`",
        )
    return path.resolve()


def stage_command(recipe: Recipe, stage, run_dir: Path, recipe_dir: Path) -> list[str]:
    """The command that runs one stage: ``python -m rlft.pipeline.runner`` or ``accelerate launch ... -m rlft.pipeline.runner``."""
    runner = ["-m", "rlft.pipeline.runner", str(run_dir), stage.name]
    spec = recipe.launch_for(stage)
    if not spec.distributed:
        return [sys.executable, *runner]
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if spec.accelerate_config:
        cmd += ["--config_file", str(accelerate_config_path(spec.accelerate_config, recipe_dir))]
    else:  # plain data parallel on this machine (GPUs, or CPU processes with gloo)
        cmd += ["--multi_gpu", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if spec.num_processes:
        cmd += ["--num_processes", str(spec.num_processes)]
    if spec.machine_rank is not None:
        cmd += ["--machine_rank", str(spec.machine_rank)]
    if spec.main_process_ip:
        cmd += ["--main_process_ip", spec.main_process_ip]
    return cmd + list(spec.extra_args) + runner


class RunLock:
    """An exclusive lock on a run folder; refused with the holder's pid if another pipeline has it."""

    def __init__(self, run_dir: Path):
        self.path = RunLayout(run_dir).lock
        self.fd = None

    def __enter__(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise write_error(self.path, exc) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self.fd, 64).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise RlftError(
                f"run folder {self.path.parent} is in use by another rlft pipeline (pid {holder})",
                fix="wait for it to finish, or choose another --run-id",
            ) from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, str(os.getpid()).encode())
        return self

    def __exit__(self, *exc):
        os.ftruncate(self.fd, 0)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def new_run_id(recipe: Recipe) -> str:
    return f"{recipe.name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def write_error(path: Path, exc: OSError) -> RlftError:
    """A failed write (disk full, no permission, read-only disk) as a user error naming the file; what was there stays."""
    return RlftError(
        f"cannot write {path}: {exc.strerror or exc}",
        where=str(path.parent),
        fix="free space on that disk or make the folder writable, or put runs elsewhere: rlft run --output-dir PATH",
    )


def write_json(path: Path, data) -> None:
    """Write ``path`` whole or not at all (a temporary file renamed over it)."""
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, default=str))
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(path, exc) from None


def run_pipeline(
    recipe: Recipe,
    *,
    source: str,
    run_id: str | None = None,
    output_dir: str | None = None,
    console=None,
    after_stage: Callable[[dict], str | None] | None = None,
) -> dict:
    """Run every stage; return the summary (also written to ``summary.json``).

    ``after_stage`` is called with the summary entry of each stage that finished (done or cached); a string
    it returns stops the run before its next stage: the later stages stay ``not run``, the summary's status
    is ``stopped`` and ``stopped`` holds that reason (``rlft sweep`` prunes trials this way).
    """
    run_id = run_id or new_run_id(recipe)
    run_dir = Path(output_dir or recipe.output_dir).resolve() / run_id
    recipe_dict = recipe.model_dump(mode="json")
    say = console.print if console else print
    if (recipe.launch.machine_rank or 0) > 0:
        return follow_pipeline(recipe, source=source, run_dir=run_dir, say=say)
    layout = RunLayout(run_dir)
    with RunLock(run_dir):
        write_json(
            layout.recipe,
            {"recipe": recipe_dict, "source": str(source), "recipe_dir": str(Path(source).resolve().parent), "run_id": run_id},
        )
        summary = {
            "run_id": run_id,
            "recipe": recipe.name,
            "source": str(source),
            "run_dir": str(run_dir),
            "started": time.time(),
            "status": "running",
            "stages": [],
        }
        prints = fingerprints(recipe, Path(source).resolve().parent)
        for i, stage in enumerate(recipe.stages):
            fp = prints[stage.name]
            stage_dir = layout.stage(stage.name).root
            entry = {"name": stage.name, "kind": stage.kind, "fingerprint": fp.digest}
            cached = _finished(stage_dir, fp)
            if cached is not None:
                say(f"[bold]── stage {i + 1}/{len(recipe.stages)}: {stage.name} ({stage.kind}) — already done with this config, reused")
                entry.update(cached.to_dict(), status="cached")
                summary["stages"].append(entry)
                write_json(RunLayout(run_dir).summary, summary)
                if _stop_requested(after_stage, entry, summary, recipe.stages[i + 1 :], run_dir, say):
                    return summary
                continue
            why = explain(stored(stage_dir), fp) if stored(stage_dir) else ""
            say(f"[bold]── stage {i + 1}/{len(recipe.stages)}: {stage.name} ({stage.kind})" + (f" — runs again: {why}" if why else ""))
            err = layout.error(stage.name)
            err.unlink(missing_ok=True)
            t0 = time.time()
            partial = layout.partial(stage.name).root
            resume = _resumable(partial, fp)
            if resume is not None:
                say(f"   resuming an interrupted attempt from its {resume.name}")
            else:
                shutil.rmtree(partial, ignore_errors=True)
                partial.mkdir(parents=True)
                store(partial, fp)
            command = stage_command(recipe, stage, run_dir, Path(source).resolve().parent)
            if "accelerate.commands.launch" in command:
                say(f"   launch: {' '.join(command[2:-4])}")
            proc = subprocess.run(command, preexec_fn=_die_with_parent, env=_stage_env())
            wall = round(time.time() - t0, 2)
            if proc.returncode == 0 and layout.stage(stage.name).manifest.exists():
                result = StageResult.read(stage_dir)
                entry.update(result.to_dict(), process_wall_s=wall)
                store(stage_dir, fp)
            else:
                detail = json.loads(err.read_text()) if err.exists() else {"message": f"stage process exited with code {proc.returncode}"}
                err.unlink(missing_ok=True)
                kept = last_checkpoint(layout.partial(stage.name).trainer)
                if kept is None:
                    shutil.rmtree(partial, ignore_errors=True)  # a killed launch may leave it behind
                else:
                    entry["resume_from"] = str(kept)
                    say(f"   {kept.name} kept in {partial}: run the same command again to resume from it")
                entry.update({k: detail[k] for k in ("metrics", "output_dir") if k in detail})  # a failed check keeps its numbers
                entry.update(status="failed", error=detail["message"], wall_s=wall)
                summary["stages"].append(entry)
                for rest in recipe.stages[i + 1 :]:
                    summary["stages"].append({"name": rest.name, "kind": rest.kind, "status": "not run"})
                summary.update(status="failed", finished=time.time())
                write_json(RunLayout(run_dir).summary, summary)
                return summary
            summary["stages"].append(entry)
            write_json(RunLayout(run_dir).summary, summary)
            if _stop_requested(after_stage, entry, summary, recipe.stages[i + 1 :], run_dir, say):
                return summary
            if i + 1 < len(recipe.stages):  # how far along, and how long the rest may take
                say(eta_line(summary, [(s.name, s.kind, steps_of(s)) for s in recipe.stages[i + 1 :]]))
        summary.update(status="done", finished=time.time())
        write_json(RunLayout(run_dir).summary, summary)
        return summary


def steps_of(stage) -> int | None:
    """The optimiser steps a stage will take when its recipe says (``trl.max_steps``); None when it trains by epochs or has no steps."""
    steps = (getattr(stage, "trl", None) or {}).get("max_steps")
    return steps if isinstance(steps, int) and steps > 0 else None


def eta_line(summary: dict, remaining: list[tuple[str, str, int | None]], now: float | None = None) -> str:
    """After a stage: elapsed time, stages left, and an ETA for them, or "unknown" when nothing to estimate it from.

    ``remaining``: (name, kind, steps or None) of the stages still to run. The ETA is each remaining stage's steps
    times the seconds per step of the stages that ran in this pipeline (``process_wall_s`` over ``train/steps``,
    loading and scoring included): those of its own kind when one ran, else all of them pooled. A remaining stage
    with no step count (an eval or merge stage, training by epochs) makes it a lower bound ("ETA over").
    """
    now = time.time() if now is None else now
    stages = summary["stages"]
    head = (
        f"   {len(stages)}/{len(stages) + len(remaining)} stages done · {clock(now - summary['started'])} elapsed · {len(remaining)} left"
    )
    timed = [
        (s["kind"], s["process_wall_s"], s["metrics"]["train/steps"])
        for s in stages
        if s.get("status") == "done" and s.get("process_wall_s") and (s.get("metrics") or {}).get("train/steps")
    ]
    if not timed:
        return head + " · ETA unknown (no stage that ran has a step count yet)"
    pooled = sum(w for _, w, _ in timed) / sum(n for _, _, n in timed)
    per_kind = {kind: sum(w for k, w, _ in timed if k == kind) / sum(n for k, _, n in timed if k == kind) for kind, _, _ in timed}
    known = [(kind, steps) for _, kind, steps in remaining if steps is not None]
    unknown = [name for name, _, steps in remaining if steps is None]
    if not known:
        return head + f" · ETA unknown (no step count for: {', '.join(unknown)})"
    eta = sum(steps * per_kind.get(kind, pooled) for kind, steps in known)
    return head + (f" · ETA over {clock(eta)} (no step count for: {', '.join(unknown)})" if unknown else f" · ETA {clock(eta)}")


def _stop_requested(after_stage, entry: dict, summary: dict, rest: list, run_dir: Path, say) -> bool:
    """Ask ``after_stage`` whether to stop before the stages in ``rest``; if so, record them as not run, and why."""
    reason = after_stage(entry) if after_stage is not None else None
    if reason is None or not rest:
        return False
    say(f"   stopped before stage {rest[0].name}: {reason}")
    summary["stages"] += [{"name": s.name, "kind": s.kind, "status": "not run"} for s in rest]
    summary.update(status="stopped", stopped=reason, finished=time.time())
    write_json(RunLayout(run_dir).summary, summary)
    return True


FOLLOWER_WAIT_S = 1800


def follow_pipeline(recipe: Recipe, *, source: str, run_dir: Path, say) -> dict:
    """Multi-node, machines other than 0: start this machine's processes of each training stage, in order.

    Machine 0's pipeline owns the run folder (shared storage): it holds the lock, writes the recipe,
    manifests and summary, and runs eval stages; a follower only joins each multi-process launch and
    skips the stages machine 0 will skip (finished with the same config).
    """
    prints = fingerprints(recipe, Path(source).resolve().parent)
    deadline = time.time() + FOLLOWER_WAIT_S
    while not RunLayout(run_dir).recipe.exists():
        if time.time() > deadline:
            raise RlftError(
                f"machine 0 has not started run {run_dir} in {FOLLOWER_WAIT_S} s",
                fix="start machine 0 first, with the same --run-id and --output-dir",
            )
        time.sleep(2)
    statuses = []
    for i, stage in enumerate(recipe.stages):
        if not recipe.launch_for(stage).distributed or _finished(RunLayout(run_dir).stage(stage.name).root, prints[stage.name]):
            statuses.append({"name": stage.name, "kind": stage.kind, "status": "left to machine 0"})
            continue
        say(f"[bold]── stage {i + 1}/{len(recipe.stages)}: {stage.name} ({stage.kind}) — joining machine 0's launch")
        proc = subprocess.run(
            stage_command(recipe, stage, run_dir, Path(source).resolve().parent), preexec_fn=_die_with_parent, env=_stage_env()
        )
        statuses.append({"name": stage.name, "kind": stage.kind, "status": "joined" if proc.returncode == 0 else "failed"})
        if proc.returncode != 0:
            return {"run_id": run_dir.name, "run_dir": str(run_dir), "status": "failed", "stages": statuses}
    return {"run_id": run_dir.name, "run_dir": str(run_dir), "status": "done", "stages": statuses}


def _resumable(partial: Path, fp: Fingerprint) -> Path | None:
    """The last complete checkpoint an interrupted attempt at this same stage (same fingerprint) left, if any."""
    old = stored(partial)
    if old is None or old.get("digest") != fp.digest:
        return None
    return last_checkpoint(StageLayout(partial).trainer)


def _stage_env() -> dict[str, str]:
    """The stage's environment: ours, without a W&B service handle (``WANDB_SERVICE``, set in a process that already
    used wandb, e.g. a notebook). Each stage then runs its own wandb service, which dies with it: a killed stage's
    run id is not left "in use" in a shared service when the stage is resumed under that id."""
    return {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}


def _die_with_parent() -> None:
    """In the stage process (Linux): be killed when the pipeline dies, so that a killed pipeline leaves no orphan writing."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _finished(stage_dir: Path, fp: Fingerprint) -> StageResult | None:
    """The finished output of this stage when its stored fingerprint matches (None: it must run)."""
    old = stored(stage_dir)
    if not StageLayout(stage_dir).manifest.exists() or old is None or old.get("digest") != fp.digest:
        return None
    result = StageResult.read(stage_dir)
    return result if result.status == "done" else None


def plan_status(recipe: Recipe, source: str, run_dir: Path) -> list[tuple[str, str, str]]:
    """For ``rlft plan --run-id``: per stage, (name, "cached" | "runs" | "resumes", why)."""
    prints = fingerprints(recipe, Path(source).resolve().parent)
    out = []
    for stage in recipe.stages:
        fp, stage_dir = prints[stage.name], RunLayout(run_dir).stage(stage.name).root
        if _finished(stage_dir, fp) is not None:
            out.append((stage.name, "cached", "finished with the same fingerprint"))
            continue
        resume = _resumable(RunLayout(run_dir).partial(stage.name).root, fp)
        if resume is not None:
            out.append((stage.name, "resumes", f"from {resume.name} of an interrupted attempt"))
            continue
        if StageLayout(stage_dir).manifest.exists():
            out.append((stage.name, "runs", explain(stored(stage_dir), fp) or "its last attempt did not finish"))
        else:
            out.append((stage.name, "runs", "not run yet"))
    return out
