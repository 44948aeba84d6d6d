"""Every stage kind once on a CUDA GPU in bf16: the code paths that a CPU machine never takes.

The CPU test suite runs fp32; this script runs a whole recipe — SFT (LoRA), reward model, DPO, GRPO,
PPO (critic from the reward model, bf16 autocast) and the held-out evaluation — with ``bf16: true``
on a GPU, and prints per stage its status, wall time, steps, peak GPU memory and the scorecard.

The model has SmolLM2-135M's architecture and tokenizer but random weights unless ``--weights`` is
given (a machine without a hub may not hold the real ones): the figures check that the paths run and
what they cost, not what they learn.

    python scripts/gpu_smoke.py --shape DIR [--weights] [--out DIR] [--steps N] [--stages sft,eval]

``DIR`` holds ``config.json`` and the tokenizer files (e.g. the bundled model's folder).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml


def build_model(shape: Path, out: Path, weights: bool) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    if weights:
        model = AutoModelForCausalLM.from_pretrained(shape, dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(shape), dtype=torch.float32)
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(shape).save_pretrained(out)
    return out


def recipe(model: Path, steps: int) -> dict:
    bf16 = {"bf16": True, "max_steps": steps, "per_device_train_batch_size": 16}
    return {
        "name": "gpu_smoke",
        "model": str(model),
        "seed": 0,
        "tracking": {"mode": "disabled"},
        "stages": [
            {
                "name": "sft",
                "kind": "sft",
                "data": {"source": "bundled:arithmetic-sft", "limit": 512},
                "eval_limit": 64,
                "peft": {"lora": {"r": 16, "alpha": 32}},
                "trl": {**bf16, "learning_rate": 1.0e-3},
            },
            {
                "name": "rm",
                "kind": "reward_model",
                "data": {"source": "bundled:support-preference", "limit": 160},
                "eval_data": {"source": "bundled:support-preference", "split": "test", "limit": 64},
                "peft": {"lora": {"r": 16, "alpha": 32}},
                "trl": {**bf16, "learning_rate": 3.0e-4, "max_length": 256},
            },
            {
                "name": "dpo",
                "kind": "dpo",
                "init_from": "sft",
                "data": {"source": "bundled:support-preference", "limit": 160},
                "eval_data": {"source": "bundled:support-preference", "split": "test", "limit": 32},
                "scorecard": {"prompts": 16, "max_new_tokens": 32},
                "peft": {"lora": {"r": 16, "alpha": 32}},
                "trl": {**bf16, "learning_rate": 1.0e-4, "max_length": 256},
            },
            {
                "name": "grpo",
                "kind": "grpo",
                "init_from": "sft",
                "data": "bundled:arithmetic",
                "rewards": [{"name": "math_accuracy"}, {"name": "answer_format", "weight": 0.2}],
                "scorecard": {"prompts": 32, "max_new_tokens": 64},
                "peft": {"lora": {"r": 16, "alpha": 32}},
                "trl": {**bf16, "num_generations": 8, "max_completion_length": 64, "learning_rate": 1.0e-4, "beta": 0.05},
            },
            {
                "name": "ppo",
                "kind": "ppo",
                "init_from": "sft",
                "data": {"source": "bundled:support-sft", "limit": 128},
                "eval_data": {"source": "bundled:support-sft", "split": "test", "limit": 16},
                "scorecard": {"prompts": 16, "max_new_tokens": 48},
                "rewards": [{"model": "rm"}],
                "peft": {"lora": {"r": 16, "alpha": 32}},
                "trl": {**bf16, "max_completion_length": 48, "learning_rate": 1.0e-4, "critic": "separate"},
            },
            {
                "name": "eval",
                "kind": "eval",
                "init_from": "grpo",
                "baseline": "base",
                "data": {"source": "bundled:arithmetic", "split": "test", "limit": 64},
                "rewards": [{"name": "math_accuracy"}, {"name": "answer_format"}],
                "max_new_tokens": 64,
                "batch_size": 32,
            },
        ],
    }


def select(full: dict, names: list[str]) -> dict:
    """Only the named stages; the eval stage then scores the last training stage kept (ppo needs rm)."""
    stages = [s for s in full["stages"] if s["name"] in names]
    trained = [s["name"] for s in stages if s["kind"] not in ("eval", "reward_model")]
    for stage in stages:
        if stage["kind"] == "eval" and stage["init_from"] not in trained:
            stage["init_from"] = trained[-1] if trained else "base"
    return {**full, "stages": stages}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=Path, required=True, help="folder with config.json and tokenizer files")
    parser.add_argument("--weights", action="store_true", help="load the weights in --shape instead of random ones")
    parser.add_argument("--out", type=Path, default=Path("/tmp/gpu_smoke"))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--stages", default="sft,rm,dpo,grpo,ppo,eval", help="which stages to run, comma-separated")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: this script checks the GPU paths", file=sys.stderr)
        return 2
    print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    args.out.mkdir(parents=True, exist_ok=True)
    model = build_model(args.shape, args.out / "model", args.weights)
    path = args.out / "gpu_smoke.yaml"
    path.write_text(yaml.safe_dump(select(recipe(model, args.steps), args.stages.split(",")), sort_keys=False))

    from rlft.pipeline.run import run_pipeline
    from rlft.recipe import load_recipe

    t0 = time.time()
    summary = run_pipeline(load_recipe(path), source=str(path), run_id="smoke", output_dir=str(args.out / "runs"))
    print(f"pipeline: {summary['status']} in {time.time() - t0:.0f} s")
    for stage in summary["stages"]:
        m = stage.get("metrics") or {}
        peak = m.get("sys/peak_gpu_memory_gb")
        card = {k: round(v, 4) for k, v in m.items() if k.startswith(("eval/", "baseline/")) and isinstance(v, int | float)}
        print(f"{stage['name']:5} {stage['kind']:12} {stage.get('status')} {stage.get('wall_s', 0):.0f} s  peak {peak} GB  {card}")
        if stage.get("error"):
            print(f"      error: {stage['error']}")
    return 0 if summary["status"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
