"""Online DPO with TRL's experimental ``OnlineDPOTrainer``: for each prompt the policy samples two completions, the
stage's rewards (any reward reference, weighted as in GRPO) pick the chosen one, and a DPO step follows.

The same data, reward references, held-out scorecard and early stopping on held-out reward as the ``grpo`` stage
(``rlft.stages.grpo.run_online``); the reference model is the starting model (with LoRA: the adapter turned off).
``trl:`` holds ``trl.experimental.online_dpo.OnlineDPOConfig`` keys (``beta``, ``loss_type``, ``max_new_tokens``,
``temperature``, ``missing_eos_penalty``...). TRL marks the trainer experimental: its API may change between TRL versions.
"""

from __future__ import annotations

from rlft.recipe import OnlineDPOStage
from rlft.stages.context import StageContext, StageResult
from rlft.stages.grpo import run_online


def run(cfg: OnlineDPOStage, ctx: StageContext) -> StageResult:
    from trl.experimental.online_dpo import OnlineDPOTrainer

    return run_online(cfg, ctx, OnlineDPOTrainer)
