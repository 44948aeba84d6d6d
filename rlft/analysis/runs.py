"""Pipeline run folders on disk, as ``rlft runs`` lists them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rlft.errors import RlftError
from rlft.layout import RunLayout


@dataclass
class PipelineRun:
    """A pipeline run folder as ``rlft runs`` lists it (from its ``summary.json``)."""

    run_id: str
    recipe: str
    status: str
    started: float | None
    duration_s: float | None
    stages: list[tuple[str, str, str]]  # (name, kind, status)
    headline: tuple[str, float] | None  # (metric, value) of the last stage that has one
    path: Path


HEADLINE_ORDER = ("eval/reward/", "eval/accuracy", "eval/loss")


def headline(stages: list[dict]) -> tuple[str, float] | None:
    """The metric a reader looks at first: the last stage's held-out reward, else accuracy, else loss."""
    for stage in reversed(stages):
        metrics = stage.get("metrics") or {}
        for prefix in HEADLINE_ORDER:
            keys = [k for k in metrics if k.startswith(prefix)]  # in the recipe's reward order
            if keys:
                return f"{stage['name']}:{keys[0]}", metrics[keys[0]]
    return None


def find_pipeline_runs(root: str | Path) -> list[PipelineRun]:
    """Every pipeline run under ``root`` (a folder of runs, or one run folder), oldest first."""
    root = Path(root)
    if not root.exists():
        raise RlftError(f"folder {root} does not exist", fix="pass the folder that holds your runs (default: runs/)")
    own = RunLayout(root).summary
    paths = [own] if own.exists() else sorted(root.glob(f"*/{RunLayout.SUMMARY}"))
    runs = []
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RlftError(
                f"{path} is not valid JSON ({exc})", fix="the run's summary is damaged; re-run it with the same --run-id"
            ) from None
        started, finished = data.get("started"), data.get("finished")
        stages = data.get("stages", [])
        runs.append(
            PipelineRun(
                run_id=data.get("run_id", path.parent.name),
                recipe=data.get("recipe", "?"),
                status=data.get("status", "?"),
                started=started,
                duration_s=(finished - started) if started and finished else None,
                stages=[(s["name"], s["kind"], s.get("status", "?")) for s in stages],
                headline=headline(stages),
                path=path.parent,
            )
        )
    return sorted(runs, key=lambda r: r.started or 0.0)
