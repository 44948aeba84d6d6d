"""``PPOConfig``: transformers' ``TrainingArguments`` plus the knobs of PPO (rollout, KL, critic, GAE, clipping).

Batch sizes, in prompts (one completion each)::

    rollout batch = per_device_train_batch_size * gradient_accumulation_steps   (one "step")
    minibatch     = rollout batch / num_mini_batches                            (one optimizer step)
    micro-batch   = at most per_device_train_batch_size rows                    (one forward/backward)

Each step samples a rollout batch, then makes ``num_ppo_epochs * num_mini_batches`` optimizer
steps on it; ``max_steps`` counts rollout batches (when it is not set, ``num_train_epochs`` passes
over the prompts). Defaults follow TRL's former PPOv2 trainer and Ziegler et al. (2019).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

CRITICS = ("separate", "shared")
KL_ESTIMATORS = ("k1", "k3")


@dataclass
class PPOConfig(TrainingArguments):
    """Configuration of ``rlft.ppo.PPOTrainer`` (every TrainingArguments field applies where it makes sense)."""

    learning_rate: float = field(default=3e-6, metadata={"help": "AdamW learning rate of the policy (TRL PPOv2's default)."})
    value_learning_rate: float | None = field(default=None, metadata={"help": "learning rate of the critic; None = learning_rate."})
    # rollout
    max_prompt_length: int | None = field(default=512, metadata={"help": "keep at most this many prompt tokens (the last ones)."})
    max_completion_length: int = field(default=64, metadata={"help": "maximum new tokens per completion."})
    temperature: float = field(default=0.7, metadata={"help": "sampling temperature (log-probs use the same tempered distribution)."})
    top_p: float = field(
        default=1.0,
        metadata={
            "help": "must stay 1.0: nucleus sampling would draw tokens from a truncated distribution while PPO's ratios and KL "
            "use the whole tempered one (biased updates); lower temperature instead"
        },
    )
    missing_eos_penalty: float | None = field(
        default=None, metadata={"help": "subtracted from the score of completions that hit max_completion_length without EOS."}
    )
    # KL penalty against the starting model
    kl_coef: float = field(default=0.05, metadata={"help": "per-token KL penalty coefficient (the start value when adaptive)."})
    kl_estimator: str = field(
        default="k1",
        metadata={
            "help": "per-token KL estimate in the reward penalty: k1 (the log-ratio), the one that is right for a reward; "
            "k3 is refused there (its penalty nearly vanishes near the reference and can point the wrong way)"
        },
    )
    adaptive_kl: bool = field(default=False, metadata={"help": "adapt kl_coef towards target_kl (Ziegler et al. 2019)."})
    target_kl: float = field(default=6.0, metadata={"help": "adaptive KL target, in nats per completion (sum over its tokens)."})
    kl_horizon: int = field(default=10000, metadata={"help": "adaptive KL horizon, in completions."})
    # critic and advantages
    critic: str = field(
        default="separate", metadata={"help": "separate: own backbone (from the reward model or policy); shared: head on the policy."}
    )
    gamma: float = field(default=1.0, metadata={"help": "discount factor of GAE."})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda."})
    whiten_rewards: bool = field(default=False, metadata={"help": "whiten the per-token rewards before GAE."})
    # optimisation
    num_ppo_epochs: int = field(default=4, metadata={"help": "passes over each rollout batch."})
    num_mini_batches: int = field(default=1, metadata={"help": "optimizer steps per pass over a rollout batch."})
    cliprange: float = field(default=0.2, metadata={"help": "policy ratio clip epsilon."})
    cliprange_value: float = field(default=0.2, metadata={"help": "value clip range around the rollout's values."})
    vf_coef: float = field(default=0.1, metadata={"help": "weight of the value loss."})

    def __post_init__(self):
        super().__post_init__()
        problems = []
        if self.critic not in CRITICS:
            problems.append(f"critic must be one of {', '.join(CRITICS)}, got {self.critic!r}")
        if self.kl_estimator == "k3":
            problems.append(
                "kl_estimator k3 is not a correct per-token reward penalty (about k1^2/2 near the reference: almost no "
                "pull back, and it can point the wrong way); rlft's PPO puts the KL in the reward, so use k1"
            )
        elif self.kl_estimator not in KL_ESTIMATORS:
            problems.append(f"kl_estimator must be k1, got {self.kl_estimator!r}")
        if self.rollout_batch_size % self.num_mini_batches:
            problems.append(
                f"num_mini_batches ({self.num_mini_batches}) must divide the rollout batch "
                f"(per_device_train_batch_size * gradient_accumulation_steps = {self.rollout_batch_size})"
            )
        for name in ("max_completion_length", "num_ppo_epochs", "num_mini_batches", "kl_horizon"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.temperature <= 0:
            problems.append(f"temperature must be positive (PPO samples), got {self.temperature}")
        if self.fp16:
            problems.append("fp16 needs a loss scaler, which rlft's PPO does not have; use bf16: true (autocast) instead")
        if self.top_p != 1.0:
            problems.append(
                f"top_p must be 1.0, got {self.top_p}: a truncated sampling distribution is not the one PPO's ratios and KL "
                "are computed under; lower temperature to sample more conservatively"
            )
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def rollout_batch_size(self) -> int:
        """Prompts sampled per step: per_device_train_batch_size * gradient_accumulation_steps."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps
