"""Arithmetic questions in prompts: the bundled templates, their rewordings, and ``a op b`` read from a prompt.

``rlft.data.augment``'s ``numbers`` transform redraws the operands of the question ``parse_arithmetic`` finds
(``Arithmetic.redrawn`` / ``written_into``); its ``template`` transform rewrites a question in another
template of its family (``FAMILIES``) and the answer-format instruction in other words (``INSTRUCTIONS``).
"""

from __future__ import annotations

import operator
import random
import re
import string
from dataclasses import dataclass, replace

from rlft.data.bundled import arithmetic as bundled_sums

INTEGER = re.compile(r"\d+")

# --- arithmetic questions: the bundled templates and their variations -----------------------------

INSTRUCTIONS = (
    bundled_sums.INSTRUCTION,
    "Write the final answer inside <answer></answer> tags.",
    "Give the final answer in <answer></answer> tags.",
    "Wrap the final answer in <answer></answer> tags.",
)
# Templates of one family say the same thing; {op} templates take any operator, the others are sums.
# Every template of rlft.data.bundled.arithmetic.TEMPLATES is here, so every bundled arithmetic question is recognised.
FAMILIES = {
    "expression": (
        "What is {a} {op} {b}?",
        "Compute {a} {op} {b}.",
        "Calculate {a} {op} {b}.",
        "{a} {op} {b} = ?",
        "Work out {a} {op} {b}.",
        "Find the value of {a} {op} {b}.",
        "Add {a} and {b}.",
        "What is the sum of {a} and {b}?",
        "Find the sum of {a} and {b}.",
        "How much is {a} plus {b}?",
    ),
    "story": (
        "{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have now?",
        "{name} has {a} {thing} and is given {b} more. How many {thing} does {name} have in total?",
        "{name} had {a} {thing}, then got {b} more. How many {thing} does {name} have now?",
    ),
    "shop": (
        "A shop sold {a} {thing} in the morning and {b} in the afternoon. How many {thing} did it sell in total?",
        "In the morning a shop sold {a} {thing}, and in the afternoon it sold {b} more. How many {thing} did it sell that day?",
        "A shop sold {a} {thing} before noon and {b} after noon. How many {thing} did it sell altogether?",
    ),
}
SLOT_PATTERNS = {"a": r"\d+", "b": r"\d+", "op": r"[-+*×]", "name": r"[A-Z][a-z]+", "thing": r"[a-z]+"}
OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "×": operator.mul}


def _compile(template: str) -> re.Pattern:
    """A template as a pattern: its slots become named groups (a repeated slot must repeat), any spacing is allowed."""
    out, seen = [r"\s*"], set()
    for literal, slot, _, _ in string.Formatter().parse(template):
        out.append(r"\s*".join(map(re.escape, literal.split(" "))))
        if slot is not None:
            out.append(f"(?P={slot})" if slot in seen else f"(?P<{slot}>{SLOT_PATTERNS[slot]})")
            seen.add(slot)
    return re.compile("".join(out) + r"\s*")


TEMPLATES = [(family, text, _compile(text)) for family, texts in FAMILIES.items() for text in texts]


def split_instruction(text: str) -> tuple[str, str, str | None]:
    """(question, the rest, the answer-format instruction the text ends with or None)."""
    stripped = text.rstrip()
    for instruction in INSTRUCTIONS:
        if stripped.endswith(instruction):
            question = stripped[: -len(instruction)].rstrip()
            return question, text[len(question) :], instruction
    return text, "", None


def match_question(question: str) -> tuple[str, str, re.Match] | None:
    """(family, template, match) of the template the question is written in, or None."""
    for family, text, pattern in TEMPLATES:
        found = pattern.fullmatch(question)
        if found:
            return family, text, found
    return None


EXPRESSION = re.compile(r"(?<![\w.])(\d+)\s*([-+*×])\s*(\d+)(?![\w.])")
NUMBER = re.compile(r"(?<![\d.])-?\d+(?!\.?\d)")  # an integer, not part of a decimal


@dataclass(frozen=True)
class Arithmetic:
    """``a op b`` read from a prompt, with where its operands sit in the prompt text."""

    a: int
    b: int
    op: str
    spans: tuple[tuple[int, int], tuple[int, int]]

    @property
    def result(self) -> int:
        return OPS[self.op](self.a, self.b)

    def redrawn(self, rng: random.Random) -> Arithmetic:
        """New operands with as many digits as the old ones (a difference keeps its sign)."""
        while True:
            a, b = _like(self.a, rng), _like(self.b, rng)
            if (a, b) != (self.a, self.b) and (self.op != "-" or (a >= b) == (self.a >= self.b)):
                return replace(self, a=a, b=b)

    def written_into(self, text: str) -> str:
        """``text`` (the prompt this was read from, or one like it) with this question's operands."""
        (sa, ea), (sb, eb) = self.spans
        for start, end, value in sorted([(sa, ea, self.a), (sb, eb, self.b)], reverse=True):
            text = text[:start] + str(value) + text[end:]
        return text


def _like(n: int, rng: random.Random) -> int:
    digits = len(str(n))
    return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


def parse_arithmetic(text: str) -> Arithmetic | None:
    """The one two-number question in a prompt: a known template (see ``FAMILIES``), or ``a op b`` with no other number."""
    question, _, _ = split_instruction(text)
    found = match_question(question)
    if found is not None:
        m = found[2]
        return Arithmetic(int(m["a"]), int(m["b"]), m.groupdict().get("op") or "+", (m.span("a"), m.span("b")))
    hits = list(EXPRESSION.finditer(text))
    if len(hits) == 1 and len(INTEGER.findall(text)) == 2:
        m = hits[0]
        return Arithmetic(int(m[1]), int(m[3]), m[2], (m.span(1), m.span(3)))
    return None
