"""The rlft reward library: plain functions with TRL's reward signature, registered by name.

A reward is ``fn(prompts, completions, **columns) -> list[float | None]`` — exactly TRL's contract,
so TRL's, open-r1's and your own functions plug in unchanged. ``None`` means "not applicable".

Register your own with the decorator (and refer to it as ``module:function`` in a recipe)::

    from rewards import register

    @register("politeness", description="1.0 when the answer says please")
    def politeness(prompts, completions, **kwargs):
        return [1.0 if "please" in text(c) else 0.0 for c in completions]

Resolving a built-in name imports only the module that defines it (``BUILTINS`` below).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# name -> module defining it; imported on first use only.
BUILTINS: dict[str, str] = {
    "math_accuracy": "rewards.math",
    "answer_format": "rewards.format",
    "tag_format": "rewards.format",
    "required_tags": "rewards.format",
    "json_format": "rewards.format",
    "regex_match": "rewards.format",
    "length_target": "rewards.length",
    "overlong_penalty": "rewards.length",
    "repetition_penalty": "rewards.repetition",
    "code_tests": "rewards.code",
    "general_ability": "rewards.general",
}


@dataclass(frozen=True)
class RewardInfo:
    name: str
    fn: Callable
    description: str
    module: str


REGISTRY: dict[str, RewardInfo] = {}


def register(name: str | None = None, *, description: str | None = None):
    """Decorator: make a reward function (or callable class) addressable by ``name`` in recipes."""

    def wrap(fn):
        key = name or getattr(fn, "__name__", type(fn).__name__)
        doc = description or ((fn.__doc__ or "").strip().splitlines() or [""])[0]
        REGISTRY[key] = RewardInfo(key, fn, doc, getattr(fn, "__module__", "?"))
        return fn

    return wrap


def text(completion) -> str:
    """The text of a completion, whether a plain string or a list of chat messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        last = completion[-1]
        return last.get("content", "") if isinstance(last, dict) else str(last)
    if isinstance(completion, dict):
        return completion.get("content", "")
    return str(completion)
