"""Run one stage of a pipeline run in this process: ``python -m rlft.pipeline.runner RUN_DIR STAGE``.

The pipeline starts one such process per stage, so each stage gets a fresh interpreter (clean
W&B state, memory returned to the OS). Under ``accelerate launch`` every process runs this module;
only the main process (rank 0) talks to W&B, writes the manifest and renames the output, after the
other ranks have reported which rows they trained on (``launch`` in the manifest). Output is written
to ``RUN_DIR/.STAGE.partial`` and renamed to ``RUN_DIR/STAGE`` only when the stage succeeded;
on failure the error goes to ``RUN_DIR/.STAGE.error.json`` and nothing that looks finished remains —
except for a stage that ran to its end and failed a check its recipe set (``CheckFailed``, e.g. an eval
stage's ``forgetting``): its folder is kept with a manifest of status ``failed``, and its metrics go to
the error file too, so the numbers behind the failure stay (it is never reused: only ``done`` is).
"""

from __future__ import annotations

import errno
import json
import os
import platform
import shutil
import sys
import time
import traceback
from pathlib import Path

from rlft.errors import CheckFailed, RlftError
from rlft.layout import RunLayout, StageLayout
from rlft.pipeline.fingerprint import installed_versions
from rlft.recipe import recipe_from_dict
from rlft.redact import scrub
from rlft.stages.context import StageContext, StageResult
from rlft.stages.progress import quiet_libraries
from rlft.training.checkpoints import last_checkpoint

DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EPERM}
# The keys the runner writes into every manifest; a stage's notes (rlft.stages.context.StageNotes) sit beside them.
MANIFEST_KEYS = ("result", "stage", "recipe", "recipe_source", "run_id", "seed", "versions", "wandb", "timings")
VERSIONED = ["rlft", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "wandb"]


def package_versions() -> dict[str, str]:
    return {"python": platform.python_version(), **installed_versions(VERSIONED, missing="not installed")}


def error_file(run_dir: Path, stage: str) -> Path:
    return RunLayout(run_dir).error(stage)


RANK_REPORT_WAIT_S = 600


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (torchrun / accelerate launch set both)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _write_rank_report(partial: Path, rank: int) -> None:
    from rlft.distributed import SHARD

    folder = StageLayout(partial).ranks
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".rank-{rank}.tmp"
    tmp.write_text(json.dumps(SHARD.report(rank)))
    tmp.replace(folder / f"rank-{rank}.json")


def _gather_rank_reports(partial: Path, world: int) -> dict:
    """Rank 0: wait for every rank's report, then summarise: rows per rank and rows seen by more than one rank."""
    folder = StageLayout(partial).ranks
    deadline = time.time() + RANK_REPORT_WAIT_S
    while time.time() < deadline and len(list(folder.glob("rank-*.json"))) < world:
        time.sleep(0.5)
    reports = [json.loads(f.read_text()) for f in sorted(folder.glob("rank-*.json"))]
    shutil.rmtree(folder, ignore_errors=True)
    seen: dict[str, int] = {}
    for r in reports:
        for row in r["rows"]:
            seen[row] = seen.get(row, 0) + 1
    return {
        "world_size": world,
        "mixed_precision": os.environ.get("ACCELERATE_MIXED_PRECISION", "no"),
        "ranks": [{k: v for k, v in r.items() if k != "rows"} for r in reports],
        "missing_ranks": sorted(set(range(world)) - {r["rank"] for r in reports}),
        "rows_on_several_ranks": sum(1 for n in seen.values() if n > 1),
    }


def _no_half_precision_on_cpu() -> None:
    """An accelerate config written for GPUs says bf16; on CPU that would silently train under bf16 autocast (5-7x slower)."""
    import torch

    if os.environ.get("ACCELERATE_MIXED_PRECISION", "no") != "no" and not torch.cuda.is_available():
        os.environ["ACCELERATE_MIXED_PRECISION"] = "no"


def run_stage(run_dir: Path, stage_name: str) -> StageResult:
    layout = RunLayout(run_dir)
    plan = json.loads(layout.recipe.read_text())
    recipe = recipe_from_dict(plan["recipe"], plan["source"])
    cfg = recipe.stage(stage_name)
    results = {}
    for s in recipe.stages:
        if s.name == stage_name:
            break
        if layout.stage(s.name).manifest.exists():
            results[s.name] = StageResult.read(layout.stage(s.name).root)

    rank, world = rank_and_world()
    _no_half_precision_on_cpu()
    partial = layout.partial(stage_name).root
    partial.mkdir(parents=True, exist_ok=True)  # the pipeline made it: fresh, or kept to resume from its checkpoint
    ctx = StageContext(
        recipe=recipe, run_id=plan["run_id"], run_dir=run_dir, out_dir=partial, recipe_dir=Path(plan["recipe_dir"]), results=results
    )

    from rlft import stages, tracking

    quiet_libraries()
    from transformers import set_seed

    set_seed(ctx.seed_for(cfg))
    config = {"recipe": plan["recipe"], "stage": cfg.model_dump(mode="json"), "run_id": plan["run_id"]}
    if rank == 0:
        wandb_id = layout.partial(stage_name).wandb_id  # an interrupted attempt's W&B run: continued under the same id
        ctx.tracker = tracking.start_stage_run(
            tracking=recipe.tracking,
            run_id=plan["run_id"],
            run_dir=run_dir,
            stage_name=cfg.name,
            stage_kind=cfg.kind,
            config=config,
            resume_id=wandb_id.read_text().strip() if wandb_id.exists() else None,
            stage_dir=partial,  # history.jsonl, tensorboard/
        )
        if ctx.tracker.id:
            wandb_id.write_text(ctx.tracker.id)
    else:
        ctx.tracker = tracking.NullRun()  # only the main process talks to W&B
    t0 = time.time()
    failed = None
    try:
        result = stages.get(cfg.kind).run(cfg, ctx)
    except CheckFailed as exc:  # it ran to its end but failed a check its recipe set: its outputs and numbers are kept
        failed, result = exc, exc.result
        result.status, result.error = "failed", scrub(exc.render())
    except BaseException:
        ctx.tracker.finish(exit_code=1)
        raise
    if world > 1:
        _write_rank_report(partial, rank)
        if rank != 0:
            return result
        ctx.notes.launch = _gather_rank_reports(partial, world)
    result.wall_s = round(time.time() - t0, 2)
    result.metrics.update(peak_memory())
    result.wandb_run_id = ctx.tracker.id
    final_dir = layout.stage(stage_name).root
    result.output_dir = str(final_dir)
    if result.model_path:
        result.model_path = str(final_dir / Path(result.model_path).relative_to(partial))
    shutil.rmtree(layout.partial(stage_name).trainer, ignore_errors=True)  # TRL's scratch folder; the model is saved apart
    ctx.tracker.summary_update({**result.metrics, "wall_s": result.wall_s})
    manifest = {
        "result": result.to_dict(),
        "stage": cfg.model_dump(mode="json"),
        "recipe": plan["recipe"],
        "recipe_source": plan["source"],
        "run_id": plan["run_id"],
        "seed": ctx.seed_for(cfg),
        "versions": package_versions(),
        "wandb": {"run_id": ctx.tracker.id, "mode": ctx.tracker.mode, "project": recipe.tracking.project, "group": plan["run_id"]},
        "timings": {"started": t0, "wall_s": result.wall_s},
        **ctx.notes.to_manifest(),
    }
    if failed is None:
        ctx.notes.push = _publish(partial, final_dir, manifest, cfg, run_dir)
        manifest.update(ctx.notes.to_manifest())
    layout.partial(stage_name).manifest.write_text(json.dumps(manifest, indent=2, default=str))
    ctx.tracker.finish(exit_code=1 if failed else 0)
    if final_dir.exists():
        shutil.rmtree(final_dir)
    partial.rename(final_dir)
    if failed is not None:
        raise failed
    return result


def _publish(partial: Path, final_dir: Path, manifest: dict, cfg, run_dir: Path) -> dict | None:
    """Write the model cards of the stage's model and adapter folders and, with ``push:``, upload (``rlft.pipeline.outputs``).

    Neither fails a stage whose training succeeded: a problem is printed. Returns the manifest's ``push`` note (None: no push:).
    """
    from rlft.pipeline.outputs import push_after_stage, write_cards

    try:
        write_cards(partial, manifest, run_dir)
    except Exception as exc:
        print(f"[{cfg.name}] could not write the model card: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    if cfg.push is None:
        return None
    try:
        return push_after_stage(partial, final_dir, cfg.push, say=lambda line: print(f"[{cfg.name}] {line}", flush=True))
    except RlftError as exc:
        print(f"[{cfg.name}] push: {exc.render()}", file=sys.stderr, flush=True)
        return {"hub_model_id": cfg.push.hub_model_id, "status": "failed", "why": exc.what}


def peak_memory() -> dict[str, float]:
    """This stage process's peak memory: GPU memory allocated by torch on CUDA, else resident memory (GB)."""
    import resource

    import torch

    if torch.cuda.is_available():
        return {"sys/peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 3)}
    return {"sys/peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}  # ru_maxrss: KiB


def main(argv: list[str] | None = None) -> int:
    run_dir, stage_name = (argv or sys.argv[1:])[:2]
    run_dir = Path(run_dir)
    try:
        run_stage(run_dir, stage_name)
        return 0
    except BaseException as exc:  # record the failure for the pipeline; keep the partial output only to resume from
        rank, _ = rank_and_world()
        if rank != 0:  # the main process reports; the others only print
            traceback.print_exc()
            return 1
        partial = RunLayout(run_dir).partial(stage_name)
        if last_checkpoint(partial.trainer) is None:
            shutil.rmtree(partial.root, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in DISK_ERRORS:  # disk full, quota, permission, read-only disk
            exc = RlftError(
                f"{exc.filename or 'a file'}: {exc.strerror}",
                where=f"stage {stage_name}",
                fix="free space on that disk (or make it writable), or set output_dir / rlft run --output-dir to another one; "
                "finished stages are kept and reused",
            )
        user_error = isinstance(exc, RlftError)
        message = scrub(exc.render() if user_error else f"{type(exc).__name__}: {exc}")
        if not user_error:
            traceback.print_exc()
        kept = {"metrics": exc.result.metrics, "output_dir": exc.result.output_dir} if isinstance(exc, CheckFailed) else {}
        error_file(run_dir, stage_name).write_text(json.dumps({"type": type(exc).__name__, "message": message, **kept}))
        print(f"[{stage_name}] failed: {message}", file=sys.stderr, flush=True)
        return 2 if user_error else 1


if __name__ == "__main__":
    sys.exit(main())
