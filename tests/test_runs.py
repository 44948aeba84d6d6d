"""Reading W&B run files back: checked against wandb's own reader, truncated and corrupted files."""

from __future__ import annotations

import pytest
from test_pipeline import read_wandb_records

from rlft.errors import RlftError
from rlft.runs import read_wandb_file


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
