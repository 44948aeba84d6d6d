"""Held-out accuracy gained per CPU-minute: the quickstart's GRPO stage against plain TRL GRPO, in one run.

Every arm starts from the same model (the quickstart's SFT stage output), trains on the same prompts
(the quickstart rl stage's rows, loaded as the stage loads them) with the same rewards (math_accuracy + 0.2 x answer_format), and is
scored the same way: greedy completions to the same held-out prompts (the test split's first
``--prompts``), paired against the start model. The plain-TRL arms train for the wall time rlft's GRPO
stage trained for (they stop at the first step boundary past it), so the figures share one budget and
one machine:

    rlft         ``rlft run recipes/quickstart.yaml``: its ``rl`` stage as shipped
    trl-default  ``GRPOTrainer`` with ``GRPOConfig()`` defaults; only ``use_cpu``/``bf16=False`` (the CPU
                 needs them), ``reward_weights`` and no checkpoints are set
    trl-lora     plain TRL as a user who tuned it a little would run it: LoRA r 16 (alpha 32), lr 1e-4,
                 4 prompts x 4 completions of <= 48 tokens, constant schedule

For each arm: steps, training seconds, held-out accuracy before -> after with the paired-bootstrap
interval of the gain, gain per CPU-minute, and, against rlft, the ratio of gains per minute with a
bootstrap interval over prompts (undefined when the arm's gain is not above 0) and whether rlft's rate
is at least twice the arm's (the interval of ``rate_rlft - 2 x rate_arm`` above 0).

    python scripts/rl_efficiency.py [--runs DIR] [--id NAME] [--arms trl-default,trl-lora] [--reuse]

``--reuse`` keeps an existing rlft run of that id instead of running the quickstart again.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "quickstart.yaml"
REWARD_WEIGHTS = [1.0, 0.2]  # math_accuracy, answer_format: the quickstart's rl stage


def run_quickstart(runs: Path, run_id: str, reuse: bool) -> Path:
    run_dir = runs / run_id
    if not (reuse and (run_dir / "summary.json").exists()):
        cmd = [sys.executable, "-m", "rlft.cli", "run", str(RECIPE), "--run-id", run_id, "--output-dir", str(runs)]
        subprocess.run(cmd, check=True)
    return run_dir


def stages_of(run_dir: Path) -> dict[str, dict]:
    return {s["name"]: s for s in json.loads((run_dir / "summary.json").read_text())["stages"]}


def rl_rows(split: str, limit: int | None = None):
    """The quickstart rl stage's rows, loaded as the stage loads them (its ``system`` message, its data mixture drawn
    with its seed): ``"train"``, its training rows; ``"test"``, its held-out rows (``eval_data`` when it names them)."""
    from rlft.data.rows import load_rows
    from rlft.recipe import load_recipe

    recipe = load_recipe(RECIPE)
    stage = recipe.stage("rl")
    seed = stage.seed if stage.seed is not None else recipe.seed
    if split == "test" and stage.eval_data is not None:
        spec = stage.eval_data.model_copy(update={"limit": limit})
        split = stage.eval_data.split or "test"
    else:
        spec = stage.data.model_copy(update={"split": split, "limit": limit})
    rows, _, _ = load_rows(spec, split=split, seed=seed)
    return rows


def heldout(n: int) -> tuple[list, list[str]]:
    rows = rl_rows("test", n)
    return list(rows["prompt"]), list(rows["answer"])


def accuracy(model, tok, prompts, answers, *, max_new_tokens: int) -> list[float]:
    from rewards.math import math_accuracy
    from rlft.evaluation.scorecard import generate

    texts = generate(model, tok, prompts, max_new_tokens=max_new_tokens, batch_size=100).texts
    return math_accuracy(prompts, texts, answers)


def load(path):
    from rlft.models import load_causal_lm, load_tokenizer

    return load_causal_lm(path), load_tokenizer(path)


class StopAfter:
    """A TrainerCallback that ends training at the first step boundary past ``seconds`` of training."""

    def __new__(cls, seconds: float):
        from transformers import TrainerCallback

        class _Stop(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                self.start = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                if time.perf_counter() - self.start >= seconds:
                    control.should_training_stop = True

        return _Stop()


def train_plain(arm: str, start: str, budget_s: float, out: Path):
    """Plain TRL GRPO from ``start`` for ``budget_s`` seconds of training; returns (model, tok, steps, seconds)."""
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    from rewards.format import answer_format
    from rewards.math import math_accuracy

    model, tok = load(start)
    train = rl_rows("train").select_columns(["prompt", "answer"])
    common = {
        "output_dir": str(out),
        "use_cpu": True,
        "bf16": False,
        "reward_weights": REWARD_WEIGHTS,
        "save_strategy": "no",
        "report_to": [],
    }
    peft = None
    if arm == "trl-default":
        args = GRPOConfig(**common)
    elif arm == "trl-lora":
        args = GRPOConfig(
            **common, learning_rate=1e-4, num_generations=4, per_device_train_batch_size=16, max_completion_length=48,
            lr_scheduler_type="constant", logging_steps=1,
        )  # fmt: skip
        peft = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    else:
        raise SystemExit(f"unknown arm {arm!r}: use trl-default or trl-lora")
    trainer = GRPOTrainer(
        model=model, reward_funcs=[math_accuracy, answer_format], args=args, train_dataset=train,
        processing_class=tok, peft_config=peft, callbacks=[StopAfter(budget_s)],
    )  # fmt: skip
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    trained = trainer.model.merge_and_unload() if peft is not None else trainer.model
    return trained, tok, trainer.state.global_step, seconds


def bootstrap_rates(before, afters: dict[str, list[float]], minutes: dict[str, float], seed: int = 0):
    """Resampled gains per minute of each arm over the same prompt draws (paired across arms)."""
    from rlft.evaluation.statistics import RESAMPLES

    rng = random.Random(seed)
    n = len(before)
    draws = {arm: [] for arm in afters}
    for _ in range(RESAMPLES):
        idx = [rng.randrange(n) for _ in range(n)]
        for arm, after in afters.items():
            draws[arm].append(sum(after[i] - before[i] for i in idx) / n / minutes[arm])
    return draws


def interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    s = sorted(values)
    lo = s[int((1 - confidence) / 2 * len(s))]
    hi = s[min(len(s) - 1, int((1 + confidence) / 2 * len(s)))]
    return lo, hi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(ROOT / "runs"))
    parser.add_argument("--id", default="rl-efficiency")
    parser.add_argument("--arms", default="trl-default,trl-lora")
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()

    from rlft.evaluation.statistics import paired_bootstrap

    run_dir = run_quickstart(Path(args.runs), args.id, args.reuse)
    stages = stages_of(run_dir)
    sft, rl = stages["sft"], stages["rl"]
    budget = rl["metrics"]["train/runtime_s"]
    prompts, answers = heldout(args.prompts)

    model, tok = load(sft["model_path"])
    before = accuracy(model, tok, prompts, answers, max_new_tokens=args.max_new_tokens)
    model, tok = load(rl["model_path"])
    afters = {"rlft": accuracy(model, tok, prompts, answers, max_new_tokens=args.max_new_tokens)}
    steps = {"rlft": rl["metrics"]["train/steps"]}
    minutes = {"rlft": budget / 60}
    for arm in [a for a in args.arms.split(",") if a]:
        model, tok, steps[arm], seconds = train_plain(arm, sft["model_path"], budget, run_dir / f"plain-{arm}")
        minutes[arm] = seconds / 60
        afters[arm] = accuracy(model, tok, prompts, answers, max_new_tokens=args.max_new_tokens)

    draws = bootstrap_rates(before, afters, minutes)
    print(f"\nstart: the quickstart's SFT model; held-out: {len(prompts)} test prompts, greedy; budget {budget:.0f} s of training")
    print(f"{'arm':<12} {'steps':>5} {'train s':>8} {'s/step':>7}  {'accuracy':>13}  {'gain [95% CI]':>24}  {'gain/CPU-min':>12}  vs rlft")
    gains = {arm: paired_bootstrap(before, after) for arm, after in afters.items()}
    for arm, d in gains.items():
        rate = d.delta / minutes[arm]
        line = (
            f"{arm:<12} {steps[arm]:>5} {minutes[arm] * 60:>8.0f} {minutes[arm] * 60 / max(steps[arm], 1):>7.1f}  "
            f"{d.mean_a:.3f} -> {d.mean_b:.3f}  {d.delta:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]  {rate:>+12.4f}"
        )
        if arm != "rlft":
            twice = [r - 2 * a for r, a in zip(draws["rlft"], draws[arm], strict=True)]
            lo, _ = interval(twice)
            verdict = "rlft >= 2x: yes" if lo > 0 else "rlft >= 2x: not shown"
            if d.ci_low > 0:
                ratios = [r / a for r, a in zip(draws["rlft"], draws[arm], strict=True) if a > 0]
                rlo, rhi = interval(ratios)
                ratio = (gains["rlft"].delta / minutes["rlft"]) / rate
                line += f"  ratio {ratio:.2f}x [{rlo:.2f}, {rhi:.2f}]; {verdict}"
            else:
                line += f"  ratio undefined (gain not above 0); {verdict}"
        print(line)
    wall = sum(s["wall_s"] for s in stages.values())
    print(f"quickstart pipeline wall: {wall:.0f} s (all stages); rl stage wall {rl['wall_s']:.0f} s incl. its scorecard")


if __name__ == "__main__":
    main()
