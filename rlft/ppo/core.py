"""The pure math of PPO on token sequences: masked statistics, GAE, the clipped losses, KL control.

Shapes: ``B`` completions, ``T`` completion tokens (right-padded). ``mask`` is 1.0 for real tokens
(up to and including EOS) and 0.0 for padding; every function ignores padded positions. Nothing
here touches a model, so each piece is tested on hand-computed numbers (tests/test_ppo.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

RATIO_LOG_CLAMP = 20.0  # |log(pi / pi_old)| at most this before exp (OpenRLHF's bound)
KL_LOG_CLAMP = 10.0  # |log(pi / pi_ref)| at most this in the KL estimate (OpenRLHF's bound)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1 (a scalar)."""
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance of ``x`` over masked positions (a scalar; 0 with fewer than two)."""
    n = mask.sum()
    centred = (x - masked_mean(x, mask)) * mask
    return (centred**2).sum() / (n - 1).clamp(min=1.0)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Standardise ``x`` over masked positions (mean 0 unless ``shift_mean=False``, std 1); padding becomes 0."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation; returns ``(advantages, returns)``, both (B, T).

    ``rewards``, ``values``: (B, T), the value ``V_t`` being the critic's estimate before token t.
    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = delta_t + gamma * lam * A_{t+1}``, where
    the value and advantage after a completion's last real token are 0 (the episode ends there).
    ``returns = advantages + values`` (the value target). Padded positions are 0 in both.
    """
    rewards, values = rewards * mask, values * mask
    steps = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(steps)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantages[:, t] = (delta + gamma * lam * next_advantage) * mask[:, t]
        next_value, next_advantage = values[:, t], advantages[:, t]  # both 0 at padding
    return advantages, (advantages + values) * mask


@dataclass
class PolicyLoss:
    """The clipped surrogate objective of one (micro-)batch (scalars)."""

    loss: torch.Tensor  # masked mean of max(-A * r, -A * clip(r, 1 - eps, 1 + eps))
    clip_fraction: torch.Tensor  # share of tokens where the clipped term was the larger (active) one
    approx_kl: torch.Tensor  # k3 estimate of KL(old || new): mean of (r - 1) - log r


def policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, cliprange: float
) -> PolicyLoss:
    """PPO's clipped policy loss; all inputs (B, T), ``old_logprobs`` and ``advantages`` constant."""
    log_ratio = ((logprobs - old_logprobs) * mask).clamp(-RATIO_LOG_CLAMP, RATIO_LOG_CLAMP)  # exp() stays finite
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped > unclipped).float(), mask)
        approx_kl = masked_mean(ratio - 1.0 - log_ratio, mask)
    return PolicyLoss(loss, clip_fraction, approx_kl)


@dataclass
class ValueLoss:
    """The clipped value loss of one (micro-)batch (scalars)."""

    loss: torch.Tensor  # 0.5 * masked mean of max((V - R)^2, (V_clipped - R)^2)
    clip_fraction: torch.Tensor  # share of tokens where the clipped error was the larger one


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, cliprange_value: float
) -> ValueLoss:
    """PPO's clipped value loss: the new value may move at most ``cliprange_value`` from the rollout's."""
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped > unclipped).float(), mask)
    return ValueLoss(loss, clip_fraction)


def per_token_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from sampled tokens' log-probs, (B, T).

    ``k1`` = log pi - log pi_ref (unbiased, can be negative per token); ``k3`` = exp(-k1) - 1 + k1
    (unbiased, never negative; Schulman's "Approximating KL divergence"). As a fixed per-token reward
    penalty only k1 is right: k3's value is ~k1^2/2 near the reference, so the penalty it gives
    almost vanishes there and its direction can be wrong (Tang & Munos 2025); rlft's PPO uses k3 for
    its logged approx-KL between old and new policy, not as the penalty. The log-ratio is clamped to
    +-10.
    """
    log_ratio = (logprobs - ref_logprobs).clamp(-KL_LOG_CLAMP, KL_LOG_CLAMP)  # as OpenRLHF: k3's exp() stays finite
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.exp(-log_ratio) - 1.0 + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; use k1 or k3")


def shape_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per-token rewards (B, T): ``-kl_coef * kl`` on every real token, plus the score (B,) on the last one."""
    rewards = -kl_coef * kl * mask
    last = (mask.sum(dim=1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(scores), device=scores.device), last] += scores
    return rewards


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each categorical distribution over the last dimension: (..., V) -> (...)."""
    log_probs = torch.log_softmax(logits, dim=-1)
    return -(log_probs.exp() * log_probs).sum(dim=-1)


def logprobs_of(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """Log-probability of each token under its logits: (B, T, V), (B, T) -> (B, T)."""
    return torch.log_softmax(logits, dim=-1).gather(-1, token_ids.unsqueeze(-1)).squeeze(-1)


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - Var(returns - values) / Var(returns) over masked tokens: 1 is a perfect critic, <= 0 a useless one."""
    var_returns = masked_var(returns, mask)
    return 1.0 - masked_var(returns - values, mask) / var_returns.clamp(min=1e-8)


class FixedKLController:
    """A constant KL coefficient."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        """Nothing to adapt."""


class AdaptiveKLController:
    """Ziegler et al. (2019): move the coefficient so that the KL tracks a target.

    ``error = clip(kl / target - 1, -0.2, 0.2)`` and ``coef *= 1 + error * n_steps / horizon``, where
    ``kl`` is the batch's mean KL per completion and ``n_steps`` the completions in the batch.
    """

    def __init__(self, kl_coef: float, target: float, horizon: int):
        self.value = kl_coef
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
