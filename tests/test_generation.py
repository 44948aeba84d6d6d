"""rlft's own generation (rlft.decoding, rlft.evaluation.scorecard.generate): batches sized from memory, prompts
sorted by length and returned in their order, rows dropped at EOS with greedy ids equal to HF generate's, seeded
sampling, tokens/s in metrics and manifests, and an eval stage reusing the completions its model's scorecard made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import build_tiny_model, write_jsonl

from rlft import decoding
from rlft.decoding import decode, row_bytes, rows_per_batch, why_not_decode
from rlft.evaluation.scorecard import Scorecard, generate

PROMPTS = ["1+2=", "hello there, what is 12+13?", "a", "the quick brown fox jumps", "7*8=", "xyz", "seven plus eight?"]


@pytest.fixture(scope="module")
def lively_model(tmp_path_factory) -> Path:
    """The tiny model with weights drawn wide (std 0.3): its greedy completions vary token to token and row to row
    (the default tiny model repeats one token), so that an EOS chosen among its tokens ends rows at different steps."""
    from transformers import AutoModelForCausalLM

    path = build_tiny_model(tmp_path_factory.mktemp("lively") / "model")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
    model.save_pretrained(path)
    return path


def load(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(path)


def left_batch(tok, prompts: list[str]):
    tok.padding_side = "left"
    return tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)


def hf_greedy(model, batch, new: int, eos: int, pad: int) -> torch.Tensor:
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=new, do_sample=False, pad_token_id=pad, eos_token_id=eos)
    return out[:, batch["input_ids"].shape[1] :]


def eos_some_rows_hit(model, tok, prompts: list[str], new: int) -> int:
    """A token the model emits greedily in some rows (at different steps before the last two), not in all: as EOS it
    ends those rows early."""
    never = tok.convert_tokens_to_ids("<unk>")  # the random model does not emit it: nothing ends
    free = hf_greedy(model, left_batch(tok, prompts), new, never, tok.pad_token_id)
    for token in torch.unique(free).tolist():
        first = [row.index(token) for row in free.tolist() if token in row]
        if 2 <= len(first) < len(prompts) and len(set(first)) >= 2 and min(first) >= 1 and max(first) < new - 2:
            return token
    raise AssertionError("no token ends some rows and not others; pick another seed for lively_model")


def completions_until(ids: torch.Tensor, eos: int, pad: int) -> list[list[int]]:
    """Each row up to and including its first EOS, without pad tokens (the scorecard's completion ids, ``_until_eos``)."""
    out = []
    for row in ids.tolist():
        out.append([t for t in (row[: row.index(eos) + 1] if eos in row else row) if t != pad])
    return out


# --- how many rows at once ------------------------------------------------------------------------------------------


def test_row_bytes_is_one_rows_cache_prefill_activations_and_logits():
    from transformers import LlamaConfig

    config = LlamaConfig(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    )
    cache = 2 * 2 * 2 * 8 * (10 + 6) * 4  # keys and values x layers x kv heads x head dim x tokens x fp32
    prefill = (10 * (2 * 64 + 4 * 32) + 4 * 10 * 10) * 4  # one layer's MLP/hidden activations and attention scores
    logits = 3 * 100 * 4
    assert row_bytes(config, prompt_tokens=10, new_tokens=6) == cache + prefill + logits == 4096 + 11840 + 1200
    assert row_bytes(config, prompt_tokens=10, new_tokens=6, dtype_bytes=2) == (4096 + 11840) // 2 + 1200  # logits stay fp32

    per_row = cache + prefill + logits
    assert rows_per_batch(config, prompt_tokens=10, new_tokens=6, free=14 * per_row) == 7  # half of free memory
    assert rows_per_batch(config, prompt_tokens=10, new_tokens=6, free=14 * per_row + per_row) == 7  # whole rows only
    assert rows_per_batch(config, prompt_tokens=10, new_tokens=6, free=10**12) == decoding.CPU_ROW_CAP == 128
    assert rows_per_batch(config, prompt_tokens=10, new_tokens=6, free=10**12, device=torch.device("cuda", 0)) == decoding.GPU_ROW_CAP
    assert rows_per_batch(config, prompt_tokens=10, new_tokens=6, free=100) == 1  # always at least one row
    assert rows_per_batch(config, prompt_tokens=10, new_tokens=6, free=10**12, cap=9) == 9


def test_row_cap_can_be_set_from_the_environment(monkeypatch):
    from transformers import LlamaConfig

    monkeypatch.setenv("RLFT_GENERATION_ROW_CAP", "40")
    config = LlamaConfig(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    )
    assert rows_per_batch(config, prompt_tokens=10, new_tokens=6, free=10**12) == 40


def test_free_memory_is_read_with_psutil_or_from_proc_meminfo(monkeypatch):
    import sys

    with_psutil = decoding.free_bytes()
    monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil now raises ImportError
    from_kernel = decoding.free_bytes()
    assert with_psutil > 0 and from_kernel > 0 and 0.5 < with_psutil / from_kernel < 2.0


def test_batch_size_auto_or_none_comes_from_free_memory_and_a_number_is_kept(tiny_model, monkeypatch):
    model, tok = load(tiny_model)
    longest = max(len(tok(p, add_special_tokens=False)["input_ids"]) for p in PROMPTS)
    per_row = row_bytes(model.config, prompt_tokens=longest, new_tokens=4)
    monkeypatch.setattr(decoding, "free_bytes", lambda device=None: 6 * per_row)  # half of it: 3 rows
    assert generate(model, tok, PROMPTS, max_new_tokens=4).rows_per_batch == 3
    assert generate(model, tok, PROMPTS, max_new_tokens=4, batch_size="auto").rows_per_batch == 3
    assert generate(model, tok, PROMPTS, max_new_tokens=4, batch_size=5).rows_per_batch == 5


# --- decoding -------------------------------------------------------------------------------------------------------


def test_rows_leave_the_batch_at_eos_and_greedy_ids_equal_hf_generate(lively_model):
    model, tok = load(lively_model)
    eos = eos_some_rows_hit(model, tok, PROMPTS, 16)
    batch = left_batch(tok, PROMPTS)
    expected = hf_greedy(model, batch, 16, eos, tok.pad_token_id)
    rows = []
    handle = model.register_forward_pre_hook(lambda m, args, kwargs: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True)
    with torch.inference_mode():
        got = decode(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=16, eos_ids=[eos], pad_id=tok.pad_token_id)
    handle.remove()
    assert torch.equal(got, expected)  # same ids, same width, padding after each row's EOS
    ended = [eos in row for row in expected.tolist()]
    assert any(ended) and not all(ended)
    # Every step runs only the rows still going: fewer as they end, never more.
    assert rows[0] == len(PROMPTS) and rows == sorted(rows, reverse=True) and rows[-1] == len(PROMPTS) - sum(ended)


def test_a_repeated_prompt_is_prefilled_once_and_its_completions_are_unchanged(lively_model):
    model, tok = load(lively_model)
    prompts = ["1+2=", "1+2=", "a", "the quick brown fox", "a", "1+2="]
    batch = left_batch(tok, prompts)
    expected = hf_greedy(model, batch, 8, tok.eos_token_id, tok.pad_token_id)
    rows = []
    handle = model.register_forward_pre_hook(lambda m, args, kwargs: rows.append(kwargs["input_ids"].shape), with_kwargs=True)
    with torch.inference_mode():
        got = decode(
            model, batch["input_ids"], batch["attention_mask"], max_new_tokens=8, eos_ids=[tok.eos_token_id], pad_id=tok.pad_token_id
        )
    handle.remove()
    assert torch.equal(got, expected)
    assert rows[0][0] == 3 and rows[1] == (6, 1)  # 3 distinct prompts prefilled, then every row decodes


def test_generate_returns_everything_in_prompt_order_equal_to_the_unsorted_batch(lively_model, tmp_path):
    """Sorted longest first and cut into batches of 2, the results come back in the caller's order and equal what
    HF generate gives for the prompts in one unsorted batch; the KL too (to float rounding)."""
    model, tok = load(lively_model)
    ref, _ = load(build_tiny_model(tmp_path / "ref", seed=1))
    eos = eos_some_rows_hit(model, tok, PROMPTS, 12)
    tok.eos_token = tok.convert_ids_to_tokens(eos)
    expected = completions_until(hf_greedy(model, left_batch(tok, PROMPTS), 12, eos, tok.pad_token_id), eos, tok.pad_token_id)
    assert len({len(c) for c in expected}) > 2  # lengths vary

    got = generate(model, tok, PROMPTS, max_new_tokens=12, batch_size=2, ref=ref)
    assert got.ids == expected
    assert got.lengths == [len(c) for c in expected]
    assert got.texts == tok.batch_decode(expected, skip_special_tokens=True)
    one_by_one = [generate(model, tok, [p], max_new_tokens=12, batch_size=1, ref=ref) for p in PROMPTS]
    assert [g.ids[0] for g in one_by_one] == expected
    assert got.kl == pytest.approx([g.kl[0] for g in one_by_one], rel=1e-4, abs=1e-5)
    assert all(k > 0 for k in got.kl)


def test_sampling_is_repeatable_with_a_seed(lively_model):
    model, tok = load(lively_model)

    def sampled(seed: int, **kw):
        torch.manual_seed(seed)
        return generate(model, tok, PROMPTS, max_new_tokens=10, batch_size=3, temperature=1.0, **kw).ids

    first = sampled(0)
    assert sampled(0) == first and sampled(0, top_p=0.9) == sampled(0, top_p=0.9)
    assert sampled(1) != first
    assert first != generate(model, tok, PROMPTS, max_new_tokens=10, batch_size=3).ids  # not greedy


def test_a_model_whose_generation_config_shapes_the_logits_decodes_with_hf_generate(lively_model):
    model, tok = load(lively_model)
    model.generation_config.repetition_penalty = 5.0
    assert "repetition_penalty=5.0" in why_not_decode(model)
    expected = completions_until(
        hf_greedy(model, left_batch(tok, PROMPTS), 10, tok.eos_token_id, tok.pad_token_id), tok.eos_token_id, tok.pad_token_id
    )
    assert generate(model, tok, PROMPTS, max_new_tokens=10, batch_size=4).ids == expected
    model.generation_config.repetition_penalty = None
    assert why_not_decode(model) is None
    assert generate(model, tok, PROMPTS, max_new_tokens=10, batch_size=4).ids != expected  # the penalty did change them


def test_score_reports_tokens_per_second_as_tokens_over_seconds(tiny_model):
    model, tok = load(tiny_model)
    card = Scorecard(prompts=PROMPTS, columns={}, rewards=[], max_new_tokens=5, batch_size=3)
    m = card.score(model, tok, "eval")
    gen = card.samples["eval"]
    assert m["eval/generated_tokens"] == gen.tokens == sum(gen.lengths) == 5 * len(PROMPTS)  # no EOS: all run to 5
    assert m["eval/generation_s"] == gen.seconds > 0
    assert m["eval/tokens_per_s"] == m["eval/generated_tokens"] / m["eval/generation_s"] > 0
    record = card.generation["eval"]
    assert (record["tokens"], record["rows_per_batch"], record["max_new_tokens"], record["decoding"]) == (35, 3, 5, "greedy")
    assert record["tokens_per_s"] == round(m["eval/tokens_per_s"], 2) and record["prompts"] == len(PROMPTS)
    card.adopt("eval", "round1")  # nothing generated under this name: no speed of its own
    assert "round1" not in card.generation and "round1/tokens_per_s" not in card.metrics("round1")


# --- a pipeline: speed in the manifest and summary, and the eval stage reusing the scorecard's completions ----------


def reuse_recipe(folder: Path, model: Path, **eval_keys) -> dict:
    write_jsonl(folder / "train.jsonl", [{"prompt": f"{i}+{i % 3}=", "completion": str(i + i % 3)} for i in range(8)])
    rows = [{"prompt": f"{i}+{i % 4}=", "answer": str(i + i % 4), "completion": str(i + i % 4)} for i in range(10, 16)]
    write_jsonl(folder / "heldout.jsonl", rows)  # completion: SFT's held-out loss
    write_jsonl(folder / "other.jsonl", [{"prompt": f"{i}-{i % 4}=", "answer": str(i - i % 4)} for i in range(10, 16)])
    return {
        "name": "reuse",
        "model": str(model),
        "tracking": {"mode": "disabled"},
        "stages": [
            {
                "name": "sft",
                "kind": "sft",
                "data": "train.jsonl",
                "eval_data": "heldout.jsonl",
                "scorecard": {"prompts": 6, "max_new_tokens": 6, "rewards": ["math_accuracy"]},
                "trl": {"max_steps": 1, "per_device_train_batch_size": 4, "learning_rate": 1e-2},
            },
            {
                "name": "eval",
                "kind": "eval",
                "init_from": "sft",
                "data": "heldout.jsonl",
                "rewards": ["math_accuracy"],
                "max_new_tokens": 6,
                **eval_keys,
            },
        ],
    }


@pytest.fixture(scope="module")
def reuse_run(tmp_path_factory, lively_model) -> Path:
    """An SFT stage (scorecard: 6 held-out prompts) and an eval stage of the same prompts and settings, run as a pipeline."""
    from rlft.pipeline.run import run_pipeline
    from rlft.recipe import load_recipe

    folder = tmp_path_factory.mktemp("reuse")
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(reuse_recipe(folder, lively_model)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setenv("OMP_NUM_THREADS", "1")
        summary = run_pipeline(load_recipe(path), source=str(path), run_id="r", output_dir=str(folder / "runs"))
    assert summary["status"] == "done", summary
    return folder / "runs" / "r"


def test_speed_of_each_generation_is_in_the_manifest_and_the_summary(reuse_run):
    summary = {s["name"]: s["metrics"] for s in json.loads((reuse_run / "summary.json").read_text())["stages"]}
    for stage, prefixes in (("sft", ("baseline", "eval")), ("eval", ("baseline",))):
        manifest = json.loads((reuse_run / stage / "manifest.json").read_text())
        for prefix in prefixes:
            m = manifest["result"]["metrics"]
            tokens, seconds = m[f"{prefix}/generated_tokens"], m[f"{prefix}/generation_s"]
            assert tokens > 0 and seconds > 0 and m[f"{prefix}/tokens_per_s"] == tokens / seconds, (stage, prefix)
            assert summary[stage][f"{prefix}/tokens_per_s"] == m[f"{prefix}/tokens_per_s"]
            record = manifest["generation"][prefix]
            assert record["tokens"] == tokens and record["rows_per_batch"] >= 1 and record["tokens_per_s"] == round(tokens / seconds, 2)
    sft = json.loads((reuse_run / "sft" / "manifest.json").read_text())["generation"]
    assert sft["eval"]["model"] == "sft" and "model" not in sft["baseline"]  # only the saved model's completions can be reused


def test_the_eval_stage_reuses_the_completions_its_models_scorecard_made(reuse_run):
    manifest = json.loads((reuse_run / "eval" / "manifest.json").read_text())
    assert manifest["generation"]["eval"]["reused_from"] == "sft"
    m = manifest["result"]["metrics"]
    assert "eval/tokens_per_s" not in m and m["eval/kl_to_ref"] > 0  # nothing generated; the KL to the baseline computed
    sft_rows = [json.loads(line) for line in (reuse_run / "sft" / "samples.jsonl").read_text().splitlines()]
    eval_rows = [json.loads(line) for line in (reuse_run / "eval" / "samples.jsonl").read_text().splitlines()]
    assert [r["eval_completion_ids"] for r in eval_rows] == [r["eval_completion_ids"] for r in sft_rows]
    assert [r["eval_math_accuracy"] for r in eval_rows] == [r["eval_math_accuracy"] for r in sft_rows]


def run_eval(reuse_run: Path, tmp_path: Path, lively_model: Path, monkeypatch, **eval_keys):
    """The eval stage run again in this process against the finished SFT stage, with ``eval_keys`` changed."""
    from rlft.recipe import recipe_from_dict
    from rlft.stages import eval as eval_stage
    from rlft.stages.context import StageContext, StageResult
    from rlft.tracking import NullRun

    monkeypatch.chdir(reuse_run.parent.parent)
    r = recipe_from_dict(reuse_recipe(reuse_run.parent.parent, lively_model, **eval_keys))
    out = tmp_path / ".eval.partial"
    out.mkdir(parents=True)
    results = {"sft": StageResult.read(reuse_run / "sft")}
    ctx = StageContext(
        recipe=r, run_id="r", run_dir=reuse_run, out_dir=out, recipe_dir=reuse_run.parent.parent, results=results, tracker=NullRun()
    )
    result = eval_stage.run(r.stage("eval"), ctx)
    return result.metrics, ctx.notes.generation, [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def test_reused_completions_score_as_a_fresh_generation_would(reuse_run, tmp_path, lively_model, monkeypatch):
    from rlft.stages import eval as eval_stage

    reused_m, reused_notes, reused_rows = run_eval(reuse_run, tmp_path / "a", lively_model, monkeypatch)
    monkeypatch.setattr(eval_stage, "reusable", lambda *a, **k: (None, ""))
    fresh_m, fresh_notes, fresh_rows = run_eval(reuse_run, tmp_path / "b", lively_model, monkeypatch)
    assert reused_notes["eval"]["reused_from"] == "sft" and "reused_from" not in fresh_notes["eval"]
    assert [r["eval_completion"] for r in reused_rows] == [r["eval_completion"] for r in fresh_rows]
    for key in ("eval/reward/math_accuracy", "eval/mean_length", "eval/delta/reward/math_accuracy"):
        assert reused_m[key] == fresh_m[key], key
    assert reused_m["eval/kl_to_ref"] == pytest.approx(fresh_m["eval/kl_to_ref"], rel=1e-4)


def test_an_eval_stage_with_kl_false_skips_only_the_kl_pass(reuse_run, tmp_path, lively_model, monkeypatch):
    from rlft.evaluation import scorecard

    with_kl, _, _ = run_eval(reuse_run, tmp_path / "a", lively_model, monkeypatch)
    calls = []
    real = scorecard.completion_kl
    monkeypatch.setattr(scorecard, "completion_kl", lambda *a, **k: calls.append(1) or real(*a, **k))
    without, notes, _ = run_eval(reuse_run, tmp_path / "b", lively_model, monkeypatch, kl=False)
    assert calls == [] and "eval/kl_to_ref" not in without and with_kl["eval/kl_to_ref"] > 0
    assert notes["eval"]["reused_from"] == "sft"  # the completions are still reused
    for key in ("eval/reward/math_accuracy", "eval/delta/reward/math_accuracy", "baseline/reward/math_accuracy"):
        assert without[key] == with_kl[key], key


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"max_new_tokens": 5}, "max_new_tokens 6 there, 5 here"),
        ({"data": {"source": "heldout.jsonl", "limit": 5}}, "prompts 6 there, 5 here"),
        ({"data": "other.jsonl"}, "other prompts"),
        ({"model_kwargs": {"attn_implementation": "eager"}}, "model_kwargs"),
    ],
)
def test_any_difference_generates_again(reuse_run, tmp_path, lively_model, monkeypatch, capsys, change, why):
    _, notes, _ = run_eval(reuse_run, tmp_path, lively_model, monkeypatch, **change)
    assert "reused_from" not in notes["eval"] and notes["eval"]["tokens"] > 0
    assert why in capsys.readouterr().out


def test_batch_size_in_a_recipe_is_a_number_auto_or_left_out(tiny_model):
    from rlft.errors import RecipeError
    from rlft.recipe import recipe_from_dict

    def recipe(**keys):
        stage = {"name": "ev", "kind": "eval", "data": "bundled:arithmetic", "rewards": ["math_accuracy"], **keys}
        return recipe_from_dict({"name": "t", "model": str(tiny_model), "stages": [stage]})

    assert recipe().stage("ev").batch_size is None  # left out: chosen from free memory
    assert recipe(batch_size="auto").stage("ev").batch_size == "auto" and recipe(batch_size=12).stage("ev").batch_size == 12
    for bad in ("big", 0):
        with pytest.raises(RecipeError) as info:
            recipe(batch_size=bad)
        assert f"stages.ev.batch_size: must be a number of rows (1 or more), or auto to choose it from free memory; got {bad!r}" in str(
            info.value
        )
