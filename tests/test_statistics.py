"""The paired bootstrap, permutation p-value, power estimate and mean interval that every rlft comparison uses."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from rlft.evaluation.statistics import RESAMPLES, MeanInterval, PairedDelta, bootstrap_mean, paired_bootstrap, verdict

Z_SUM = 1.96 + 0.8416  # alpha 0.05 two-sided, 80% power


def _effect(delta: float, sd: float, n: int, seed: int = 7) -> np.ndarray:
    """n differences with exactly this mean and sample standard deviation."""
    z = np.random.default_rng(seed).normal(size=n)
    z = (z - z.mean()) / z.std(ddof=1)
    return delta + sd * z


def test_identical_models_show_no_difference():
    scores = np.random.default_rng(0).random(50).tolist()
    d = paired_bootstrap(scores, scores)
    assert (d.n, d.delta, d.ci_low, d.ci_high) == (50, 0.0, 0.0, 0.0)
    assert d.p_value == 1.0
    assert not d.separable
    assert d.n_needed is None
    assert d.mean_a == d.mean_b == pytest.approx(float(np.mean(scores)))
    assert "/n_needed" not in " ".join(d.metrics("eval/x"))


def test_right_on_every_prompt_the_other_gets_wrong():
    d = paired_bootstrap([0.0] * 50, [1.0] * 50)
    assert (d.n, d.mean_a, d.mean_b, d.delta) == (50, 0.0, 1.0, 1.0)
    assert (d.ci_low, d.ci_high) == (1.0, 1.0)
    assert d.separable
    # Only the all-same-sign flips reach |mean| = 1 (chance 2 / 2**50), so none of the 2,000 does:
    # p is the smallest the definition allows, the observed labelling alone.
    assert d.p_value == 1 / (1 + RESAMPLES)
    # No spread: the floor, the fewest prompts on which a sign-flip test can reach p < 0.05 (2 / 2**6 < 0.05 < 2 / 2**5).
    assert d.n_needed == 6
    assert (d.resamples, d.seed) == (RESAMPLES, 0)


def test_reverse_direction_mirrors_delta_and_interval():
    rng = np.random.default_rng(3)
    a, b = rng.random(60), rng.random(60) + 0.1
    ab, ba = paired_bootstrap(a, b), paired_bootstrap(b, a)
    assert ba.delta == pytest.approx(-ab.delta, abs=1e-12)
    assert ba.ci_low == pytest.approx(-ab.ci_high, abs=1e-12)
    assert ba.ci_high == pytest.approx(-ab.ci_low, abs=1e-12)
    assert (ba.mean_a, ba.mean_b) == (ab.mean_b, ab.mean_a)
    assert ba.p_value == ab.p_value
    assert ba.n_needed == ab.n_needed
    assert ab.ci_low < ab.delta < ab.ci_high

    ones = paired_bootstrap([1.0] * 50, [0.0] * 50)
    assert (ones.delta, ones.ci_low, ones.ci_high) == (-1.0, -1.0, -1.0)
    assert ones.separable


def test_none_drops_the_prompt_on_both_sides():
    a = [1.0, None, 0.5, 0.0, True, 0.25]
    b = [0.5, 1.0, None, 1.0, 1.0, float("nan")]
    d = paired_bootstrap(a, b)
    # Pairs scored on both sides: prompts 0, 3 and 4 -> a = (1, 0, 1), b = (0.5, 1, 1).
    assert d.n == 3
    assert d.mean_a == pytest.approx(2 / 3)
    assert d.mean_b == pytest.approx(2.5 / 3)
    assert d.delta == pytest.approx((-0.5 + 1.0 + 0.0) / 3)


def test_lengths_must_match():
    with pytest.raises(ValueError, match=r"3 scores for a and 2 for b"):
        paired_bootstrap([1, 0, 1], [1, 0])


def test_nothing_scored_on_both_sides_is_nan_not_an_error():
    d = paired_bootstrap([None, 1.0], [0.5, None])
    assert d.n == 0
    assert all(math.isnan(v) for v in (d.mean_a, d.mean_b, d.delta, d.ci_low, d.ci_high, d.p_value))
    assert d.n_needed is None
    assert not d.separable
    assert set(d.metrics("k")) == {"k", "k/ci_low", "k/ci_high", "k/p_value", "k/n"}
    assert d.describe() == "n=0 — no prompt scored on both sides"
    assert paired_bootstrap([], []).n == 0


def test_equal_values_give_an_exact_degenerate_interval():
    # 30 x 0.1 sums to 3.0000000000000004: the mean and interval must still be 0.1 itself, delta inside it.
    m = bootstrap_mean([0.1] * 30)
    assert (m.mean, m.ci_low, m.ci_high) == (0.1, 0.1, 0.1)
    d = paired_bootstrap([0.0] * 30, [0.1] * 30)
    assert (d.delta, d.ci_low, d.ci_high) == (0.1, 0.1, 0.1)
    assert d.describe().startswith("+0.100 [+0.100, +0.100], p<0.001, n=30 — significant")


def test_one_prompt_gives_the_degenerate_interval():
    d = paired_bootstrap([0.25], [1.0])
    assert (d.n, d.delta, d.ci_low, d.ci_high) == (1, 0.75, 0.75, 0.75)
    assert d.n_needed is None  # no spread can be estimated from one difference


def test_seeded():
    rng = np.random.default_rng(11)
    a, b = rng.random(80), rng.random(80)
    first, again, other = paired_bootstrap(a, b, seed=5), paired_bootstrap(a, b, seed=5), paired_bootstrap(a, b, seed=6)
    assert first == again
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)
    assert first.delta == other.delta
    assert other.ci_low == pytest.approx(first.ci_low, abs=0.03)
    assert other.ci_high == pytest.approx(first.ci_high, abs=0.03)
    assert bootstrap_mean(a, seed=5) == bootstrap_mean(a, seed=5) != bootstrap_mean(a, seed=6)


def test_interval_matches_the_normal_approximation():
    d = np.random.default_rng(1234).normal(0.3, 1.0, 400)
    r = paired_bootstrap(np.zeros(400), d)
    half = 1.96 * d.std(ddof=1) / math.sqrt(400)
    assert r.delta == pytest.approx(d.mean())
    assert r.ci_low == pytest.approx(r.delta - half, abs=0.1 * half)
    assert r.ci_high == pytest.approx(r.delta + half, abs=0.1 * half)
    # The interval of the differences is the bootstrap interval of their mean, with the same seed.
    m = bootstrap_mean(d)
    assert (m.ci_low, m.ci_high) == pytest.approx((r.ci_low, r.ci_high))


def test_p_value_counts_flips_as_extreme_as_observed():
    # Three differences of the same sign: exactly 2 of the 8 sign patterns are as extreme, p = 0.25.
    d = paired_bootstrap([0.0, 0.0, 0.0], [0.1, 0.2, 0.3], resamples=20_000)
    assert d.p_value == pytest.approx(0.25, abs=0.015)


def test_small_noisy_effect_needs_more_prompts():
    diffs = _effect(0.1, 0.6, 32)
    small = paired_bootstrap(np.full(32, 0.5), 0.5 + diffs)
    assert not small.separable
    assert small.p_value > 0.05
    d_obs = np.full(32, 0.5) + diffs - 0.5
    by_hand = math.ceil((Z_SUM * np.std(d_obs, ddof=1) / abs(np.mean(d_obs))) ** 2)  # (2.8016 * 0.6 / 0.1) ** 2 = 282.6
    assert by_hand == 283
    assert abs(small.n_needed - by_hand) <= 1
    assert small.n_needed > small.n

    big = paired_bootstrap(np.full(320, 0.5), 0.5 + np.tile(diffs, 10))
    assert big.delta == pytest.approx(small.delta)
    assert big.separable
    assert big.p_value < 0.05


def test_bootstrap_mean_of_a_win_rate():
    wins = [1, 1, 0.5, 0, 1, 0.5, 0, 1, 1, 0, None]
    m = bootstrap_mean(wins)
    assert m.n == 10
    assert m.mean == pytest.approx(6 / 10)
    assert 0.0 <= m.ci_low < m.mean < m.ci_high <= 1.0
    assert m.metrics("eval/win_rate") == {
        "eval/win_rate": m.mean,
        "eval/win_rate/ci_low": m.ci_low,
        "eval/win_rate/ci_high": m.ci_high,
        "eval/win_rate/n": 10,
    }
    assert bootstrap_mean([1.0] * 30) == MeanInterval(1.0, 1.0, 1.0, 30)
    assert bootstrap_mean([True, True]).mean == 1.0
    empty = bootstrap_mean([None, None])
    assert empty.n == 0 and math.isnan(empty.mean) and math.isnan(empty.ci_low)


def test_metrics_keys():
    d = paired_bootstrap([0.0] * 50, [1.0] * 50)
    assert d.metrics("eval/reward/accuracy") == {
        "eval/reward/accuracy": 1.0,
        "eval/reward/accuracy/ci_low": 1.0,
        "eval/reward/accuracy/ci_high": 1.0,
        "eval/reward/accuracy/p_value": 1 / (1 + RESAMPLES),
        "eval/reward/accuracy/n": 50,
        "eval/reward/accuracy/n_needed": 6,
    }


def test_describe():
    significant = PairedDelta(200, 0.5, 0.62, 0.12, 0.05, 0.19, 0.002, 30, RESAMPLES, 0)
    assert significant.describe() == "+0.120 [+0.050, +0.190], p=0.002, n=200 — significant"
    unclear = PairedDelta(32, 0.5, 0.57, 0.07, -0.08, 0.22, 0.36, 210, RESAMPLES, 0)
    assert unclear.describe() == (
        "+0.070 [-0.080, +0.220], p=0.36, n=32 — not separable at this sample size (~210 prompts would be needed)"
    )
    assert unclear.describe(digits=2).startswith("+0.07 [-0.08, +0.22], ")

    # The same words from real results.
    assert paired_bootstrap([0.0] * 50, [1.0] * 50).describe() == "+1.000 [+1.000, +1.000], p<0.001, n=50 — significant"
    small = paired_bootstrap(np.full(32, 0.5), 0.5 + _effect(0.1, 0.6, 32))
    text = small.describe()
    assert text.startswith(f"+0.100 [{small.ci_low:+.3f}, {small.ci_high:+.3f}], p={small.p_value:.2g}, n=32 — ")
    assert text.endswith("not separable at this sample size (~283 prompts would be needed)")
    same = paired_bootstrap([0.5] * 10, [0.5] * 10)
    assert same.describe() == "+0.000 [+0.000, +0.000], p=1.0, n=10 — not separable at this sample size"


def test_fast_enough_for_a_thousand_prompts():
    rng = np.random.default_rng(0)
    a, b = rng.random(1000), rng.random(1000)
    start = time.perf_counter()
    d = paired_bootstrap(a, b, resamples=2000)
    elapsed = time.perf_counter() - start
    assert d.n == 1000
    assert elapsed < 1.0, f"2000 resamples of 1000 prompts took {elapsed:.2f}s"


def test_an_interval_that_excludes_zero_is_not_enough_at_a_few_prompts():
    # 4 gains and 4 ties in 8 prompts: the percentile interval is [+0.125, +0.875], but the sign-flip p is ~0.125
    # (the exact sign test's 2/16): the two tests disagree, and the words say "not separable", not "significant".
    d = paired_bootstrap([0.0] * 8, [1.0] * 4 + [0.0] * 4)
    assert d.ci_low > 0 and 0.1 < d.p_value < 0.16 and not d.separable
    assert d.describe().split(" — ")[1].startswith("not separable")
    assert verdict(d.ci_low, d.ci_high, d.n, d.n_needed, p_value=d.p_value).startswith("not separable")
    assert verdict(d.ci_low, d.ci_high, d.n, d.n_needed) == "significant gain"  # the interval alone would say so
    big = paired_bootstrap([0.0] * 40, [1.0] * 20 + [0.0] * 20)
    assert big.separable and verdict(big.ci_low, big.ci_high, big.n, big.n_needed, p_value=big.p_value) == "significant gain"
