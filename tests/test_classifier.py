"""The classifier stage on a tiny model, in-process: it learns, its labels round-trip, its model reloads, bad labels fail clearly."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import write_jsonl
from test_stages import load_weights, make_ctx

from rlft.errors import RecipeError, RlftError
from rlft.recipe import recipe_from_dict
from rlft.stages.context import StageResult

FILLER = "bcdfghjklnpqrstvwxy"
MARKERS = {"cat": "aaa", "dog": "mmm", "fox": "zzz"}  # the class shows as a run of one letter at a random place


def marked_rows(n: int, seed: int, names: list[str], *, ids: bool = False) -> list[dict]:
    """Easily separable rows: random filler with the class's marker somewhere in it; ``label`` is the name or its index."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        name = names[i % len(names)]
        filler = "".join(rng.choice(FILLER) for _ in range(8))
        cut = rng.randint(0, len(filler))
        rows.append({"review": filler[:cut] + MARKERS[name] + filler[cut:], "sentiment": names.index(name) if ids else name})
    return rows


def classifier_recipe(model: Path, stage: dict, seed: int = 42):
    base = {
        "name": "clf",
        "kind": "classifier",
        "data": {"source": "train.jsonl", "columns": {"text": "review", "label": "sentiment"}},
        "eval_data": {"source": "test.jsonl", "columns": {"text": "review", "label": "sentiment"}},
        "trl": {"max_steps": 30, "per_device_train_batch_size": 8, "learning_rate": 3e-3},
    }
    return recipe_from_dict(
        {"name": "t", "model": str(model), "seed": seed, "tracking": {"mode": "disabled"}, "stages": [{**base, **stage}]}
    )


def run_classifier(tmp_path: Path, recipe):
    from rlft.stages import classifier

    ctx = make_ctx(recipe, tmp_path, "clf")
    return classifier.run(recipe.stage("clf"), ctx), ctx


@pytest.mark.parametrize("seed", [0, 42])
def test_classifier_raises_held_out_accuracy_from_chance(tiny_model, tmp_path, seed):
    names = ["cat", "dog", "fox"]
    write_jsonl(tmp_path / "train.jsonl", marked_rows(72, seed=1, names=names, ids=True))
    write_jsonl(tmp_path / "test.jsonl", marked_rows(36, seed=2, names=names, ids=True))
    result, ctx = run_classifier(tmp_path, classifier_recipe(tiny_model, {}, seed=seed))

    m = result.metrics
    assert m["baseline/accuracy"] <= 0.6, m  # an untrained 3-way head: about chance (1/3)
    assert m["eval/accuracy"] >= 0.9 and m["eval/macro_f1"] >= 0.9, m
    assert m["eval/loss"] < 0.5 * m["baseline/loss"], m
    assert m["eval/n"] == 36 and m["params/trainable"] == m["params/total"]  # full fine-tuning
    labels = ctx.notes.labels
    assert labels["names"] == ["LABEL_0", "LABEL_1", "LABEL_2"]  # integer labels keep transformers' names
    assert labels["train_rows"] == {"LABEL_0": 24, "LABEL_1": 24, "LABEL_2": 24}
    assert sum(map(sum, labels["confusion"])) == 36
    assert sum(labels["confusion"][i][i] for i in range(3)) == round(m["eval/accuracy"] * 36)
    before, after = load_weights(tiny_model), load_weights(result.model_path)
    assert all(not torch.equal(before[k], after[k]) for k in before if k != "lm_head.weight")


def test_lora_string_labels_round_trip_and_saved_model_predicts_the_same(tiny_model, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    names = ["dog", "cat"]
    write_jsonl(tmp_path / "train.jsonl", marked_rows(64, seed=3, names=names))
    write_jsonl(tmp_path / "test.jsonl", marked_rows(24, seed=4, names=names))
    stage = {"peft": {"lora": {"r": 8, "alpha": 16}}, "trl": {"max_steps": 30, "per_device_train_batch_size": 8, "learning_rate": 1e-2}}
    result, _ = run_classifier(tmp_path, classifier_recipe(tiny_model, stage))
    m = result.metrics
    assert m["eval/accuracy"] >= 0.85 and m["eval/loss"] < 0.5 * m["baseline/loss"], m  # (an untrained 2-way head may score high)
    assert m["params/trainable"] < m["params/total"]

    path = Path(result.model_path)
    config = json.loads((path / "config.json").read_text())
    assert config["id2label"] == {"0": "cat", "1": "dog"} and config["label2id"] == {"cat": 0, "dog": 1}  # names, sorted
    weights = load_file(str(path / "model.safetensors"))
    assert not [k for k in weights if "lora" in k or "modules_to_save" in k]  # the adapter is merged in
    assert weights["score.weight"].shape == (2, 32)

    samples = [json.loads(line) for line in (tmp_path / ".clf.partial" / "samples.jsonl").read_text().splitlines()]
    assert [s["text"] for s in samples] == [r["review"] for r in marked_rows(24, seed=4, names=names)]
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    with torch.inference_mode():
        probs = model(**tok([s["text"] for s in samples], return_tensors="pt", padding=True)).logits.softmax(-1)
    assert [model.config.id2label[i] for i in probs.argmax(-1).tolist()] == [s["predicted"] for s in samples]
    stage_probs = torch.tensor([[s["probs"][n] for n in ("cat", "dog")] for s in samples])
    assert torch.allclose(probs, stage_probs, atol=1e-4)
    assert sum(s["correct"] for s in samples) == round(m["eval/accuracy"] * 24)


def test_missing_label_column_names_the_file_and_its_columns(tiny_model, tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"review": "good", "stars": 5}, {"review": "bad", "stars": 1}])
    write_jsonl(tmp_path / "test.jsonl", [{"review": "fine", "stars": 3}])
    recipe = classifier_recipe(tiny_model, {"data": {"source": "train.jsonl", "columns": {"text": "review"}}})
    with pytest.raises(RlftError) as e:
        run_classifier(tmp_path, recipe)
    msg = str(e.value)
    assert "train.jsonl has no column 'label'" in msg and "its columns are: text, stars" in msg and "columns: {label:" in msg


def test_held_out_label_the_training_rows_lack_is_an_error(tiny_model, tmp_path):
    write_jsonl(tmp_path / "train.jsonl", marked_rows(8, seed=1, names=["cat", "dog"]))
    write_jsonl(tmp_path / "test.jsonl", marked_rows(6, seed=2, names=["cat", "dog", "fox"]))
    with pytest.raises(RlftError) as e:
        run_classifier(tmp_path, classifier_recipe(tiny_model, {}))
    assert e.value.where == "stages.clf.eval_data"
    assert "label(s) 'fox' that no training row" in e.value.what and "test.jsonl" in e.value.what and "'cat', 'dog'" in e.value.what


@pytest.mark.parametrize("ids", [False, True])
def test_num_labels_smaller_than_the_labels_found(tiny_model, tmp_path, ids):
    names = ["cat", "dog", "fox"]
    write_jsonl(tmp_path / "train.jsonl", marked_rows(9, seed=1, names=names, ids=ids))
    write_jsonl(tmp_path / "test.jsonl", marked_rows(3, seed=2, names=names, ids=ids))
    with pytest.raises(RlftError) as e:
        run_classifier(tmp_path, classifier_recipe(tiny_model, {"num_labels": 2}))
    assert e.value.where == "stages.clf.num_labels"
    assert e.value.what.startswith("num_labels is 2, but") and "set num_labels: 3" in e.value.fix
    assert ("label id 2 needs 3 outputs" if ids else "3 labels (cat, dog, fox)") in e.value.what


def test_classifier_keys_are_checked_before_training(tiny_model, tmp_path):
    from rlft.pipeline.checks import check_recipe

    recipe = classifier_recipe(tiny_model, {"trl": {"max_step": 3}})
    with pytest.raises(RecipeError) as e:
        check_recipe(recipe, str(tmp_path / "r.yaml"))
    assert "unknown TrainingArguments key 'max_step'. did you mean 'max_steps'?" in str(e.value)
    with pytest.raises(RecipeError) as e:
        classifier_recipe(tiny_model, {"scorecard": {"prompts": 8}})
    assert "scorecard.prompts does not apply: a classifier generates no text" in str(e.value)
    resolved = classifier_recipe(tiny_model, {"scorecard": {"baseline": False}})
    assert recipe_from_dict(resolved.model_dump(mode="json")) == resolved  # as the stage process reads it back from recipe.json


def test_eval_after_a_classifier_tests_the_last_policy(tiny_model, tmp_path):
    from rlft.pipeline.fingerprint import fingerprints
    from rlft.stages.eval import _model_under_test

    stages = [
        {"name": "sft", "kind": "sft", "data": "bundled:support-sft"},
        {"name": "clf", "kind": "classifier", "init_from": "sft", "data": "bundled:sentiment"},
        {"name": "eval", "kind": "eval", "data": "bundled:arithmetic", "rewards": [{"name": "math_accuracy"}]},
    ]
    recipe = recipe_from_dict({"name": "t", "model": str(tiny_model), "stages": stages})
    assert list(fingerprints(recipe, tmp_path)["eval"].detail["upstream"]) == ["sft"]
    ctx = make_ctx(recipe, tmp_path, "eval")
    ctx.results = {n: StageResult(name=n, kind=k, status="done", model_path=f"/m/{n}") for n, k in (("sft", "sft"), ("clf", "classifier"))}
    assert _model_under_test(recipe.stage("eval"), ctx) == "sft"

    stages[2]["init_from"] = "clf"
    with pytest.raises(RecipeError) as e:
        recipe_from_dict({"name": "t", "model": str(tiny_model), "stages": stages})
    assert "stages.eval.init_from: stage 'clf' (classifier) makes a model that scores text and does not generate it" in str(e.value)


def test_bundled_sentiment_splits_are_disjoint_balanced_and_stable():
    from rlft.data import bundled
    from rlft.data.bundled.sentiment import _products

    train, test = bundled.DATASETS["sentiment"]("train"), bundled.DATASETS["sentiment"]("test")
    assert (len(train), len(test)) == (378, 126)
    assert Counter(r["label"] for r in train) == {"positive": 126, "negative": 126, "neutral": 126}
    assert Counter(r["label"] for r in test) == {"positive": 42, "negative": 42, "neutral": 42}
    assert len({r["text"] for r in train + test}) == len(train) + len(test)  # no review twice, none in both splits
    held_out_products = [name for name, _ in _products()[1]]
    assert not [r for r in train if any(p in r["text"] for p in held_out_products)]
    assert all(any(p in r["text"] for p in held_out_products) for r in test)
    assert bundled.DATASETS["sentiment"]("test") == test  # deterministic


def test_classifier_stops_early_once_held_out_accuracy_stops_rising(tiny_model, tmp_path):
    names = ["cat", "dog", "fox"]
    write_jsonl(tmp_path / "train.jsonl", marked_rows(72, seed=1, names=names, ids=True))
    write_jsonl(tmp_path / "test.jsonl", marked_rows(36, seed=2, names=names, ids=True))
    stop = {"metric": "eval/accuracy", "every_steps": 2, "patience": 2}
    result, ctx = run_classifier(tmp_path, classifier_recipe(tiny_model, {"early_stopping": stop}))
    m = result.metrics
    assert m["early_stopping/stopped_early"] and m["early_stopping/stop_step"] < 30, m  # the task saturates well before 30 steps
    assert m["eval/accuracy"] == m["early_stopping/best"] >= 0.9  # the saved model is the best evaluation's
