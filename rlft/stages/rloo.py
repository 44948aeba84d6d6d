"""On-policy RL with TRL's RLOOTrainer (REINFORCE with a leave-one-out baseline).

Same data, reward references, weights and metrics as the ``grpo`` stage; only the advantage
estimate differs (each completion's baseline is the mean reward of the other completions of its prompt).
"""

from __future__ import annotations

from rlft.recipe import RLOOStage
from rlft.stages.context import StageContext, StageResult
from rlft.stages.grpo import rlft_trainer, run_online


def run(cfg: RLOOStage, ctx: StageContext) -> StageResult:
    import trl

    return run_online(cfg, ctx, rlft_trainer(trl.RLOOTrainer))
