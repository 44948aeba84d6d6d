"""On-policy RL with rlft's own PPO (actor-critic, GAE, KL penalty to the starting model).

TRL 1.16 has no PPO trainer, so this stage drives ``rlft.ppo.PPOTrainer``; ``trl:`` holds
``rlft.ppo.PPOConfig`` keys (TrainingArguments plus PPO's). Rewards resolve as for GRPO, weights
included. The critic (``trl.critic``) is ``separate`` — its own backbone, started from the reward
model when the first reward is ``model:``, else from the starting policy — or ``shared`` (a head on
the policy). With LoRA both policy and a separate critic train adapters; the reference is the
policy with its adapter disabled. Saves the policy (merged) under ``model/`` and the critic under
``value_model/``, then scores greedy completions to held-out prompts with the same rewards (the
common scorecard: ``eval/reward/<name>``, ``eval/kl_to_ref``, ``baseline/...``).

Per-step metrics are logged as ``train/<key>``, with TRL GRPO's names where they overlap
(``reward``, ``rewards/<name>/mean``, ``kl``, ``entropy``, ``completions/mean_length``), PPO's own
under ``ppo/`` and timings under ``time/``. The stage runs in one process. With ``early_stopping:``
it scores held-out prompts every N steps and ends with the policy and critic of the best evaluation
(``rlft.training.early_stopping``).
"""

from __future__ import annotations

import json
import os
import time

from rlft.errors import RlftError
from rlft.layout import StageLayout
from rlft.recipe import PPOStage
from rlft.stages.context import StageContext, StageResult
from rlft.stages.heldout import begin_scorecard, end_scorecard
from rlft.stages.inputs import load_split, load_start_model, lora_config
from rlft.stages.progress import step_line
from rlft.stages.saving import save_model
from rlft.stages.train_loop import count_parameters, final_train_metrics
from rlft.stages.trl_config import trl_config_for
from rlft.training.checkpoints import Every, last_checkpoint, replay_lost_steps
from rlft.training.early_stopping import watch_ppo
from rlft.training.guards import guard_ppo


def _resume_point(cfg: PPOStage, ctx: StageContext, args):
    """The last complete checkpoint of an interrupted attempt, with its steps replayed into W&B where they were lost."""
    args.save_total_limit = args.save_total_limit or cfg.checkpoint.keep
    resume = last_checkpoint(args.output_dir)
    if resume is None:
        return None
    print(f"[{cfg.name}] resuming from {resume.name} (weights, optimizer, scheduler, RNG and data position restored)", flush=True)
    history = json.loads((resume / "ppo_state.json").read_text())["log_history"]
    rows = [{"_step": e["step"], **{f"train/{k}": v for k, v in e.items() if k != "step"}} for e in history]
    ctx.tracker.resumed_from(max((e["step"] for e in history), default=0))  # history.jsonl: what came after is redone
    replay_lost_steps(
        rows, step_key="_step", log=lambda r: ctx.tracker.replay({k: v for k, v in r.items() if k != "_step"}, step=r["_step"])
    )
    return resume


def run(cfg: PPOStage, ctx: StageContext) -> StageResult:
    from transformers import set_seed

    from rlft.ppo import PPOTrainer
    from rlft.ppo.value import critic_start, load_value_model

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RlftError(
            "the ppo stage runs in one process; rlft's PPO trainer does not split work across processes",
            where=f"stages.{cfg.name}.launch",
            fix=f"launch this stage without accelerate: stages.{cfg.name}.launch.num_processes=1",
        )
    train, test = load_split(cfg, ctx, required=cfg.required_columns)
    label = ctx.notes.data["train"]

    rewards = ctx.resolve_rewards(cfg.rewards, columns=train.column_names, data_label=label, where=f"stages.{cfg.name}.rewards")

    args = trl_config_for(cfg, str(ctx.paths.trainer), report_to=ctx.tracker.report_to, seed=ctx.seed_for(cfg))
    set_seed(args.seed)  # LoRA and value-head initialisation
    model, tok = load_start_model(ctx, cfg)
    held, baseline = begin_scorecard(cfg, ctx, test, model, tok, rewards)
    value_model = None
    if args.critic == "separate":
        start, why = critic_start(rewards[0].reward, ctx.notes.start_model, tok)
        print(f"[{cfg.name}] critic starts from {why}", flush=True)
        ctx.notes.critic = {"kind": "separate", "start": start}
        value_model = load_value_model(
            start, tok, peft_config=lora_config(cfg, "TOKEN_CLS"), trust_remote_code=ctx.recipe.trust_remote_code
        )
    else:
        ctx.notes.critic = {"kind": "shared"}

    started = time.time()

    def log_step(step: int, total: int, logs: dict) -> None:
        ctx.tracker.log({f"train/{k}": v for k, v in logs.items()}, step=step)
        print(step_line(cfg.name, step, total, time.time() - started, logs), flush=True)

    trainer = PPOTrainer(
        model=model,
        tokenizer=tok,
        args=args,
        train_dataset=train,
        reward_funcs=[r.reward for r in rewards],
        reward_weights=[r.weight for r in rewards],
        value_model=value_model,
        peft_config=lora_config(cfg, model=model),
        callbacks=[log_step],
    )
    params = count_parameters(trainer.model)
    critic = count_parameters(trainer.critic)
    resume = _resume_point(cfg, ctx, args)
    stopping = watch_ppo(trainer, cfg, ctx, test, tok, rewards, resume)  # None when the stage has no early_stopping
    guards = guard_ppo(trainer, cfg, ctx, {r.reward.__name__: r.weight for r in rewards}, stopping)  # None without guards:
    output = trainer.train(
        resume_from_checkpoint=resume,
        should_save=Every(cfg.checkpoint.every_steps, cfg.checkpoint.every_minutes),
        save_extra=stopping.save_to if stopping else None,
    )
    metrics = stopping.finish(output.global_step, trainer.max_steps) if stopping else {}  # the best weights are back
    if guards is not None:
        metrics.update(guards.metrics())
        ctx.notes.guards = guards.events

    keys = [*cfg.train_log_keys, *(f"rewards/{r.reward.__name__}/mean" for r in rewards)]
    metrics.update({**params, "params/critic_trainable": critic["params/trainable"]})
    metrics.update({"train/runtime_s": output.runtime_s, "train/steps": output.global_step})
    metrics.update(final_train_metrics(output.log_history, keys))
    metrics["train/first_reward"] = output.log_history[0]["reward"]

    path = save_model(trainer.model, tok, ctx.out_dir, stage=cfg, notes=ctx.notes)
    trainer.critic.save(ctx.paths.value_model, tok)
    ctx.notes.value_model = StageLayout.VALUE_MODEL  # relative to the stage folder
    metrics.update(baseline)
    metrics.update(end_scorecard(held, cfg, ctx, path))
    return StageResult(name=cfg.name, kind=cfg.kind, status="done", model_path=path, metrics=metrics)
