"""ORPO with TRL's experimental ORPOTrainer (``trl.experimental.orpo``) — experimental in rlft too.

Odds-ratio preference optimisation: an SFT loss on the chosen answer plus a log-odds-ratio term
(weight ``beta`` under ``trl:``), no reference model, so it can start from the base model without an
SFT stage. Same data, held-out split and scorecard as ``dpo``.
"""

from __future__ import annotations

from rlft.recipe import ORPOStage
from rlft.stages.context import StageContext, StageResult
from rlft.stages.dpo import run_preference


def run(cfg: ORPOStage, ctx: StageContext) -> StageResult:
    from trl.experimental.orpo import ORPOTrainer

    print(f"[{cfg.name}] orpo runs on trl.experimental, whose API may change between TRL releases", flush=True)
    return run_preference(cfg, ctx, ORPOTrainer)
