"""rlft compare: two runs that differ by one override, side by side, figures equal to what was logged."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from conftest import sum_rows, write_jsonl

from rlft.errors import RlftError
from rlft.pipeline import run_pipeline
from rlft.recipe import load_recipe
from rlft.runs import read_wandb_file


@pytest.fixture(scope="module")
def two_runs(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    write_jsonl(root / "sft.jsonl", sum_rows(20))
    recipe = {
        "name": "lr",
        "model": str(tiny_model),
        "tracking": {"project": "rlft-test"},
        "stages": [
            {
                "name": "sft",
                "kind": "sft",
                "data": "sft.jsonl",
                "scorecard": {"prompts": 2, "max_new_tokens": 4},
                "trl": {"max_steps": 3, "per_device_train_batch_size": 8},
            }
        ],
    }
    path = root / "lr.yaml"
    path.write_text(yaml.safe_dump(recipe))
    for run_id, lr in (("lr-low", 1e-4), ("lr-high", 5e-3)):
        summary = run_pipeline(
            load_recipe(path, [f"stages.sft.trl.learning_rate={lr}"]), source=str(path), run_id=run_id, output_dir=str(root / "runs")
        )
        assert summary["status"] == "done", summary
    return root / "runs"


def test_compare_table_holds_what_training_logged(two_runs):
    out = subprocess.run(
        [sys.executable, "-m", "rlft.cli", "compare", "lr-low", "lr-high", "--runs-dir", str(two_runs), "--format", "json"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    table = json.loads(out.stdout)
    rows = {r["run"]: r for r in table["rows"]}
    assert set(rows) == {"lr-low", "lr-high"}
    for run_id, row in rows.items():
        logged = read_wandb_file(next((two_runs / run_id / "wandb").glob("offline-run-*/run-*.wandb"))).summary
        for column, spec in table["columns"].items():
            assert row[column] == logged[spec["metric"]], (run_id, column)
        assert row["accuracy"] == json.loads((two_runs / run_id / "summary.json").read_text())["stages"][0]["metrics"]["eval/accuracy"]
    assert rows["lr-low"]["accuracy"] != rows["lr-high"]["accuracy"]  # the override changed the outcome
    assert table["best"]["accuracy"] == max(r["accuracy"] for r in rows.values())
    assert table["columns"]["kl_to_ref"]["better"] == "lower"


def test_compare_formats_and_bad_references(two_runs, capsys):
    from rlft.compare import load_rows, render

    rows = load_rows(["lr-low/sft", str(two_runs / "lr-high")], two_runs)
    assert [(r.run, r.stage) for r in rows] == [("lr-low", "sft"), ("lr-high", "sft")]
    csv_text = render(rows, "csv")
    assert csv_text.splitlines()[0].startswith("run,stage,kind,") and len(csv_text.splitlines()) == 3
    md = render(rows, "markdown")
    assert md.count("**") >= 2 and md.startswith("| run | stage | kind |")
    with pytest.raises(RlftError, match=r"(?s)no run 'nope'.*runs here: lr-high, lr-low"):
        load_rows(["nope"], two_runs)
    with pytest.raises(RlftError, match="has no stage 'rl'"):
        load_rows(["lr-low/rl"], two_runs)
    with pytest.raises(RlftError, match="unknown format"):
        render(rows, "xml")
