"""Format rewards: does the completion follow the requested answer format?

Example::

    >>> answer_format(["q"], ["5 + 3 = 8\\n<answer>8</answer>"])
    [1.0]
    >>> TagFormat(tag="final")(["q"], ["<final>yes</final> and more"])
    [0.0]
    >>> RequiredTags(tags=["think", "answer"])(["q"], ["<think>hm</think><answer></answer>"])
    [0.5]
    >>> JsonFormat(schema={"type": "object", "required": ["a"]})(["q"], ['Here: {"a": 1}', '{"b": 2}', "no"])
    [1.0, 0.5, 0.0]
    >>> RegexMatch(pattern=r"\\d+ apples", flags="i")(["q"], ["I have 3 APPLES"])
    [1.0]
"""

from __future__ import annotations

import json
import re

from rewards import register, text


@register("tag_format", description="1.0 when the completion ends with exactly one non-empty <tag>…</tag> (kwargs: tag)")
class TagFormat:
    """1.0 when the completion has exactly one non-empty ``<tag>…</tag>`` block and ends with it.

    A picklable callable class, so it can be parametrised from a recipe: ``kwargs: {tag: answer}``.
    """

    def __init__(self, tag: str = "answer"):
        if not re.fullmatch(r"[A-Za-z_][\w-]*", tag):
            raise ValueError(f"tag must be a plain tag name such as 'answer', got {tag!r}")
        self.tag = tag
        self.__name__ = f"{tag}_format"
        self._pattern = re.compile(rf"<{tag}>\s*\S.*?</{tag}>\s*$", re.DOTALL)
        self._open = f"<{tag}>"

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        scores = []
        for completion in completions:
            t = text(completion)
            ok = t.count(self._open) == 1 and self._pattern.search(t) is not None
            scores.append(1.0 if ok else 0.0)
        return scores


answer_format = register("answer_format", description="1.0 when the completion ends with one non-empty <answer>…</answer>")(
    TagFormat("answer")
)


_TAG_NAME = re.compile(r"[A-Za-z_][\w-]*")


def _check_tag(tag) -> str:
    if not isinstance(tag, str) or not _TAG_NAME.fullmatch(tag):
        raise ValueError(f"tags must be plain tag names such as 'think' or 'answer', got {tag!r}")
    return tag


@register("required_tags", description="fraction of the required <tag>…</tag> sections present and non-empty (kwargs: tags, ordered)")
class RequiredTags:
    """Fraction (0..1) of ``tags`` present as a ``<tag>…</tag>`` section with non-whitespace content.

    With ``ordered`` (default) each tag is looked for only after the end of the previous tag found, so a
    section that comes out of order counts as missing for the later tags: ``tags=[think, answer]`` on
    ``<answer>1</answer><think>x</think>`` scores 0.5.
    """

    def __init__(self, tags: list[str], ordered: bool = True):
        if isinstance(tags, str) or not isinstance(tags, list | tuple) or not tags:
            raise ValueError(f"tags must be a non-empty list of tag names such as ['think', 'answer'], got {tags!r}")
        self.tags = [_check_tag(t) for t in tags]
        self.ordered = bool(ordered)
        self.__name__ = "required_tags"
        self._patterns = [re.compile(rf"<{t}>(.*?)</{t}>", re.DOTALL) for t in self.tags]

    def _end_of(self, pattern: re.Pattern, t: str, pos: int) -> int | None:
        for m in pattern.finditer(t, pos):
            if m.group(1).strip():
                return m.end()
        return None

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        scores = []
        for completion in completions:
            t, pos, found = text(completion), 0, 0
            for pattern in self._patterns:
                end = self._end_of(pattern, t, pos)
                if end is not None:
                    found += 1
                    pos = end if self.ordered else 0
            scores.append(found / len(self._patterns))
        return scores


_JSON_FENCE = re.compile(r"```json[ \t]*\n?(.*?)```", re.DOTALL | re.IGNORECASE)


def _json_candidates(t: str, extract: bool) -> list[str]:
    """The texts to try parsing, in order: the whole text, then (extract) the first ```json block and the outermost spans."""
    candidates = [t]
    if extract:
        fence = _JSON_FENCE.search(t)
        if fence:
            candidates.append(fence.group(1))
        spans = sorted((t.find(o), o, c) for o, c in (("{", "}"), ("[", "]")) if o in t)
        candidates += [t[start : t.rfind(close) + 1] for start, _, close in spans if t.rfind(close) > start]
    return candidates


@register("json_format", description="1.0 when the completion is (or contains) valid JSON matching `schema`; 0.5 if it fails the schema")
class JsonFormat:
    """1.0 when the completion parses as JSON (and validates against ``schema`` when given), 0.5 when it parses
    but fails the schema, else 0.0.

    With ``extract`` (default) a completion that is not JSON as a whole is also tried as its first ```json fenced
    block, then as its outermost ``{…}`` / ``[…]`` span. Validation uses the ``jsonschema`` package (needed
    only when a schema is given) with the dialect named by the schema's ``$schema``; ``format`` is not checked.
    """

    def __init__(self, schema: dict | None = None, extract: bool = True):
        if schema is not None:
            if not isinstance(schema, dict):
                raise ValueError(f"schema must be a JSON Schema mapping such as {{'type': 'object'}}, got {schema!r}")
            jsonschema = _jsonschema()
            try:
                jsonschema.validators.validator_for(schema).check_schema(schema)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"schema is not a valid JSON Schema: {exc.message}; fix the schema kwarg") from exc
        self.schema = schema
        self.extract = bool(extract)
        self.__name__ = "json_format"

    def _parse(self, t: str) -> tuple[bool, object]:
        for candidate in _json_candidates(t, self.extract):
            try:
                return True, json.loads(candidate)
            except (ValueError, RecursionError):  # not JSON (or absurdly nested): try the next candidate
                continue
        return False, None

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        validator = None
        if self.schema is not None:
            validator = _jsonschema().validators.validator_for(self.schema)(self.schema)
        scores = []
        for completion in completions:
            ok, value = self._parse(text(completion))
            scores.append(0.0 if not ok else 1.0 if validator is None or validator.is_valid(value) else 0.5)
        return scores


def _jsonschema():
    try:
        import jsonschema
    except ImportError as exc:
        raise ValueError("json_format with a schema needs the jsonschema package: pip install jsonschema") from exc
    return jsonschema


_REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE, "a": re.ASCII}


@register("regex_match", description="1.0 when the completion matches `pattern` (kwargs: pattern, full, flags)")
class RegexMatch:
    """1.0 when ``re.search(pattern)`` finds a match in the completion (``re.fullmatch`` when ``full``), else 0.0.

    ``flags`` is a string of letters: ``i`` ignore case, ``m`` multiline, ``s`` dot matches newline,
    ``x`` verbose, ``a`` ASCII.
    """

    def __init__(self, pattern: str, full: bool = False, flags: str = ""):
        if not isinstance(pattern, str):
            raise ValueError(f"pattern must be a regular expression string, got {pattern!r}")
        if not isinstance(flags, str) or set(flags) - set(_REGEX_FLAGS):
            raise ValueError(f"flags must be a string of letters from 'imsxa' (e.g. 'is'), got {flags!r}")
        value = 0
        for letter in flags:
            value |= _REGEX_FLAGS[letter]
        try:
            self._regex = re.compile(pattern, value)
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a valid regular expression ({exc}); fix the pattern kwarg") from exc
        self.pattern, self.full, self.flags = pattern, bool(full), flags
        self.__name__ = "regex_match"

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        match = self._regex.fullmatch if self.full else self._regex.search
        return [1.0 if match(text(c)) else 0.0 for c in completions]
