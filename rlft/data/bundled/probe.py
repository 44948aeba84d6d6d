"""The general-ability probe: 100 short questions the project wrote, each with a deterministic check.

``bundled:general-probe`` (split ``test`` only: a probe is never trained on) asks a model questions that
have nothing to do with any alignment task, so that an eval stage can see what alignment cost
(``probe:`` and ``forgetting:`` on an eval stage, ``rlft.stages.guards``). Five categories of 20:

- ``facts`` — common knowledge ("What is the capital of Japan?"), checked by an alias appearing as
  whole words, or numerically;
- ``arithmetic`` — sums, products and one-step word problems, checked numerically (math-verify on the
  final answer, ``rewards.math``);
- ``reasoning`` — comparisons, syllogisms, yes/no questions, checked by the first option the answer
  names, or numerically;
- ``language`` — antonyms, plurals, tenses, spelling, checked like facts (or by the first option named);
- ``instructions`` — format following in the style of IFEval ("answer in one word", "reply in uppercase",
  "list three ...", "end with ...", JSON, quotes), checked by the format alone.

Columns: ``prompt`` (one user message), ``category``, and the check: ``check``, ``reference``, ``options``
(``rewards.general``, whose ``general_ability`` reward scores a row). Rows go round-robin over the
categories, so the first N (``probe.limit``) cover every category alike. Every item also carries a
hand-written correct ``example`` answer (in ``probe_items()``, not in the rows): the tests check that each
passes its own check, and that no question but an instruction passes it when repeated as the answer (no
question lists its right option first, or ends on its own numeric answer).

The items are data, in ``general_probe.jsonl`` next to this module (package data, read by ``probe_items()``):
one JSON object per line with ``category``, ``question``, ``check``, ``reference``, ``options`` and ``example``,
grouped by category.
"""

from __future__ import annotations

import functools
import json
from importlib.resources import files
from typing import NamedTuple

from rlft.errors import RlftError

DATA_FILE = "general_probe.jsonl"  # one item per line, grouped by category, next to this module
CATEGORIES = ("facts", "arithmetic", "reasoning", "language", "instructions")


class ProbeItem(NamedTuple):
    category: str
    question: str
    check: str
    reference: str
    example: str  # a hand-written correct answer, for the tests (not part of the rows)
    options: str = ""


@functools.cache
def probe_items() -> tuple[ProbeItem, ...]:
    """The 100 items, read once from the package data ``general_probe.jsonl``, round-robin over ``CATEGORIES``."""
    text = files("rlft.data.bundled").joinpath(DATA_FILE).read_text(encoding="utf-8")
    groups: dict[str, list[ProbeItem]] = {category: [] for category in CATEGORIES}
    for line in text.splitlines():
        item = ProbeItem(**json.loads(line))
        groups[item.category].append(item)
    # Round-robin, so that the first N items (a probe limit) cover every category alike.
    return tuple(item for group in zip(*groups.values(), strict=True) for item in group)


def probe_rows(split: str) -> list[dict]:
    """The probe as rows (``bundled:general-probe``); only the ``test`` split exists."""
    if split != "test":
        raise RlftError(
            f"bundled:general-probe has no {split!r} split: it is a probe of general ability, never trained on",
            fix="score it in an eval stage (probe: {} or forgetting: {max_drop: 0.05}), or read split: test",
        )
    return [
        {
            "prompt": [{"role": "user", "content": item.question}],
            "category": item.category,
            "check": item.check,
            "reference": item.reference,
            "options": item.options,
        }
        for item in probe_items()
    ]
