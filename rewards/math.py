"""Math rewards: is the final answer mathematically equal to the reference?

Example::

    >>> math_accuracy(["What is 2 + 3?"], ["2 + 3 = 5\\n<answer>5</answer>"], answer=["5"])
    [1.0]

The final answer is taken from, in order: the last ``<answer>…</answer>`` tag, the last
``\\boxed{…}``, a GSM8K-style ``#### 42`` line, or else the last number in the text. Equality is
decided by ``math-verify`` (so ``0.5`` equals ``\\frac{1}{2}`` and ``85.0`` equals ``85``), never by
string comparison.
"""

from __future__ import annotations

import re
import signal
import time

from rewards import register, text

_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_BOXED = re.compile(r"\\boxed\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")
_HASHES = re.compile(r"####\s*([^\n]+)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_answer(completion: str) -> str | None:
    """The final answer in a completion, or None when there is none."""
    for pattern in (_TAG, _BOXED, _HASHES):
        found = pattern.findall(completion)
        if found:
            return found[-1].strip()
    numbers = _NUMBER.findall(completion)
    return numbers[-1].replace(",", "") if numbers else None


def _reference(gold: str) -> str:
    """A reference in GSM8K form ("...#### 42") reduces to its final answer."""
    found = _HASHES.findall(gold)
    return found[-1].strip() if found else gold.strip()


def equivalent(gold: str, predicted: str) -> bool:
    from math_verify import parse, verify

    def _parse(s: str):
        # Wrapping in $...$ lets math-verify read LaTeX such as \frac{1}{2}.
        return parse(s) or parse(f"${s}$")

    timer = getattr(signal, "getitimer", None)
    left, start = timer(signal.ITIMER_REAL)[0] if timer else 0.0, time.monotonic()
    try:
        return bool(verify(_parse(gold), _parse(predicted)))
    except Exception:  # math-verify can raise on exotic input; that is simply not a match
        return False
    finally:
        if left:  # math-verify's per-sample signal.alarm cancels an enclosing timer (rlft's reward timeout): re-arm what is left
            signal.setitimer(signal.ITIMER_REAL, max(left - (time.monotonic() - start), 1e-3))


@register("math_accuracy", description="1.0 when the final answer equals the reference `answer` (math-verify)")
def math_accuracy(prompts, completions, answer, **kwargs) -> list[float | None]:
    """1.0 when the completion's final answer equals ``answer`` (column), else 0.0; None without a reference."""
    scores: list[float | None] = []
    for completion, gold in zip(completions, answer, strict=True):
        if gold is None or str(gold).strip() == "":
            scores.append(None)
            continue
        predicted = extract_answer(text(completion))
        scores.append(1.0 if predicted is not None and equivalent(_reference(str(gold)), predicted) else 0.0)
    return scores
