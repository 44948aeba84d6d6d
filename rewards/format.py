"""Format rewards: does the completion follow the requested answer format?

Example::

    >>> answer_format(["q"], ["5 + 3 = 8\\n<answer>8</answer>"])
    [1.0]
    >>> TagFormat(tag="final")(["q"], ["<final>yes</final> and more"])
    [0.0]
"""

from __future__ import annotations

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
