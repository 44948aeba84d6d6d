"""rlft sweep: a real Optuna sweep on the tiny model (and adding trials to it), pruning between stages,
failed trials, strict --param parsing, and the W&B sweep configuration."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import sum_rows, write_jsonl
from typer.testing import CliRunner

from rlft.analysis.sweep import ParamSpec, parse_param, parse_params, prepare_sweep, run_sweep, wandb_sweep_config
from rlft.cli import app as cli
from rlft.errors import RlftError


def sft_stage(name: str, **extra) -> dict:
    """An SFT stage of 1-2 steps that scores only its held-out loss (no generation): a few seconds."""
    return {
        "name": name,
        "kind": "sft",
        "data": "sft.jsonl",
        "eval_fraction": 0.25,
        "scorecard": {"prompts": 0, "baseline": False},
        "trl": {"max_steps": 2, "per_device_train_batch_size": 4, "learning_rate": 1e-3},
        **extra,
    }


def write_recipe(tmp_path: Path, tiny_model: Path, stages: list[dict], tracking: str = "offline") -> Path:
    write_jsonl(tmp_path / "sft.jsonl", sum_rows(16))
    path = tmp_path / "sweep.yaml"
    recipe = {"name": "sw", "model": str(tiny_model), "tracking": {"project": "rlft-test", "mode": tracking}, "stages": stages}
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_sweep_runs_trials_records_them_and_adds_more(tiny_model, tmp_path):
    from rlft.analysis.compare import load_rows
    from rlft.wandb_files import read_wandb_file

    recipe = write_recipe(tmp_path, tiny_model, [sft_stage("sft")])
    args = [
        "sweep",
        str(recipe),
        "--param",
        "stages.sft.trl.learning_rate=loguniform(1e-4,1e-1)",
        "--param",
        "stages.sft.trl.max_steps=choice(1,2)",
        "--metric",
        "eval/loss",
        "--direction",
        "minimize",
        "--sweep-id",
        "sw",
        "--output-dir",
        str(tmp_path / "runs"),
    ]
    out = CliRunner().invoke(cli.app, [*args, "--trials", "3"])
    assert out.exit_code == 0, out.output
    folder = tmp_path / "runs" / "sw"
    table = json.loads((folder / "trials.json").read_text())
    trials = table["trials"]
    assert [t["run_id"] for t in trials] == ["sw-t0", "sw-t1", "sw-t2"]
    assert {t["state"] for t in trials} == {"complete"}
    for t in trials:
        run = folder / t["run_id"]
        stage = json.loads((run / "recipe.json").read_text())["recipe"]["stages"][0]
        assert stage["trl"]["learning_rate"] == t["params"]["stages.sft.trl.learning_rate"]
        assert stage["trl"]["max_steps"] == t["params"]["stages.sft.trl.max_steps"]
        summary = json.loads((run / "summary.json").read_text())
        assert t["value"] == summary["stages"][0]["metrics"]["eval/loss"]
        assert summary["stages"][0]["metrics"]["train/steps"] == t["params"]["stages.sft.trl.max_steps"]
        assert t["by_stage"] == {"sft": t["value"]}
    best = min(trials, key=lambda t: t["value"])
    assert table["best"] == best["number"] and [t["best"] for t in trials] == [t is best for t in trials]
    rows = list(csv.DictReader((folder / "trials.csv").open()))
    assert [(r["run_id"], float(r["value"]), r["best"]) for r in rows] == [(t["run_id"], t["value"], str(t["best"])) for t in trials]
    assert "sweep sw: eval/loss (minimize)" in out.output and f"★ {best['number']}" in out.output

    # W&B: the stage run keeps group = its run id (what rlft compare looks up) and carries the sweep's tag.
    wandb_run = read_wandb_file(next((folder / "sw-t0").glob("wandb/*/run-*.wandb")))
    assert wandb_run.group == "sw-t0" and "sweep:sw" in wandb_run.tags
    compared = load_rows(["sw-t0", "sw-t1"], folder)
    assert [r.metrics["eval/loss"] for r in compared] == [trials[0]["value"], trials[1]["value"]]

    again = CliRunner().invoke(cli.app, [*args, "--trials", "1"])
    assert again.exit_code == 0, again.output
    more = json.loads((folder / "trials.json").read_text())["trials"]
    assert [t["run_id"] for t in more] == ["sw-t0", "sw-t1", "sw-t2", "sw-t3"]
    assert more[:3] == [{**t, "best": more[i]["best"]} for i, t in enumerate(trials)]
    assert (folder / "sw-t3" / "summary.json").exists()

    other = CliRunner().invoke(cli.app, [*args[:-6], "--direction", "maximize", *args[-4:], "--trials", "1"])
    assert other.exit_code == 2 and "was started with --direction minimize, not --direction maximize" in other.output


def test_pruned_trial_stops_before_its_next_stage(tiny_model, tmp_path):
    recipe = write_recipe(tmp_path, tiny_model, [sft_stage("sft"), sft_stage("more", init_from="sft")], tracking="disabled")
    sweep = prepare_sweep(
        recipe,
        params=["stages.sft.trl.learning_rate=loguniform(1e-4,1e-2)"],
        metric="eval/loss",
        direction="minimize",
        sweep_id="pr",
        output_dir=str(tmp_path / "runs"),
    )
    # Any held-out loss is above 0: this pruner stops every trial at its first report, i.e. after stage sft.
    rows = run_sweep(sweep, trials=1, pruner=optuna.pruners.ThresholdPruner(upper=0.0))
    run = sweep.folder / "pr-t0"
    summary = json.loads((run / "summary.json").read_text())
    assert rows[0].state == "pruned"
    assert rows[0].by_stage == {"sft": summary["stages"][0]["metrics"]["eval/loss"]} and rows[0].value == rows[0].by_stage["sft"]
    assert summary["status"] == "stopped" and "after stage sft" in summary["stopped"]
    assert [(s["name"], s["status"]) for s in summary["stages"]] == [("sft", "done"), ("more", "not run")]
    assert not (run / "more").exists() and not (run / ".more.partial").exists()


def test_failed_trials_are_recorded_and_a_wrong_metric_stops_the_sweep(tiny_model, tmp_path, monkeypatch):
    import rlft.pipeline.run

    recipe = write_recipe(tmp_path, tiny_model, [sft_stage("sft")])
    sweep = prepare_sweep(
        recipe,
        params=["stages.sft.trl.max_steps=int(1,3)"],
        metric="eval/loss",
        direction="minimize",
        sweep_id="f",
        output_dir=str(tmp_path),
    )
    calls = []

    def fake_pipeline(recipe, *, source, run_id, console, after_stage):  # trial 0 fails, trial 1 finishes
        calls.append(run_id)
        stage = {"name": "sft", "kind": "sft", "status": "done", "metrics": {"eval/loss": 1.5}}
        if len(calls) == 1:
            stage = {"name": "sft", "kind": "sft", "status": "failed", "error": "out of memory"}
        return {"run_id": run_id, "run_dir": str(tmp_path / run_id), "status": stage["status"], "stages": [stage]}

    monkeypatch.setattr(rlft.pipeline.run, "run_pipeline", fake_pipeline)
    rows = run_sweep(sweep, trials=2)
    assert [(r.state, r.value, r.error, r.best) for r in rows] == [
        ("failed", None, "stage sft: out of memory", False),
        ("complete", 1.5, None, True),
    ]
    wrong = prepare_sweep(
        recipe,
        params=["stages.sft.trl.max_steps=int(1,3)"],
        metric="eval/los",
        direction="minimize",
        sweep_id="w",
        output_dir=str(tmp_path),
    )
    with pytest.raises(RlftError, match="did you mean 'eval/loss'"):
        run_sweep(wrong, trials=5)
    assert len(calls) == 3  # the sweep stopped at its first trial


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stages.sft.trl.learning_rate", "is not KEY=DISTRIBUTION"),
        ("lr=log_uniform(1e-6,1e-4)", "did you mean 'loguniform'"),
        ("lr=randint(1,4)", "did you mean 'int'"),
        ("lr=gauss(0,1)", "distributions: loguniform(LOW,HIGH)"),
        ("lr=1e-5", "pass it as an override"),
        ("lr=loguniform(0,1e-4)", "a log scale needs LOW > 0"),
        ("lr=uniform(0.2,0.1)", "LOW must be below HIGH"),
        ("lr=uniform(0.1)", "takes two bounds"),
        ("lr=uniform(a,b)", "must be numbers"),
        ("r=int(1.5,4)", "must be integers"),
        ("r=choice(8)", "at least two values"),
        ("r=choice(8,16,8)", "8 more than once"),
        ("r=choice([8,16])", "comma-separated"),
    ],
)
def test_param_parsing_errors(text, message):
    with pytest.raises(RlftError) as err:
        parse_param(text)
    assert message in err.value.render()


def test_param_parsing_values():
    assert parse_param("stages.rl.trl.learning_rate=loguniform(1e-6, 1e-4)") == ParamSpec(
        "stages.rl.trl.learning_rate", "loguniform", (1e-6, 1e-4), "stages.rl.trl.learning_rate=loguniform(1e-6, 1e-4)"
    )
    assert parse_param("x=uniform(0,1)").values == (0.0, 1.0)
    assert parse_param("x=choice(8, adamw_torch, 1e-3, true)").values == (8, "adamw_torch", 1e-3, True)
    assert parse_param("x=choice(8,16)").override(16) == "x=16" and parse_param("x=choice(a,b)").override("b") == 'x="b"'
    with pytest.raises(RlftError, match="more than once"):
        parse_params(["x=int(1,2)", "x=int(3,4)"])
    with pytest.raises(RlftError, match="no --param"):
        parse_params([])


@pytest.mark.parametrize(
    ("param", "options", "message"),
    [
        ("stages.sft.trl.learnin_rate=uniform(0.1,0.2)", {}, "did you mean 'learning_rate'"),
        ("stages.sfx.trl.learning_rate=uniform(0.1,0.2)", {}, "no stage named 'sfx'"),
        ("stages.sft.peft.lora.rank=choice(8,16)", {}, "stages.sft.peft.lora.rank: unknown key"),
        ("stages.sft.peft.lora.r=int(0,8)", {}, "tried stages.sft.peft.lora.r=0"),
        ("stages.sft.trl.learning_rate=uniform(0.1,0.2)", {"stage": "sfy"}, "did you mean 'sft'"),
        ("stages.sft.trl.learning_rate=uniform(0.1,0.2)", {"direction": "maximise"}, "did you mean 'maximize'"),
        ("stages.sft.trl.learning_rate=uniform(0.1,0.2)", {"overrides": ["stages.sft.trl.learning_rate=0.1"]}, "both an override and"),
        ("stages.sft.trl.learning_rate=uniform(0.1,0.2)", {"sweep_id": "a b"}, "--sweep-id 'a b'"),
    ],
)
def test_params_are_checked_against_the_recipe(tiny_model, tmp_path, param, options, message):
    recipe = write_recipe(tmp_path, tiny_model, [sft_stage("sft")])
    with pytest.raises(RlftError) as err:
        prepare_sweep(recipe, params=[param], metric="eval/loss", **{"direction": "minimize", **options})
    assert message in err.value.render()


def test_wandb_sweep_config_translation():
    specs = parse_params(
        [
            "stages.rl.trl.learning_rate=loguniform(1e-6,1e-4)",
            "stages.sft.trl.warmup_ratio=uniform(0,0.2)",
            "stages.rl.trl.num_generations=int(2,8)",
            "stages.sft.peft.lora.r=choice(8,16,32)",
        ]
    )
    assert wandb_sweep_config(specs, "eval/reward/math_accuracy", "maximize", "lr-search") == {
        "name": "lr-search",
        "method": "bayes",
        "metric": {"name": "eval/reward/math_accuracy", "goal": "maximize"},
        "parameters": {
            "stages.rl.trl.learning_rate": {"distribution": "log_uniform_values", "min": 1e-6, "max": 1e-4},
            "stages.sft.trl.warmup_ratio": {"distribution": "uniform", "min": 0.0, "max": 0.2},
            "stages.rl.trl.num_generations": {"distribution": "int_uniform", "min": 2, "max": 8},
            "stages.sft.peft.lora.r": {"values": [8, 16, 32]},
        },
    }


def test_wandb_sweep_needs_w_and_b_online(tiny_model, tmp_path):
    recipe = write_recipe(tmp_path, tiny_model, [sft_stage("sft")])
    base = ["sweep", str(recipe), "--param", "stages.sft.trl.max_steps=int(1,2)", "--metric", "eval/loss", "--direction", "minimize"]
    out = CliRunner().invoke(cli.app, [*base, "--wandb-sweep", "--output-dir", str(tmp_path / "runs")])
    assert out.exit_code == 2 and "--wandb-sweep needs W&B online" in out.output
    out = CliRunner().invoke(cli.app, [*base, "--wandb-sweep", "--prune"])
    assert out.exit_code == 2 and "--prune works with Optuna's search only" in out.output
