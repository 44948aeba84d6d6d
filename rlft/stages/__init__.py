"""One module per stage kind, each exposing ``run(cfg, ctx) -> StageResult``.

Every stage module reads in the same order: data (``inputs.load_split``) -> rewards, checked against the
data's columns before any model loads -> the starting model -> the TRL config (``trl_config``) and the rows'
lengths -> the held-out scorecard of the starting model (``heldout.begin_scorecard``) -> the trainer ->
train (``train_loop``) -> the metrics, where a figure the trainer did not report is NaN
(``train_loop.held_out_metrics``) -> save (``saving``) -> the scorecard of the saved model with the paired
differences (``heldout.end_scorecard``) -> ``StageResult``. What only stages share lives beside them:
``context``, ``inputs``, ``trl_config``, ``heldout``, ``train_loop``, ``progress``, ``saving``, ``guards``,
``merging``, ``classification``.
"""

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
    "expert_iteration": "rlft.stages.self_improve",
    "iterative_dpo": "rlft.stages.self_improve",
    "online_dpo": "rlft.stages.online_dpo",
    "eval": "rlft.stages.eval",
    "merge": "rlft.stages.merge",
}


def get(kind: str):
    return importlib.import_module(MODULES[kind])
