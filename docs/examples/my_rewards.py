"""Example rewards for the docs' recipes (``./my_rewards.py:polite``): copy this file next to your recipe and edit it.

A reward is a plain function with TRL's signature: ``fn(prompts, completions, **columns) -> list[float | None]``.
"""

from __future__ import annotations

POLITE_WORDS = ("please", "thank", "sorry", "glad", "happy to help")


def _text(completion) -> str:
    """The completion's text: a conversational completion is a list with one assistant message."""
    return completion[0]["content"] if isinstance(completion, list) else completion


def polite(prompts, completions, **kwargs) -> list[float]:
    """1.0 when the answer holds a polite word (please, thank, sorry, ...), else 0.0."""
    return [1.0 if any(word in _text(c).lower() for word in POLITE_WORDS) else 0.0 for c in completions]
