"""Labels and held-out scores of ``classifier`` stages.

``label_space`` checks a stage's ``label`` column and maps it to the head's outputs: labels are integer
ids (0..N-1; a ``datasets.ClassLabel`` column brings its names) or names (strings; ids in sorted order,
so ``negative, neutral, positive`` -> 0, 1, 2). ``num_labels`` defaults to the labels found, and every
held-out label must occur in training, since a head cannot learn a class it never sees.
``HeldOutScores`` is the Trainer's ``compute_metrics``: accuracy and macro-F1, keeping the last
predictions for the confusion matrix and ``samples.jsonl``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rlft.errors import RlftError


@dataclass(frozen=True)
class LabelSpace:
    """The head's outputs: ``names[i]`` names output i; ``ids`` maps each label value in the data to its output."""

    names: list[str]
    ids: dict

    def config(self) -> dict:
        """``from_pretrained`` keyword arguments, saved in the model's config.json: ``num_labels``, ``id2label``, ``label2id``."""
        return {
            "num_labels": len(self.names),
            "id2label": dict(enumerate(self.names)),
            "label2id": {n: i for i, n in enumerate(self.names)},
        }

    def counts(self, rows) -> dict[str, int]:
        """Rows per class, by name, in output order."""
        found = Counter(self.ids[v] for v in rows["label"])
        return {name: found.get(i, 0) for i, name in enumerate(self.names)}


def label_space(train, held_out, *, num_labels: int | None, stage: str, data: dict) -> LabelSpace:
    """Check the labels of the training and held-out rows and map them to outputs.

    ``data`` is the stage's manifest ``data`` entry (``train`` and ``held_out`` name the sources in errors).
    """
    values = _values(train, data["train"])
    held = _values(held_out, data["held_out"])
    if len({type(v) for v in values + held}) > 1:
        raise RlftError(
            f"the labels of {data['train']} and {data['held_out']} mix integer ids and names",
            where=f"stages.{stage}.data",
            fix="write every label as an id 0..N-1, or every label as a name",
        )
    found = sorted(set(values))
    unseen = sorted(set(held) - set(found))
    if unseen:
        raise RlftError(
            f"held-out rows ({data['held_out']}) have label(s) {', '.join(map(repr, unseen))} that no training row "
            f"({data['train']}) has; training labels: {', '.join(map(repr, found))}",
            where=f"stages.{stage}.eval_data",
            fix="a head cannot learn a class it never sees: add training rows with those labels, or drop those held-out rows",
        )
    if len(found) < 2:
        raise RlftError(
            f"every training row of {data['train']} has the label {found[0]!r}; a classifier needs at least two classes",
            where=f"stages.{stage}.data",
            fix="add rows of the other classes (check `columns: {label: ...}` names the right column)",
        )
    if isinstance(found[0], int):
        given = list(getattr(train.features.get("label"), "names", None) or [])  # a datasets.ClassLabel column
        need = found[-1] + 1
        _enough(num_labels, need, f"label id {found[-1]} needs {need} outputs (ids run from 0)", stage)
        n = num_labels or max(need, len(given))
        names = [given[i] if i < len(given) else f"LABEL_{i}" for i in range(n)]
        return LabelSpace(names=names, ids={i: i for i in range(n)})
    _enough(num_labels, len(found), f"the training rows have {len(found)} labels ({', '.join(found)})", stage)
    n = num_labels or len(found)
    return LabelSpace(names=found + [f"LABEL_{i}" for i in range(len(found), n)], ids={name: i for i, name in enumerate(found)})


def _enough(num_labels: int | None, need: int, why: str, stage: str) -> None:
    if num_labels is not None and num_labels < need:
        raise RlftError(
            f"num_labels is {num_labels}, but {why}",
            where=f"stages.{stage}.num_labels",
            fix=f"set num_labels: {need}, or leave it out to count the labels",
        )


def _values(rows, source: str) -> list:
    """The ``label`` column, each an int id >= 0 or a non-empty name; the first bad row is an error."""
    values = list(rows["label"])
    for i, v in enumerate(values):
        if isinstance(v, int) and not isinstance(v, bool) and v < 0:
            problem, fix = f"label {v} is negative", "ids run from 0 (hub test splits mark unlabelled rows -1: hold out labelled rows)"
        elif isinstance(v, str) and not v.strip():
            problem, fix = "empty label", "fill or remove the row"
        elif v is None:
            problem, fix = "no label", "fill or remove the row"
        elif not isinstance(v, int | str) or isinstance(v, bool):
            problem, fix = f"label {v!r} is a {type(v).__name__}", "write each label as an integer id 0..N-1 or as a name"
        else:
            continue
        raise RlftError(f"data {source} row {i}: {problem}", fix=fix)
    texts = rows["text"]
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()), None)
    if bad is not None:
        raise RlftError(f"data {source} row {bad}: 'text' is {texts[bad]!r}, not text", fix="fill or remove the row")
    return values


class HeldOutScores:
    """``compute_metrics`` for the Trainer: ``accuracy`` and ``macro_f1`` (over the classes in the labels or predictions).

    Keeps the last call's class probabilities (rows x classes) and true ids, in held-out row order.
    """

    def __init__(self, names: list[str]):
        self.names = names
        self.probs = None
        self.truth = None

    def __call__(self, prediction) -> dict[str, float]:
        import numpy as np

        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        exp = np.exp(logits - logits.max(-1, keepdims=True))
        self.probs, self.truth = exp / exp.sum(-1, keepdims=True), np.asarray(prediction.label_ids)
        predicted = self.probs.argmax(-1)
        f1 = []
        for c in sorted(set(self.truth.tolist()) | set(predicted.tolist())):
            tp = int(((predicted == c) & (self.truth == c)).sum())
            fp, fn = int(((predicted == c) & (self.truth != c)).sum()), int(((predicted != c) & (self.truth == c)).sum())
            f1.append(2 * tp / (2 * tp + fp + fn))
        return {"accuracy": float((predicted == self.truth).mean()), "macro_f1": float(np.mean(f1))}

    def confusion(self) -> list[list[int]]:
        """``[true class][predicted class]`` counts of the last call."""
        out = [[0] * len(self.names) for _ in self.names]
        for t, p in zip(self.truth.tolist(), self.probs.argmax(-1).tolist(), strict=True):
            out[t][p] += 1
        return out

    def write_samples(self, path: Path, texts: list[str], tracker=None) -> None:
        """``samples.jsonl``: each held-out text with its label, the prediction and the class probabilities; a W&B table of the first 200."""
        rows = []
        for text, t, probs in zip(texts, self.truth.tolist(), self.probs.tolist(), strict=True):
            predicted = self.names[max(range(len(probs)), key=probs.__getitem__)]
            probs = {name: round(p, 6) for name, p in zip(self.names, probs, strict=True)}
            rows.append(
                {"text": text, "label": self.names[t], "predicted": predicted, "correct": predicted == self.names[t], "probs": probs}
            )
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        if tracker is not None:
            keys = ["text", "label", "predicted", "correct"]
            tracker.log_table("eval/samples", keys, [[r[k] for k in keys] for r in rows[:200]])
