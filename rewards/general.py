"""General-ability checks: is a short answer right (facts, arithmetic, reasoning), or does it follow an instruction?

Every row names its own deterministic check in three columns — ``check`` (one of ``CHECKS``),
``reference`` (what the check compares with) and ``options`` (``|``-separated, for ``choice``) —
so one reward scores a mixed probe set such as ``bundled:general-probe`` (``rlft.data.bundled.probe``)::

    >>> general_ability(["q"] * 3, ["The capital is Paris.", "12 apples in all: 12", "- a\\n- b"],
    ...                 check=["answer", "number", "list"], reference=["Paris", "12", "3"], options=["", "", ""])
    [1.0, 1.0, 0.0]

=============  ==========================  ==========================================================================
check          reference                   passes when
=============  ==========================  ==========================================================================
``answer``     aliases ``a|b``             an alias appears as whole words in the completion (case, punctuation and
                                           the articles a/an/the ignored)
``number``     a number                    the final answer (``rewards.math.extract_answer``: answer tag, boxed, else
                                           the last number; else the last number word up to twenty) equals it by
                                           math-verify
``choice``     the right option            the first of the row's ``options`` the completion names is the reference
``one_word``   aliases, or empty           the completion is one word (surrounding quotes and punctuation ignored),
                                           equal to an alias when there are aliases
``uppercase``  —                           at least two letters, none lowercase
``lowercase``  —                           at least two letters, none uppercase
``list``       N                           exactly N list items: lines starting ``-``, ``*``, ``•``, ``1.`` or ``1)``
``max_words``  N                           between 1 and N words
``starts_with`` text                       the completion starts with the text (case ignored)
``ends_with``  text                        the completion ends with the text (case ignored; after a word, a final
                                           ``.`` or ``!`` is allowed)
``contains``   words ``a|b``               every word appears as a whole word (case ignored)
``excludes``   a letter or a word          the completion has words and none is, or contains the letter, that one
``json``       keys ``k1,k2``              the completion (or its first ``{...}``) is a JSON object with those keys
``quoted``     —                           the completion is wrapped in double quotes
=============  ==========================  ==========================================================================
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from rewards import register, text

_ARTICLES = {"a", "an", "the"}
_WORD = re.compile(r"[A-Za-z0-9]+(?:['’-][A-Za-z0-9]+)*")
_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S", re.MULTILINE)
_NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty"
).split()


def normalise(s: str) -> str:
    """Lower case, punctuation to spaces, articles dropped, one space between words: ``"The Sun."`` -> ``"sun"``."""
    words = re.sub(r"[^0-9a-z]+", " ", s.lower()).split()
    return " ".join(w for w in words if w not in _ARTICLES)


def _mentions(haystack: str, phrase: str) -> int:
    """Where ``phrase`` occurs as whole words in ``haystack`` (both normalised), or -1."""
    needle = normalise(phrase)
    return f" {haystack} ".find(f" {needle} ") if needle else -1


def _aliases(reference: str) -> list[str]:
    return [a for a in (part.strip() for part in reference.split("|")) if a]


def _answer(t: str, reference: str, options: str) -> bool:
    said = normalise(t)
    return any(_mentions(said, alias) >= 0 for alias in _aliases(reference))


def _number(t: str, reference: str, options: str) -> bool:
    from rewards.math import equivalent, extract_answer

    predicted = extract_answer(t)
    if predicted is None:
        words = [w for w in normalise(t).split() if w in _NUMBER_WORDS]
        predicted = str(_NUMBER_WORDS.index(words[-1])) if words else None
    return predicted is not None and equivalent(reference.strip(), predicted)


def _choice(t: str, reference: str, options: str) -> bool:
    said = normalise(t)
    named = [(at, option) for option in _aliases(options) if (at := _mentions(said, option)) >= 0]
    return bool(named) and normalise(min(named)[1]) == normalise(reference)


def _one_word(t: str, reference: str, options: str) -> bool:
    words = _WORD.findall(t)
    if len(words) != 1 or _WORD.sub("", t).strip(" \t\n\"'“”‘’.,!?:;()*`") != "":
        return False
    return not reference.strip() or any(normalise(words[0]) == normalise(a) for a in _aliases(reference))


def _letters(t: str) -> list[str]:
    return [c for c in t if c.isalpha()]


def _uppercase(t: str, reference: str, options: str) -> bool:
    letters = _letters(t)
    return len(letters) >= 2 and not any(c.islower() for c in letters)


def _lowercase(t: str, reference: str, options: str) -> bool:
    letters = _letters(t)
    return len(letters) >= 2 and not any(c.isupper() for c in letters)


def _list(t: str, reference: str, options: str) -> bool:
    return len(_ITEM.findall(t)) == int(reference)


def _max_words(t: str, reference: str, options: str) -> bool:
    return 1 <= len(_WORD.findall(t)) <= int(reference)


def _starts_with(t: str, reference: str, options: str) -> bool:
    return t.strip().lower().startswith(reference.strip().lower())


def _ends_with(t: str, reference: str, options: str) -> bool:
    end, want = t.strip().lower(), reference.strip().lower()
    if want[-1:].isalnum():
        end = end.rstrip(".! ")
    return end.endswith(want)


def _contains(t: str, reference: str, options: str) -> bool:
    said = normalise(t)
    return all(_mentions(said, word) >= 0 for word in _aliases(reference))


def _excludes(t: str, reference: str, options: str) -> bool:
    banned = reference.strip().lower()
    words = [w.lower() for w in _WORD.findall(t)]
    if not words:
        return False
    return banned not in t.lower() if len(banned) == 1 else banned not in words


def _json(t: str, reference: str, options: str) -> bool:
    found = re.search(r"\{.*\}", t, re.DOTALL)
    try:
        value = json.loads(found.group(0) if found else t)
    except ValueError:
        return False
    return isinstance(value, dict) and all(k.strip() in value for k in reference.split(","))


def _quoted(t: str, reference: str, options: str) -> bool:
    s = t.strip()
    return len(s) > 2 and s[0] in '"“' and s[-1] in '"”'


CHECKS: dict[str, Callable[[str, str, str], bool]] = {
    "answer": _answer,
    "number": _number,
    "choice": _choice,
    "one_word": _one_word,
    "uppercase": _uppercase,
    "lowercase": _lowercase,
    "list": _list,
    "max_words": _max_words,
    "starts_with": _starts_with,
    "ends_with": _ends_with,
    "contains": _contains,
    "excludes": _excludes,
    "json": _json,
    "quoted": _quoted,
}


def passes(check: str, completion, reference: str = "", options: str = "") -> bool:
    """Whether ``completion`` passes the named check against ``reference`` (see the table above)."""
    if check not in CHECKS:
        raise ValueError(f"unknown general-ability check {check!r}; known: {', '.join(CHECKS)}")
    return CHECKS[check](text(completion), reference or "", options or "")


@register("general_ability", description="1.0 when the completion passes the row's own check (columns check, reference, options)")
def general_ability(prompts, completions, check, reference, options=None, **kwargs) -> list[float | None]:
    """1.0 when the completion passes the row's ``check`` against its ``reference``, else 0.0; None for rows without a check."""
    options = options if options is not None else [""] * len(completions)
    return [
        None if not c else 1.0 if passes(c, completion, ref, opts) else 0.0
        for completion, c, ref, opts in zip(completions, check, reference, options, strict=True)
    ]
