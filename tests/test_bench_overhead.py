"""scripts/bench_overhead.py: both arms run the same steps on the same rows and config, each timed by the same clock."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_overhead.py"
KEYS = {"kind", "rlft_step_s", "trl_step_s", "ratio", "rlft_first_step_s", "trl_first_step_s", "rlft_peak_rss_gb", "trl_peak_rss_gb"}


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("bench_overhead", SCRIPT)
    module = sys.modules["bench_overhead"] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_overhead", None)


def test_sft_through_rlft_and_plain_trl_same_steps_same_config(script, tiny_model, tmp_path):
    work, out = tmp_path / "work", tmp_path / "bench.json"
    argv = ["--model", str(tiny_model), "--kinds", "sft", "--rounds", "1", "--steps", "2", "--json", str(out), "--workdir", str(work)]
    records = script.main(argv)
    written = json.loads(out.read_text())
    assert written == records and len(written) == 1
    rec = written[0]
    assert KEYS <= set(rec) and rec["kind"] == "sft"
    assert rec["rlft_steps"] == rec["trl_steps"] == 2  # the clock saw two optimizer steps in each arm
    assert rec["ratio"] == rec["rlft_step_s"] / rec["trl_step_s"]
    assert rec["ratio_min"] == rec["ratio_max"] == rec["ratio"]  # one round
    assert rec["config_diff"] == []  # TrainingArguments as each trainer held them: the same, output paths aside
    for arm in ("rlft", "trl"):
        assert 0 < rec[f"{arm}_step_s"] < rec[f"{arm}_first_step_s"] < rec[f"{arm}_wall_s"]
        assert 0.05 < rec[f"{arm}_peak_rss_gb"] < 20
        assert rec[f"{arm}_tokens_s"] > 0  # TRL's num_tokens was logged at every step
    # each arm saved a model of its own: rlft's stage folder, the plain script's output_dir
    assert Path(rec["rlft_model"]) == work / "runs" / "sft-r1" / "sft" / "model"
    assert Path(rec["trl_model"]) == work / "trl-sft-r1"
    assert (Path(rec["rlft_model"]) / "model.safetensors").exists() and (Path(rec["trl_model"]) / "model.safetensors").exists()
    assert rec["rlft_model_saved"] and rec["trl_model_saved"]
    # rlft's history.jsonl is a second reading of its step interval (same steps, timed at on_log instead of on_step_end)
    assert rec["rlft_history_step_s"] > 0
    # the plain arm is plain TRL: no rlft import; the rlft arm ran rlft's pipeline, whose stage trained in its own process
    plain = (work / "trl-sft.py").read_text()
    assert not [line for line in plain.splitlines() if line.startswith(("import rlft", "from rlft"))] and "SFTTrainer(" in plain
    clock = [json.loads(line) for line in (work / "clock-rlft-sft-r1.jsonl").read_text().splitlines()]
    summary = json.loads((work / "runs" / "sft-r1" / "summary.json").read_text())
    assert summary["stages"][0]["status"] == "done" and [e["step"] for e in clock if e["event"] == "step"] == [1, 2]
    # both arms trained on the rows rlft's loader gave, written once
    rows = [json.loads(line) for line in (work / "sft-train.jsonl").read_text().splitlines()]
    assert rows == script.load_kind_rows(script.KINDS["sft"], "train", script.KINDS["sft"].rows)


def test_read_clock_times_steps_between_step_ends_and_counts_real_tokens(script, tmp_path):
    clock = tmp_path / "clock.jsonl"
    events = [
        {"event": "begin", "trainer": "a", "t": 100.0, "args": {"seed": 1}, "peft": {}},
        {"event": "step", "trainer": "a", "step": 1, "t": 110.0, "pc": 5.0},
        {"event": "tokens", "trainer": "a", "step": 1, "num_tokens": 400},
        {"event": "step", "trainer": "a", "step": 2, "t": 112.0, "pc": 7.0},
        {"event": "tokens", "trainer": "a", "step": 2, "num_tokens": 700},
        {"event": "step", "trainer": "a", "step": 3, "t": 113.0, "pc": 8.0},
        {"event": "tokens", "trainer": "a", "step": 3, "num_tokens": 800},
        {"event": "step", "trainer": "b", "step": 1, "t": 120.0, "pc": 9.0},  # another trainer in the process: ignored
    ]
    clock.write_text("".join(json.dumps(e) + "\n" for e in events))
    timing = script.read_clock(clock, t0=104.0)
    assert timing["step_s"] == 1.5  # intervals 2 and 1; the first step is not one
    assert timing["steps"] == 3 and timing["first_step_s"] == 6.0
    assert timing["tokens_s"] == 400 / 3  # (300 + 100) tokens over (2 + 1) s
    assert timing["args"] == {"seed": 1}
    clock.write_text(json.dumps(events[1]) + "\n")
    with pytest.raises(SystemExit, match="1 optimizer step"):
        script.read_clock(clock, t0=0.0)


def a_run(script, args=None, peft=None, **timing):
    values = {"step_s": 1.0, "steps": 2, "first_step_s": 1.0, "wall_s": 2.0, "peak_rss_gb": 1.0, "tokens_s": None, **timing}
    return script.Run(**values, args=args or {}, peft=peft or {}, model_dir="")


def test_a_kinds_record_is_medians_over_rounds_and_their_ratio(script):
    rlft = [a_run(script, step_s=s, first_step_s=f, steps=3) for s, f in ((1.0, 10.0), (3.0, 30.0), (4.0, 20.0))]
    trl = [a_run(script, step_s=s, first_step_s=f, steps=3) for s, f in ((2.0, 5.0), (1.0, 7.0), (8.0, 6.0))]
    rec = script.record("sft", list(zip(rlft, trl, strict=True)))
    assert (rec["rlft_step_s"], rec["trl_step_s"], rec["ratio"]) == (3.0, 2.0, 1.5)  # medians over rounds, then their ratio
    assert (rec["ratio_min"], rec["ratio_max"]) == (0.5, 3.0)  # the per-round ratios are 0.5, 3.0, 0.5
    assert (rec["rlft_first_step_s"], rec["trl_first_step_s"], rec["rlft_steps"], rec["trl_steps"]) == (20.0, 6.0, 9, 9)
    assert rec["rlft_tokens_s"] is None and rec["rlft_history_step_s"] is None and rec["rounds"] == 3


def test_config_diff_names_every_differing_key_but_output_paths(script):
    lora = {"r": 16, "lora_alpha": 32, "base_model_name_or_path": "/a"}
    a = a_run(script, {"output_dir": "/x", "learning_rate": 1e-4, "seed": 42}, {"default": lora})
    b = a_run(script, {"output_dir": "/y", "learning_rate": 1e-4, "seed": 42}, {"default": {**lora, "base_model_name_or_path": "/b"}})
    assert script.config_diff(a, b) == []
    c = a_run(script, {"output_dir": "/y", "learning_rate": 2e-4, "seed": 42, "bf16": True}, {"default": {**lora, "r": 8}})
    assert script.config_diff(a, c) == ["bf16", "learning_rate", "peft.r"]


def test_plain_script_is_trls_documented_form_with_rlfts_resolved_config(script, tmp_path):
    grpo = script.KINDS["grpo"]
    config = script.plain_config(grpo, 3, tmp_path / "out")
    assert config["max_steps"] == 3 and config["reward_weights"] == [1.0, 0.2] and config["seed"] == script.SEED
    assert config["bf16"] is False and config["logging_steps"] == 1 and config["activation_checkpointing"] is False
    text = script.plain_script(grpo, "/m", tmp_path / "rows.jsonl", config)
    compile(text, "trl-grpo.py", "exec")
    assert "reward_funcs=[math_accuracy, answer_format]" in text and "    max_steps=3,\n" in text
    assert 'LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")' in text
    recipe = script.rlft_recipe("grpo", grpo, "/m", tmp_path / "t.jsonl", tmp_path / "h.jsonl", 3)
    from rlft.recipe import recipe_from_dict

    stage = recipe_from_dict(recipe).stages[0]
    assert stage.kind == "grpo" and stage.trl["max_steps"] == 3 and [r.weight for r in stage.rewards] == [1.0, 0.2]
    assert stage.scorecard.prompts == 0 and not stage.scorecard.baseline


def test_ceilings_on_the_tiny_model(script, tiny_model, tmp_path):
    limit = script.decode_limit(str(tiny_model), repeats=3)
    # 102-token vocabulary, hidden 32, 2 layers (q/o 32x32, k/v 32x16, MLP 3 x 32x64, two norms), tied embeddings
    params = 102 * 32 + 2 * (2 * 32 * 32 + 2 * 32 * 16 + 3 * 32 * 64 + 2 * 32) + 32
    assert limit["weight_bytes"] == 4 * params
    assert limit["decode_limit_steps_s"] == 1 / limit["decode_step_s"] > 0
    sft = script.KINDS["sft"]
    train = script.write_rows(tmp_path / "sft.jsonl", script.load_kind_rows(sft, "train", 32))
    raw = script.raw_sft_ceiling(str(tiny_model), sft, train, tmp_path, steps=2)
    assert 0 < raw["raw_torch_tokens_s"] <= raw["raw_torch_padded_tokens_s"]
