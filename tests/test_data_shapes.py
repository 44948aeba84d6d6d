"""Data shapes recognised without a column map (ShareGPT, Alpaca), the recipe-wide system prompt, seeded mixtures, hub options."""

from __future__ import annotations

import pytest
from conftest import write_jsonl

from rlft.data.rows import load_rows
from rlft.errors import RecipeError, RlftError
from rlft.pipeline.fingerprint import explain, fingerprints
from rlft.recipe import DataSpec, recipe_from_dict
from rlft.stages.context import StageContext
from rlft.tracking import NullRun

# One conversation, written by hand in each shape.
SYSTEM, QUESTION, ANSWER = "Be brief.", "What is 2+3?", "5"
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}, {"role": "assistant", "content": ANSWER}]
SHAREGPT = [{"from": "system", "value": SYSTEM}, {"from": "human", "value": QUESTION}, {"from": "gpt", "value": ANSWER}]


def _rows(ds) -> list[dict]:
    return [dict(sorted(row.items())) for row in ds]


def test_sharegpt_and_messages_files_give_identical_rows(tmp_path):
    write_jsonl(tmp_path / "sharegpt.jsonl", [{"conversations": SHAREGPT, "id": 7}])
    write_jsonl(tmp_path / "openai.jsonl", [{"messages": MESSAGES, "id": 7}])
    write_jsonl(tmp_path / "sharegpt_in_messages.jsonl", [{"messages": SHAREGPT, "id": 7}])  # from/value under the messages name
    sharegpt, fp_s, _ = load_rows(DataSpec(source="sharegpt.jsonl"), split="train", base_dir=tmp_path)
    openai, fp_o, _ = load_rows(DataSpec(source="openai.jsonl"), split="train", base_dir=tmp_path)
    inside, fp_i, _ = load_rows(DataSpec(source="sharegpt_in_messages.jsonl"), split="train", base_dir=tmp_path)
    assert _rows(openai) == [{"id": 7, "messages": MESSAGES}]
    assert _rows(sharegpt) == _rows(openai) == _rows(inside)
    assert fp_s == fp_o == fp_i  # what a stage trains on is the same, so is its fingerprint


def test_alpaca_and_prompt_completion_files_give_identical_rows(tmp_path):
    write_jsonl(
        tmp_path / "alpaca.jsonl",
        [
            {"instruction": QUESTION, "input": "", "output": ANSWER, "text": "### Instruction: ..."},
            {"instruction": "Add the numbers.", "input": "2 and 3", "output": ANSWER, "text": "### Instruction: ..."},
        ],
    )
    write_jsonl(
        tmp_path / "pc.jsonl",
        [{"prompt": QUESTION, "completion": ANSWER}, {"prompt": "Add the numbers.\n\n2 and 3", "completion": ANSWER}],
    )
    alpaca, fp_a, _ = load_rows(DataSpec(source="alpaca.jsonl"), split="train", base_dir=tmp_path)
    pc, fp_pc, _ = load_rows(DataSpec(source="pc.jsonl"), split="train", base_dir=tmp_path)
    assert _rows(alpaca) == _rows(pc) and fp_a == fp_pc
    assert alpaca.column_names == ["prompt", "completion"]  # Alpaca's own rendering (text) is not a second training target
    # The same conversation as the messages form, split at the answer.
    assert alpaca[0]["prompt"] + alpaca[0]["completion"] == MESSAGES[1:]
    assert alpaca[1]["prompt"] == [{"role": "user", "content": "Add the numbers.\n\n2 and 3"}]
    # With the system prompt the data spec gives, the whole conversation matches the messages form.
    with_system, _, _ = load_rows(DataSpec(source="alpaca.jsonl", system=SYSTEM, limit=1), split="train", base_dir=tmp_path)
    assert with_system[0]["prompt"] + with_system[0]["completion"] == MESSAGES


def test_an_unknown_sharegpt_role_names_row_and_turn(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", [{"conversations": SHAREGPT}, {"conversations": [*SHAREGPT[:2], {"from": "bing", "value": "5"}]}])
    with pytest.raises(RlftError, match=r"row 1: turn 2 of 'conversations' is from 'bing'") as err:
        load_rows(DataSpec(source="d.jsonl"), split="train", base_dir=tmp_path)
    assert "human" in err.value.fix and "gpt" in err.value.fix


def _recipe(**top) -> dict:
    stages = [
        {"name": "sft", "kind": "sft", "data": "a.jsonl", "eval_data": {"source": "b.jsonl"}},
        {"name": "own", "kind": "sft", "data": {"source": "a.jsonl", "system": "Mine."}},
        {"name": "off", "kind": "sft", "data": {"source": "a.jsonl", "system": None}},
        {"name": "cls", "kind": "classifier", "data": "t.jsonl"},
    ]
    return {"name": "r", "model": "m", "stages": stages, **top}


def test_recipe_system_prompt_is_every_stages_default():
    r = recipe_from_dict(_recipe(system_prompt="Be brief."))
    assert r.stage("sft").data.system == "Be brief." and r.stage("sft").eval_data.system == "Be brief."
    assert r.stage("own").data.system == "Mine."  # a stage's own wins
    assert r.stage("off").data.system is None  # an explicit null opts out
    assert r.stage("cls").data.system is None  # a classifier reads plain text, no chat prompt
    # Read back from its resolved form (recipe.json holds every key), the recipe is the same.
    again = recipe_from_dict(r.model_dump(mode="json"))
    assert [s.data.system for s in again.stages] == ["Be brief.", "Mine.", None, None]
    plain = recipe_from_dict(_recipe())
    assert [s.data.system for s in plain.stages] == [None, "Mine.", None, None]


def test_recipe_system_prompt_reaches_the_rows(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"prompt": QUESTION, "completion": ANSWER}])
    spec = recipe_from_dict(_recipe(system_prompt=SYSTEM)).stage("sft").data
    ds, _, _ = load_rows(spec, split="train", base_dir=tmp_path)
    assert ds[0]["prompt"] + ds[0]["completion"] == MESSAGES


def _letters(prefix: str, n: int) -> list[dict]:
    return [{"prompt": f"{prefix}{i}", "completion": "ok"} for i in range(n)]


def _mix(**over) -> DataSpec:
    return DataSpec(mix=[{"source": "a.jsonl", "fraction": 0.7}, {"source": "b.jsonl", "rows": 5}], **over)


def test_mixture_takes_the_exact_seeded_counts(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", _letters("A", 10))
    write_jsonl(tmp_path / "b.jsonl", _letters("B", 8))
    ds, fp, label = load_rows(_mix(), split="train", base_dir=tmp_path, seed=1)
    prompts = [r["prompt"][0]["content"] for r in ds]
    assert len(prompts) == 12 and len(set(prompts)) == 12  # 0.7 x 10 = 7 of A, and 5 of B, no row twice
    assert sum(p.startswith("A") for p in prompts) == 7 and sum(p.startswith("B") for p in prompts) == 5
    assert "7 of 10 rows" in label and "5 of 8 rows" in label and "a.jsonl" in label and "b.jsonl" in label
    again, fp_again, _ = load_rows(_mix(), split="train", base_dir=tmp_path, seed=1)
    assert [r["prompt"] for r in again] == [r["prompt"] for r in ds] and fp_again == fp  # seeded: the same rows, same order
    other = [r["prompt"][0]["content"] for r in load_rows(_mix(), split="train", base_dir=tmp_path, seed=2)[0]]
    assert other != prompts and sorted(p[0] for p in other) == sorted(p[0] for p in prompts)  # another draw, same counts
    limited, _, _ = load_rows(_mix(limit=4), split="train", base_dir=tmp_path, seed=1)
    assert len(limited) == 4
    # All of each member: the members are shuffled together by the seed, not laid end to end.
    whole = {
        seed: [
            r["prompt"][0]["content"]
            for r in load_rows(DataSpec(mix=["a.jsonl", "b.jsonl"]), split="train", base_dir=tmp_path, seed=seed)[0]
        ]
        for seed in (1, 2)
    }
    in_order = [f"A{i}" for i in range(10)] + [f"B{i}" for i in range(8)]
    assert sorted(whole[1]) == sorted(in_order) and whole[1] != in_order and whole[1] != whole[2]


def test_mixture_in_a_stage_records_every_member(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", _letters("A", 10))
    write_jsonl(tmp_path / "b.jsonl", _letters("B", 8))
    recipe = recipe_from_dict(
        {
            "name": "r",
            "model": "m",
            "stages": [
                {
                    "name": "sft",
                    "kind": "sft",
                    "eval_fraction": 0.25,
                    "data": {"mix": [{"source": "a.jsonl", "fraction": 0.7}, {"source": "b.jsonl", "rows": 5}]},
                }
            ],
        }
    )
    ctx = StageContext(recipe=recipe, run_id="t", run_dir=tmp_path, out_dir=tmp_path, recipe_dir=tmp_path, results={}, tracker=NullRun())
    from rlft.stages.inputs import load_split

    train, test = load_split(recipe.stage("sft"), ctx)
    assert len(train) + len(test) == 12 and len(test) == 3
    note = ctx.notes.data
    assert "a.jsonl 7 of 10 rows" in note["train"] and "b.jsonl 5 of 8 rows" in note["train"]


def test_fingerprint_covers_every_mixture_member(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", _letters("A", 10))
    write_jsonl(tmp_path / "b.jsonl", _letters("B", 8))
    recipe = recipe_from_dict(
        {
            "name": "r",
            "model": "m",
            "stages": [{"name": "sft", "kind": "sft", "data": {"mix": ["a.jsonl", {"source": "b.jsonl", "rows": 5}]}}],
        }
    )
    before = fingerprints(recipe, tmp_path)["sft"]
    write_jsonl(tmp_path / "b.jsonl", _letters("C", 8))  # the second member's content changes, its name does not
    after = fingerprints(recipe, tmp_path)["sft"]
    assert after.parts["data"] != before.parts["data"] and after.digest != before.digest
    stored = {"digest": before.digest, "parts": before.parts, "detail": before.detail}
    assert explain(stored, after) == "data changed: data.mix[1]"
    write_jsonl(tmp_path / "a.jsonl", _letters("D", 10))
    assert "data.mix[0]" in explain(
        {"digest": after.digest, "parts": after.parts, "detail": after.detail}, fingerprints(recipe, tmp_path)["sft"]
    )


def test_bad_mixtures_name_the_member(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", _letters("A", 10))
    write_jsonl(tmp_path / "b.jsonl", _letters("B", 8))
    write_jsonl(tmp_path / "m.jsonl", [{"messages": MESSAGES}] * 3)
    write_jsonl(tmp_path / "q.jsonl", [{"question": "x"}] * 3)
    with pytest.raises(RlftError, match=r"mix\[1\] \S*b.jsonl has 8 rows, and the mixture asks for 9") as err:
        load_rows(DataSpec(mix=["a.jsonl", {"source": "b.jsonl", "rows": 9}]), split="train", base_dir=tmp_path)
    assert "mix[1].rows to at most 8" in err.value.fix
    with pytest.raises(
        RlftError, match=r"mix\[1\] \(m.jsonl\) has rows shaped \['messages'\], mix\[0\] \(a.jsonl\) \['completion', 'prompt'\]"
    ):
        load_rows(DataSpec(mix=["a.jsonl", "m.jsonl"]), split="train", base_dir=tmp_path)
    with pytest.raises(RlftError, match=r"mix\[2\] \S*q.jsonl has no column 'prompt' \(needed by this stage\)"):
        load_rows(DataSpec(mix=["a.jsonl", "b.jsonl", "q.jsonl"]), split="train", required=("prompt",), base_dir=tmp_path)
    bad = {
        "both": ({"mix": [{"source": "a.jsonl", "fraction": 0.5, "rows": 3}]}, "sets both fraction: and rows:"),
        "over": ({"mix": [{"source": "a.jsonl", "fraction": 1.5}]}, "less than or equal to 1"),
        "two sources": ({"source": "a.jsonl", "mix": ["b.jsonl"]}, "exactly one of source: .* and mix:"),
        "columns on top": ({"mix": ["a.jsonl"], "columns": {"prompt": "q"}}, r"columns: belongs to each member \(mix\[i\].columns\)"),
    }
    for name, (data, message) in bad.items():
        with pytest.raises(RecipeError, match=message):
            recipe_from_dict({"name": "r", "model": "m", "stages": [{"name": "s", "kind": "sft", "data": data}]})
        assert name


def test_hub_revision_and_data_files_reach_load_dataset(tmp_path, monkeypatch):
    import datasets

    calls = []

    def fake(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        return datasets.Dataset.from_list([{"prompt": "hi", "completion": "yo"}])

    monkeypatch.setattr(datasets, "load_dataset", fake)
    spec = DataSpec(source="org/set", subset="main", revision="v1.2", data_files={"train": "data/train-*.parquet"})
    _, _, label = load_rows(spec, split="train", base_dir=tmp_path)
    assert calls == [("org/set", "main", {"split": "train", "revision": "v1.2", "data_files": {"train": "data/train-*.parquet"}})]
    assert label == "org/set:main@v1.2[train]"
    write_jsonl(tmp_path / "a.jsonl", _letters("A", 2))
    with pytest.raises(RlftError, match="revision applies to hub data sets only"):
        load_rows(DataSpec(source="a.jsonl", revision="v1"), split="train", base_dir=tmp_path)
    # The fingerprint of a hub set names its revision: a new revision re-runs the stage.
    make = lambda rev: recipe_from_dict(  # noqa: E731
        {"name": "r", "model": "m", "stages": [{"name": "s", "kind": "sft", "data": {"source": "org/set", "revision": rev}}]}
    )
    assert fingerprints(make("v1"), tmp_path)["s"].detail["data"] == {"data": "org/set@v1"}
