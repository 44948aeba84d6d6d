"""SimPO with TRL's experimental CPOTrainer (``trl.experimental.cpo``, ``loss_type: simpo``) — experimental.

Reference-free: the implicit reward is the length-normalised log-probability (``beta`` scales it,
``simpo_gamma`` is the target margin); rlft sets ``cpo_alpha: 0`` (pure SimPO; raise it for CPO's
added NLL term). Same data, held-out split and scorecard as ``dpo``.
"""

from __future__ import annotations

from rlft.recipe import SimPOStage
from rlft.stages.context import StageContext, StageResult
from rlft.stages.dpo import run_preference


def run(cfg: SimPOStage, ctx: StageContext) -> StageResult:
    from trl.experimental.cpo import CPOTrainer

    print(f"[{cfg.name}] simpo runs on trl.experimental (CPOTrainer), whose API may change between TRL releases", flush=True)
    return run_preference(cfg, ctx, CPOTrainer)
