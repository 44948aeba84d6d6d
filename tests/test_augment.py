"""Data augmentation (rlft.data.augment): each transform on real row shapes, answers re-checked, seeds, ratios, held-out rows, counts, recipes."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import yaml
from conftest import write_jsonl

from rewards.math import math_accuracy
from rlft.data import bundled
from rlft.data.augment import apply, arithmetic
from rlft.data.augment.apply import augment_rows
from rlft.data.augment.transforms import HeldOut, parse_arithmetic, prompt_text
from rlft.data.bundled import arithmetic as sums
from rlft.data.rows import load_rows
from rlft.errors import RecipeError
from rlft.pipeline.fingerprint import fingerprints, store
from rlft.pipeline.run import plan_status
from rlft.recipe import AugmentSpec, DataSpec, load_recipe, recipe_from_dict
from rlft.stages.context import StageContext
from rlft.stages.inputs import load_split
from rlft.tracking import NullRun


def spec(*transforms, ratio: float = 1.0) -> AugmentSpec:
    return AugmentSpec(transforms=list(transforms), ratio=ratio)


def copies(rows: list[dict], *transforms, ratio: float = 1.0, seed: int = 0, held_out=HeldOut()) -> tuple[list[dict], dict]:
    """The augmented copies alone, and the counts; the originals must come out first and untouched."""
    out, report = augment_rows(rows, spec(*transforms, ratio=ratio), seed=seed, held_out=held_out)
    assert out[: len(rows)] == rows and report["rows_out"] == len(out) == len(rows) + report["added"]
    return out[len(rows) :], report


def loads(tmp_path: Path, rows: list[dict], kind: str | None = None):
    """rlft's own data checks (rlft.data.rows.load_rows: message shapes, empty fields, preference pairs) pass on the rows."""
    ds, _, _ = load_rows(DataSpec(source="aug.jsonl"), split="train", base_dir=tmp_path, kind=kind)
    return ds


def check_valid(tmp_path: Path, rows: list[dict], kind: str | None = None) -> None:
    write_jsonl(tmp_path / "aug.jsonl", rows)
    assert len(loads(tmp_path, rows, kind)) == len(rows)


def right(text: str, gold) -> bool:
    return math_accuracy([""], [text], answer=[str(gold)]) == [1.0]


def content(value) -> str:
    return value if isinstance(value, str) else value[-1]["content"]


def two_digit_rows(n: int, seed: int = 0) -> list[dict]:
    """Plain-text SFT rows with an answer column: "What is a + b?" -> "a + b = c <answer>c</answer>"."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.sample(range(10, 100), 2)
        rows.append({"prompt": f"What is {a} + {b}?", "completion": f"{a} + {b} = {a + b}\n<answer>{a + b}</answer>", "answer": str(a + b)})
    return rows


# --- numbers ----------------------------------------------------------------------------------------


def test_numbers_on_bundled_sft_rows_recomputes_every_answer_and_avoids_held_out_sums(tmp_path):
    rows = sums.arithmetic_rows("train", completion="worked")[:80]
    test = sums.arithmetic_rows("test")
    made, report = copies(rows, "numbers", held_out=HeldOut.of(test))
    assert report["added"] == 80 and report["transforms"] == {"numbers": {"augmented": 80, "skipped": 0}}

    held_out_sums = {frozenset(_operands(r)) for r in test}
    for original, row in zip(rows, made, strict=False):
        a, b = _operands(row)
        assert (a, b) != _operands(original) and len(str(a)) == len(str(b)) == 2
        assert frozenset((a, b)) not in held_out_sums
        assert row["answer"] == str(a + b)
        assert content(row["completion"]) == sums.worked_solution(a, b) and right(content(row["completion"]), a + b)
        assert prompt_text(row).endswith(sums.INSTRUCTION)
    check_valid(tmp_path, made)


def _operands(row) -> tuple[int, int]:
    found = parse_arithmetic(prompt_text(row))
    return found.a, found.b


def test_numbers_on_preference_chat_and_kto_rows_keeps_right_right_and_wrong_wrong(tmp_path):
    pairs = [
        {"prompt": "What is 23 + 45?", "chosen": "23 + 45 = 68", "rejected": "23 + 45 = 69"},
        {"prompt": "Compute 81 - 36.", "chosen": "<answer>45</answer>", "rejected": "I think it is <answer>55</answer>."},
        {"prompt": "What is 7 * 8?", "chosen": "7 * 8 = 56, so <answer>56</answer>", "rejected": "<answer>54</answer>"},
        {"prompt": "What is 2 + 3 + 4?", "chosen": "9", "rejected": "8"},  # three numbers: not a two-number question
        {"prompt": "Tell me a joke.", "chosen": "Why did the chicken...", "rejected": "No."},
    ]
    write_jsonl(tmp_path / "aug.jsonl", pairs)
    canonical = loads(tmp_path, pairs, kind="preference").to_list()
    made, report = copies(canonical, "numbers")
    assert report["transforms"]["numbers"] == {"augmented": 3, "skipped": 2} and report["unchanged"] == 2
    for row in made:
        found = parse_arithmetic(prompt_text(row))
        assert right(content(row["chosen"]), found.result) and not right(content(row["rejected"]), found.result)
    assert [_operands(r)[0] >= _operands(r)[1] for r in made if "-" in prompt_text(r)] == [True]  # a difference keeps its sign
    check_valid(tmp_path, made, kind="preference")

    chat = [
        {"messages": [{"role": "user", "content": "Compute 64 - 27."}, {"role": "assistant", "content": "64 - 27 = 37"}]},
        {
            "messages": [
                {"role": "system", "content": "You are a calculator."},
                {"role": "user", "content": "What is 12 + 34?"},
                {"role": "assistant", "content": "<answer>46</answer>"},
            ]
        },
    ]
    made, report = copies(chat, "numbers")
    assert report["added"] == 2
    for original, row in zip(chat, made, strict=True):
        assert right(row["messages"][-1]["content"], parse_arithmetic(prompt_text(row)).result)
        assert [m["role"] for m in row["messages"]] == [m["role"] for m in original["messages"]]
        assert row["messages"][:-2] == original["messages"][:-2]  # the system turn is untouched
    check_valid(tmp_path, made)

    kto = [
        {"prompt": "What is 31 + 52?", "completion": "<answer>83</answer>", "label": True},
        {"prompt": "What is 31 + 52?", "completion": "<answer>82</answer>", "label": False},
        {"prompt": "What is 40 + 15?", "completion": "<answer>99</answer>", "label": True},  # its own answer is wrong: left alone
    ]
    made, report = copies(kto, "numbers")
    assert report["transforms"]["numbers"] == {"augmented": 2, "skipped": 1}
    for row in made:
        assert right(row["completion"], parse_arithmetic(row["prompt"]).result) is row["label"]


def test_numbers_never_picks_a_held_out_prompts_numbers():
    train = [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a, b in [(1, 2), (3, 4), (5, 6), (7, 8)]]
    allowed = {(2, 7), (7, 2), (6, 9), (9, 6)}
    held_out = [{"prompt": f"What is {a} + {b}?"} for a in range(10) for b in range(10) if (a, b) not in allowed]
    made, report = copies(train, "numbers", held_out=HeldOut.of(held_out))
    assert {_operands(r) for r in made} <= allowed
    assert report["added"] + report["transforms"]["numbers"]["skipped"] == 4
    # Seeded (seed 0): three of the four rows drew allowed numbers; a transform that augmented nothing fails here.
    assert report["added"] == len(made) == 3 and report["held_out_collisions"] == 0
    for row in made:
        assert row["answer"] == str(sum(_operands(row)))


# --- template, shuffle_shots, noise -----------------------------------------------------------------


def test_template_rephrases_every_bundled_question_and_wraps_free_text(tmp_path):
    for text in sums.TEMPLATES:  # every question the bundled tasks ask is recognised
        question = text.format(a=12, b=7, name="Tom", thing="apples")
        assert any(pattern.fullmatch(question) for _, _, pattern in arithmetic.TEMPLATES), question

    rows = sums.arithmetic_rows("train")[:60]
    made, report = copies(rows, "template")
    assert report["transforms"]["template"] == {"augmented": 60, "skipped": 0}
    for original, row in zip(rows, made, strict=True):
        assert prompt_text(row) != prompt_text(original) and row["answer"] == original["answer"]
        assert _operands(row) == _operands(original)  # same question, other words
        assert prompt_text(row).endswith(arithmetic.INSTRUCTIONS) and "<answer></answer>" in prompt_text(row)
    check_valid(tmp_path, made)

    support = bundled.DATASETS["support-preference"]("train")[:30]
    made, report = copies(support, "template")
    skipped = report["transforms"]["template"]["skipped"]  # prompts that already greet and thank: nothing neutral to add
    assert report["added"] == 30 - skipped >= 25
    for row in made:
        original = next(r for r in support if (r["chosen"], r["rejected"]) == (row["chosen"], row["rejected"]))
        assert prompt_text(original).strip() in prompt_text(row) and prompt_text(row) != prompt_text(original)
    check_valid(tmp_path, made, kind="preference")

    cues = [{"prompt": FEW_SHOT, "completion": "8"}, {"prompt": "3+4=", "completion": "7"}]  # prompts the answer continues
    made, _ = copies(cues, "template")
    assert [prompt_text(r)[-2:] for r in made] == ["A:", "4="]
    assert all(prompt_text(r) != c["prompt"] for r, c in zip(made, cues, strict=True))

    strict = AugmentSpec(transforms=[{"name": "template", "generic": False}], ratio=1.0)
    _, report = augment_rows(support, strict, seed=0)
    assert report["added"] == 0 and report["transforms"]["template"]["skipped"] == 30


FEW_SHOT = "Answer like the examples.\n\nQ: 2 + 2\nA: 4\n\nQ: 3 + 5\nA: 8\n\nQuestion: 1 + 6\nAnswer: 7\n\nQ: 4 + 4\nA:"


def test_shuffle_shots_reorders_examples_and_counts_rows_without_a_block(tmp_path):
    rows = [
        {"prompt": [{"role": "user", "content": FEW_SHOT}], "completion": [{"role": "assistant", "content": "8"}]},
        {"prompt": [{"role": "user", "content": "What is 4 + 4?"}], "completion": [{"role": "assistant", "content": "8"}]},
    ]
    made, report = copies(rows, "shuffle_shots")
    assert report["transforms"]["shuffle_shots"] == {"augmented": 1, "skipped": 1} and report["unchanged"] == 1
    before, after = FEW_SHOT.split("\n\n"), prompt_text(made[0]).split("\n\n")
    assert after[0] == before[0] and after[-1] == before[-1]  # the instruction and the question stay put
    assert after[1:-1] != before[1:-1] and sorted(after[1:-1]) == sorted(before[1:-1])
    assert made[0]["completion"] == rows[0]["completion"]
    check_valid(tmp_path, made)

    shots = [["What is 1 + 1?", "2"], ["What is 2 + 5?", "7"], ["What is 3 + 3?", "6"]]
    turns = [{"role": "system", "content": "Be brief."}] + [
        {"role": role, "content": text} for pair in shots for role, text in zip(("user", "assistant"), pair, strict=True)
    ]
    chat = [{"messages": [*turns, {"role": "user", "content": "What is 4 + 5?"}, {"role": "assistant", "content": "9"}]}]
    _, report = copies(chat, "shuffle_shots")
    assert report["transforms"]["shuffle_shots"]["skipped"] == 1  # chat exchanges count as shots only with turns: true
    made, _ = augment_rows(chat, AugmentSpec(transforms=[{"name": "shuffle_shots", "turns": True}], ratio=1.0), seed=0)
    messages = made[1]["messages"]
    assert messages[0] == turns[0] and messages[-2:] == chat[0]["messages"][-2:]
    exchanges = [(messages[i]["content"], messages[i + 1]["content"]) for i in range(1, 7, 2)]
    assert exchanges != [tuple(p) for p in shots] and sorted(exchanges) == sorted(tuple(p) for p in shots)
    check_valid(tmp_path, made[1:])


def test_noise_changes_casing_and_spacing_of_the_prompt_only(tmp_path):
    support = bundled.DATASETS["support-preference"]("train")[:40]
    made, report = copies(support, "noise")
    assert report["transforms"]["noise"] == {"augmented": 40, "skipped": 0}
    for original, row in zip(support, made, strict=True):
        new, old = prompt_text(row), prompt_text(original)
        assert new != old and " ".join(new.casefold().split()) == " ".join(old.casefold().split())
        assert (row["chosen"], row["rejected"]) == (original["chosen"], original["rejected"])
    check_valid(tmp_path, made, kind="preference")

    reviews = [{"text": "The kettle boils fast and the lid is sturdy.", "label": "positive"}] * 3
    made, report = copies(reviews, "noise")  # a classifier's text is its whole input
    assert report["added"] == 3 and {r["label"] for r in made} == {"positive"}
    assert all(r["text"] != reviews[0]["text"] and r["text"].casefold().split() == reviews[0]["text"].casefold().split() for r in made)

    worked = sums.arithmetic_rows("train", completion="worked")[:40]
    made, _ = copies(worked, "noise")
    for original, row in zip(worked, made, strict=True):
        assert re.findall(r"\d+|<answer></answer>", prompt_text(row)) == re.findall(r"\d+|<answer></answer>", prompt_text(original))
        assert row["completion"] == original["completion"] and row["answer"] == original["answer"]


# --- seeds, ratios, counts --------------------------------------------------------------------------


def test_same_seed_same_rows_other_seed_other_rows_and_exact_ratio():
    rows = sums.arithmetic_rows("train", completion="worked")[:40]
    first, _ = augment_rows(rows, spec("numbers", "template", "noise", ratio=0.5), seed=3)
    again, _ = augment_rows(rows, spec("numbers", "template", "noise", ratio=0.5), seed=3)
    other, _ = augment_rows(rows, spec("numbers", "template", "noise", ratio=0.5), seed=4)
    assert first == again and first != other
    for ratio, expected in ((0.25, 10), (0.5, 20), (0.9, 36), (1.0, 40)):
        made, report = copies(rows, "noise", ratio=ratio)
        assert len(made) == report["added"] == report["target"] == expected
        assert report["transforms"]["noise"]["augmented"] == expected
    _, report = copies(rows[:7], "noise", ratio=0.5)
    assert report["added"] == 4  # 3.5 rounds half up

    mixed = rows[:10] + [{"text": f"plain text row {i}"} for i in range(10)]  # text rows: prompt and answer inseparable
    _, report = copies(mixed, "numbers", ratio=1.0)
    assert (report["target"], report["added"], report["unchanged"]) == (20, 10, 10)
    assert report["transforms"]["numbers"] == {"augmented": 10, "skipped": 10}
    assert "20 copies asked for: 10 rows no transform could change" in apply.summary_line("sft", report)


class RecordingRun(NullRun):
    def __init__(self):
        self.summary = {}

    def summary_update(self, values: dict) -> None:
        self.summary.update(values)


def stage_recipe(data, *, model: str = "bundled:smollm2-135m-instruct", **stage) -> dict:
    base = {"name": "sft", "kind": "sft", "data": data, "eval_fraction": 0.25, "trl": {"max_steps": 2}}
    return {"name": "t", "model": model, "tracking": {"mode": "disabled"}, "stages": [{**base, **stage}]}


def test_load_split_augments_training_rows_only_and_reports_counts(tmp_path, capsys):
    write_jsonl(tmp_path / "sums.jsonl", two_digit_rows(40))
    augmented = {"source": "sums.jsonl", "augment": {"seed": 1, "ratio": 0.5, "transforms": ["numbers", "template", "noise"]}}
    splits = {}
    for name, data in (("plain", "sums.jsonl"), ("augmented", augmented)):
        recipe = recipe_from_dict(stage_recipe(data))
        ctx = StageContext(recipe, "t", tmp_path, tmp_path, tmp_path, {}, tracker=RecordingRun())
        splits[name] = (*load_split(recipe.stage("sft"), ctx), ctx)
    (train, test, _), (aug_train, aug_test, ctx) = splits["plain"], splits["augmented"]

    assert aug_test.to_list() == test.to_list()  # held-out rows untouched
    assert aug_train.to_list()[: len(train)] == train.to_list() and len(aug_train) == 30 + 15
    held_out = HeldOut.of(test.to_list())
    for row in aug_train.to_list()[len(train) :]:
        text = prompt_text(row)
        assert " ".join(text.casefold().split()) not in held_out.prompts
        numbers = tuple(sorted(int(n) for n in re.findall(r"\d+", text)))  # noise may have made it unparseable: "ADD 51 and 54."
        assert numbers not in held_out.numbers
        assert row["answer"] == str(sum(numbers)) and right(content(row["completion"]), row["answer"])

    report = ctx.notes.augment
    assert report["rows_in"] == 30 and report["added"] == 15 and report["rows_out"] == 45 == ctx.notes.data["rows"]
    assert report["transforms"] == {name: {"augmented": 15, "skipped": 0} for name in ("numbers", "template", "noise")}
    assert ctx.tracker.summary["augment/rows_out"] == 45 and ctx.tracker.summary["augment/numbers/augmented"] == 15
    out = capsys.readouterr().out
    assert "[sft] augment (seed 1, ratio 0.5): 30 rows in, +15 copies, 45 rows out · numbers +15 (skipped 0)" in out


def test_sft_stage_with_augmentation_records_counts_in_its_manifest(tiny_model, tmp_path):
    from rlft.pipeline import runner

    write_jsonl(tmp_path / "sums.jsonl", two_digit_rows(16))
    data = {"source": "sums.jsonl", "augment": {"seed": 0, "ratio": 0.5, "transforms": ["numbers", {"name": "noise", "case": 0.3}]}}
    raw = stage_recipe(data, model=str(tiny_model), scorecard={"prompts": 0, "baseline": False}, trl={"max_steps": 2})
    recipe = recipe_from_dict(raw)
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    plan = {"recipe": recipe.model_dump(mode="json"), "source": str(tmp_path / "r.yaml"), "recipe_dir": str(tmp_path), "run_id": "r"}
    (run_dir / "recipe.json").write_text(json.dumps(plan))
    result = runner.run_stage(run_dir, "sft")

    manifest = json.loads((run_dir / "sft" / "manifest.json").read_text())
    assert result.status == "done" and manifest["result"]["metrics"]["train/steps"] == 2
    assert manifest["augment"]["rows_in"] == 12 and manifest["augment"]["added"] == 6 and manifest["data"]["rows"] == 18
    assert manifest["augment"]["transforms"] == {"numbers": {"augmented": 6, "skipped": 0}, "noise": {"augmented": 6, "skipped": 0}}
    assert manifest["stage"]["data"]["augment"]["transforms"][1] == {"name": "noise", "p": 1.0, "case": 0.3}


# --- the recipe: caching and schema errors ----------------------------------------------------------


def test_changing_augment_reruns_the_stage(tmp_path):
    write_jsonl(tmp_path / "sums.jsonl", two_digit_rows(8))
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(stage_recipe({"source": "sums.jsonl", "augment": {"ratio": 0.5, "transforms": ["numbers"]}})))
    run_dir = tmp_path / "runs" / "r"
    (run_dir / "sft").mkdir(parents=True)
    (run_dir / "sft" / "manifest.json").write_text(json.dumps({"result": {"name": "sft", "kind": "sft", "status": "done"}}))
    store(run_dir / "sft", fingerprints(load_recipe(path), tmp_path)["sft"])

    def status(*overrides):
        return plan_status(load_recipe(path, list(overrides)), str(path), run_dir)[0][1:]

    assert status()[0] == "cached"
    assert status("stages.sft.data.augment.ratio=0.25") == ("runs", "config changed: data.augment.ratio 0.5 -> 0.25")
    assert status("stages.sft.data.augment.seed=7") == ("runs", "config changed: data.augment.seed null -> 7")
    assert status("stages.sft.data.augment.transforms=[numbers, noise]")[0] == "runs"


@pytest.mark.parametrize(
    ("augment_spec", "where", "message"),
    [
        ({"transforms": ["nosie"]}, "stages.sft.data.augment.transforms.0", "unknown transform 'nosie'. did you mean 'noise'?"),
        (
            {"transforms": [{"name": "noise", "cse": 0.2}]},
            "transforms.noise",
            "unknown option 'cse' of transform noise. did you mean 'case'?",
        ),
        ({"transforms": [{"name": "noise", "case": 0, "space": 0}]}, "transforms.noise", "both 0, so it would change nothing"),
        ({"transforms": ["noise", "numbers", "noise"]}, "stages.sft.data.augment.transforms", "transform 'noise' is listed twice"),
        ({"transforms": ["noise"], "ratio": 1.5}, "stages.sft.data.augment.ratio", "less than or equal to 1"),
        ({"transforms": ["noise"], "ratio": 0}, "stages.sft.data.augment.ratio", "greater than 0"),
        ({"transforms": []}, "stages.sft.data.augment.transforms", "at least 1 item"),
        ({"transforms": [{"name": "numbers", "p": 0}]}, "transforms.numbers.p", "greater than 0"),
    ],
)
def test_schema_errors_name_the_key_and_the_fix(augment_spec, where, message):
    with pytest.raises(RecipeError) as info:
        recipe_from_dict(stage_recipe({"source": "bundled:arithmetic-sft", "augment": augment_spec}))
    assert len(info.value.problems) == 1, info.value.problems
    path, text = info.value.problems[0]
    assert path.endswith(where) and message in text, info.value.problems


def test_held_out_and_eval_rows_cannot_be_augmented():
    aug = {"transforms": ["noise"]}
    raw = stage_recipe("bundled:arithmetic-sft", eval_data={"source": "bundled:arithmetic-sft", "split": "test", "augment": aug})
    raw["stages"].append(
        {"name": "ev", "kind": "eval", "data": {"source": "bundled:arithmetic", "augment": aug}, "rewards": [{"name": "math_accuracy"}]}
    )
    with pytest.raises(RecipeError) as info:
        recipe_from_dict(raw)
    assert [p for p, _ in info.value.problems] == ["stages.sft.eval_data.augment", "stages.ev.data.augment"]
    assert "held-out rows are never augmented" in str(info.value) and "only training rows are augmented" in str(info.value)
