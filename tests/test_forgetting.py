"""Guards against overfitting and forgetting: the probe's checkers, the generalisation gap, and forgetting failing a pipeline."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import build_tiny_model, write_jsonl

from rewards.general import CHECKS, general_ability, passes
from rlft.data.bundled.probe import CATEGORIES, probe_items, probe_rows
from rlft.errors import CheckFailed, RecipeError, RlftError
from rlft.recipe import recipe_from_dict
from rlft.stages.context import StageContext, StageResult
from rlft.tracking import NullRun

ITEMS = probe_items()
PROBE_K = 10  # the first 10 probe rows: two per category


def item(start: str):
    return next(i for i in ITEMS if i.question.startswith(start))


# --- the probe set and its checkers ---------------------------------------------------------------


def test_probe_set_shape_and_every_example_passes_its_own_check():
    assert len(ITEMS) == 100 and len({i.question for i in ITEMS}) == 100
    assert {c: sum(i.category == c for i in ITEMS) for c in CATEGORIES} == dict.fromkeys(CATEGORIES, 20)
    assert {i.check for i in ITEMS} == set(CHECKS)  # every checker is used by some question
    failing = [(i.question, i.example) for i in ITEMS if not passes(i.check, i.example, i.reference, i.options)]
    assert failing == []
    # Repeating the question earns nothing, but where an instruction asks for a word the question holds.
    echoed = [i.question for i in ITEMS if passes(i.check, i.question, i.reference, i.options)]
    assert echoed == ['Name two animals, and make sure your answer includes the word "dog".']
    rows = probe_rows("test")
    assert [r["category"] for r in rows[:PROBE_K]] == list(CATEGORIES) * 2  # round-robin: a limit keeps every category
    assert set(rows[0]) == {"prompt", "category", "check", "reference", "options"}  # no example answer in the data
    with pytest.raises(RlftError, match="no 'train' split"):
        probe_rows("train")


# One hand-written wrong (and one more right) answer to real questions of every category.
ANSWERS = [
    # facts
    ("What is the capital of France?", "It is Paris, of course.", True),
    ("What is the capital of France?", "Lyon", False),
    ("What is the capital of France?", "Parish", False),  # whole words only
    ("What gas do plants take in", "They take in CO2.", True),
    ("What gas do plants take in", "Oxygen.", False),
    ("How many continents are there", "seven", True),
    ("How many continents are there", "There are 6 continents.", False),
    # arithmetic
    ("What is 7 + 5?", "<answer>12</answer>", True),
    ("What is 7 + 5?", "7 + 5 = 13", False),
    ("What is 0.5 + 0.25?", "<answer>3/4</answer>", True),  # math-verify: equal values
    ("What is 0.5 + 0.25?", "0.70", False),
    ("What is 15% of 200?", "I am not sure.", False),
    # reasoning
    ("Tom is taller than Ann", "Bo is the shortest.", True),
    ("Tom is taller than Ann", "Tom is taller than Bo.", False),  # the first name it gives is the answer
    ("Is 15 greater than 51?", "No, 15 is smaller.", True),
    ("Is 15 greater than 51?", "Yes.", False),
    ("Which number is larger: 0.45 or 0.9?", "0.45", False),
    ("Which number is larger: 0.45 or 0.9?", "Comparing 0.45 and 0.9, the larger is 0.9.", False),  # the first named counts
    ("Which letter comes first in the alphabet", "K", True),
    ("Which letter comes first in the alphabet", "M, then K.", False),
    # language
    ('What is the opposite of "hot"?', 'The opposite of "hot" is "cold".', True),
    ('What is the opposite of "hot"?', "Warm", False),
    ('What is the plural of "mouse"?', "The plural of mouse is mouses.", False),
    ('Which word rhymes with "cat"', '"Cat" rhymes with "dog".', False),
    ('Give a synonym of "happy"', "Cheerful!", True),
    ('Give a synonym of "happy"', "Sad", False),
    ('What does the Spanish word "gracias" mean', "It means thanks.", True),
    ('What does the Spanish word "gracias" mean', "Please.", False),
    # instructions
    ("What is your favourite season? Reply in uppercase", "WINTER!", True),
    ("What is your favourite season? Reply in uppercase", "Winter", False),
    ("List three fruits as a bulleted list", "* apple\n* pear\n* plum", True),
    ("List three fruits as a bulleted list", "- apple\n- pear", False),
    ("List three fruits as a bulleted list", "apple, pear, plum", False),
    ("Write one sentence about the sea in lowercase", "The sea is blue.", False),
    ("Describe a cat in at most five words.", "A cat is a small furry animal.", False),
    ("Is water wet? Start your answer", "No, it is not.", False),
    ('Write a short greeting that ends with the word "friend".', "Hi friend.", True),
    ('Write a short greeting that ends with the word "friend".', "Hello friend, how are you?", False),
    ("Name two animals, and make sure", "A cat and a horse.", False),
    ('Describe the weather without using the letter "e"', "It is cold and grey.", False),
    ('Describe the weather without using the letter "e"', "", False),
    ('Name two fruits without using the word "apple".', "Apple and pear.", False),
    ('Name two fruits without using the word "apple".', "Pineapple and pear.", True),  # a word, not a substring
    ("Give a JSON object", 'Sure: {"name": "Bo", "age": 4}', True),
    ("Give a JSON object", '{"name": "Bo"}', False),
    ("Give a JSON object", "name: Bo, age: 4", False),
    ("What is your favourite food? Put your whole answer in double quotes.", "Pizza", False),
    ('Reply with "OK" and nothing else.', "OK, sure.", False),
    ('Which animal says "moo"?', '"Cow!"', True),
    ('Which animal says "moo"?', "It is a cow.", False),  # not one word
    ("Name a colour.", "Blue and red.", False),
    ("Ask me a question about my day.", "Tell me about your day.", False),
]


@pytest.mark.parametrize(("question", "answer", "right"), ANSWERS, ids=[f"{a[0][:24]}|{a[1][:16]}" for a in ANSWERS])
def test_checkers_on_hand_written_answers(question, answer, right):
    i = item(question)
    assert passes(i.check, answer, i.reference, i.options) is right


def test_general_ability_reward_scores_rows_by_their_own_check():
    from rlft.reward_refs import resolve_reward

    resolved = resolve_reward("general_ability")
    assert resolved.required_columns == ("check", "reference")
    rows = probe_rows("test")[:3]
    completions = [[{"role": "assistant", "content": c}] for c in ("Paris", "13", "Bo")]
    columns = {k: [r[k] for r in rows] + [None] for k in ("check", "reference", "options")}
    assert resolved.reward([r["prompt"] for r in rows] + ["q"], completions + ["x"], **columns) == [1.0, 0.0, 1.0, None]
    assert general_ability(["q"], ["HELLO"], check=["uppercase"], reference=[""]) == [1.0]  # options are optional
    with pytest.raises(ValueError, match="unknown general-ability check 'shout'"):
        passes("shout", "HI")


# --- recipe keys ----------------------------------------------------------------------------------


def recipe(model: str, **eval_keys) -> dict:
    return {
        "name": "g",
        "model": model,
        "tracking": {"mode": "disabled"},
        "stages": [
            {"name": "m", "kind": "sft", "data": "train.jsonl", "eval_data": "heldout.jsonl", "scorecard": {"prompts": 0}},
            {
                "name": "eval",
                "kind": "eval",
                "init_from": "m",
                "data": "heldout.jsonl",
                "rewards": [{"name": "math_accuracy"}],
                **eval_keys,
            },
        ],
    }


def test_schema_errors_name_the_key():
    def problems(**eval_keys) -> str:
        with pytest.raises(RecipeError) as info:
            recipe_from_dict(recipe("x", **eval_keys))
        return str(info.value)

    text = problems(overfit_check={"stage": "mm"}, forgetting={"max_drop": 0.05}, baseline=None)
    assert "stages.eval.overfit_check.stage: 'mm' is not an earlier stage. did you mean 'm'?" in text
    assert "stages.eval.forgetting: forgetting compares" in text and "set baseline: base" in text  # both at once
    assert "stages.eval.overfit_check.stage: 'eval' is not an earlier stage" in problems(overfit_check={"stage": "eval"})
    assert "stages.eval.forgetting.max_drop" in problems(forgetting={"max_drop": 1.5})
    assert "stages.eval.forgetting.max_drop: required key is missing" in problems(forgetting={})
    assert "stages.eval.probe.limt: unknown key. did you mean 'limit'?" in problems(probe={"limt": 5})
    assert "stages.eval.overfit_check.prompts" in problems(overfit_check={"stage": "m", "prompts": 0})

    r = recipe_from_dict(recipe("x", forgetting={"max_drop": 0.05})).stage("eval")
    assert r.probe is None and r.probe_spec.limit is None  # forgetting runs the probe with its defaults
    assert recipe_from_dict(recipe("x")).stage("eval").probe_spec is None


def test_overfit_check_needs_the_rewards_columns_in_the_training_rows(tiny_model, tmp_path):
    from rlft.stages import eval as eval_stage

    write_jsonl(tmp_path / "train.jsonl", [{"prompt": f"item {i}:", "completion": "1"} for i in range(4)])  # no answer column
    write_jsonl(tmp_path / "heldout.jsonl", [{"prompt": "item 9:", "answer": "7", "completion": "7"}])
    r = recipe_from_dict(recipe(str(tiny_model), overfit_check={"stage": "m"}))
    with pytest.raises(RlftError, match=r"reward math_accuracy needs column\(s\) \['answer'\], which the training rows of stage 'm' lack"):
        eval_stage.run(r.stage("eval"), make_ctx(r, tmp_path, {}))


# --- the eval stage -------------------------------------------------------------------------------


def make_ctx(r, tmp_path: Path, results: dict) -> StageContext:
    out = tmp_path / ".eval.partial"
    out.mkdir(parents=True, exist_ok=True)
    return StageContext(recipe=r, run_id="t", run_dir=tmp_path, out_dir=out, recipe_dir=tmp_path, results=results, tracker=NullRun())


@pytest.fixture(scope="module")
def fused_model(tmp_path_factory) -> Path:
    """The tiny test model, with a tokenizer that decodes characters without spaces between them (``Paris``, not ``P a r i s``)."""
    from tokenizers import decoders
    from transformers import AutoTokenizer

    path = build_tiny_model(tmp_path_factory.mktemp("fused") / "model")
    tok = AutoTokenizer.from_pretrained(path)
    tok.backend_tokenizer.decoder = decoders.Fuse()
    tok.save_pretrained(path)
    return path


def sft(r, tmp_path: Path, name: str) -> StageResult:
    from rlft.stages import sft as sft_stage

    out = tmp_path / f".{name}.partial"
    out.mkdir(parents=True, exist_ok=True)
    ctx = StageContext(recipe=r, run_id="t", run_dir=tmp_path, out_dir=out, recipe_dir=tmp_path, results={}, tracker=NullRun())
    return sft_stage.run(r.stage(name), ctx)


def memorise(model: Path, rows: list[dict], tmp_path: Path, steps: int) -> StageResult:
    """Fine-tune the tiny model on ``rows`` (prompt, completion) until it repeats them."""
    write_jsonl(tmp_path / "memorise.jsonl", rows)
    trl = {"max_steps": steps, "per_device_train_batch_size": len(rows), "learning_rate": 1e-2, "lr_scheduler_type": "constant"}
    stage = {"name": "mem", "kind": "sft", "data": "memorise.jsonl", "eval_data": "memorise.jsonl", "scorecard": {"prompts": 0}, "trl": trl}
    return sft(recipe_from_dict({"name": "m", "model": str(model), "tracking": {"mode": "disabled"}, "stages": [stage]}), tmp_path, "mem")


def test_probe_and_forgetting_on_controlled_answers(tiny_model, tmp_path, monkeypatch):
    """Generation replaced by fixed answers: the baseline answers the probe right, the model under test all but the facts wrong,
    and memorised its training prompts. Every number is then known exactly."""
    import rlft.evaluation.scorecard
    from rlft.evaluation.scorecard import Generated
    from rlft.stages import eval as eval_stage

    write_jsonl(tmp_path / "train.jsonl", [{"prompt": f"item {i}:", "answer": str(i + 1), "completion": str(i + 1)} for i in range(6)])
    write_jsonl(tmp_path / "heldout.jsonl", [{"prompt": f"item {i}:", "answer": str(i + 1)} for i in range(6, 9)])
    under_test = shutil.copytree(tiny_model, tmp_path / "m-model")
    examples = {i.question: i.example for i in ITEMS}
    facts = {i.question for i in ITEMS if i.category == "facts"}

    def answer(is_model: bool, question: str) -> str:
        if question in examples:
            return "I do not know." if is_model and question in facts else examples[question]
        i = int(question.removeprefix("item ").rstrip(":"))
        return str(i + 1) if is_model and i < 6 else "0"  # the model memorised its training rows; nobody knows the rest

    def fake_generate(model, tok, prompts, *, max_new_tokens, batch_size, ref=None, device=None, **progress):
        is_model = Path(model.name_or_path) == under_test
        texts = [answer(is_model, p[-1]["content"]) for p in prompts]
        return Generated(texts=texts, lengths=[len(t) for t in texts], kl=[0.0] * len(texts) if ref is not None else [])

    monkeypatch.setattr(rlft.evaluation.scorecard, "generate", fake_generate)
    results = {"m": StageResult(name="m", kind="sft", status="done", model_path=str(under_test))}
    keys = {"overfit_check": {"stage": "m", "prompts": 4}, "probe": {"limit": PROBE_K}, "forgetting": {"max_drop": 0.1}}
    r = recipe_from_dict(recipe(str(tiny_model), **keys))
    ctx = make_ctx(r, tmp_path, results)
    with pytest.raises(CheckFailed) as info:
        eval_stage.run(r.stage("eval"), ctx)

    m = info.value.result.metrics
    assert m["probe/general/accuracy"] == pytest.approx(0.8) and m["baseline/probe/general/accuracy"] == 1.0
    assert m["probe/general/accuracy/facts"] == 0.0 and m["baseline/probe/general/accuracy/facts"] == 1.0
    assert all(m[f"probe/general/accuracy/{c}"] == 1.0 for c in CATEGORIES if c != "facts")
    assert m["probe/general/change"] == pytest.approx(-0.2)
    # Paired over the same items: two of the ten probe items (the facts) lost, the rest unchanged.
    assert (
        m["probe/general/change/n"] == PROBE_K
        and -1.0 <= m["probe/general/change/ci_low"] < -0.2 < m["probe/general/change/ci_high"] <= 0.0
    )
    # Both models answer every held-out item wrong: no difference, an interval of exactly 0, p = 1.
    d = "eval/delta/reward/math_accuracy"
    assert (m[d], m[f"{d}/ci_low"], m[f"{d}/ci_high"], m[f"{d}/p_value"], m[f"{d}/n"]) == (0.0, 0.0, 0.0, 1.0, 3)
    assert m["train_sample/reward/math_accuracy"] == 1.0 and m["eval/reward/math_accuracy"] == 0.0
    assert m["generalisation_gap/math_accuracy"] == 1.0 and m["baseline/generalisation_gap/math_accuracy"] == 0.0
    text = str(info.value)
    assert (
        "stages.eval.forgetting: general ability dropped: probe/general/accuracy fell from 1.000 (baseline base) to 0.800 (model m)" in text
    )
    assert "a drop of 0.200, more than forgetting.max_drop 0.1 (most lost: facts 1.00 -> 0.00)" in text
    assert "lower stages.m.trl.learning_rate" in text and "raise stages.eval.forgetting.max_drop" in text
    # Written before it failed: every sample file, with the scores behind the numbers.
    probe = [json.loads(line) for line in (ctx.out_dir / "probe_samples.jsonl").read_text().splitlines()]
    assert len(probe) == PROBE_K and probe[0]["eval_general_ability"] == 0.0 and probe[0]["baseline_general_ability"] == 1.0
    train = [json.loads(line) for line in (ctx.out_dir / "train_samples.jsonl").read_text().splitlines()]
    assert len(train) == 4 and all(row["eval_math_accuracy"] == 1.0 for row in train)
    assert (ctx.out_dir / "samples.jsonl").exists()
    assert ctx.notes.overfit_check == {"stage": "m", "train_rows": 6, "sampled": 4}

    # A drop of exactly max_drop passes.
    r = recipe_from_dict(recipe(str(tiny_model), **{**keys, "forgetting": {"max_drop": 0.2}}))
    result = eval_stage.run(r.stage("eval"), make_ctx(r, tmp_path, results))
    assert result.status == "done" and result.metrics["probe/general/change"] == pytest.approx(-0.2)


TRAIN_WORDS = ("owl", "sun", "map", "key", "fig", "jar", "ink", "oak")
HELD_OUT_WORDS = ("cow", "bed", "hat", "pen", "rug", "tea")


def test_generalisation_gap_of_a_model_that_memorised_its_training_prompts(fused_model, tmp_path):
    """Trained on eight prompts with answers 1-5, tested on prompts whose answers (7-9) it never saw: the gap must be positive."""
    from rlft.stages import eval as eval_stage

    train = [{"prompt": f"{w} number?", "completion": str(1 + i % 5), "answer": str(1 + i % 5)} for i, w in enumerate(TRAIN_WORDS)]
    write_jsonl(tmp_path / "train.jsonl", train)
    held_out = [{"prompt": f"{w} number?", "answer": str(7 + i % 3), "completion": str(7 + i % 3)} for i, w in enumerate(HELD_OUT_WORDS)]
    write_jsonl(tmp_path / "heldout.jsonl", held_out)
    stages = recipe(str(fused_model), overfit_check={"stage": "m", "prompts": 6}, max_new_tokens=4)
    stages["stages"][0]["trl"] = {
        "max_steps": 150,
        "per_device_train_batch_size": 8,
        "learning_rate": 1e-2,
        "lr_scheduler_type": "constant",
    }
    r = recipe_from_dict(stages)
    trained = sft(r, tmp_path, "m")
    ctx = make_ctx(r, tmp_path, {"m": trained})
    m = eval_stage.run(r.stage("eval"), ctx).metrics

    assert m["train_sample/reward/math_accuracy"] >= 0.8, m
    assert m["eval/reward/math_accuracy"] == 0.0, m
    assert m["generalisation_gap/math_accuracy"] == pytest.approx(m["train_sample/reward/math_accuracy"] - m["eval/reward/math_accuracy"])
    assert m["baseline/generalisation_gap/math_accuracy"] < m["generalisation_gap/math_accuracy"]
    assert ctx.notes.overfit_check == {"stage": "m", "train_rows": 8, "sampled": 6}
    sampled = [json.loads(line)["prompt"][0]["content"] for line in (ctx.out_dir / "train_samples.jsonl").read_text().splitlines()]
    assert len(sampled) == 6 and set(sampled) <= {row["prompt"] for row in train}


# --- forgetting fails a pipeline ------------------------------------------------------------------


def test_forgetting_fails_the_pipeline_and_keeps_earlier_stages(fused_model, tmp_path):
    """The recipe's model knows the first probe answers; stage `forget` unlearns them. With max_drop 0.05 the eval
    stage fails, naming the numbers; its metrics reach the summary and its manifest; raising max_drop reuses `forget`."""
    from rich.console import Console

    from rlft.cli.tables import print_summary
    from rlft.pipeline.run import run_pipeline
    from rlft.recipe import load_recipe

    good = memorise(fused_model, [{"prompt": i.question, "completion": i.example} for i in ITEMS[:PROBE_K]], tmp_path, 60)
    write_jsonl(tmp_path / "forget.jsonl", [{"prompt": i.question, "completion": "?"} for i in ITEMS[:PROBE_K]])
    forget_trl = {"max_steps": 15, "per_device_train_batch_size": PROBE_K, "learning_rate": 1e-2, "lr_scheduler_type": "constant"}
    data = {
        "name": "forgetting",
        "model": good.model_path,
        "tracking": {"mode": "disabled"},
        "stages": [
            {
                "name": "forget",
                "kind": "sft",
                "data": "forget.jsonl",
                "eval_data": "forget.jsonl",
                "scorecard": {"prompts": 0},
                "trl": forget_trl,
            },
            {
                "name": "eval",
                "kind": "eval",
                "data": {"source": "bundled:general-probe", "limit": 2},
                "rewards": [{"name": "general_ability"}],
                "max_new_tokens": 32,
                "probe": {"limit": PROBE_K, "max_new_tokens": 32},
                "forgetting": {"max_drop": 0.05},
            },
        ],
    }
    path = tmp_path / "forgetting.yaml"
    path.write_text(yaml.safe_dump(data))
    runs = str(tmp_path / "runs")

    summary = run_pipeline(load_recipe(path), source=str(path), run_id="f", output_dir=runs)
    assert summary["status"] == "failed" and [s["status"] for s in summary["stages"]] == ["done", "failed"]
    entry = summary["stages"][1]
    m = entry["metrics"]
    assert m["baseline/probe/general/accuracy"] == 1.0 and m["probe/general/accuracy"] <= 0.3, m
    assert m["probe/general/change"] == pytest.approx(m["probe/general/accuracy"] - 1.0)
    assert "stages.eval.forgetting: general ability dropped: probe/general/accuracy fell from 1.000 (baseline base)" in entry["error"]
    assert "more than forgetting.max_drop 0.05" in entry["error"] and "fix: keep forget closer to where it started" in entry["error"]
    run_dir = Path(runs) / "f"
    assert json.loads((run_dir / "summary.json").read_text())["stages"][1]["metrics"] == m
    manifest = json.loads((run_dir / "eval" / "manifest.json").read_text())
    assert manifest["result"]["status"] == "failed" and manifest["result"]["metrics"] == m
    assert manifest["result"]["error"] == entry["error"] and manifest["probe"]["rows"] == PROBE_K
    assert len((run_dir / "eval" / "probe_samples.jsonl").read_text().splitlines()) == PROBE_K
    assert not list(run_dir.glob(".*.partial")) and not list(run_dir.glob(".*.error.json"))
    shown = io.StringIO()
    print_summary(summary, Console(file=shown, width=300))
    assert "stage eval failed: stages.eval.forgetting: general ability dropped" in shown.getvalue()

    again = run_pipeline(load_recipe(path, ["stages.eval.forgetting.max_drop=1.0"]), source=str(path), run_id="f", output_dir=runs)
    assert again["status"] == "done" and [s["status"] for s in again["stages"]] == ["cached", "done"]
    assert again["stages"][1]["metrics"]["probe/general/change"] == pytest.approx(m["probe/general/change"])
