"""Run one stage of a pipeline run in this process: ``python -m rlft.runner RUN_DIR STAGE``.

The pipeline starts one such process per stage, so each stage gets a fresh interpreter (clean
W&B state, memory returned to the OS, a place for ``accelerate launch`` later). Output is written
to ``RUN_DIR/.STAGE.partial`` and renamed to ``RUN_DIR/STAGE`` only when the stage succeeded;
on failure the error goes to ``RUN_DIR/.STAGE.error.json`` and nothing that looks finished remains.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path

from rlft.errors import RlftError
from rlft.recipe import recipe_from_dict
from rlft.runtime import StageContext, StageResult, quiet_libraries

VERSIONED = ["rlft", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "wandb"]


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def error_file(run_dir: Path, stage: str) -> Path:
    return run_dir / f".{stage}.error.json"


def run_stage(run_dir: Path, stage_name: str) -> StageResult:
    plan = json.loads((run_dir / "recipe.json").read_text())
    recipe = recipe_from_dict(plan["recipe"], plan["source"])
    cfg = recipe.stage(stage_name)
    results = {}
    for s in recipe.stages:
        if s.name == stage_name:
            break
        if (run_dir / s.name / "manifest.json").exists():
            results[s.name] = StageResult.read(run_dir / s.name)

    partial = run_dir / f".{stage_name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    ctx = StageContext(
        recipe=recipe, run_id=plan["run_id"], run_dir=run_dir, out_dir=partial, recipe_dir=Path(plan["recipe_dir"]), results=results
    )

    from rlft import stages, tracking

    quiet_libraries()
    from transformers import set_seed

    set_seed(ctx.seed_for(cfg))
    config = {"recipe": plan["recipe"], "stage": cfg.model_dump(mode="json"), "run_id": plan["run_id"]}
    ctx.tracker = tracking.start_stage_run(
        tracking=recipe.tracking, run_id=plan["run_id"], run_dir=run_dir, stage_name=cfg.name, stage_kind=cfg.kind, config=config
    )
    t0 = time.time()
    try:
        result = stages.get(cfg.kind).run(cfg, ctx)
    except BaseException:
        ctx.tracker.finish(exit_code=1)
        raise
    result.wall_s = round(time.time() - t0, 2)
    result.wandb_run_id = ctx.tracker.id
    final_dir = run_dir / stage_name
    result.output_dir = str(final_dir)
    if result.model_path:
        result.model_path = str(final_dir / Path(result.model_path).relative_to(partial))
    shutil.rmtree(partial / "trainer", ignore_errors=True)  # TRL's scratch folder; the model is saved apart
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
        **ctx.notes,
    }
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    ctx.tracker.finish()
    if final_dir.exists():
        shutil.rmtree(final_dir)
    partial.rename(final_dir)
    return result


def main(argv: list[str] | None = None) -> int:
    run_dir, stage_name = (argv or sys.argv[1:])[:2]
    run_dir = Path(run_dir)
    try:
        run_stage(run_dir, stage_name)
        return 0
    except BaseException as exc:  # record the failure for the pipeline, then leave no partial output
        shutil.rmtree(run_dir / f".{stage_name}.partial", ignore_errors=True)
        user_error = isinstance(exc, RlftError)
        message = exc.render() if user_error else f"{type(exc).__name__}: {exc}"
        if not user_error:
            traceback.print_exc()
        error_file(run_dir, stage_name).write_text(json.dumps({"type": type(exc).__name__, "message": message}))
        print(f"[{stage_name}] failed: {message}", file=sys.stderr, flush=True)
        return 2 if user_error else 1


if __name__ == "__main__":
    sys.exit(main())
