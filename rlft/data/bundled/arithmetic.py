"""``bundled:arithmetic``, ``-sft``, ``-short``, ``-carry`` and ``-carried``: two-digit additions, bare, with a worked
solution, or with a compact one (``-carry``: the compact one with the carry as its own step); ``-carried``: only the
bare sums whose ones digits carry."""

from __future__ import annotations

import random

INSTRUCTION = "Put the final answer in <answer></answer> tags."

TEMPLATES = [
    "What is {a} + {b}?",
    "Compute {a} + {b}.",
    "Add {a} and {b}.",
    "What is the sum of {a} and {b}?",
    "{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have now?",
    "A shop sold {a} {thing} in the morning and {b} in the afternoon. How many {thing} did it sell in total?",
]
NAMES = ["Tom", "Ana", "Li", "Sara", "Omar", "Mia", "Ravi", "Zoe"]
THINGS = ["apples", "books", "stamps", "marbles", "coins", "cards", "shells", "pencils"]

TEST_SIZE = 200
SEED = 1234


def worked_solution(a: int, b: int) -> str:
    """A column-addition explanation that ends in the tagged answer."""
    ones = a % 10 + b % 10
    carry = ones // 10
    tens = a // 10 + b // 10 + carry
    total = a + b
    if carry:
        steps = f"Ones: {a % 10} + {b % 10} = {ones}, write {ones % 10} and carry 1. Tens: {a // 10} + {b // 10} + 1 = {tens}."
    else:
        steps = f"Ones: {a % 10} + {b % 10} = {ones}. Tens: {a // 10} + {b // 10} = {tens}."
    return f"{steps} So {a} + {b} = {total}.\n<answer>{total}</answer>"


def _pairs() -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    rng = random.Random(SEED)
    unordered = sorted({(min(a, b), max(a, b)) for a in range(10, 100) for b in range(10, 100)})
    rng.shuffle(unordered)
    test = unordered[:TEST_SIZE]
    train = unordered[TEST_SIZE:]
    # Held-out pairs appear in one order only; train pairs in both, shuffled.
    test = [(a, b) if rng.random() < 0.5 else (b, a) for a, b in test]
    train = [p for a, b in train for p in ((a, b), (b, a))]
    rng.shuffle(train)
    return train, test


def short_solution(a: int, b: int) -> str:
    """The same column addition in about half the tokens: ``46 + 59: 6+9=15, 4+5+1=10, so <answer>105</answer>``."""
    ones = a % 10 + b % 10
    carry = " + 1" if ones >= 10 else ""
    tens = a // 10 + b // 10 + ones // 10
    return f"{a} + {b}: {a % 10}+{b % 10}={ones}, {a // 10}+{b // 10}{carry.replace(' ', '')}={tens}, so <answer>{a + b}</answer>"


def carry_solution(a: int, b: int) -> str:
    """The short column addition with the carry as its own step, a successor after a two-term sum, never a three-term
    sum: ``46 + 59: 6+9=15, 4+5=9+1=10, so <answer>105</answer>`` (no carry: ``46 + 11: 6+1=7, 4+1=5, ...``)."""
    ones = a % 10 + b % 10
    tens = a // 10 + b // 10
    carry = f"+1={tens + 1}" if ones >= 10 else ""
    return f"{a} + {b}: {a % 10}+{b % 10}={ones}, {a // 10}+{b // 10}={tens}{carry}, so <answer>{a + b}</answer>"


COMPLETIONS = {"worked": worked_solution, "short": short_solution, "carry": carry_solution}


def _row(a: int, b: int, i: int, completion: str | None) -> dict:
    rng = random.Random(f"{SEED}-{a}-{b}-{i}")
    question = rng.choice(TEMPLATES).format(a=a, b=b, name=rng.choice(NAMES), thing=rng.choice(THINGS))
    row = {"prompt": [{"role": "user", "content": f"{question} {INSTRUCTION}"}], "answer": str(a + b)}
    if completion is not None:
        row["completion"] = [{"role": "assistant", "content": COMPLETIONS[completion](a, b)}]
    return row


def carries(a: int, b: int) -> bool:
    """Whether the ones digits of ``a + b`` carry into the tens (45 of every 100 pairs do)."""
    return a % 10 + b % 10 >= 10


def arithmetic_rows(split: str, completion: str | None = None, *, carried_only: bool = False) -> list[dict]:
    """Rows of one split; ``completion``: None (prompt and answer only), ``"worked"``, ``"short"`` or ``"carry"``.

    ``carried_only``: only the sums whose ones digits carry (the rows keep the numbering, and so the wording, they
    have in the whole split).
    """
    train, test = _pairs()
    pairs = {"train": train, "test": test}[split]
    return [_row(a, b, i, completion) for i, (a, b) in enumerate(pairs) if not carried_only or carries(a, b)]
