"""The augmentation transforms and their registry: ``fn(row, rng, options, held_out) -> new row | None``."""

from __future__ import annotations

import copy
import functools
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rewards.math import equivalent, extract_answer
from rlft.data.augment.arithmetic import (
    INSTRUCTIONS,
    INTEGER,
    NUMBER,
    TEMPLATES,
    Arithmetic,
    match_question,
    parse_arithmetic,
    split_instruction,
)
from rlft.data.bundled import arithmetic as bundled_sums
from rlft.errors import did_you_mean


class Options(BaseModel):
    """A transform's options (the keys of its entry in ``transforms:`` besides ``name`` and ``p``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Transform:
    name: str
    fn: Callable
    options: type[Options]


TRANSFORMS: dict[str, Transform] = {}  # in the order a copy gets them


def register(name: str, options: type[Options] = Options):
    """Decorator: make ``fn(row, rng, options, held_out) -> dict | None`` the transform ``name``."""

    def wrap(fn):
        TRANSFORMS[name] = Transform(name, fn, options)
        return fn

    return wrap


def check_transform(name: str, options: dict) -> None:
    """Raise ``ValueError`` (the recipe reports it at the entry's key path) for an unknown name or options that do not fit."""
    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}. {did_you_mean(name, TRANSFORMS)}transforms: {', '.join(TRANSFORMS)}")
    model = TRANSFORMS[name].options
    try:
        model.model_validate(options)
    except ValidationError as exc:
        allowed = ["p", *model.model_fields]
        problems = []
        for err in exc.errors():
            key = ".".join(map(str, err["loc"]))
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown option {key!r} of transform {name}. {did_you_mean(key, allowed)}options: {', '.join(allowed)}")
            else:
                where = f"option {key} of transform {name}" if key else f"transform {name}"
                problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')} (got {err['input']!r})")
        raise ValueError("; ".join(problems)) from None


# --- where a row's texts sit ----------------------------------------------------------------------

Slot = tuple[str, int | None]  # (column, message index); None: the column holds plain text


def _last(messages: list, role: str) -> int | None:
    return next((i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], dict) and messages[i].get("role") == role), None)


def prompt_slot(row: dict) -> Slot | None:
    """Where a row's prompt text sits: a plain-text ``prompt``, else the last user message of ``prompt`` or ``messages``.

    A classifier's (``text``, ``label``) row is all input: its ``text`` counts as the prompt.
    """
    if isinstance(row.get("prompt"), str):
        return "prompt", None
    if "prompt" not in row and "messages" not in row and isinstance(row.get("text"), str) and "label" in row:
        return "text", None
    for col in ("prompt", "messages"):
        messages = row.get(col)
        if isinstance(messages, list):
            i = _last(messages, "user")
            return (col, i) if i is not None and isinstance(messages[i].get("content"), str) else None
    return None


def _get(row: dict, slot: Slot):
    col, i = slot
    return row[col] if i is None else row[col][i].get("content")


def _put(row: dict, slot: Slot, text: str) -> None:
    col, i = slot
    if i is not None:
        row[col][i]["content"] = text
    else:  # an ``answer`` column read from a csv holds ints: keep its type
        row[col] = int(text) if isinstance(row[col], int) else text


def prompt_text(row: dict) -> str | None:
    slot = prompt_slot(row)
    return None if slot is None else _get(row, slot)


def _with(row: dict, slot: Slot, text: str) -> dict:
    out = copy.deepcopy(row)
    _put(out, slot, text)
    return out


@dataclass(frozen=True)
class HeldOut:
    """What augmentation must not recreate: the held-out prompts (ignoring case and spacing) and the numbers each uses."""

    prompts: frozenset[str] = frozenset()
    numbers: frozenset[tuple[int, ...]] = frozenset()

    @classmethod
    def of(cls, rows) -> HeldOut:
        texts = [t for t in map(prompt_text, rows) if isinstance(t, str)]
        return cls(frozenset(map(_key, texts)), frozenset(map(_numbers_in, texts)))


def _key(text: str) -> str:
    return " ".join(text.casefold().split())


def _numbers_in(text: str) -> tuple[int, ...]:
    return tuple(sorted(int(n) for n in INTEGER.findall(text)))


# --- the transforms -------------------------------------------------------------------------------

TRIES = 20  # new operands drawn for a row before numbers gives up on it


def _answer_slots(row: dict) -> list[Slot] | None:
    """The answer texts of a row (``answer``, and the one final assistant message of each answer column); None: another shape."""
    slots: list[Slot] = [("answer", None)] if row.get("answer") is not None else []
    for col in ("completion", "chosen", "rejected"):
        value = row.get(col)
        if isinstance(value, str):
            slots.append((col, None))
        elif isinstance(value, list) and len(value) == 1 and isinstance(value[0].get("content"), str):
            slots.append((col, 0))
        elif value is not None:
            return None
    messages = row.get("messages")
    if isinstance(messages, list):
        user = _last(messages, "user")
        final = messages[-1]
        if user is None or len(messages) != user + 2 or final.get("role") != "assistant" or not isinstance(final.get("content"), str):
            return None
        slots.append(("messages", user + 1))
    return slots


def _as_text(value) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) else None


def _must_be_right(row: dict, slot: Slot) -> bool:
    """``answer``, ``chosen``, assistant turns and completions are right answers; ``rejected`` and KTO's label-false completions are not."""
    return slot[0] != "rejected" and not (slot[0] == "completion" and row.get("label") is False)


@functools.lru_cache(maxsize=8192)
def _equal(gold: str, predicted: str) -> bool:
    return equivalent(gold, predicted)


def _right(text: str, result: int) -> bool:
    """The math checker's verdict (``rewards.math``): is the final answer in ``text`` equal to ``result``?"""
    predicted = extract_answer(text)
    return predicted is not None and _equal(str(result), predicted)


def _recompute(text: str, old: Arithmetic, new: Arithmetic) -> str | None:
    """``text`` with the old operands and result replaced by the new ones; None when a number in it has no clear role."""
    if old.op == "+" and text == bundled_sums.worked_solution(old.a, old.b):
        return bundled_sums.worked_solution(new.a, new.b)
    roles: dict[str, set[str]] = {}
    for before, after in ((old.a, new.a), (old.b, new.b), (old.result, new.result)):
        roles.setdefault(str(before), set()).add(str(after))
    tokens = list(NUMBER.finditer(text))
    unknown = {t.group() for t in tokens} - set(roles)
    if unknown:  # only a wrong final answer may be unknown: it keeps its distance from the right result
        final = extract_answer(text)
        if len(unknown) > 1 or final not in unknown:
            return None
        shifted = int(final) + new.result - old.result
        if int(final) >= 0 > shifted:
            return None
        roles[final] = {str(shifted)}
    if any(len(roles[t.group()]) > 1 for t in tokens):  # e.g. 10 + 10: which 10 is which
        return None
    for t in reversed(tokens):
        text = text[: t.start()] + next(iter(roles[t.group()])) + text[t.end() :]
    return text


@register("numbers")
def numbers(row: dict, rng: random.Random, options: Options, held_out: HeldOut) -> dict | None:
    """New operands in a two-number arithmetic prompt, with every answer column recomputed and checked."""
    slot, answers = prompt_slot(row), _answer_slots(row)
    if slot is None or answers is None:
        return None
    prompt = _get(row, slot)
    old = parse_arithmetic(prompt)
    if old is None:
        return None
    before = {s: _as_text(_get(row, s)) for s in answers}
    if any(v is None for v in before.values()):
        return None
    was_right = {s: _right(v, old.result) for s, v in before.items()}
    if not all(was_right[s] for s in answers if _must_be_right(row, s)):
        return None  # the row's own answer disagrees with the question as read: leave it alone
    for _ in range(TRIES):
        new = old.redrawn(rng)
        text = new.written_into(prompt)
        if _numbers_in(text) in held_out.numbers:
            continue
        after = {s: _recompute(v, old, new) for s, v in before.items()}
        if all(v is not None and _right(v, new.result) == was_right[s] for s, v in after.items()):
            out = _with(row, slot, text)
            for s, v in after.items():
                _put(out, s, v)
            return out
    return None


class ShotOptions(Options):
    turns: bool = Field(False, description="also shuffle (user, assistant) example exchanges before a chat prompt's final user turn")


SHOT_QUESTION = re.compile(r"\s*(?:Q|Question|Input|Problem):[ \t]*\S")
SHOT_ANSWER = re.compile(r"\n[ \t]*(?:A|Answer|Output|Solution):[ \t]*\S")
PARAGRAPH_BREAK = re.compile(r"(\n[ \t]*\n\s*)")


def _is_shot(paragraph: str) -> bool:
    return bool(SHOT_QUESTION.match(paragraph) and SHOT_ANSWER.search(paragraph))


def _shot_run(items: list, is_shot: Callable) -> tuple[int, int] | None:
    """(start, end) of the longest run of at least two consecutive examples, or None."""
    best, start = None, None
    for i, item in enumerate([*items, None]):
        if item is not None and is_shot(item):
            start = i if start is None else start
            continue
        if start is not None and i - start >= 2 and (best is None or i - start > best[1] - best[0]):
            best = (start, i)
        start = None
    return best


def _reordered(items: list, rng: random.Random) -> list | None:
    """The items in another order, or None when every order reads the same."""
    if all(item == items[0] for item in items):
        return None
    while True:
        out = rng.sample(items, len(items))
        if out != items:
            return out


def _shuffled_text(text: str, rng: random.Random) -> str | None:
    parts = PARAGRAPH_BREAK.split(text)  # paragraphs at even positions, the breaks between them at odd ones
    paragraphs = parts[0::2]
    run = _shot_run(paragraphs, _is_shot)
    new = None if run is None else _reordered(paragraphs[run[0] : run[1]], rng)
    if new is None:
        return None
    paragraphs[run[0] : run[1]] = new
    parts[0::2] = paragraphs
    return "".join(parts)


def _shuffled_turns(messages: list, end: int, rng: random.Random) -> list | None:
    """``messages`` with the (user, assistant) exchanges before index ``end`` (after any system turns) reordered."""
    start = next((i for i, m in enumerate(messages) if m.get("role") != "system"), end)
    exchanges = [messages[i : i + 2] for i in range(start, end, 2)]
    if len(exchanges) < 2 or any([m.get("role") for m in pair] != ["user", "assistant"] for pair in exchanges):
        return None
    new = _reordered(exchanges, rng)
    return None if new is None else messages[:start] + [m for pair in new for m in pair] + messages[end:]


@register("shuffle_shots", ShotOptions)
def shuffle_shots(row: dict, rng: random.Random, options: ShotOptions, held_out: HeldOut) -> dict | None:
    """Reorder the worked examples of a few-shot prompt (see the module docstring for the format)."""
    slot = prompt_slot(row)
    if slot is None:
        return None
    text = _shuffled_text(_get(row, slot), rng)
    if text is not None:
        return _with(row, slot, text)
    col, i = slot
    messages = _shuffled_turns(row[col], i, rng) if options.turns and i is not None else None
    return None if messages is None else {**row, col: copy.deepcopy(messages)}


class TemplateOptions(Options):
    prefixes: list[str] = Field(["", "Hi! ", "Hello. ", "Please help with this: "], description="put before a prompt no template fits")
    suffixes: list[str] = Field(["", " Thanks!", " Thank you.", " Any help appreciated."], description="put after it")
    generic: bool = Field(True, description="give prompts no template fits a prefix and/or suffix; false: skip them")


@register("template", TemplateOptions)
def template(row: dict, rng: random.Random, options: TemplateOptions, held_out: HeldOut) -> dict | None:
    """Say an arithmetic question (and its answer-format instruction) in other words; wrap any other prompt."""
    slot = prompt_slot(row)
    if slot is None:
        return None
    text = _get(row, slot)
    question, rest, instruction = split_instruction(text)
    found = match_question(question)
    if found is None:
        return _wrapped(row, slot, text, rng, options) if options.generic else None
    family, original, m = found
    values = {**m.groupdict(), "op": m.groupdict().get("op") or "+"}
    others = [t for f, t, _ in TEMPLATES if f == family and t != original and ("{op}" in t or values["op"] == "+")]
    if instruction is not None:
        rest = rest.replace(instruction, rng.choice(INSTRUCTIONS), 1)
    return _with(row, slot, rng.choice(others).format(**values) + rest)


def _wrapped(row: dict, slot: Slot, text: str, rng: random.Random, options: TemplateOptions) -> dict | None:
    """A prefix and/or suffix around the prompt.

    No prefix where the prompt already greets with a prefix's first word, and no suffix where it already thanks with a
    suffix's, or ends in a cue to be continued (``A:``, ``3 + 4 =``): a suffix there would read as the start of the answer.
    """
    body, words = text.strip(), _lower_words(text)
    greeted = bool(set(words[:1]) & {w[0] for w in map(_lower_words, options.prefixes) if w})
    thanked = bool(set(words[-4:]) & {w[0] for w in map(_lower_words, options.suffixes) if w}) or body.endswith((":", "="))
    pairs = [
        (p, s)
        for p in options.prefixes
        for s in options.suffixes
        if (p.strip() or s.strip()) and not (greeted and p.strip()) and not (thanked and s.strip())
    ]
    if not pairs:
        return None
    prefix, suffix = rng.choice(pairs)
    return _with(row, slot, prefix + body + suffix)


def _lower_words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.casefold())


class NoiseOptions(Options):
    case: float = Field(0.1, ge=0.0, le=1.0, description="probability that a word of two or more letters is recased")
    space: float = Field(0.1, ge=0.0, le=1.0, description="probability that a single space becomes two or three")

    @model_validator(mode="after")
    def _some(self):
        if not (self.case or self.space):
            raise ValueError("case and space are both 0, so it would change nothing; raise one")
        return self


WORD = re.compile(r"([A-Za-z]{2,})([.,!?;:]?)")


def _recased(word: str, rng: random.Random) -> str:
    core, punctuation = WORD.fullmatch(word).groups()
    return rng.choice([v for v in (core.lower(), core.upper(), core.capitalize()) if v != core]) + punctuation


@register("noise", NoiseOptions)
def noise(row: dict, rng: random.Random, options: NoiseOptions, held_out: HeldOut) -> dict | None:
    """Casing and spacing noise in the prompt text (at least one change per copy); answers are never touched."""
    slot = prompt_slot(row)
    if slot is None:
        return None
    parts = re.split(r"( +)", _get(row, slot))  # words (and line breaks) at even positions, runs of spaces at odd ones
    words = [i for i in range(0, len(parts), 2) if options.case and WORD.fullmatch(parts[i])]
    gaps = [i for i in range(1, len(parts), 2) if options.space and parts[i] == " " and parts[i - 1] and parts[i + 1]]
    if not words and not gaps:
        return None
    hits = [i for i in words if rng.random() < options.case] + [i for i in gaps if rng.random() < options.space]
    for i in hits or [rng.choice(words + gaps)]:
        parts[i] = _recased(parts[i], rng) if i % 2 == 0 else rng.choice(("  ", "   "))
    return _with(row, slot, "".join(parts))


# --- applying them --------------------------------------------------------------------------------
