"""rlft's own PPO (actor-critic with GAE), as TRL 1.13+ has none: config, pure math, rollout, critic, trainer.

``PPOConfig`` imports transformers; the trainer loads lazily, so ``from rlft.ppo import PPOConfig``
stays as light as TRL's configs.
"""

from __future__ import annotations

from rlft.ppo.config import PPOConfig

__all__ = ["PPOConfig", "PPOTrainer"]


def __getattr__(name: str):
    if name == "PPOTrainer":
        from rlft.ppo.trainer import PPOTrainer

        return PPOTrainer
    raise AttributeError(f"module 'rlft.ppo' has no attribute {name!r}")
