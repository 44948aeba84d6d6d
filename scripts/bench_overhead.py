"""rlft's cost over plain TRL, per stage kind: the same model, rows, seed and TRL config, once through each.

For each kind (sft, sft-lora, reward_model, dpo, kto, grpo, rloo) and each of ``--rounds`` rounds, two
fresh processes train ``--steps`` optimizer steps, one after the other (the order flips every round):

    rlft  ``python -m rlft.cli run`` of a one-stage recipe written to the work folder: tracking disabled
          (``history.jsonl`` is still written), ``scorecard: {prompts: 0, baseline: false}`` and 2 held-out
          rows (the stage still evaluates its loss on them after training, and a reward model also before),
          everything else as rlft does it (its pipeline process, the stage in its own process, its checks).
    TRL   a plain script, ``trl-<kind>.py`` in the work folder, written as TRL's documentation writes one:
          load the JSONL with ``datasets``, the model with ``from_pretrained(dtype=torch.float32)``, build the
          ``XConfig`` and ``XTrainer`` (``peft_config=LoraConfig(...)`` for LoRA), ``train()``, ``save_model()``.

Same work: the rows are loaded once through rlft's own loader (``rlft.data.rows.load_rows``, as the stage
loads the bundled source) and written to one JSONL that both arms read; the bench reads that file back
through rlft's loader and stops if rlft would see other rows. The plain config is rlft's resolved one:
the stage class's ``trl_defaults`` (``logging_steps: 1``, no activation checkpointing, ...), ``bf16: false,
use_cpu: true`` without CUDA, the seed, then the kind's ``trl:`` values. Each arm's TrainingArguments and
LoRA config, as the trainer holds them at ``on_train_begin``, are compared afterwards: ``config_diff`` lists
every key that differs (output paths aside); it should be empty. GRPO and RLOO differ in one way by design:
rlft's trainer skips micro-batches whose groups all scored alike and runs each prompt once per group
(README, "GRPO/RLOO skip what cannot teach"), the same update for less work, so their ratio may be below 1.

How steps are timed: the same passive ``TrainerCallback`` in both arms (``scripts/bench_clock.py``, copied as
``sitecustomize.py`` into the work folder, which goes on the children's ``PYTHONPATH``; active only with
``RLFT_BENCH_CLOCK``). It waits, without importing anything, for ``transformers.trainer`` to be imported, then
wraps ``Trainer.__init__`` to add the callback to every trainer, rlft's stage trainer and the plain script's alike
(rlft's stage process inherits the environment). The callback appends one JSON line per event: ``perf_counter``
and ``time.time()`` at every ``on_step_end``, TRL's ``num_tokens`` at every log, the args at ``on_train_begin``.
It changes nothing the trainer does and costs both arms the same (one short line written per step). Steps are
timed between consecutive ``on_step_end``: each interval holds a whole step, the logging of the step before
included (rlft's progress line and history row are written there, so they count against rlft). rlft's own
``history.jsonl`` timestamps give a second reading of rlft's step time (``rlft_history_step_s``, taken at
``on_log``); the two should agree within noise.

Per run: seconds per optimizer step, the median of the intervals between consecutive ``on_step_end`` (so the
first step, with its warm-up, is left out: ``--steps 2`` gives one interval); time to first step, from just
before the process is spawned to the first ``on_step_end`` (imports, model load, data preparation; for rlft
also its recipe checks and the stage process start); peak RSS, ``ru_maxrss`` from ``os.wait4`` of the child,
which on Linux is the largest single process of the child's tree (rlft: its pipeline process or the stage's);
and wall time from spawn to exit (includes saving the model; for rlft its held-out evaluation too). Per kind:
medians over rounds, ratio = rlft_step_s / trl_step_s, and the spread of the per-round ratios.

``--ceilings`` measures, in this process, what the hardware allows the same model: (a) the weight-streaming
decode limit: the weight bytes and the median time of one forward of batch 1 on a KV cache of length 1, so
1 / that time token steps per second, and B / that time tokens per second at batch B (decoding a small model
reads every weight once per token step whatever the batch); (b) SFT's raw-PyTorch ceiling: forward (HF's
loss), backward and ``torch.optim.AdamW`` on the batches SFTTrainer's own dataloader makes from the sft kind's
rows and config, in real (non-padding) tokens per second, printed against rlft's and plain TRL's SFT real tokens
per second (TRL's logged ``num_tokens`` per step over the step time).

    python scripts/bench_overhead.py --kinds sft,grpo --rounds 3 [--steps 6] [--model PATH] [--json out.json] [--ceilings]

CPU figures move with whatever else runs on the machine: run it on a quiet one, and compare ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLOCK = Path(__file__).resolve().parent / "bench_clock.py"  # copied as the children's sitecustomize.py
CLOCK_ENV = "RLFT_BENCH_CLOCK"
SEED = 42
HELD_OUT = 2  # held-out rows rlft evaluates its loss on (it cannot be turned off); the plain script evaluates nothing
# Paths and names that differ between the arms by construction, not by configuration.
PER_RUN_KEYS = {"output_dir", "logging_dir", "run_name", "hub_model_id"}
PER_RUN_PEFT_KEYS = {"base_model_name_or_path", "revision"}


@dataclass(frozen=True)
class Kind:
    """One benchmarked stage kind: rlft's stage kind, TRL's trainer, where its rows come from, its ``trl:`` and LoRA."""

    stage: str
    trainer: str
    source: str
    shape: str  # sft | preference | unpaired | prompts: how the rows are loaded and which columns are kept
    trl: dict = field(default_factory=dict)
    lora: dict | None = None
    rewards: tuple[tuple[str, str, float], ...] = ()  # (rlft name, module:function, weight)
    rows: int = 128  # training rows (KTO: pairs, two rows each)


LORA = {"r": 16, "alpha": 32, "dropout": 0.05}
ARITHMETIC_REWARDS = (("math_accuracy", "rewards.math:math_accuracy", 1.0), ("answer_format", "rewards.format:answer_format", 0.2))
ONLINE = {"per_device_train_batch_size": 16, "num_generations": 4, "max_completion_length": 32, "learning_rate": 1e-4}
PAIRS = {"per_device_train_batch_size": 8, "learning_rate": 2e-4, "max_length": 256}
# Sized from the repo's recipes: 8 rows per step, 4 prompts x 4 completions for GRPO/RLOO.
KINDS = {
    "sft": Kind("sft", "SFT", "bundled:arithmetic-short", "sft", {"per_device_train_batch_size": 8, "learning_rate": 1e-5}),
    "sft-lora": Kind("sft", "SFT", "bundled:arithmetic-short", "sft", {"per_device_train_batch_size": 8, "learning_rate": 1e-3}, LORA),
    "reward_model": Kind("reward_model", "Reward", "bundled:support-preference", "preference", PAIRS, LORA),
    "dpo": Kind("dpo", "DPO", "bundled:support-preference", "preference", {**PAIRS, "beta": 0.1}, LORA),
    "kto": Kind("kto", "KTO", "bundled:support-preference", "unpaired", {**PAIRS, "beta": 0.1}, LORA),
    "grpo": Kind("grpo", "GRPO", "bundled:arithmetic", "prompts", ONLINE, {**LORA, "dropout": 0.0}, ARITHMETIC_REWARDS),
    "rloo": Kind("rloo", "RLOO", "bundled:arithmetic", "prompts", {**ONLINE, "beta": 0.0}, {**LORA, "dropout": 0.0}, ARITHMETIC_REWARDS),
}
COLUMNS = {"sft": ("prompt", "completion"), "preference": ("prompt", "chosen", "rejected"), "prompts": ("prompt", "answer")}


# ---------------------------------------------------------------- the rows, the recipe and the plain script


def load_kind_rows(kind: Kind, split: str, limit: int) -> list[dict]:
    """The kind's rows of ``split`` as rlft's stage loads the bundled source (KTO: the pairs its stage unpairs)."""
    from rlft.data.rows import load_rows
    from rlft.recipe.options import DataSpec

    pairs = kind.shape in ("preference", "unpaired")
    rows, _, _ = load_rows(DataSpec(source=kind.source, system="", limit=limit), split=split, kind="preference" if pairs else None)
    return rows.select_columns(list(COLUMNS["preference" if pairs else kind.shape])).to_list()


def plain_rows(kind: Kind, rows: list[dict]) -> list[dict]:
    """The rows the plain script trains on: KTO's are the pairs unpaired as rlft's kto stage unpairs them, the others as they are."""
    if kind.shape != "unpaired":
        return rows
    import datasets

    from rlft.data.preference import unpair_preference

    return unpair_preference(datasets.Dataset.from_list(rows)).to_list()


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@dataclass(frozen=True)
class Data:
    rlft_train: Path  # what the recipe's data: names
    rlft_held_out: Path  # its eval_data: (HELD_OUT rows)
    plain_train: Path  # what the plain script loads: the same file, or for KTO the same pairs unpaired


def prepare_data(name: str, kind: Kind, work: Path, rows: int) -> Data:
    """Load the kind's rows once through rlft's loader, write them for both arms, and check that rlft reads them back unchanged."""
    from rlft.data.rows import load_rows
    from rlft.recipe.options import DataSpec

    train = load_kind_rows(kind, "train", rows)
    rlft_train = write_rows(work / f"{name}-train.jsonl", train)
    held_out = write_rows(work / f"{name}-heldout.jsonl", load_kind_rows(kind, "test", HELD_OUT))
    plain_train = rlft_train if kind.shape != "unpaired" else write_rows(work / f"{name}-unpaired.jsonl", plain_rows(kind, train))
    back, _, _ = load_rows(DataSpec(source=str(rlft_train)), split="train", kind="preference" if "chosen" in train[0] else None)
    if back.to_list() != train:
        raise SystemExit(f"{rlft_train}: rlft's loader reads these rows differently from how they were written; the arms would differ")
    return Data(rlft_train, held_out, plain_train)


def plain_config(kind: Kind, steps: int, output_dir: Path) -> dict:
    """The TRL config keywords of both arms: the stage class's rlft defaults, the CPU keys, the seed, the kind's ``trl:``."""
    import torch

    from rlft.recipe.options import CheckpointSpec
    from rlft.recipe.schema import STAGE_KINDS

    config = dict(STAGE_KINDS[kind.stage].trl_defaults)
    if not torch.cuda.is_available():
        config.update(bf16=False, fp16=False, use_cpu=True)
    config.update(seed=SEED, **kind.trl, max_steps=steps)
    config["save_total_limit"] = CheckpointSpec().keep  # rlft sets it at train time, for its own checkpoints (checkpoint.keep)
    if kind.rewards:
        config["reward_weights"] = [w for _, _, w in kind.rewards]
    return {**config, "output_dir": str(output_dir), "report_to": "none"}


def rlft_recipe(name: str, kind: Kind, model: str, train: Path, held_out: Path, steps: int) -> dict:
    stage = {
        "name": name,
        "kind": kind.stage,
        "data": {"source": str(train)},
        "eval_data": {"source": str(held_out)},
        "eval_limit": HELD_OUT,
        "scorecard": {"prompts": 0, "baseline": False},
        "trl": {**kind.trl, "max_steps": steps},
    }
    if kind.lora:
        stage["peft"] = {"lora": dict(kind.lora)}
    if kind.rewards:
        stage["rewards"] = [{"name": n, "weight": w} for n, _, w in kind.rewards]
    return {"name": f"bench-{name}", "model": model, "seed": SEED, "tracking": {"mode": "disabled"}, "stages": [stage]}


def plain_script(kind: Kind, model: str, train: Path, config: dict) -> str:
    """A plain TRL training script for ``kind``, as TRL's documentation writes one."""
    trainer, lines = kind.trainer, []
    lines.append(f'"""Plain TRL {trainer}Trainer, as TRL\'s documentation writes it (written by rlft\'s scripts/bench_overhead.py)."""')
    lines.append("import torch")
    lines.append("from datasets import load_dataset")
    if kind.lora:
        lines.append("from peft import LoraConfig")
    auto = "AutoModelForSequenceClassification" if kind.stage == "reward_model" else "AutoModelForCausalLM"
    lines.append(f"from transformers import {auto}, AutoTokenizer")
    lines.append(f"from trl import {trainer}Config, {trainer}Trainer")
    for _, ref, _ in kind.rewards:
        module, fn = ref.split(":")
        lines.append(f"from {module} import {fn}")
    lines.append("")
    lines.append(f'dataset = load_dataset("json", data_files={str(train)!r}, split="train")')
    lines.append(f"tokenizer = AutoTokenizer.from_pretrained({model!r})")
    lines.append("if tokenizer.pad_token is None:")
    lines.append("    tokenizer.pad_token = tokenizer.eos_token")
    if kind.stage == "reward_model":
        lines.append(f"model = {auto}.from_pretrained({model!r}, num_labels=1, dtype=torch.float32)")
        lines.append("model.config.pad_token_id = tokenizer.pad_token_id")
    else:
        lines.append(f"model = {auto}.from_pretrained({model!r}, dtype=torch.float32)")
    lines.append(f"training_args = {trainer}Config(")
    lines += [f"    {k}={v!r}," for k, v in config.items()]
    lines.append(")")
    keywords = ["model=model"]
    if kind.rewards:
        keywords.append(f"reward_funcs=[{', '.join(ref.split(':')[1] for _, ref, _ in kind.rewards)}]")
    keywords += ["args=training_args", "train_dataset=dataset", "processing_class=tokenizer"]
    if kind.lora:
        task = "SEQ_CLS" if kind.stage == "reward_model" else "CAUSAL_LM"
        lora = kind.lora
        lines.append(
            f"peft_config = LoraConfig(r={lora['r']}, lora_alpha={lora['alpha']}, lora_dropout={lora['dropout']}, "
            f'target_modules="all-linear", task_type="{task}")'
        )
        keywords.append("peft_config=peft_config")
    lines.append(f"trainer = {trainer}Trainer({', '.join(keywords)})")
    lines.append("trainer.train()")
    lines.append("trainer.save_model(training_args.output_dir)")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- running one arm and reading its clock


@dataclass
class Run:
    step_s: float  # median seconds between consecutive optimizer steps (the first step left out)
    steps: int
    first_step_s: float  # from spawn to the first on_step_end
    wall_s: float
    peak_rss_gb: float
    tokens_s: float | None  # real (non-padding) tokens per second after the first step, where TRL logs num_tokens
    args: dict
    peft: dict
    model_dir: str
    history_step_s: float | None = None


def spawn(cmd: list[str], log: Path, clock: Path, env: dict) -> tuple[float, float, float]:
    """Run ``cmd`` with the step clock; returns (spawn time, wall seconds, peak RSS in GB of its process tree's largest process)."""
    clock.unlink(missing_ok=True)
    with open(log, "w") as out:
        t0 = time.time()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**env, CLOCK_ENV: str(clock)}, cwd=str(ROOT))
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.time() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}; its log {log} ends:\n{tail}")
    rss_bytes = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return t0, wall, rss_bytes / 1e9


def read_clock(clock: Path, t0: float) -> dict:
    """The step times of the trainer that ran steps, from the clock file of one run."""
    events = [json.loads(line) for line in clock.read_text().splitlines()] if clock.exists() else []
    steps = [e for e in events if e["event"] == "step"]
    if len({e["step"] for e in steps}) < 2:
        raise SystemExit(f"{clock}: {len(steps)} optimizer step(s) recorded; seconds per step need at least 2")
    trainer = max({e["trainer"] for e in steps}, key=lambda t: sum(e["trainer"] == t for e in steps))
    mine = [e for e in events if e["trainer"] == trainer]
    steps = [e for e in mine if e["event"] == "step"]
    intervals = [b["pc"] - a["pc"] for a, b in pairwise(steps)]
    tokens = {e["step"]: e["num_tokens"] for e in mine if e["event"] == "tokens"}
    tokens_s = None
    counted = [
        (tokens[b["step"]] - tokens[a["step"]], b["pc"] - a["pc"]) for a, b in pairwise(steps) if {a["step"], b["step"]} <= set(tokens)
    ]
    if counted:
        tokens_s = sum(n for n, _ in counted) / sum(dt for _, dt in counted)
    begin = next((e for e in mine if e["event"] == "begin"), {})
    return {
        "step_s": statistics.median(intervals),
        "steps": len(steps),
        "first_step_s": steps[0]["t"] - t0,
        "tokens_s": tokens_s,
        "args": begin.get("args", {}),
        "peft": begin.get("peft", {}),
    }


def history_step_s(path: Path) -> float | None:
    """rlft's own reading: median interval between the ``_timestamp`` of consecutive training-step rows of history.jsonl."""
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    times = {}
    for row in rows:
        if any(k.startswith("train/") and k != "train/global_step" for k in row) and "train/global_step" in row:
            times.setdefault(row["train/global_step"], row["_timestamp"])
    stamps = [times[s] for s in sorted(times)]
    intervals = [b - a for a, b in pairwise(stamps)]
    return statistics.median(intervals) if intervals else None


def run_rlft(name: str, kind: Kind, work: Path, model: str, data: Data, steps: int, env: dict, tag: str) -> Run:
    import yaml

    recipe = work / f"rlft-{name}.yaml"
    recipe.write_text(yaml.safe_dump(rlft_recipe(name, kind, model, data.rlft_train, data.rlft_held_out, steps), sort_keys=False))
    runs, run_id = work / "runs", f"{name}-{tag}"
    cmd = [sys.executable, "-m", "rlft.cli", "run", str(recipe), "--run-id", run_id, "--output-dir", str(runs)]
    clock = work / f"clock-rlft-{name}-{tag}.jsonl"
    t0, wall, rss = spawn(cmd, work / f"rlft-{name}-{tag}.log", clock, env)
    stage = json.loads((runs / run_id / "summary.json").read_text())["stages"][0]
    timing = read_clock(clock, t0)
    history = history_step_s(runs / run_id / name / "history.jsonl")
    return Run(**timing, wall_s=wall, peak_rss_gb=rss, model_dir=stage.get("model_path") or "", history_step_s=history)


def run_plain(name: str, kind: Kind, work: Path, model: str, train: Path, steps: int, env: dict, tag: str) -> Run:
    out = work / f"trl-{name}-{tag}"
    script = work / f"trl-{name}.py"
    script.write_text(plain_script(kind, model, train, plain_config(kind, steps, out)))
    clock = work / f"clock-trl-{name}-{tag}.jsonl"
    t0, wall, rss = spawn([sys.executable, str(script)], work / f"trl-{name}-{tag}.log", clock, env)
    return Run(**read_clock(clock, t0), wall_s=wall, peak_rss_gb=rss, model_dir=str(out))


def config_diff(a: Run, b: Run) -> list[str]:
    """Keys whose values differ between the two arms' trainer args (and LoRA configs), per-run paths aside."""
    keys = sorted(k for k in set(a.args) | set(b.args) if k not in PER_RUN_KEYS and a.args.get(k) != b.args.get(k))
    peft_a, peft_b = (next(iter(run.peft.values()), {}) for run in (a, b))  # the adapter's config ("default")
    keys += sorted(f"peft.{k}" for k in set(peft_a) | set(peft_b) if k not in PER_RUN_PEFT_KEYS and peft_a.get(k) != peft_b.get(k))
    return keys


def has_weights(folder: str) -> bool:
    return bool(folder) and any(Path(folder).glob("*.safetensors"))


# ---------------------------------------------------------------- the ceilings


def decode_limit(model_path: str, repeats: int = 20) -> dict:
    """The weight-streaming decode limit: weight bytes and the median time of one batch-1 forward on a KV cache of length 1."""
    import inspect

    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())  # tied weights once
    token = torch.tensor([[model.config.bos_token_id or 0]])
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"  # transformers >= 5.2x: cache
    times = []
    with torch.inference_mode():
        cache = model(token, use_cache=True)[key]  # one token in the cache
        for _ in range(repeats + 2):  # the first two warm up
            t = time.perf_counter()
            model(token, use_cache=True, **{key: cache})
            times.append(time.perf_counter() - t)
            cache.crop(-1)  # back to one token
    step = statistics.median(times[2:])
    return {
        "weight_bytes": weight_bytes,
        "decode_step_s": step,
        "decode_limit_steps_s": 1 / step,
        "weight_stream_gb_s": weight_bytes / step / 1e9,
    }


def raw_sft_ceiling(model_path: str, kind: Kind, train: Path, work: Path, steps: int) -> dict:
    """A raw PyTorch train step (forward with HF's loss, backward, AdamW) on the batches SFTTrainer makes of the same rows and config."""
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(model_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    args = SFTConfig(**plain_config(kind, steps, work / "ceiling-sft"))
    shaper = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32),
        args=args,
        train_dataset=load_dataset("json", data_files=str(train), split="train"),
        processing_class=tok,
    )
    batches = []
    for batch in shaper.get_train_dataloader():
        batches.append({k: batch[k] for k in ("input_ids", "attention_mask", "labels")})
        if len(batches) == steps:
            break
    del shaper
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon,
                            weight_decay=args.weight_decay)  # fmt: skip
    times, tokens = [], []
    for i in range(max(steps, 3) + 1):  # the first step warms up
        batch = batches[i % len(batches)]
        t = time.perf_counter()
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
        tokens.append(int(batch["attention_mask"].sum()))
    return {
        "raw_torch_tokens_s": sum(tokens[1:]) / sum(times[1:]),
        "raw_torch_step_s": statistics.median(times[1:]),
        "raw_torch_padded_tokens_s": sum(b["input_ids"].numel() for b in (batches[i % len(batches)] for i in range(1, len(times))))
        / sum(times[1:]),
    }


# ---------------------------------------------------------------- the bench


def median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(values) if values else None


def bench(kinds: list[str], rounds: int, steps: int, model: str, work: Path) -> list[dict]:
    """Run every kind ``rounds`` times through each arm (alternating); one record per kind."""
    shutil.copyfile(CLOCK, work / "sitecustomize.py")
    env = {k: v for k, v in os.environ.items() if k != CLOCK_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(work), str(ROOT), env.get("PYTHONPATH", "")) if p)
    data = {name: prepare_data(name, KINDS[name], work, KINDS[name].rows) for name in kinds}
    runs: dict[str, list[tuple[Run, Run]]] = {name: [] for name in kinds}
    for r in range(rounds):
        for name in kinds:
            kind, tag = KINDS[name], f"r{r + 1}"
            order = ["rlft", "trl"] if r % 2 == 0 else ["trl", "rlft"]  # alternate which arm goes first
            done = {}
            for arm in order:
                if arm == "rlft":
                    done[arm] = run_rlft(name, kind, work, model, data[name], steps, env, tag)
                else:
                    done[arm] = run_plain(name, kind, work, model, data[name].plain_train, steps, env, tag)
            runs[name].append((done["rlft"], done["trl"]))
            for arm in order:
                d = done[arm]
                print(
                    f"round {r + 1} {name:<12} {arm:<4} {d.step_s:7.3f} s/step ({d.steps} steps)  first step {d.first_step_s:6.1f} s  "
                    f"wall {d.wall_s:6.1f} s  peak RSS {d.peak_rss_gb:.2f} GB",
                    flush=True,
                )
    return [record(name, pairs) for name, pairs in runs.items()]


def record(name: str, pairs: list[tuple[Run, Run]]) -> dict:
    rlft, trl = [p[0] for p in pairs], [p[1] for p in pairs]
    rlft_step, trl_step = median([x.step_s for x in rlft]), median([x.step_s for x in trl])
    ratios = [a.step_s / b.step_s for a, b in pairs]
    return {
        "kind": name,
        "rlft_step_s": rlft_step,
        "trl_step_s": trl_step,
        "ratio": rlft_step / trl_step,
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "rlft_first_step_s": median([x.first_step_s for x in rlft]),
        "trl_first_step_s": median([x.first_step_s for x in trl]),
        "rlft_peak_rss_gb": median([x.peak_rss_gb for x in rlft]),
        "trl_peak_rss_gb": median([x.peak_rss_gb for x in trl]),
        "rlft_wall_s": median([x.wall_s for x in rlft]),
        "trl_wall_s": median([x.wall_s for x in trl]),
        "rlft_steps": sum(x.steps for x in rlft),
        "trl_steps": sum(x.steps for x in trl),
        "rounds": len(pairs),
        "rlft_tokens_s": median([x.tokens_s for x in rlft]) if rlft[0].tokens_s is not None else None,
        "trl_tokens_s": median([x.tokens_s for x in trl]) if trl[0].tokens_s is not None else None,
        "rlft_history_step_s": median([x.history_step_s for x in rlft]),
        "config_diff": config_diff(rlft[0], trl[0]),
        "rlft_model": rlft[-1].model_dir,
        "trl_model": trl[-1].model_dir,
        "rlft_model_saved": all(has_weights(x.model_dir) for x in rlft),
        "trl_model_saved": all(has_weights(x.model_dir) for x in trl),
    }


def print_table(records: list[dict]) -> None:
    print(
        f"\n{'kind':<13}{'rlft s/step':>12}{'TRL s/step':>11}{'ratio':>7}{'[min, max]':>15}{'rlft 1st s':>11}{'TRL 1st s':>10}"
        f"{'rlft GB':>8}{'TRL GB':>7}{'rlft wall':>10}{'TRL wall':>9}"
    )
    for r in records:
        spread = f"[{r['ratio_min']:.3f}, {r['ratio_max']:.3f}]"
        print(
            f"{r['kind']:<13}{r['rlft_step_s']:>12.3f}{r['trl_step_s']:>11.3f}{r['ratio']:>7.3f}"
            f"{spread:>15}{r['rlft_first_step_s']:>11.1f}{r['trl_first_step_s']:>10.1f}"
            f"{r['rlft_peak_rss_gb']:>8.2f}{r['trl_peak_rss_gb']:>7.2f}{r['rlft_wall_s']:>10.1f}{r['trl_wall_s']:>9.1f}"
        )
    for r in records:
        if r["rlft_steps"] != r["trl_steps"]:
            print(f"warning: {r['kind']}: rlft ran {r['rlft_steps']} steps, plain TRL {r['trl_steps']}: not the same work")
        if r["config_diff"]:
            print(f"warning: {r['kind']}: the arms' trainer configs differ in {', '.join(r['config_diff'])}")
        if r["rlft_tokens_s"] is not None or r["trl_tokens_s"] is not None:
            print(f"{r['kind']}: real tokens/s (TRL's num_tokens) rlft {num(r['rlft_tokens_s'])}, plain TRL {num(r['trl_tokens_s'])}")
    print("(s/step: median over rounds of each run's median step interval; ratio = rlft / TRL, [min, max] over rounds)")


def print_ceilings(c: dict, records: list[dict]) -> None:
    step = c["decode_step_s"]
    print(f"\ndecode limit: {c['weight_bytes'] / 1e9:.3f} GB of weights; one batch-1 forward on a 1-token KV cache "
          f"{step * 1e3:.1f} ms (median) = {c['weight_stream_gb_s']:.2f} GB/s streamed")  # fmt: skip
    print("  limit: " + ", ".join(f"batch {b}: {b / step:.0f} tok/s" for b in (1, 16, 64, 128)) + f" ({1 / step:.1f} token steps/s)")
    print(f"SFT raw-PyTorch ceiling (forward, backward, AdamW on the sft kind's batches): {c['raw_torch_tokens_s']:.1f} real tokens/s "
          f"({c['raw_torch_padded_tokens_s']:.1f} counting padding; {c['raw_torch_step_s']:.3f} s/step)")  # fmt: skip
    ceiling = c["raw_torch_tokens_s"]
    for r in records:
        if r["kind"] == "sft":
            shares = [
                f"{arm} {num(r[f'{arm}_tokens_s'])} real tokens/s = {num(r[f'{arm}_tokens_s'], ceiling, '.2f')} of it"
                for arm in ("rlft", "trl")
            ]
            print("  SFT (full): " + "; ".join(shares))


def num(value: float | None, per: float = 1.0, spec: str = ".1f") -> str:
    """``value / per`` formatted, or ``n/a`` where there is no value."""
    return "n/a" if value is None else format(value / per, spec)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of: {', '.join(KINDS)}")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per run (>= 2: the first step is not timed)")
    parser.add_argument("--model", default="bundled:smollm2-135m-instruct", help="a bundled: model or a local model folder")
    parser.add_argument("--json", help="write the records (one per kind) to this file")
    parser.add_argument("--ceilings", action="store_true", help="also measure the decode limit and SFT's raw-PyTorch ceiling")
    parser.add_argument("--workdir", help="keep recipes, plain scripts, logs and models here (default: a temporary folder, removed)")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        parser.error(f"unknown kind {unknown[0]!r}; choose from {', '.join(KINDS)}")
    if args.steps < 2:
        parser.error("--steps must be at least 2: the first step is warm-up, seconds per step are timed between steps")

    from rlft.models import resolve_model

    model = str(Path(resolve_model(args.model)).resolve())
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rlft-bench-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        records = bench(kinds, args.rounds, args.steps, model, work)
        if records:
            print_table(records)
        if args.ceilings:
            sft = KINDS["sft"]
            train = work / "sft-train.jsonl"
            if not train.exists():
                write_rows(train, load_kind_rows(sft, "train", sft.rows))
            ceilings = {**decode_limit(model), **raw_sft_ceiling(model, sft, train, work, args.steps)}
            print_ceilings(ceilings, records)
            for r in records:
                r.update(ceilings)
        if args.json:
            Path(args.json).write_text(json.dumps(records, indent=2) + "\n")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return records


if __name__ == "__main__":
    main()
