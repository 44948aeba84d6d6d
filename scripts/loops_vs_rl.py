"""Which loop gains most per CPU-minute here: expert iteration, iterative DPO and GRPO from the same SFT model.

Every arm starts from the same model (recipes/self_improve.yaml's ``sft`` stage, trained once and copied into
each arm's run folder, where rlft reuses it by its fingerprint), trains on the same prompts (``bundled:arithmetic``)
with the same rewards (math_accuracy + 0.2 x answer_format), and is scored the same way by its stage's own
scorecard: greedy completions to the same 200 held-out sums, paired against the SFT model.

    expert_iteration  recipes/self_improve.yaml's ``improve`` stage as shipped
    iterative_dpo     the same rounds and sampling; DPO (beta 0.1, LoRA, lr 2e-4) on each sum's best try
                      against its worst
    grpo              recipes/quickstart.yaml's ``rl`` stage's settings, on the same prompts as the others

CPU time is the stage's ``train/runtime_s``: for the round stages, sampling, scoring and training (held-out
scoring left out); for GRPO, TRL's training loop (its generation included). For each arm: held-out accuracy
SFT -> arm with the paired-bootstrap interval of the gain, gain per CPU-minute, and the ratio of its rate to
expert iteration's with a bootstrap interval over prompts (paired: the same prompt draws for every arm).

    python scripts/loops_vs_rl.py [--runs DIR] [--id NAME] [--arms expert_iteration,iterative_dpo,grpo] [--reuse]

``--reuse`` keeps arms already run under that id. Run it alone on the machine: the rates are wall-clock.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from rl_efficiency import bootstrap_rates, interval  # noqa: E402 - the same paired rate bootstrap as rl_efficiency.py

SELF_IMPROVE = ROOT / "recipes" / "self_improve.yaml"
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
ARMS = ("expert_iteration", "iterative_dpo", "grpo")


def arm_recipe(arm: str) -> dict:
    """The arm's recipe: self_improve's SFT stage and, as ``improve``, the arm's learning stage."""
    recipe = yaml.safe_load(SELF_IMPROVE.read_text())
    sft, improve = recipe["stages"]
    if arm == "iterative_dpo":
        improve = {k: v for k, v in improve.items() if k != "keep"}
        improve.update(
            kind="iterative_dpo",
            pairs={"min_margin": 0.0},
            trl={
                "beta": 0.1,
                "num_train_epochs": 2,
                "per_device_train_batch_size": 8,
                "learning_rate": 2e-4,
                "lr_scheduler_type": "constant",
            },
        )
    elif arm == "grpo":
        rl = next(s for s in yaml.safe_load(QUICKSTART.read_text())["stages"] if s["name"] == "rl")
        # The quickstart's GRPO settings on the other arms' prompts and held-out sums (the quickstart itself mixes in
        # extra carry sums, which would make this arm's training prompts differ).
        rl = {k: v for k, v in rl.items() if k not in ("eval_data", "early_stopping")}
        improve = {**rl, "name": "improve", "data": improve["data"]}
    elif arm != "expert_iteration":
        raise SystemExit(f"unknown arm {arm!r}: choose from {', '.join(ARMS)}")
    recipe.update(name=f"loops_{arm}", stages=[sft, improve])
    return recipe


def run_arm(arm: str, runs: Path, run_id: str, sft_from: Path | None, reuse: bool) -> Path:
    run_dir = runs / f"{run_id}-{arm}"
    if reuse and (run_dir / "summary.json").exists():
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    if sft_from is not None and not (run_dir / "sft").exists():
        shutil.copytree(sft_from, run_dir / "sft")  # the same SFT model: rlft reuses it (same fingerprint)
    recipe = run_dir.parent / f"{run_id}-{arm}.yaml"
    recipe.write_text(yaml.safe_dump(arm_recipe(arm), sort_keys=False))
    cmd = [sys.executable, "-m", "rlft.cli", "run", str(recipe), "--run-id", run_dir.name, "--output-dir", str(runs)]
    subprocess.run(cmd, check=True)
    return run_dir


def per_prompt(run_dir: Path) -> tuple[list[float], list[float], dict]:
    """The SFT model's and the arm's held-out math_accuracy per prompt (the stage's samples.jsonl), and its metrics."""
    rows = [json.loads(line) for line in (run_dir / "improve" / "samples.jsonl").read_text().splitlines()]
    stages = {s["name"]: s for s in json.loads((run_dir / "summary.json").read_text())["stages"]}
    return [r["baseline_math_accuracy"] for r in rows], [r["eval_math_accuracy"] for r in rows], stages["improve"]["metrics"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(ROOT / "runs"))
    parser.add_argument("--id", default="loops")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()

    from rlft.evaluation.statistics import paired_bootstrap

    runs, arms = Path(args.runs), [a for a in args.arms.split(",") if a]
    dirs: dict[str, Path] = {}
    for arm in arms:
        first = next(iter(dirs.values()), None)
        dirs[arm] = run_arm(arm, runs, args.id, first / "sft" if first else None, args.reuse)
    before, afters, minutes, metrics = None, {}, {}, {}
    for arm, run_dir in dirs.items():
        base, after, m = per_prompt(run_dir)
        if before is not None and base != before:
            raise SystemExit(f"{arm}: its SFT model answered the held-out prompts differently: not the same start")
        before, afters[arm], minutes[arm], metrics[arm] = base, after, m["train/runtime_s"] / 60, m
    draws = bootstrap_rates(before, afters, minutes)
    reference = arms[0]
    print(f"\nstart: recipes/self_improve.yaml's SFT model; held-out: {len(before)} sums, greedy; CPU time: train/runtime_s")
    print(f"{'arm':<17} {'CPU s':>6}  {'accuracy':>13}  {'gain [95% CI]':>24}  {'gain/CPU-min':>12}  vs {reference}")
    rates = {}
    for arm, after in afters.items():
        d = paired_bootstrap(before, after)
        rates[arm] = d.delta / minutes[arm]
        line = (
            f"{arm:<17} {minutes[arm] * 60:>6.0f}  {d.mean_a:.3f} -> {d.mean_b:.3f}  "
            f"{d.delta:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]  {rates[arm]:>+12.4f}"
        )
        if arm != reference and rates[reference] > 0:
            ratios = [a / r for a, r in zip(draws[arm], draws[reference], strict=True) if r > 0]
            lo, hi = interval(ratios)
            line += f"  {rates[arm] / rates[reference]:.2f}x [{lo:.2f}, {hi:.2f}]"
        rounds = metrics[arm].get("rounds/done")
        if rounds is not None:
            line += f"  ({rounds:.0f} rounds, best {metrics[arm]['rounds/best_round']:.0f})"
        print(line)


if __name__ == "__main__":
    main()
