"""Bundled data sets and the data loader (local files, column mapping, clear errors)."""

from __future__ import annotations

import csv
import re

import pytest
from conftest import write_jsonl

from rewards.math import math_accuracy
from rlft.data.bundled import arithmetic as sums
from rlft.data.rows import load_rows
from rlft.errors import RlftError
from rlft.recipe import DataSpec


def _pair(row) -> frozenset:
    a, b = map(int, re.findall(r"\d+", row["prompt"][0]["content"])[:2])
    return frozenset((a, b))


def test_bundled_held_out_split_is_disjoint_and_stable():
    train, test = sums.arithmetic_rows("train"), sums.arithmetic_rows("test")
    assert len(test) == sums.TEST_SIZE >= 50 and len(train) > 1000
    assert not {_pair(r) for r in train} & {_pair(r) for r in test}
    assert sums.arithmetic_rows("test") == test  # deterministic


@pytest.mark.parametrize("completion", ["worked", "short"])
def test_bundled_sft_solutions_are_correct(completion):
    rows = sums.arithmetic_rows("train", completion=completion)[:300]
    scores = math_accuracy([r["prompt"] for r in rows], [r["completion"] for r in rows], answer=[r["answer"] for r in rows])
    assert scores == [1.0] * len(rows)
    assert all(sums.INSTRUCTION in r["prompt"][0]["content"] for r in rows)


def test_short_solutions_show_each_column_and_the_carry():
    """Every step of the compact format is right: the ones column, the tens column with its carry, the tagged sum."""
    step = re.compile(r"(\d+) \+ (\d+): (\d)\+(\d)=(\d+), (\d)\+(\d)(\+1)?=(\d+), so <answer>(\d+)</answer>")
    rows = sums.arithmetic_rows("train", completion="short")
    carries = 0
    for row in rows:
        found = step.fullmatch(row["completion"][0]["content"])
        assert found, row["completion"]
        a, b, a1, b1, ones, a10, b10, carry, tens, total = found.groups()
        a, b = int(a), int(b)
        assert (int(a1), int(b1), int(a10), int(b10)) == (a % 10, b % 10, a // 10, b // 10)
        assert int(ones) == a % 10 + b % 10 and bool(carry) == (int(ones) >= 10)
        assert int(tens) == a // 10 + b // 10 + (1 if carry else 0) and int(total) == a + b == int(row["answer"])
        carries += bool(carry)
    assert 0.3 < carries / len(rows) < 0.7  # both kinds of sum are common, so SFT on a few rows sees both
    assert sums.short_solution(46, 59) == "46 + 59: 6+9=15, 4+5+1=10, so <answer>105</answer>"


def test_carry_solutions_add_two_digits_at_a_time():
    """The carry format: the tens column is a two-term sum, then the carry as a successor; every step right."""
    step = re.compile(r"(\d+) \+ (\d+): (\d)\+(\d)=(\d+), (\d)\+(\d)=(\d+)(?:\+1=(\d+))?, so <answer>(\d+)</answer>")
    for row in sums.arithmetic_rows("test", completion="carry"):
        found = step.fullmatch(row["completion"][0]["content"])
        assert found, row["completion"]
        a, b, a1, b1, ones, a10, b10, tens, carried, total = found.groups()
        a, b = int(a), int(b)
        assert (int(a1), int(b1), int(a10), int(b10)) == (a % 10, b % 10, a // 10, b // 10) and int(ones) == a % 10 + b % 10
        assert int(tens) == a // 10 + b // 10 and (carried is not None) == (int(ones) >= 10)
        assert carried is None or int(carried) == int(tens) + 1
        assert int(total) == a + b == int(row["answer"])
    assert sums.carry_solution(46, 59) == "46 + 59: 6+9=15, 4+5=9+1=10, so <answer>105</answer>"
    assert sums.carry_solution(46, 11) == "46 + 11: 6+1=7, 4+1=5, so <answer>57</answer>"


def test_carried_sums_are_exactly_the_sums_whose_ones_digits_carry():
    """``arithmetic-carried``: every row of the split whose ones digits carry, in the split's order and wording, and no other."""
    for split in ("train", "test"):
        every, carried = sums.arithmetic_rows(split), sums.arithmetic_rows(split, carried_only=True)
        digits = [tuple(int(n) for n in re.findall(r"\d+", r["prompt"][0]["content"])[:2]) for r in every]
        assert carried == [r for r, (a, b) in zip(every, digits, strict=True) if a % 10 + b % 10 >= 10]
        assert all(int(r["answer"]) == a + b for r, (a, b) in zip(every, digits, strict=True))  # the first two numbers are the addends
    assert len(sums.arithmetic_rows("test", carried_only=True)) == 84  # of the 200 held-out sums
    assert sums.carries(46, 59) and not sums.carries(46, 11) and sums.carries(15, 15)


def test_local_jsonl_and_csv_with_column_mapping(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", [{"question": "1+1?", "solution": "2"}, {"question": "2+2?", "solution": "4"}])
    ds, fp, label = load_rows(
        DataSpec(source="d.jsonl", columns={"prompt": "question", "answer": "solution"}),
        split="train",
        required=("prompt",),
        base_dir=tmp_path,
    )
    assert ds.column_names == ["prompt", "answer"] and ds[0]["prompt"] == [{"role": "user", "content": "1+1?"}]
    assert len(fp) == 16 and label.endswith("d.jsonl")

    with open(tmp_path / "d.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerows([["prompt", "answer"], ["3+3?", "6"]])
    ds, fp2, _ = load_rows(DataSpec(source=str(tmp_path / "d.csv")), split="train")
    assert ds[0]["answer"] in ("6", 6) and fp2 != fp

    import datasets

    datasets.Dataset.from_list([{"prompt": "4+4?", "answer": "8"}]).to_parquet(str(tmp_path / "d.parquet"))
    ds, _, _ = load_rows(DataSpec(source="d.parquet", limit=1), split="train", base_dir=tmp_path)
    assert ds[0]["answer"] == "8"


def test_data_errors_name_file_column_and_row(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", [{"question": "1+1?"}, {"question": ""}])
    with pytest.raises(RlftError, match=r"(?s)d.jsonl has no column .q..*its columns are: question"):
        load_rows(DataSpec(source="d.jsonl", columns={"prompt": "q"}), split="train", base_dir=tmp_path)
    with pytest.raises(RlftError, match=r"has no column 'prompt' \(needed by this stage\)"):
        load_rows(DataSpec(source="d.jsonl"), split="train", required=("prompt",), base_dir=tmp_path)
    with pytest.raises(RlftError, match=r"row 1: empty 'prompt'"):
        load_rows(DataSpec(source="d.jsonl", columns={"prompt": "question"}), split="train", base_dir=tmp_path)
    with pytest.raises(RlftError, match="does not exist"):
        load_rows(DataSpec(source="./nope.jsonl"), split="train", base_dir=tmp_path)
    with pytest.raises(RlftError, match="unknown bundled data set 'arith'"):
        load_rows(DataSpec(source="bundled:arith"), split="train")


def test_system_message_goes_first_in_every_prompt_without_one(tmp_path, tiny_model):
    from transformers import AutoTokenizer

    rows = [
        {"prompt": "1+1?", "completion": "2"},
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}], "completion": "4"},
    ]
    write_jsonl(tmp_path / "d.jsonl", rows)
    ds, fp, _ = load_rows(DataSpec(source="d.jsonl", system=""), split="train", base_dir=tmp_path)
    assert ds[0]["prompt"] == [{"role": "system", "content": ""}, {"role": "user", "content": "1+1?"}]
    assert ds[1]["prompt"][0] == {"role": "system", "content": "Be brief."} and len(ds[1]["prompt"]) == 2  # the row's own wins
    assert ds[0]["completion"] == [{"role": "assistant", "content": "2"}]
    _, plain_fp, _ = load_rows(DataSpec(source="d.jsonl"), split="train", base_dir=tmp_path)
    assert fp != plain_fp  # what a stage trained on is in its fingerprint

    # What the model sees: the empty system turn in place of the one a template would add by default.
    tok = AutoTokenizer.from_pretrained(tiny_model)
    assert tok.apply_chat_template(ds[0]["prompt"], tokenize=False).startswith("<|im_start|>system\n<|im_end|>\n<|im_start|>user\n1+1?")
    bundled, _, _ = load_rows(DataSpec(source="bundled:arithmetic", limit=2, system=""), split="test")
    assert [r["prompt"][0] for r in bundled] == [{"role": "system", "content": ""}] * 2

    write_jsonl(tmp_path / "t.jsonl", [{"text": "plain text row"}])
    with pytest.raises(RlftError, match="system.*neither a prompt nor a messages column") as err:
        load_rows(DataSpec(source="t.jsonl", system="x"), split="train", base_dir=tmp_path)
    assert "remove system:" in err.value.fix
