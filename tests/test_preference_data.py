"""Preference data: the bundled support set, the four public shapes, their errors, and unpairing."""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys

import pytest
from conftest import ROOT, write_jsonl

from rlft.data import bundled
from rlft.data.bundled import support as bundled_support
from rlft.data.preference import normalise_preference, unpair_preference
from rlft.data.rows import load_rows
from rlft.errors import RlftError
from rlft.recipe import DataSpec


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def bot(text: str) -> dict:
    return {"role": "assistant", "content": text}


def load_pairs(tmp_path, rows: list[dict], **spec):
    write_jsonl(tmp_path / "d.jsonl", rows)
    ds, _, _ = load_rows(DataSpec(source="d.jsonl", **spec), split="train", kind="preference", base_dir=tmp_path)
    return ds


# --- the bundled support set ---------------------------------------------------------------------


def test_support_sizes_and_held_out_split():
    train, test = bundled_support.support_records("train"), bundled_support.support_records("test")
    assert len(train) >= 240 and len(test) >= 60
    combos = lambda rows: {(r["scenario"], r["product"]) for r in rows}  # noqa: E731
    assert not combos(train) & combos(test)
    assert len(combos(train)) == len(train) and len(combos(test)) == len(test)
    # Every scenario is trained on (with other products) and tested; all eight topics are covered.
    assert {r["scenario"] for r in train} == {r["scenario"] for r in test} == {s.key for s in bundled_support.catalog().scenarios}
    assert len({r["topic"] for r in train}) == 8


def test_support_is_deterministic_across_processes():
    rows = bundled_support.preference_rows("test")
    assert bundled_support.preference_rows("test") == rows
    code = "import hashlib, json; from rlft.data.bundled import support as b; print(hashlib.sha256(json.dumps(b.preference_rows('test')).encode()).hexdigest())"
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()
    for hash_seed in ("1", "2"):  # string hashing must not leak into the generated rows
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == digest


@pytest.mark.parametrize("split", ["train", "test"])
def test_support_pairs_are_varied_and_length_is_no_giveaway(split):
    records = bundled_support.support_records(split)
    assert all(r["chosen"] != r["rejected"] for r in records)
    assert {r["style"] for r in records} == set(bundled_support.STYLES) and len(bundled_support.STYLES) >= 5
    assert len({r["chosen"] for r in records}) >= 0.9 * len(records)
    assert len({r["rejected"] for r in records}) >= 0.9 * len(records)
    assert len({r["question"] for r in records}) >= 0.9 * len(records)
    chosen, rejected = [len(r["chosen"]) for r in records], [len(r["rejected"]) for r in records]
    assert 0.85 < statistics.mean(rejected) / statistics.mean(chosen) < 1.15
    longer = sum(r > c for c, r in zip(chosen, rejected, strict=True)) / len(records)
    assert 0.3 < longer < 0.7  # neither side is reliably the longer one
    assert min(rejected) < statistics.median(chosen) < max(rejected)


def test_support_datasets_are_registered_in_trl_shape():
    pref, sft = bundled.DATASETS["support-preference"]("train"), bundled.DATASETS["support-sft"]("train")
    assert pref == bundled_support.preference_rows("train") and len(sft) == len(pref)
    for p, s in zip(pref, sft, strict=True):
        assert set(p) == {"prompt", "chosen", "rejected"} and set(s) == {"prompt", "completion"}
        assert [m["role"] for m in p["prompt"]] == ["user"]
        assert [m["role"] for m in p["chosen"]] == [m["role"] for m in p["rejected"]] == ["assistant"]
        assert s["prompt"] == p["prompt"] and s["completion"] == p["chosen"]
    ds, _, label = load_rows(DataSpec(source="bundled:support-preference"), split="test", kind="preference")
    assert ds.to_list() == bundled_support.preference_rows("test") and label == "bundled:support-preference[test]"


# --- the four shapes -----------------------------------------------------------------------------


def test_plain_strings_with_column_mapping(tmp_path):
    rows = [{"q": "What is 2+2?", "good": "4", "bad": "5"}, {"q": "Capital of France?", "good": "Paris.", "bad": "Lyon."}]
    ds = load_pairs(tmp_path, rows, columns={"prompt": "q", "chosen": "good", "rejected": "bad"})
    assert ds.to_list() == [
        {"prompt": [user("What is 2+2?")], "chosen": [bot("4")], "rejected": [bot("5")]},
        {"prompt": [user("Capital of France?")], "chosen": [bot("Paris.")], "rejected": [bot("Lyon.")]},
    ]


def test_conversations_split_off_their_shared_prompt(tmp_path):
    system = {"role": "system", "content": "Be brief."}
    history = [system, user("Hi"), bot("Hello!"), user("Name a colour.")]
    rows = [
        # UltraFeedback-binarized: a string prompt beside full conversations, plus columns TRL would trip on.
        {"prompt": "Name a colour.", "chosen": [user("Name a colour."), bot("Blue.")], "rejected": [user("Name a colour."), bot("Seven.")]},
        # No prompt; a system turn and a multi-turn history shared by both conversations.
        {"chosen": history + [bot("Red.")], "rejected": history + [bot("I won't.")]},
    ]
    for row in rows:
        row.update(messages=row["chosen"], score_chosen=8.0)
    ds = load_pairs(tmp_path, rows)
    assert ds.column_names == ["prompt", "chosen", "rejected"]
    assert ds.to_list() == [
        {"prompt": [user("Name a colour.")], "chosen": [bot("Blue.")], "rejected": [bot("Seven.")]},
        {"prompt": history, "chosen": [bot("Red.")], "rejected": [bot("I won't.")]},
    ]


def test_hh_rlhf_text_becomes_a_multi_turn_prompt(tmp_path):
    history = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke."
    rows = [
        {"chosen": history + "\n\nAssistant: Why did the chicken cross the road?", "rejected": history + "\n\nAssistant: No."},
        {"chosen": "Human: What's 1+1?\n\nAssistant: 2", "rejected": "Human: What's 1+1?\n\nAssistant: 3"},
    ]
    ds = load_pairs(tmp_path, rows)
    assert ds.to_list() == [
        {
            "prompt": [user("Hi there"), bot("Hello! How can I help?"), user("Tell me a joke.")],
            "chosen": [bot("Why did the chicken cross the road?")],
            "rejected": [bot("No.")],
        },
        {"prompt": [user("What's 1+1?")], "chosen": [bot("2")], "rejected": [bot("3")]},
    ]


def test_canonical_rows_are_unchanged(tmp_path):
    rows = [
        {"prompt": [user("Hi")], "chosen": [bot("Hello!")], "rejected": [bot("Go away.")]},
        {"prompt": [user("Hi"), bot("Hello!"), user("Bye")], "chosen": [bot("Goodbye!")], "rejected": [bot("Whatever.")]},
    ]
    assert load_pairs(tmp_path, rows).to_list() == rows
    assert load_pairs(tmp_path, rows, limit=1).to_list() == rows[:1]


def test_without_kind_load_rows_leaves_answers_alone(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", [{"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}])
    ds, _, _ = load_rows(DataSpec(source="d.jsonl"), split="train", base_dir=tmp_path)
    assert ds[0] == {"prompt": [user("Hi")], "chosen": "Hello!", "rejected": "Go away."}
    with pytest.raises(ValueError, match="unknown data kind"):
        load_rows(DataSpec(source="d.jsonl"), split="train", base_dir=tmp_path, kind="pairs")


# --- errors --------------------------------------------------------------------------------------

GOOD = {"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}


@pytest.mark.parametrize(
    ("bad_row", "message", "fix"),
    [
        ({"prompt": "Hi", "chosen": "Same.", "rejected": "Same."}, "'chosen' and 'rejected' are the same answer", "remove the row"),
        ({"prompt": "Hi", "chosen": "Hello!", "rejected": "   "}, "empty 'rejected' answer", "remove the row or fill in the answer"),
        ({"prompt": "Hi", "chosen": "Hello!", "rejected": None}, "no 'rejected' answer", "remove or fill the row"),
        ({"prompt": None, "chosen": "Hello!", "rejected": "Go away."}, "no prompt", "add a prompt column"),
    ],
)
def test_bad_pairs_name_file_row_and_fix(tmp_path, bad_row, message, fix):
    with pytest.raises(RlftError, match=rf"(?s)d\.jsonl row 1: {message}.*\n  fix: {fix}"):
        load_pairs(tmp_path, [GOOD, bad_row])


@pytest.mark.parametrize(
    ("chosen", "rejected", "message"),
    [
        (
            "\n\nHuman: Hi\n\nHuman: Hi again\n\nAssistant: Hello",
            "\n\nHuman: Hi\n\nAssistant: No",
            "'chosen' is not HH-RLHF text: its Human and Assistant turns do not alternate",
        ),
        ("\n\nHuman: Hi\n\nAssistant: Hello", "\n\nHuman: Hi", "'rejected' is not HH-RLHF text: it does not end with an 'Assistant:' turn"),
        ("\n\nHuman: Hi\n\nAssistant: Hello", "Hi\n\nAssistant: No", "'rejected' is not HH-RLHF text: it does not start with 'Human:'"),
        ("\n\nHuman: Hi\n\nAssistant: Hello", "\n\nHuman: Hi\n\nAssistant:", "empty 'rejected' answer"),
        (
            "\n\nHuman: Hi\n\nAssistant: Hello",
            "\n\nHuman: Hey\n\nAssistant: No",
            "'chosen' and 'rejected' do not share the conversation before their last turn",
        ),
    ],
)
def test_bad_hh_text_names_file_row_and_fix(tmp_path, chosen, rejected, message):
    good = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello", "rejected": "\n\nHuman: Hi\n\nAssistant: Bye"}
    with pytest.raises(RlftError, match=rf"(?s)d\.jsonl row 1: {message}.*\n  fix: "):
        load_pairs(tmp_path, [good, {"chosen": chosen, "rejected": rejected}])


def test_missing_column_and_bad_message_lists(tmp_path):
    with pytest.raises(
        RlftError, match=r"(?s)d\.jsonl has no column 'rejected' \(needed for preference pairs\).*fix: its columns are: prompt, chosen"
    ):
        load_pairs(tmp_path, [{"prompt": "Hi", "chosen": "Hello!"}])
    with pytest.raises(
        RlftError, match=r"(?s)d\.jsonl row 0: 'chosen' is neither text nor a list of \{role, content\} messages.*fix: give a string"
    ):
        load_pairs(tmp_path, [{"prompt": "Hi", "chosen": [{"text": "Hello!"}], "rejected": [{"text": "Bye"}]}])
    with pytest.raises(RlftError, match=r"(?s)row 0: the last turn of 'chosen' is a 'user' turn.*fix: end each conversation"):
        normalise_preference(_dataset([{"chosen": [bot("Hi"), user("Hello")], "rejected": [bot("Hi"), bot("Bye")]}]), "mine")


# --- unpairing -----------------------------------------------------------------------------------


def _dataset(rows):
    import datasets

    return datasets.Dataset.from_list(rows)


def test_unpair_gives_two_labelled_rows_per_pair(tmp_path):
    pairs = load_pairs(tmp_path, [GOOD, {"prompt": "2+2?", "chosen": "4", "rejected": "5"}])
    kto = unpair_preference(pairs)
    assert kto.column_names == ["prompt", "completion", "label"]
    assert kto.to_list() == [
        {"prompt": [user("Hi")], "completion": [bot("Hello!")], "label": True},
        {"prompt": [user("Hi")], "completion": [bot("Go away.")], "label": False},
        {"prompt": [user("2+2?")], "completion": [bot("4")], "label": True},
        {"prompt": [user("2+2?")], "completion": [bot("5")], "label": False},
    ]
    with pytest.raises(RlftError, match=r"(?s)without column 'prompt'.*fix: bring it into the canonical shape"):
        unpair_preference(_dataset([{"chosen": "a", "rejected": "b"}]))
