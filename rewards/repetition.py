"""Repetition reward: penalise completions that repeat the same word n-grams.

Example::

    >>> RepetitionPenalty(ngram_size=2)(["q"] * 3, ["a b c d", "a b a b a b", "hi"])
    [0.0, -0.6, 0.0]

The penalty is ``max_penalty * (1 - distinct / total)`` over the completion's word n-grams, where words are
the whitespace-separated pieces of the lowercased text: 0.0 when no n-gram repeats, approaching
``max_penalty`` when one n-gram fills the text.
"""

from __future__ import annotations

import math
import numbers

from rewards import register, text


@register(
    "repetition_penalty",
    description="max_penalty × share of repeated word n-grams; 0 when nothing repeats (kwargs: ngram_size, max_penalty)",
)
class RepetitionPenalty:
    """``max_penalty * (1 - distinct_ngrams / total_ngrams)`` on lowercased whitespace-separated words.

    Completions with fewer than ``ngram_size`` words score 0.0. ``max_penalty`` must be <= 0.
    """

    def __init__(self, ngram_size: int = 3, max_penalty: float = -1.0):
        if isinstance(ngram_size, bool) or not isinstance(ngram_size, numbers.Integral) or ngram_size < 1:
            raise ValueError(f"ngram_size must be an integer >= 1 (words per n-gram), got {ngram_size!r}")
        if isinstance(max_penalty, bool) or not isinstance(max_penalty, numbers.Real) or not math.isfinite(max_penalty):
            raise ValueError(f"max_penalty must be a number <= 0, got {max_penalty!r}")
        if max_penalty > 0:
            raise ValueError(f"max_penalty must be <= 0 (it is a penalty), got {max_penalty!r}; use {-max_penalty!r}")
        self.ngram_size = int(ngram_size)
        self.max_penalty = float(max_penalty)
        self.__name__ = f"repetition_penalty_{self.ngram_size}gram"

    def penalty(self, completion) -> float:
        words = text(completion).lower().split()
        n = self.ngram_size
        if len(words) < n:
            return 0.0
        ngrams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        # "+ 0.0" turns the -0.0 of a repetition-free text into a plain 0.0.
        return self.max_penalty * (1.0 - len(set(ngrams)) / len(ngrams)) + 0.0

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        return [self.penalty(c) for c in completions]
