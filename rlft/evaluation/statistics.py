"""Uncertainty for every number rlft compares: paired A-vs-B deltas and intervals of a mean.

The held-out scorecard, the eval stage, ``rlft compare`` and win rates all call these two functions,
so every "before/after" or "A vs B" figure rlft prints comes with its sample size and interval::

    d = paired_bootstrap(base_scores, tuned_scores)      # per-prompt scores, same prompts, same order
    d.describe()  # '+0.120 [+0.050, +0.190], p=0.002, n=200 — significant'
    d.metrics("eval/reward/accuracy")  # {'eval/reward/accuracy': 0.12, 'eval/reward/accuracy/ci_low': 0.05, ...}

    w = bootstrap_mean(per_prompt_wins)                  # 1 win, 0.5 tie, 0 loss
    w.metrics("eval/win_rate")

Both are percentile bootstraps over prompts (the unit that was sampled), seeded so a rerun prints the
same interval. Only numpy: this module is imported by light code paths and must not pull in torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
CONFIDENCE = 0.95

# A two-sided test at alpha 0.05 with 80% power: z_{0.975} + z_{0.80}.
_Z_ALPHA = 1.96
_Z_POWER = 0.8416
# The fewest prompts on which a two-sided paired sign-flip test can reach p < 0.05 at all: with n
# differences the most extreme outcome has exact p = 2 / 2**n, and 2 / 2**6 = 0.03 is the first below
# 0.05. I floor n_needed here, so a huge or noiseless effect never claims 1 or 2 prompts would do.
_MIN_SEPARABLE_N = 6
# Resample in chunks of at most this many drawn values, so memory stays ~100 MB whatever n is.
_CHUNK_VALUES = 1 << 22


@dataclass(frozen=True)
class PairedDelta:
    """b minus a on the same prompts: mean difference, percentile-bootstrap interval, p-value, and a power estimate.

    ``n == 0`` (nothing scored on both sides) gives NaN means, delta, interval and p-value, and no
    ``n_needed``; callers log it as is rather than special-casing a reward that applied to no prompt.
    """

    n: int  # prompts scored on both sides (None on either side: the prompt is left out)
    mean_a: float
    mean_b: float
    delta: float  # mean of (b - a) over those prompts
    ci_low: float
    ci_high: float  # paired percentile bootstrap over prompts (seeded), at `confidence`
    p_value: float  # two-sided paired sign-flip permutation test of "no difference"; 1.0 when every difference is 0
    n_needed: int | None  # prompts an alpha-0.05, 80%-power paired test needs to separate this effect (see paired_bootstrap)
    resamples: int
    seed: int
    confidence: float = CONFIDENCE

    @property
    def separable(self) -> bool:
        """The interval excludes 0 and the sign-flip test agrees (p < 0.05); False for n == 0, whose interval is NaN.

        Both, because at a few prompts the percentile bootstrap is too narrow: 4 gains and 4 ties in 8 prompts give the
        interval [+0.125, +0.875] while the sign-flip p is 0.125 (the exact sign test's 2/16)."""
        return (self.ci_low > 0 or self.ci_high < 0) and self.p_value < 1 - self.confidence

    def metrics(self, key: str, *, value: bool = True) -> dict[str, float]:
        """W&B/manifest keys: ``{key: delta, key/ci_low, key/ci_high, key/p_value, key/n, key/n_needed}``.

        ``key/n_needed`` is left out when it is None (no effect, or too few prompts to estimate one). ``value=False``:
        the interval keys only, for a difference the caller reports itself.
        """
        out: dict[str, float] = {
            **({key: self.delta} if value else {}),
            f"{key}/ci_low": self.ci_low,
            f"{key}/ci_high": self.ci_high,
            f"{key}/p_value": self.p_value,
            f"{key}/n": self.n,
        }
        if self.n_needed is not None:
            out[f"{key}/n_needed"] = self.n_needed
        return out

    def describe(self, digits: int = 3) -> str:
        """One line for people, e.g.

        ``'+0.120 [+0.050, +0.190], p=0.002, n=200 — significant'`` or
        ``'+0.070 [-0.080, +0.220], p=0.36, n=32 — not separable at this sample size (~210 prompts would be needed)'``.
        """
        if self.n == 0:
            return "n=0 — no prompt scored on both sides"
        head = f"{self.delta:+.{digits}f} [{self.ci_low:+.{digits}f}, {self.ci_high:+.{digits}f}], p{_format_p(self.p_value)}, n={self.n}"
        if self.separable:
            return f"{head} — significant"
        verdict = f"{head} — not separable at this sample size"
        if self.n_needed is not None and self.n_needed > self.n:
            verdict += f" (~{self.n_needed} prompts would be needed)"
        return verdict


@dataclass(frozen=True)
class MeanInterval:
    """A mean with its percentile-bootstrap interval over the values (NaN throughout when n == 0)."""

    mean: float
    ci_low: float
    ci_high: float
    n: int
    confidence: float = CONFIDENCE

    def metrics(self, key: str) -> dict[str, float]:
        """W&B/manifest keys: ``{key: mean, key/ci_low, key/ci_high, key/n}``."""
        return {key: self.mean, f"{key}/ci_low": self.ci_low, f"{key}/ci_high": self.ci_high, f"{key}/n": self.n}


def paired_bootstrap(
    a: Iterable[float | bool | None],
    b: Iterable[float | bool | None],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> PairedDelta:
    """Compare two models scored on the same prompts: ``delta = mean(b - a)`` with interval and p-value.

    ``a`` and ``b`` are per-prompt scores in the same prompt order (floats, bools or None; a NaN counts
    as None). A prompt missing on either side is left out of everything, so ``n`` counts only pairs.

    - interval: resample prompts with replacement ``resamples`` times, take the quantiles of the
      resampled mean differences at ``(1 - confidence) / 2`` and ``1 - (1 - confidence) / 2``;
    - p-value: flip the sign of each difference at random ``resamples`` times and count flips whose
      ``|mean|`` is at least the observed one; ``p = (1 + count) / (1 + resamples)``, so it is never 0
      (the smallest is ``1 / (1 + resamples)``) and is exactly 1.0 when every difference is 0;
    - ``n_needed``: ``ceil(((1.96 + 0.8416) * sd / |delta|) ** 2)`` with ``sd`` the sample standard
      deviation of the differences, floored at 6 (no two-sided sign-flip test on fewer prompts can
      reach p < 0.05; this is also the answer when every difference is the same nonzero value); None
      when ``delta == 0`` (nothing to detect) or ``n < 2`` (no spread to estimate).

    Both resamplings are drawn from ``numpy.random.default_rng(seed)``, interval first, so the interval
    equals ``bootstrap_mean(b - a, seed=seed)``'s. Raises ValueError when ``a`` and ``b`` differ in length.
    """
    _check_settings(resamples, confidence)
    a_arr, b_arr = _as_scores(a), _as_scores(b)
    if a_arr.shape != b_arr.shape:
        raise ValueError(
            f"paired_bootstrap needs the two models' scores on the same prompts in the same order, "
            f"but got {a_arr.size} scores for a and {b_arr.size} for b; pass None for a prompt one side did not score"
        )
    both = ~(np.isnan(a_arr) | np.isnan(b_arr))
    a_arr, b_arr = a_arr[both], b_arr[both]
    n = int(a_arr.size)
    if n == 0:
        nan = math.nan
        return PairedDelta(0, nan, nan, nan, nan, nan, nan, None, resamples, seed, confidence)

    diffs = b_arr - a_arr
    rng = np.random.default_rng(seed)
    delta, ci_low, ci_high = _bootstrap_interval(diffs, rng, resamples, confidence)
    p_value = _sign_flip_p(diffs, rng, resamples)
    return PairedDelta(
        n=n,
        mean_a=float(a_arr.mean()),
        mean_b=float(b_arr.mean()),
        delta=delta,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p_value,
        n_needed=_n_needed(diffs, delta),
        resamples=resamples,
        seed=seed,
        confidence=confidence,
    )


def bootstrap_mean(
    values: Iterable[float | bool | None],
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> MeanInterval:
    """Percentile bootstrap interval of a mean, e.g. a win rate from per-prompt 1 win, 0.5 tie, 0 loss.

    None (or NaN) values are left out; ``n`` counts the rest. All values equal gives the degenerate
    interval ``[v, v]``; no values gives NaN throughout with ``n == 0``.
    """
    _check_settings(resamples, confidence)
    arr = _as_scores(values)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return MeanInterval(math.nan, math.nan, math.nan, 0, confidence)
    mean, ci_low, ci_high = _bootstrap_interval(arr, np.random.default_rng(seed), resamples, confidence)
    return MeanInterval(mean, ci_low, ci_high, int(arr.size), confidence)


def _as_scores(values: Iterable[float | bool | None]) -> np.ndarray:
    """Scores as a float array with NaN for None."""
    if isinstance(values, np.ndarray) and values.dtype != object:
        return values.astype(float).ravel()
    return np.array([math.nan if v is None else float(v) for v in values], dtype=float)


def _check_settings(resamples: int, confidence: float) -> None:
    if int(resamples) != resamples or resamples < 1:
        raise ValueError(f"resamples must be a positive whole number, got {resamples!r}; the default is {RESAMPLES}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}; the default is {CONFIDENCE}")


def _bootstrap_interval(x: np.ndarray, rng: np.random.Generator, resamples: int, confidence: float) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``x`` and the percentile interval of its resampled means."""
    n = x.size
    if np.ptp(x) == 0:
        # Every value equal: the interval is that value exactly, not that value give or take rounding.
        v = float(x[0])
        return v, v, v
    means = np.empty(resamples)
    start = 0
    for rows in _chunks(resamples, n):
        idx = rng.integers(0, n, size=(rows, n))
        means[start : start + rows] = x[idx].mean(axis=1)
        start += rows
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(x.mean()), float(low), float(high)


def _sign_flip_p(diffs: np.ndarray, rng: np.random.Generator, resamples: int) -> float:
    """Two-sided paired sign-flip permutation p-value of mean(diffs) == 0, counting the observed labelling."""
    # All differences 0: every flip ties the observed 0, so count == resamples and p is exactly 1.0.
    n = diffs.size
    observed = abs(diffs.sum()) / n
    # A flip that reproduces the observed |mean| must count; a BLAS sum may differ from numpy's in the last bits.
    tol = 1e-9 * float(np.abs(diffs).mean())
    count = 0
    for rows in _chunks(resamples, n):
        signs = np.where(rng.random((rows, n)) < 0.5, -1.0, 1.0)
        count += int(np.count_nonzero(np.abs(signs @ diffs) / n >= observed - tol))
    return (1 + count) / (1 + resamples)


def _n_needed(diffs: np.ndarray, delta: float) -> int | None:
    """Prompts for an alpha-0.05, 80%-power paired z-test to separate ``delta`` given the spread of ``diffs``."""
    if delta == 0 or diffs.size < 2:
        return None
    sd = float(diffs.std(ddof=1))
    return max(_MIN_SEPARABLE_N, math.ceil(((_Z_ALPHA + _Z_POWER) * sd / abs(delta)) ** 2))


def _chunks(resamples: int, n: int):
    """Row counts summing to ``resamples``, each chunk holding at most ~_CHUNK_VALUES draws."""
    rows = max(1, _CHUNK_VALUES // n)
    for start in range(0, resamples, rows):
        yield min(rows, resamples - start)


def _format_p(p: float) -> str:
    """'=0.002', '=0.36', '=1.0', or '<0.001' (2,000 resamples cannot resolve a smaller p-value)."""
    if p < 0.001:
        return "<0.001"
    text = f"{p:.2g}"
    return f"={text}" if "." in text else f"={text}.0"


def verdict(
    ci_low: float | None,
    ci_high: float | None,
    n: float | None,
    n_needed: float | None,
    *,
    p_value: float | None = None,
    gain: str = "significant gain",
    loss: str = "significant loss",
) -> str:
    """What an interval of a difference says, in words: ``gain``/``loss`` when it excludes 0 (and, given ``p_value``,
    the sign-flip test agrees: p < 0.05), an exact tie, or ``not separable at this sample size`` with the prompts
    that would separate the observed effect."""
    if ci_low is None or ci_high is None or math.isnan(ci_low) or math.isnan(ci_high):
        return "no prompt scored on both sides"
    if ci_low == ci_high == 0:
        return "no difference on any prompt"
    if (ci_low > 0 or ci_high < 0) and (p_value is None or p_value < 1 - CONFIDENCE):
        return gain if ci_low > 0 else loss
    more = f"; ~{n_needed:.0f} would separate this effect" if n_needed and n and n_needed > n else ""
    return f"not separable at this sample size{more}"
