"""Length rewards: steer completions towards a target length, or punish running past a limit.

Example::

    >>> LengthTarget(target=4, tolerance=1)(["q"] * 3, ["a b c d", "a b c d e f", "a b c d e f g h i j"])
    [1.0, 0.75, 0.0]
    >>> OverlongPenalty(max_length=10, cache=4, unit="chars")(["q"] * 3, ["x" * 6, "x" * 8, "x" * 12])
    [0.0, -0.5, -1.0]

Units: ``words`` are whitespace-separated pieces of the completion text, ``chars`` are Unicode characters,
``tokens`` are the completion's token ids as the trainer passes them (``completion_ids``).
"""

from __future__ import annotations

import logging
import math
import numbers

from rewards import register, text

log = logging.getLogger(__name__)
_UNITS = ("words", "chars")


def _int_arg(name: str, value, minimum: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} ({hint}), got {value!r}")
    return int(value)


def _unit_arg(unit, allowed: tuple[str, ...]) -> str:
    if unit not in allowed:
        raise ValueError(f"unit must be one of {', '.join(allowed)}, got {unit!r}")
    return unit


def measure(completion, unit: str) -> int:
    """The length of a completion in ``words`` (whitespace-separated) or ``chars``."""
    t = text(completion)
    return len(t.split()) if unit == "words" else len(t)


@register(
    "length_target", description="1.0 within target±tolerance words/chars, falling linearly to 0 (kwargs: target, tolerance, unit, slope)"
)
class LengthTarget:
    """1.0 when the length is within ``target ± tolerance`` (in ``unit``: words or chars), else linearly less, floored at 0.

    Outside the band the score drops by ``slope`` per unit beyond it. The default slope is ``1 / target``: the
    score reaches 0 at ``target`` units beyond the band (with ``tolerance`` 0: at length 0 and at ``2 * target``).
    """

    def __init__(self, target: int, tolerance: int = 0, unit: str = "words", slope: float | None = None):
        self.target = _int_arg("target", target, 1, "the wanted length in `unit`")
        self.tolerance = _int_arg("tolerance", tolerance, 0, "how far from target still scores 1.0")
        self.unit = _unit_arg(unit, _UNITS)
        if slope is not None and (isinstance(slope, bool) or not isinstance(slope, numbers.Real) or not math.isfinite(slope) or slope <= 0):
            raise ValueError(f"slope must be a positive number (score lost per {unit[:-1]} beyond the band) or null, got {slope!r}")
        self.slope = None if slope is None else float(slope)
        self.__name__ = f"length_target_{self.target}_{self.unit}"

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        scores = []
        for completion in completions:
            excess = max(0, abs(measure(completion, self.unit) - self.target) - self.tolerance)
            # Dividing (rather than multiplying by 1/target) keeps round cases exact: 3/10 -> 0.7, not 0.7000000000000001.
            lost = excess / self.target if self.slope is None else excess * self.slope
            scores.append(max(0.0, 1.0 - lost))
        return scores


_warned_no_ids = False


@register(
    "overlong_penalty",
    description="DAPO soft overlong penalty: 0 up to max_length-cache, down to -1 at max_length (kwargs: max_length, cache, unit)",
)
class OverlongPenalty:
    """DAPO's soft overlong punishment: 0 while length <= ``max_length - cache``, falling linearly to -1 at
    ``max_length``, and -1 beyond it. Length is in ``unit``: ``tokens`` (default), ``words`` or ``chars``.

    For ``tokens`` the ``completion_ids`` the trainer passes (TRL's GRPO passes one list of token ids per
    completion) are counted. When they are absent (a trainer that does not pass them, or a call by hand) the
    length falls back to **words** and a warning is logged once; set ``unit: words`` to make that explicit.
    ``cache`` 0 is a hard limit: 0 up to ``max_length``, -1 beyond.
    """

    def __init__(self, max_length: int, cache: int, unit: str = "tokens"):
        self.max_length = _int_arg("max_length", max_length, 1, "the length at which the penalty reaches -1")
        self.cache = _int_arg("cache", cache, 0, "the width of the soft zone before max_length")
        if self.cache > self.max_length:
            raise ValueError(f"cache ({cache}) must be <= max_length ({max_length}): the soft zone starts at max_length - cache")
        self.unit = _unit_arg(unit, ("tokens", *_UNITS))
        self.__name__ = f"overlong_penalty_{self.max_length}_{self.unit}"

    def _lengths(self, completions, completion_ids) -> list[int]:
        global _warned_no_ids
        if self.unit == "tokens":
            if completion_ids is not None:
                return [len(ids) for ids in completion_ids]
            if not _warned_no_ids:
                _warned_no_ids = True
                log.warning("overlong_penalty: unit is tokens but no completion_ids were passed; measuring words instead")
            return [measure(c, "words") for c in completions]
        return [measure(c, self.unit) for c in completions]

    def __call__(self, prompts, completions, completion_ids=None, **kwargs) -> list[float]:
        soft_start = self.max_length - self.cache
        scores = []
        for length in self._lengths(completions, completion_ids):
            if length <= soft_start:
                scores.append(0.0)
            elif length <= self.max_length:
                scores.append((soft_start - length) / self.cache)
            else:
                scores.append(-1.0)
        return scores
