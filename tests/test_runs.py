"""Reading W&B run files back: checked against wandb's own reader, truncated and corrupted files."""

from __future__ import annotations

import pytest
from test_pipeline import read_wandb_records

from rlft.errors import RlftError
from rlft.wandb_files import read_wandb_file


@pytest.fixture(scope="module")
def wandb_file(tmp_path_factory):
    """An offline run with config, 300 logged steps (several 32 KiB blocks), a summary and tags."""
    import wandb

    root = tmp_path_factory.mktemp("wandb")
    run = wandb.init(
        project="p",
        group="g",
        job_type="sft",
        name="g.sft",
        tags=["a", "b"],
        config={"lr": 1e-3, "nested": {"x": [1, 2]}},
        dir=str(root),
        mode="offline",
        settings=wandb.Settings(console="off", x_disable_stats=True),
    )
    for step in range(300):
        run.log({"train/loss": 1.0 / (step + 1), "train/reward": step * 0.01, "text": "x" * (step % 7)}, step=step)
    run.summary["eval/accuracy"] = 0.75
    run.finish()
    return next(root.glob("wandb/offline-run-*/run-*.wandb"))


def test_local_reader_matches_wandb_leet_inspect(wandb_file):
    run = read_wandb_file(wandb_file)
    records = read_wandb_records(wandb_file)
    meta = next(r for r in records if r.get("type") == "run")["run"]
    assert (run.project, run.group, run.job_type, run.name, run.tags) == ("p", "g", "sft", "g.sft", ["a", "b"])
    assert run.id == meta["run_id"] and run.config == {"lr": 1e-3, "nested": {"x": [1, 2]}}
    assert run.history == [r["history"]["item"] for r in records if r.get("type") == "history"]
    assert len(run.history) == 300 and run.history[299]["train/reward"] == pytest.approx(2.99)
    summary = {}
    for r in records:
        if r.get("type") == "summary":
            summary.update({k: v for k, v in r["summary"].get("update", {}).items() if not k.startswith("_wandb")})
    assert run.summary == summary and run.summary["eval/accuracy"] == 0.75
    assert run.state == "finished" and run.exit_code == 0
    assert wandb_file.stat().st_size > 2 * 32 * 1024  # records cross block boundaries (first/middle/last chunks)


def test_truncated_file_keeps_the_history_up_to_the_cut(wandb_file, tmp_path):
    full = read_wandb_file(wandb_file)
    cut = tmp_path / "run-cut.wandb"
    cut.write_bytes(wandb_file.read_bytes()[: wandb_file.stat().st_size // 2 + 11])  # mid-chunk, like a killed writer
    run = read_wandb_file(cut)
    assert 0 < len(run.history) < len(full.history)
    assert run.history == full.history[: len(run.history)]
    assert run.state == "crashed" and run.exit_code is None


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b"nonsense" + b[8:], "not a W&B run file"),
        (lambda b: b[:3], "not a W&B run file"),
        (lambda b: b[:13] + bytes([9]) + b[14:], "corrupted at byte 7"),  # the first chunk's type byte
    ],
)
def test_corrupted_file_is_a_clear_error(wandb_file, tmp_path, damage, message):
    bad = tmp_path / "run-bad.wandb"
    bad.write_bytes(damage(wandb_file.read_bytes()))
    with pytest.raises(RlftError, match=message) as info:
        read_wandb_file(bad)
    assert str(bad) in info.value.what


def test_rlft_runs_lists_pipeline_runs_with_status_and_headline(tmp_path):
    import json
    import os
    import subprocess
    import sys

    def summary(run_id, started, stages, status="done"):
        folder = tmp_path / run_id
        folder.mkdir()
        data = {"run_id": run_id, "recipe": "quickstart", "status": status, "started": started, "finished": started + 90, "stages": stages}
        (folder / "summary.json").write_text(json.dumps(data))

    summary("b", 2000.0, [{"name": "sft", "kind": "sft", "status": "done", "metrics": {"eval/loss": 0.5}}])
    summary(
        "a",
        1000.0,
        [
            {"name": "sft", "kind": "sft", "status": "cached", "metrics": {"eval/accuracy": 0.9}},
            {"name": "rl", "kind": "grpo", "status": "failed", "metrics": {}},
            {"name": "eval", "kind": "eval", "status": "not run"},
        ],
        status="failed",
    )
    from rlft.analysis.runs import find_pipeline_runs

    runs = find_pipeline_runs(tmp_path)
    assert [r.run_id for r in runs] == ["a", "b"]  # oldest first
    assert runs[0].headline == ("sft:eval/accuracy", 0.9) and runs[1].headline == ("sft:eval/loss", 0.5)
    assert runs[0].stages == [("sft", "sft", "cached"), ("rl", "grpo", "failed"), ("eval", "eval", "not run")]
    out = subprocess.run(
        [sys.executable, "-m", "rlft.cli", "runs", str(tmp_path)], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}
    )
    assert out.returncode == 0, out.stderr
    assert "sft✓ rl✗ eval·" in out.stdout and "1.50 min" in out.stdout and "sft:eval/accuracy 0.900" in out.stdout

    (tmp_path / "b" / "summary.json").write_text("{not json")
    bad = subprocess.run([sys.executable, "-m", "rlft.cli", "runs", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 2 and "b/summary.json is not valid JSON" in bad.stderr
