"""What rlft prints on a terminal: tables that fit 80 columns with every figure whole, and progress lines in a log."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

WIDTH = 80


def three(x: float, sign: bool = False) -> str:
    """A figure to 3 significant digits, written here apart from rlft's formatter (the tables' promise, restated)."""
    if abs(x) >= 999.5:
        return f"{x:{'+' if sign else ''}.0f}"
    return f"{x:{'+' if sign else ''}#.3g}".removesuffix(".")


def test_three_significant_digits_by_hand():
    # the formatter the tests below check the tables with, on values worked out by hand
    assert [three(v) for v in (0.61234, 0.05, 12.345, 1234.6, 0.5, -0.0312)] == ["0.612", "0.0500", "12.3", "1235", "0.500", "-0.0312"]


def printed(renderable_or_fn, width: int = WIDTH) -> str:
    from rich.console import Console

    console = Console(width=width, record=True, file=io.StringIO())
    if callable(renderable_or_fn):
        renderable_or_fn(console)
    else:
        console.print(renderable_or_fn)
    return console.export_text()


def assert_whole(text: str, figures: list[str]) -> None:
    """Every figure occurs whole (not cut by an ellipsis, not broken over two lines), and nothing is cut."""
    missing = [f for f in figures if f not in text]
    assert not missing, f"figures not shown whole at {WIDTH} columns: {missing}\n{text}"
    assert "…" not in text, text
    assert all(len(line) <= WIDTH for line in text.splitlines()), text


# --------------------------------------------------------------------------- rlft compare


RUNS = ["quickstart-20261125-120000", "quickstart-20261125-130000", "quickstart-20261125-140000"]


def compare_rows(n_runs: int = 3):
    from rlft.analysis.compare import Row

    rows = []
    for k in range(n_runs):
        run = RUNS[k] if k < len(RUNS) else f"quickstart-20261125-{150000 + k}"
        config = {"name": "q", "stages": [{"name": "sft", "trl": {"learning_rate": 1e-4 * (k + 1)}}]}
        sft = {
            "eval/accuracy": 0.61234 + k / 10,
            "eval/kl_to_ref": 0.0123 + k / 1000,
            "train/runtime_s": 1234.6 + k,
            "params/trainable": 134515008.0,
            "sys/peak_rss_gb": 5.4321,
        }
        rl = {
            "eval/reward/math_accuracy": 0.25 + k / 7,
            "eval/reward/answer_format": 0.9,
            "eval/kl_to_ref": 3.21 + k,
            "eval/mean_length": 23.456,
            "train/runtime_s": 456.7,
        }
        rows += [Row(run, "sft", "sft", sft, config=config), Row(run, "rl", "grpo", rl, config=config)]
    return rows


def compare_figures(rows) -> list[str]:
    figures = []
    for r in rows:
        for key, v in r.metrics.items():
            figures.append(f"{int(v)}" if key == "params/trainable" else three(v))
    return figures


def test_compare_at_80_columns_puts_runs_in_columns_named_by_what_differs_and_shows_every_figure():
    from rlft.analysis.compare import render

    rows = compare_rows(3)
    text = printed(lambda console: render(rows, "rich", console))
    assert_whole(text, compare_figures(rows))
    # few runs: metrics as rows, one column per run, headed by the part of the id that differs
    header = next(line for line in text.splitlines() if "┃ stage" in line)
    assert all(name in header for name in ("120000", "130000", "140000")) and "quickstart" not in header
    # the caption says what each column is: the full id and the setting that differs
    caption = " ".join(text.split())
    assert "120000 = quickstart-20261125-120000 (sft.learning_rate=0.0001)" in caption
    assert "140000 = quickstart-20261125-140000 (sft.learning_rate=0.0003)" in caption


def test_compare_of_many_runs_at_80_columns_changes_layout_and_still_shows_every_figure():
    from rlft.analysis.compare import render

    rows = compare_rows(9)
    text = printed(lambda console: render(rows, "rich", console))
    assert_whole(text, compare_figures(rows))
    assert "metric" in text and "value" in text  # one row per run, stage and metric


def test_short_names_keep_what_differs():
    from rlft.analysis.compare import short_names

    assert short_names(["lr-low", "lr-high"]) == {"lr-low": "low", "lr-high": "high"}
    assert short_names(["a-1-x", "a-2-x"]) == {"a-1-x": "1", "a-2-x": "2"}
    assert short_names(["same", "same"]) == {"same": "same"}  # nothing left to tell them apart: the full ids
    assert short_names(["only"]) == {"only": "only"}


def test_paired_differences_at_80_columns_show_change_interval_and_p_whole():
    from rlft.analysis.compare import Paired, _paired_rich
    from rlft.evaluation.statistics import paired_bootstrap

    a, b = [0, 1, 0, 1, 0, 1, 0, 0, 1, 0], [1, 1, 0, 1, 1, 1, 0, 1, 1, 0]
    delta = paired_bootstrap(a, b)
    assert delta.delta == pytest.approx(0.3)  # (6 - 3) / 10, by hand
    paired = [Paired("rl", "reward/math_accuracy", RUNS[0], RUNS[1], delta)]
    text = printed(_paired_rich(paired, {RUNS[0]: "120000", RUNS[1]: "130000"}))
    assert_whole(text, [three(0.3, sign=True), three(delta.ci_low, sign=True), three(delta.ci_high, sign=True), three(delta.p_value)])
    assert "130000 - 120000" in text


def test_compare_command_piped_at_80_columns(tmp_path):
    runs = tmp_path / "runs"
    figures = []
    for run, acc, loss in (("lr-low", 0.61234, 1.2345), ("lr-high", 0.71234, 0.98765)):
        (runs / run).mkdir(parents=True)
        metrics = {"eval/accuracy": acc, "eval/mean_length": loss * 10, "train/runtime_s": 1234.6}
        stages = [{"name": "sft", "kind": "sft", "status": "done", "metrics": metrics}]
        (runs / run / "summary.json").write_text(json.dumps({"run_id": run, "status": "done", "stages": stages}))
        figures += [three(v) for v in metrics.values()]
    out = subprocess.run(
        [sys.executable, "-m", "rlft.cli", "compare", "lr-low", "lr-high", "--runs-dir", str(runs)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": str(WIDTH)},
    )
    assert out.returncode == 0, out.stderr
    assert_whole(out.stdout, figures)
    assert "low" in out.stdout and "high" in out.stdout


# --------------------------------------------------------------------------- rlft run / rlft summary / rlft runs


def summary_with_everything() -> tuple[dict, list[str]]:
    """A run of four stages with a scorecard, gains, rounds and guards; and the figures its tables must show."""
    from rlft.evaluation.statistics import paired_bootstrap

    gain = paired_bootstrap([0, 1, 0, 1, 0, 0, 0, 1], [1, 1, 0, 1, 1, 0, 1, 1]).metrics("eval/delta/reward/math_accuracy")
    scorecard = {
        "baseline/accuracy": 0.51234,
        "eval/accuracy": 0.61234,
        "baseline/loss": 2.34567,
        "eval/loss": 1.23456,
        "baseline/kl_to_ref": 0.0,
        "eval/kl_to_ref": 0.0456,
        "baseline/mean_length": 31.234,
        "eval/mean_length": 27.891,
        "baseline/reward/math_accuracy": 0.125,
        "eval/reward/math_accuracy": 0.625,
        "baseline/reward/answer_format": 0.3333,
        "eval/reward/answer_format": 0.9876,
    }
    rounds = {
        "rounds/done": 2,
        "rounds/best_round": 2,
        "round1/kept": 12,
        "round1/train/mean_reward": 0.4321,
        "round1/train/pass_at_k": 0.7654,
        "round1/heldout/reward/math_accuracy": 0.3456,
        "round1/heldout/kl_to_ref": 1.2345,
        "round1/wall_s": 123.4,
        "round2/kept": 15,
        "round2/train/mean_reward": 0.5432,
        "round2/train/pass_at_k": 0.8765,
        "round2/heldout/reward/math_accuracy": 0.4567,
        "round2/heldout/kl_to_ref": 2.3456,
        "round2/wall_s": 234.5,
    }
    guards = {"probe/general/accuracy": 0.4123, "baseline/probe/general/accuracy": 0.5234, "generalisation_gap/math_accuracy": 0.1789}
    stages = [
        {"name": "sft", "kind": "sft", "status": "done", "wall_s": 71.4, "metrics": {"train/loss": 1.98765, **scorecard}},
        {
            "name": "rl",
            "kind": "grpo",
            "status": "done",
            "wall_s": 1234.6,
            "metrics": {"train/loss": 0.01234, "train/reward": 0.56789, **scorecard, **gain},
        },
        {"name": "ei", "kind": "expert_iteration", "status": "done", "wall_s": 400.2, "metrics": {**rounds, **scorecard}},
        {"name": "eval", "kind": "eval", "status": "done", "wall_s": 30.0, "metrics": {**scorecard, **guards}},
    ]
    figures = [three(v) for v in (1.98765, 0.01234, 0.56789)] + ["71 s", "1235 s", "400 s"]
    figures += [three(v) for k, v in scorecard.items() if k != "baseline/kl_to_ref"] + ["0.00"]
    key = "eval/delta/reward/math_accuracy"
    figures += [three(gain[key], sign=True), three(gain[key + "/ci_low"], sign=True), three(gain[key + "/ci_high"], sign=True), "8"]
    figures += [three(rounds[k]) for k in rounds if k.startswith("round") and ("reward" in k or "pass" in k or "kl" in k)]
    figures += ["12", "15", "123 s", "234 s"]
    figures += [three(v) for v in guards.values()]
    return {
        "run_id": "quickstart-20261125-120000",
        "status": "done",
        "run_dir": "runs/quickstart-20261125-120000",
        "stages": stages,
    }, figures


def test_end_of_run_tables_at_80_columns_show_every_figure():
    from rlft.cli.tables import print_summary

    summary, figures = summary_with_everything()
    text = printed(lambda console: print_summary(summary, console))
    assert_whole(text, figures)
    for title in ("held-out scorecard", "held-out gain", "rounds:", "guards:"):
        assert title in " ".join(text.split())


def test_summary_and_runs_commands_piped_at_80_columns(tmp_path):
    summary, figures = summary_with_everything()
    run = tmp_path / summary["run_id"]
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({**summary, "recipe": "quickstart", "started": 1000.0, "finished": 1000.0 + 754.2}))
    env = {**os.environ, "COLUMNS": str(WIDTH)}
    shown = subprocess.run([sys.executable, "-m", "rlft.cli", "summary", str(run)], capture_output=True, text=True, env=env)
    assert shown.returncode == 0, shown.stderr
    assert_whole(shown.stdout, figures)
    listed = subprocess.run([sys.executable, "-m", "rlft.cli", "runs", str(tmp_path)], capture_output=True, text=True, env=env)
    assert listed.returncode == 0, listed.stderr
    # took 754.2 s = 12.57 min; the headline is the last stage's held-out reward; the start time whole
    assert_whole(listed.stdout, ["12.6 min", "0.625", "1970-01-01 00:16"])


# --------------------------------------------------------------------------- plots


def test_held_out_plot_names_the_reward_on_its_axis(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from rlft.analysis.compare import Row
    from rlft.analysis.plots import write_plots

    labels = {}
    monkeypatch.setattr(Figure, "savefig", lambda fig, path, **kw: labels.update({path.name: fig.axes[0].get_ylabel()}))
    rows = [Row(run, "rl", "grpo", {"eval/reward/math_accuracy": r, "eval/kl_to_ref": 1.0}) for run, r in (("a", 0.1), ("b", 0.2))]
    write_plots(rows, tmp_path)
    assert labels["heldout_reward_vs_kl.png"].startswith("math_accuracy") and "eval/reward" not in labels["heldout_reward_vs_kl.png"]


# --------------------------------------------------------------------------- progress


PROMPTS = [[{"role": "user", "content": f"{i}+1="}] for i in range(5)]


def test_generation_reports_batches_done_of_total_as_plain_lines_off_a_terminal(tiny_model, capsys, monkeypatch):
    from rlft.evaluation.scorecard import Scorecard
    from rlft.models import load_causal_lm, load_tokenizer

    model, tok = load_causal_lm(str(tiny_model)), load_tokenizer(str(tiny_model))
    capsys.readouterr()
    monkeypatch.setenv("RLFT_PROGRESS_SECONDS", "0")  # a line per batch
    card = Scorecard(prompts=PROMPTS, columns={}, rewards=[], max_new_tokens=4, batch_size=2)
    card.score(model, tok, "eval")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[held-out eval]")]
    # 5 prompts in batches of 2: 3 batches
    assert [re.search(r"\] (\d+/\d+) batches", line).group(1) for line in lines] == ["1/3", "2/3", "3/3"], lines
    assert all(" tok/s · " in line and " elapsed · ETA " in line for line in lines)
    # each line's token rate counts the tokens generated so far (EOS included), which the scorecard kept
    assert sum(card.samples["eval"].lengths) > 0 and "ETA 00:00" in lines[-1]

    monkeypatch.setenv("RLFT_PROGRESS_SECONDS", "600")  # a log: the first and the last batch only
    card.score(model, tok, "baseline")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[held-out baseline]")]
    assert [re.search(r"\] (\d+/\d+) batches", line).group(1) for line in lines] == ["1/3", "3/3"], lines


def test_progress_on_a_terminal_draws_a_bar_and_a_phase_says_how_long_it_took():
    from rlft.progress import Progress, phase

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    with Progress("merge", 3, unit="members", stream=screen) as progress:
        assert progress.bar is not None
        for _ in range(3):
            progress.update()
    assert "3/3" in screen.getvalue() and "merge" in screen.getvalue()
    log = io.StringIO()
    with phase("load runs/x/model", stream=log):
        pass
    assert re.fullmatch(r"\[load runs/x/model\] \.\.\.\n\[load runs/x/model\] done in \d+\.\d s\n", log.getvalue())


def test_pipeline_eta_from_the_finished_stages_seconds_per_step():
    from rlft.pipeline.run import eta_line, steps_of

    now = 10_000.0
    summary = {
        "started": now - 3725,  # 1 h 2 min 5 s ago
        "stages": [
            {"name": "sft", "kind": "sft", "status": "done", "process_wall_s": 100.0, "metrics": {"train/steps": 50}},  # 2 s/step
            {"name": "rl", "kind": "grpo", "status": "done", "process_wall_s": 300.0, "metrics": {"train/steps": 10}},  # 30 s/step
            {"name": "old", "kind": "grpo", "status": "cached", "wall_s": 9999.0, "metrics": {"train/steps": 1}},  # not timed now
        ],
    }
    # rl2 (grpo) at the grpo rate: 20 x 30 = 600 s; dpo at the pooled rate 400 s / 60 steps: 40 x 6.667 = 266.7 s; 866.7 s = 14:26
    line = eta_line(summary, [("rl2", "grpo", 20), ("dpo", "dpo", 40)], now=now)
    assert line == "   3/5 stages done · 1:02:05 elapsed · 2 left · ETA 14:26"
    assert eta_line(summary, [("rl2", "grpo", 20), ("dpo", "dpo", 40), ("eval", "eval", None)], now=now).endswith(
        "3 left · ETA over 14:26 (no step count for: eval)"
    )
    assert eta_line(summary, [("eval", "eval", None)], now=now).endswith("ETA unknown (no step count for: eval)")
    untimed = {"started": now - 5, "stages": [summary["stages"][2]]}
    assert eta_line(untimed, [("rl2", "grpo", 20)], now=now).endswith("ETA unknown (no stage that ran has a step count yet)")
    assert steps_of(SimpleNamespace(trl={"max_steps": 20})) == 20
    assert steps_of(SimpleNamespace(trl={"num_train_epochs": 2})) is None and steps_of(SimpleNamespace(kind="eval")) is None
