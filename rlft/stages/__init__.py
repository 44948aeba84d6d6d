"""One module per stage kind, each exposing ``run(cfg, ctx) -> StageResult``."""

import importlib

MODULES = {
    "sft": "rlft.stages.sft",
    "reward_model": "rlft.stages.reward_model",
    "classifier": "rlft.stages.classifier",
    "dpo": "rlft.stages.dpo",
    "orpo": "rlft.stages.orpo",
    "simpo": "rlft.stages.simpo",
    "kto": "rlft.stages.kto",
    "grpo": "rlft.stages.grpo",
    "rloo": "rlft.stages.rloo",
    "ppo": "rlft.stages.ppo",
    "eval": "rlft.stages.eval",
    "merge": "rlft.stages.merge",
}


def get(kind: str):
    return importlib.import_module(MODULES[kind])
