"""PPO vs GRPO from the same SFT model, reward model, prompts and held-out evaluation.

Runs ``recipes/sft_rm_ppo.yaml``, then the same run with its ``rl`` stage swapped for GRPO (the SFT and
reward-model stages are reused from the first run, not retrained), and prints, for each algorithm:
held-out reward-model score before/after the RL stage, KL to the SFT model, the RL stage's wall time,
and reward gained per CPU-minute.

    python scripts/ppo_vs_grpo.py [--runs DIR] [--id NAME]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "sft_rm_ppo.yaml"

# GRPO with the PPO stage's budget: 8 steps of 8 completions (2 prompts x 4), same LoRA, learning rate,
# completion length, temperature and KL coefficient (beta), same held-out prompts and scorecard.
GRPO_STAGE = (
    "{name: rl, kind: grpo, init_from: sft, data: {source: 'bundled:support-sft', limit: 64},"
    " eval_data: {source: 'bundled:support-sft', split: test}, eval_limit: null, scorecard: {prompts: 141, batch_size: 48},"
    " rewards: [{model: rm}], peft: {lora: {r: 16, alpha: 32}},"
    " trl: {max_steps: 8, per_device_train_batch_size: 8, num_generations: 4, max_completion_length: 48,"
    " temperature: 0.8, learning_rate: 1.0e-4, lr_scheduler_type: constant, beta: 0.05}}"
)


def rlft(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "rlft.cli", "run", str(RECIPE), *args], check=True)


def rl_figures(run_dir: Path) -> dict:
    stages = {s["name"]: s for s in json.loads((run_dir / "summary.json").read_text())["stages"]}
    rl, ev = stages["rl"]["metrics"], stages["eval"]["metrics"]
    before, after = rl["baseline/reward/rm"], rl["eval/reward/rm"]
    minutes = stages["rl"]["wall_s"] / 60
    return {
        "kind": stages["rl"]["kind"],
        "held-out RM score, SFT model": before,
        "held-out RM score, after RL": after,
        "RL gain [95% CI]": f"{rl['eval/delta/reward/rm']:+.3f} [{rl['eval/delta/reward/rm/ci_low']:+.3f}, "
        f"{rl['eval/delta/reward/rm/ci_high']:+.3f}] on {rl['eval/delta/reward/rm/n']:.0f} prompts",
        "KL to SFT model (held-out)": rl["eval/kl_to_ref"],
        "RL stage wall (min)": minutes,
        "RM score gained per CPU-minute": (after - before) / minutes,
        "eval stage: base -> final RM score": f"{ev['baseline/reward/rm']:.3f} -> {ev['eval/reward/rm']:.3f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(ROOT / "runs"))
    parser.add_argument("--id", default="ppo-vs-grpo")
    args = parser.parse_args()
    runs = Path(args.runs)
    ppo, grpo = runs / f"{args.id}-ppo", runs / f"{args.id}-grpo"
    rlft("--run-id", ppo.name, "--output-dir", str(runs))
    if not grpo.exists():
        shutil.copytree(ppo, grpo, ignore=shutil.ignore_patterns("rl", "eval", "wandb", ".lock", "summary.json"))
    rlft("--run-id", grpo.name, "--output-dir", str(runs), f"stages.rl={GRPO_STAGE}")
    rows = [rl_figures(ppo), rl_figures(grpo)]
    width = max(len(k) for k in rows[0])
    for key in rows[0]:
        cells = [f"{r[key]:.3f}" if isinstance(r[key], float) else str(r[key]) for r in rows]
        print(f"{key:<{width}}  " + "  ".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main()
