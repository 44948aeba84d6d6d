"""``rlft compare --report``: the comparison as a W&B report (wandb-workspaces), or how to get one.

A report lives on the W&B server and shows runs the server holds, so it needs ``--source wandb`` (a
login, runs synced). ``build_report`` only assembles the report object — no network — so it is tested
offline; ``save_report`` is the one call that talks to the server. Offline, ``sync_hint`` says which
``wandb sync`` commands upload the compared runs and what to run next.
"""

from __future__ import annotations

from rlft.analysis.compare import Row, render
from rlft.layout import RunLayout

CURVES = (("train/reward", "training reward"), ("train/kl", "KL to the reference (training)"), ("train/loss", "training loss"))


def build_report(rows: list[Row], *, entity: str, project: str, title: str):
    """A ``wandb_workspaces`` Report: the scorecard table, then reward/KL/loss curves with one run set per compared run."""
    import wandb_workspaces.reports.v2 as wr

    runs = list(dict.fromkeys(r.run for r in rows))
    runsets = [wr.Runset(entity=entity, project=project, name=run, filters=f"Group = '{run}'") for run in runs]
    panels = [wr.LinePlot(title=label, x="train/global_step", y=[key]) for key, label in CURVES]
    reward = next((k for r in rows for k in r.metrics if k.startswith("eval/reward/")), None)
    if reward:
        panels.append(wr.ScatterPlot(title=f"held-out {reward} vs KL", x="eval/kl_to_ref", y=reward))
    return wr.Report(
        entity=entity,
        project=project,
        title=title[:128],
        description=f"rlft compare {' '.join(runs)}",
        blocks=[
            wr.H1(text=title[:128]),
            wr.P(text="Held-out scorecard per run and stage (best per column in bold), as `rlft compare` printed it:"),
            wr.MarkdownBlock(text=render(rows, "markdown")),
            wr.PanelGrid(runsets=runsets, panels=panels),
        ],
    )


def save_report(report) -> str:
    """Create the report on the W&B server; its URL."""
    report.save()
    return report.url


def sync_hint(rows: list[Row]) -> str:
    """What to do when asked for a report without the W&B API: the sync commands for the compared runs."""
    wandb_dirs = [RunLayout(r.run_dir).wandb for r in rows if r.run_dir]
    folders = sorted({str(d / "offline-run-*") for d in wandb_dirs if d.exists()})
    sync = "\n".join(f"  wandb sync {f}" for f in folders) or "  (no local W&B folders: these runs were made with tracking disabled)"
    runs = " ".join(dict.fromkeys(r.run for r in rows))
    return (
        "a W&B report needs the runs on the W&B server and a login; these were read from local files.\n"
        f"Upload them:\n{sync}\n"
        f"then `wandb login` and: rlft compare {runs} --source wandb --project ENTITY/PROJECT --report"
    )
