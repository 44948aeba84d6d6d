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
import subprocess
import sys
import time
from pathlib import Path

from rlft.errors import RlftError
from rlft.recipe import Recipe
from rlft.runtime import StageResult


def stage_hash(recipe_dict: dict, stage_dict: dict) -> str:
    """What decides whether a finished stage can be reused: its config plus the recipe-wide keys."""
    shared = {k: recipe_dict.get(k) for k in ("model", "seed", "trust_remote_code")}
    blob = json.dumps({"shared": shared, "stage": stage_dict}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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
            proc = subprocess.run([sys.executable, "-m", "rlft.runner", str(run_dir), stage.name])
            wall = round(time.time() - t0, 2)
            if proc.returncode == 0 and (stage_dir / "manifest.json").exists():
                result = StageResult.read(stage_dir)
                entry.update(result.to_dict(), process_wall_s=wall)
                _stamp(stage_dir, h)
            else:
                detail = json.loads(err.read_text()) if err.exists() else {"message": f"stage process exited with code {proc.returncode}"}
                err.unlink(missing_ok=True)
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


def _finished(stage_dir: Path, h: str) -> StageResult | None:
    stamp = stage_dir / ".stage_hash"
    if not (stage_dir / "manifest.json").exists() or not stamp.exists() or stamp.read_text() != h:
        return None
    result = StageResult.read(stage_dir)
    return result if result.status == "done" else None


def _stamp(stage_dir: Path, h: str) -> None:
    (stage_dir / ".stage_hash").write_text(h)
