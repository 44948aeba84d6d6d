"""Run a recipe's stages in order, each in its own process, into ``runs/<run id>/``.

Layout of a run folder::

    runs/<run id>/recipe.json     resolved recipe (after overrides) and where it came from
    runs/<run id>/<stage>/        model/, manifest.json (config, versions, data fingerprint, metrics)
    runs/<run id>/summary.json    every stage: status, metrics, output path, W&B run id, error
    runs/<run id>/wandb/          the W&B runs (one per stage)

A run folder is held by one pipeline at a time (an OS file lock, which a killed holder releases).
Re-running with the same ``--run-id`` skips stages that finished with the same config, and reruns
everything from the first stage that changed or did not finish.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rlft.errors import RlftError
from rlft.recipe import Recipe
from rlft.runtime import StageResult


def stage_hash(recipe_dict: dict, stage_dict: dict) -> str:
    """What decides whether a finished stage can be reused: its config plus the recipe-wide keys."""
    shared = {k: recipe_dict.get(k) for k in ("model", "seed", "trust_remote_code", "launch")}
    blob = json.dumps({"shared": shared, "stage": stage_dict}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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
    """The command that runs one stage: ``python -m rlft.runner`` or ``accelerate launch ... -m rlft.runner``."""
    runner = ["-m", "rlft.runner", str(run_dir), stage.name]
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
        self.path = run_dir / ".lock"
        self.fd = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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


def write_json(path: Path, data) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def run_pipeline(recipe: Recipe, *, source: str, run_id: str | None = None, output_dir: str | None = None, console=None) -> dict:
    """Run every stage; return the summary (also written to ``summary.json``)."""
    run_id = run_id or new_run_id(recipe)
    run_dir = Path(output_dir or recipe.output_dir).resolve() / run_id
    recipe_dict = recipe.model_dump(mode="json")
    say = console.print if console else print
    if (recipe.launch.machine_rank or 0) > 0:
        return follow_pipeline(recipe, source=source, run_dir=run_dir, say=say)
    with RunLock(run_dir):
        write_json(
            run_dir / "recipe.json",
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
        rerun_rest = False
        for i, stage in enumerate(recipe.stages):
            h = stage_hash(recipe_dict, recipe_dict["stages"][i])
            stage_dir = run_dir / stage.name
            entry = {"name": stage.name, "kind": stage.kind, "hash": h}
            cached = _finished(stage_dir, h) if not rerun_rest else None
            if cached is not None:
                say(f"[bold]── stage {i + 1}/{len(recipe.stages)}: {stage.name} ({stage.kind}) — already done with this config, reused")
                entry.update(cached.to_dict(), status="cached")
                summary["stages"].append(entry)
                write_json(run_dir / "summary.json", summary)
                continue
            rerun_rest = True
            say(f"[bold]── stage {i + 1}/{len(recipe.stages)}: {stage.name} ({stage.kind})")
            err = run_dir / f".{stage.name}.error.json"
            err.unlink(missing_ok=True)
            t0 = time.time()
            partial = run_dir / f".{stage.name}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            command = stage_command(recipe, stage, run_dir, Path(source).resolve().parent)
            if "accelerate.commands.launch" in command:
                say(f"   launch: {' '.join(command[2:-4])}")
            proc = subprocess.run(command)
            wall = round(time.time() - t0, 2)
            if proc.returncode == 0 and (stage_dir / "manifest.json").exists():
                result = StageResult.read(stage_dir)
                entry.update(result.to_dict(), process_wall_s=wall)
                _stamp(stage_dir, h)
            else:
                detail = json.loads(err.read_text()) if err.exists() else {"message": f"stage process exited with code {proc.returncode}"}
                err.unlink(missing_ok=True)
                shutil.rmtree(partial, ignore_errors=True)  # a killed launch may leave it behind
                entry.update(status="failed", error=detail["message"], wall_s=wall)
                summary["stages"].append(entry)
                for rest in recipe.stages[i + 1 :]:
                    summary["stages"].append({"name": rest.name, "kind": rest.kind, "status": "not run"})
                summary.update(status="failed", finished=time.time())
                write_json(run_dir / "summary.json", summary)
                return summary
            summary["stages"].append(entry)
            write_json(run_dir / "summary.json", summary)
        summary.update(status="done", finished=time.time())
        write_json(run_dir / "summary.json", summary)
        return summary


FOLLOWER_WAIT_S = 1800


def follow_pipeline(recipe: Recipe, *, source: str, run_dir: Path, say) -> dict:
    """Multi-node, machines other than 0: start this machine's processes of each training stage, in order.

    Machine 0's pipeline owns the run folder (shared storage): it holds the lock, writes the recipe,
    manifests and summary, and runs eval stages; a follower only joins each multi-process launch and
    skips the stages machine 0 will skip (finished with the same config).
    """
    recipe_dict = recipe.model_dump(mode="json")
    deadline = time.time() + FOLLOWER_WAIT_S
    while not (run_dir / "recipe.json").exists():
        if time.time() > deadline:
            raise RlftError(
                f"machine 0 has not started run {run_dir} in {FOLLOWER_WAIT_S} s",
                fix="start machine 0 first, with the same --run-id and --output-dir",
            )
        time.sleep(2)
    statuses = []
    for i, stage in enumerate(recipe.stages):
        if not recipe.launch_for(stage).distributed or _finished(run_dir / stage.name, stage_hash(recipe_dict, recipe_dict["stages"][i])):
            statuses.append({"name": stage.name, "kind": stage.kind, "status": "left to machine 0"})
            continue
        say(f"[bold]── stage {i + 1}/{len(recipe.stages)}: {stage.name} ({stage.kind}) — joining machine 0's launch")
        proc = subprocess.run(stage_command(recipe, stage, run_dir, Path(source).resolve().parent))
        statuses.append({"name": stage.name, "kind": stage.kind, "status": "joined" if proc.returncode == 0 else "failed"})
        if proc.returncode != 0:
            return {"run_id": run_dir.name, "run_dir": str(run_dir), "status": "failed", "stages": statuses}
    return {"run_id": run_dir.name, "run_dir": str(run_dir), "status": "done", "stages": statuses}


def _finished(stage_dir: Path, h: str) -> StageResult | None:
    stamp = stage_dir / ".stage_hash"
    if not (stage_dir / "manifest.json").exists() or not stamp.exists() or stamp.read_text() != h:
        return None
    result = StageResult.read(stage_dir)
    return result if result.status == "done" else None


def _stamp(stage_dir: Path, h: str) -> None:
    (stage_dir / ".stage_hash").write_text(h)
