"""rlft's PPO trainer: actor-critic RL from reward functions, with GAE and a KL penalty to the starting model.

TRL removed its PPOTrainer in 1.13; this one follows TRL's former PPOv2 and OpenRLHF. One *step*:

1. **rollout** — take ``B = per_device_train_batch_size * gradient_accumulation_steps`` prompts (a
   seeded shuffle, cycling over the data), apply the chat template, sample one completion each
   (from the policy tempered by ``temperature`` and nothing else, at most ``max_completion_length``
   tokens, stop at EOS);
2. **score** — call every reward function ``fn(prompts, completions, **columns)``; the score of a
   completion is the weighted sum (``None`` counts 0), minus ``missing_eos_penalty`` when it never
   ended;
3. **forward passes without gradients** — the policy's log-probs and entropy, the reference's
   log-probs (the starting model: a frozen copy, or with LoRA the same model with its adapter
   disabled) and the critic's values, all per completion token;
4. **rewards and advantages** — per-token reward ``-kl_coef * KL`` plus the score on the last real
   token; GAE (``gamma``, ``lam``) gives advantages (then whitened over the batch's real tokens)
   and returns (unwhitened advantages + values: the value targets);
5. **optimise** — ``num_ppo_epochs`` passes over the batch, each split into ``num_mini_batches``
   shuffled minibatches; a minibatch is one AdamW step (gradients accumulated over micro-batches of
   at most ``per_device_train_batch_size`` rows, weighted by their token counts; the policy's and
   the critic's gradients each clipped to ``max_grad_norm`` on their own, so the critic's larger
   gradients do not shrink the policy's step) on the clipped policy loss + ``vf_coef`` * the
   clipped value loss;
6. **log** — reward, KL, entropy, losses, clip fractions, explained variance, timings; an
   adaptive KL coefficient moves towards ``target_kl`` (Ziegler et al. 2019).

With ``bf16: true`` each step runs under bf16 autocast (fp32 master weights; fp16 is refused: no
loss scaler). ``max_steps`` counts such steps; the learning rate follows transformers' scheduler
(``lr_scheduler_type``, ``warmup_steps``) over all optimizer steps. Padding — before prompts, after
EOS — is masked everywhere. The pure math lives in ``rlft.ppo.core``, sampling in
``rlft.ppo.rollout``, the critic in ``rlft.ppo.value``.

**Checkpoints** (``train(should_save=...)``): ``<output_dir>/checkpoint-N/`` holds the trainable
weights of policy and critic (the frozen rest is rebuilt from the starting models), the optimizer and
scheduler states, the RNG states (data shuffles, sampling), the data position, the KL controller and
the log history; ``ppo_state.json`` is written last and the folder renamed into place, so a checkpoint
is complete or absent. ``train(resume_from_checkpoint=path)`` continues from it with the same
randomness an uninterrupted run would have had.
"""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rlft.ppo import core
from rlft.ppo.config import PPOConfig
from rlft.ppo.rollout import Rollout, policy_forward, sample
from rlft.ppo.value import SeparateCritic, SharedCritic
from rlft.reward_refs import trl_shaped
from rlft.training.selective import DROPOUT_SUFFIXES, START_DROPOUT

StepCallback = Callable[[int, int, dict], bool | None]  # (step, max_steps, logs) -> True: stop training after this step


@dataclass
class Experience:
    """What PPO trains on from one rollout (B rows, T completion tokens; tensors (B, T) unless noted)."""

    rollout: Rollout
    logprobs: torch.Tensor  # the sampling policy's log-probs (tempered), constant during the epochs
    values: torch.Tensor  # the critic's values at rollout time
    advantages: torch.Tensor  # GAE, whitened over real tokens
    returns: torch.Tensor  # value targets: unwhitened advantages + values
    kl: torch.Tensor  # per-token KL estimate to the reference (0 at padding)
    entropy: torch.Tensor  # per-token entropy of the sampling distribution
    scores: torch.Tensor  # (B,) the score added on the last token

    @property
    def mask(self) -> torch.Tensor:
        return self.rollout.completion_mask


@dataclass
class TrainOutput:
    global_step: int
    runtime_s: float
    log_history: list[dict] = field(default_factory=list)


def score_completions(reward_funcs: list, weights: list[float], prompts: list, completions: list, **kwargs) -> tuple[torch.Tensor, dict]:
    """Weighted sum of the rewards per completion ((B,), ``None`` -> 0) and each reward's mean/std over the rows it applies to."""
    total = torch.zeros(len(completions))
    logs = {}
    for fn, weight in zip(reward_funcs, weights, strict=True):
        values = fn(prompts, completions, **kwargs)
        applicable = [v for v in values if v is not None]
        name = getattr(fn, "__name__", type(fn).__name__)
        logs[f"rewards/{name}/mean"] = statistics.fmean(applicable) if applicable else float("nan")
        logs[f"rewards/{name}/std"] = statistics.pstdev(applicable) if len(applicable) > 1 else 0.0
        total += weight * torch.tensor([0.0 if v is None else v for v in values])
    return total, logs


class PPOTrainer:
    """PPO on a causal LM with reward functions (TRL's signature) and a critic.

    ``value_model``: the separate critic (a one-label ``*ForTokenClassification`` model, see
    ``rlft.ppo.value.load_value_model``); required for ``critic="separate"``, unused for ``shared``.
    ``peft_config``: wrap the policy in a LoRA adapter (the reference is then the adapter-less base).
    ``ref_model``: a frozen reference for full fine-tuning; default: a copy of the starting policy.
    ``callbacks``: called as ``callback(step, max_steps, logs)`` after each step; one returning True ends training
    there (early stopping), without a checkpoint.
    """

    def __init__(
        self,
        model,
        tokenizer,
        args: PPOConfig,
        train_dataset,
        reward_funcs: list,
        reward_weights: list[float] | None = None,
        value_model=None,
        ref_model=None,
        peft_config=None,
        callbacks: list[StepCallback] | tuple = (),
    ):
        from transformers import set_seed

        set_seed(args.seed)
        self.args = args
        self.tokenizer = tokenizer
        self.train_dataset = train_dataset
        self.reward_funcs = list(reward_funcs)
        self.reward_weights = list(reward_weights) if reward_weights is not None else [1.0] * len(self.reward_funcs)
        self.callbacks = list(callbacks)
        self.device = torch.device("cuda" if torch.cuda.is_available() and not args.use_cpu else "cpu")
        self.eos_ids = _eos_ids(model, tokenizer)

        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
        self.is_peft = hasattr(model, "disable_adapter")
        self.ref_model = None if self.is_peft else (ref_model or _frozen_copy(model))
        self.model = model
        self.critic = self._build_critic(value_model)
        for module in (self.model, self.critic, self.ref_model):
            if module is not None:
                _disable_dropout(module)  # PPO's ratios need the same forward at rollout and update time
                module.to(self.device)
        if getattr(args, "activation_checkpointing", None) or getattr(args, "gradient_checkpointing", False):
            self._enable_checkpointing()

        self.max_steps = self._max_steps()
        self.optimizer = self._build_optimizer()
        self.scheduler = self._build_scheduler()
        if args.adaptive_kl:
            self.kl_ctl = core.AdaptiveKLController(args.kl_coef, args.target_kl, args.kl_horizon)
        else:
            self.kl_ctl = core.FixedKLController(args.kl_coef)
        self.generator = torch.Generator().manual_seed(args.data_seed if args.data_seed is not None else args.seed)
        self.global_step = 0
        self.log_history: list[dict] = []
        self._order: list[int] = []  # the data order still to come (seeded shuffles, consumed from the front)
        self._pending_metrics: dict[str, list[float]] = defaultdict(list)

    # ------------------------------------------------------------------ setup

    def _build_critic(self, value_model):
        if self.args.critic == "shared":
            return SharedCritic(self.model.config.get_text_config().hidden_size)
        if value_model is None:
            raise ValueError("critic='separate' needs a value_model (see rlft.ppo.value.load_value_model), or use critic='shared'")
        return value_model if isinstance(value_model, SeparateCritic) else SeparateCritic(value_model)

    def _enable_checkpointing(self) -> None:
        # transformers >= 5.2x names it activation_checkpointing, earlier releases gradient_checkpointing
        new = hasattr(self.args, "activation_checkpointing")
        kwargs = getattr(self.args, "activation_checkpointing_kwargs" if new else "gradient_checkpointing_kwargs") or {
            "use_reentrant": False
        }
        backbones = [self.model] + ([self.critic.model] if isinstance(self.critic, SeparateCritic) else [])
        for module in backbones:
            if new:
                module.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            else:
                module.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
            if hasattr(module, "disable_adapter"):
                module.enable_input_require_grads()  # frozen embeddings: checkpointed blocks need an input with grad

    def _max_steps(self) -> int:
        if self.args.max_steps > 0:
            return self.args.max_steps
        return max(1, math.ceil(self.args.num_train_epochs * len(self.train_dataset) / self.args.rollout_batch_size))

    def _build_optimizer(self) -> torch.optim.Optimizer:
        args = self.args
        policy = [p for p in self.model.parameters() if p.requires_grad]
        critic = [p for p in self.critic.parameters() if p.requires_grad]
        value_lr = args.learning_rate if args.value_learning_rate is None else args.value_learning_rate
        groups = [{"params": policy, "lr": args.learning_rate}, {"params": critic, "lr": value_lr}]
        return torch.optim.AdamW(groups, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon, weight_decay=args.weight_decay)

    def _build_scheduler(self):
        from transformers import get_scheduler

        total = self.max_steps * self.args.num_ppo_epochs * self.args.num_mini_batches
        return get_scheduler(
            self.args.lr_scheduler_type,
            self.optimizer,
            num_warmup_steps=self.args.get_warmup_steps(total),
            num_training_steps=total,
            scheduler_specific_kwargs=self.args.lr_scheduler_kwargs or {},
        )

    # ------------------------------------------------------------------ the loop

    def train(
        self,
        resume_from_checkpoint: str | Path | None = None,
        should_save: Callable[[int, int], bool] | None = None,
        save_extra: Callable[[Path], None] | None = None,
    ) -> TrainOutput:
        """Run PPO steps up to ``max_steps`` (from a checkpoint's step when resuming); call the callbacks with each step's logs.

        ``should_save(step, max_steps)``: whether to write a checkpoint after ``step`` (keeping
        ``save_total_limit`` of them, default 1). ``save_extra(folder)``: writes more into each checkpoint
        before it is marked complete (early stopping's state).
        """
        t0 = time.time()
        if resume_from_checkpoint is not None:
            self.load_checkpoint(resume_from_checkpoint)
        for step in range(self.global_step + 1, self.max_steps + 1):
            with self._autocast():
                logs = self.step(self._next_rows())
            self.global_step = step
            self.log_history.append({"step": step, **logs})
            stop = False
            for callback in self.callbacks:
                stop = bool(callback(step, self.max_steps, logs)) or stop
            if stop:
                break
            if should_save is not None and should_save(step, self.max_steps):
                self.save_checkpoint(save_extra)
        return TrainOutput(self.global_step, time.time() - t0, self.log_history)

    # ------------------------------------------------------------------ checkpoints

    def _trainable(self) -> dict[str, torch.Tensor]:
        named = [("policy", self.model), ("critic", self.critic)]
        return {f"{part}.{name}": p for part, module in named for name, p in module.named_parameters() if p.requires_grad}

    def save_checkpoint(self, save_extra: Callable[[Path], None] | None = None) -> Path:
        """Write ``<output_dir>/checkpoint-<step>`` (complete or absent) and drop the oldest beyond ``save_total_limit``."""
        from safetensors.torch import save_file

        root = Path(self.args.output_dir)
        final = root / f"checkpoint-{self.global_step}"
        tmp = root / f".tmp-checkpoint-{self.global_step}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self._trainable().items()}, tmp / "trainable.safetensors")
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}, tmp / "optimizer.pt")
        rng = {"generator": self.generator.get_state(), "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, tmp / "rng.pt")
        state = {
            "global_step": self.global_step,
            "max_steps": self.max_steps,
            "order": self._order,
            "kl_controller": vars(self.kl_ctl),
            "python_random": random.getstate()[1],
            "log_history": self.log_history,
        }
        if save_extra is not None:
            save_extra(tmp)
        (tmp / "ppo_state.json").write_text(json.dumps(state))  # last: its presence marks the checkpoint complete
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        keep = self.args.save_total_limit or 1
        older = sorted((p for p in root.glob("checkpoint-*") if p != final), key=lambda p: int(p.name.split("-")[1]))
        for path in older[: max(0, len(older) - keep + 1)]:
            shutil.rmtree(path, ignore_errors=True)
        return final

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore everything ``save_checkpoint`` wrote (weights_only loading: tensors and plain data, no pickled objects)."""
        from safetensors.torch import load_file

        path = Path(path)
        tensors = load_file(path / "trainable.safetensors")
        params = self._trainable()
        if set(tensors) != set(params):
            raise ValueError(f"checkpoint {path} does not match this model: {sorted(set(tensors) ^ set(params))[:5]} ...")
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(tensors[name].to(p.device, p.dtype))
        opt = torch.load(path / "optimizer.pt", weights_only=True, map_location=self.device)
        self.optimizer.load_state_dict(opt["optimizer"])
        self.scheduler.load_state_dict(opt["scheduler"])
        rng = torch.load(path / "rng.pt", weights_only=True)
        self.generator.set_state(rng["generator"])
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        state = json.loads((path / "ppo_state.json").read_text())
        self.global_step, self._order, self.log_history = state["global_step"], state["order"], state["log_history"]
        vars(self.kl_ctl).update(state["kl_controller"])
        random.setstate((3, tuple(state["python_random"]), None))

    def _autocast(self):
        """``bf16: true``: forward passes under bf16 autocast (weights and optimizer state stay fp32); else a no-op."""
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=bool(self.args.bf16))

    def _next_rows(self) -> dict[str, list]:
        """The next rollout batch of rows (column -> values), from seeded shuffles of the data, cycling."""
        n, size = len(self.train_dataset), self.args.rollout_batch_size
        while len(self._order) < size:
            self._order += torch.randperm(n, generator=self.generator).tolist()
        rows, self._order = self._order[:size], self._order[size:]
        return self.train_dataset[rows]

    def step(self, rows: dict[str, list]) -> dict:
        """One PPO step on a rollout batch of rows: sample, score, estimate advantages, optimise; return logs."""
        t0 = time.time()
        kl_coef = self.kl_ctl.value
        rollout = sample(self.model, self.tokenizer, rows["prompt"], args=self.args, eos_ids=self.eos_ids, device=self.device)
        rewards, reward_logs = self._score(rows, rollout)
        exp = self._experience(rollout, rewards, kl_coef)
        t1 = time.time()
        stats = self._optimise(exp)
        t2 = time.time()
        kl_per_completion = (exp.kl * exp.mask).sum(dim=1)
        self.kl_ctl.update(kl_per_completion.mean().item(), len(rollout.texts))
        mask = exp.mask
        logs = {
            "reward": rewards.mean().item(),
            "reward_std": rewards.std().item() if len(rewards) > 1 else 0.0,
            **reward_logs,
            "kl": core.masked_mean(exp.kl, mask).item(),
            "entropy": core.masked_mean(exp.entropy, mask).item(),
            "completions/mean_length": mask.sum(dim=1).mean().item(),
            "completions/clipped_ratio": (~rollout.ended).float().mean().item(),
            **stats,
            "ppo/explained_variance": core.explained_variance(exp.values, exp.returns, mask).item(),
            "ppo/non_score_reward": (-kl_coef * kl_per_completion).mean().item(),
            "ppo/kl_per_completion": kl_per_completion.mean().item(),
            "ppo/kl_coef": kl_coef,
            "ppo/score": exp.scores.mean().item(),
            "ppo/value_mean": core.masked_mean(exp.values, mask).item(),
            "ppo/return_mean": core.masked_mean(exp.returns, mask).item(),
            "learning_rate": self.scheduler.get_last_lr()[0],
            "time/rollout_s": t1 - t0,
            "time/train_s": t2 - t1,
        }
        logs.update({k: statistics.fmean(v) for k, v in self._pending_metrics.items()})
        self._pending_metrics.clear()
        return logs

    def _score(self, rows: dict[str, list], rollout: Rollout) -> tuple[torch.Tensor, dict]:
        """Weighted reward per completion (B,) and per-reward logs; completions in the prompts' format (chat or text)."""
        from transformers import TrainerState

        prompts = rows["prompt"]
        completions = trl_shaped(prompts, rollout.texts)
        columns = {k: v for k, v in rows.items() if k not in ("prompt", "completion")}
        ids = [row[: int(m.sum())].tolist() for row, m in zip(rollout.completion_ids, rollout.completion_mask, strict=True)]
        return score_completions(
            self.reward_funcs,
            self.reward_weights,
            prompts,
            completions,
            completion_ids=ids,
            trainer_state=TrainerState(global_step=self.global_step, max_steps=self.max_steps),
            log_metric=lambda name, value: self._pending_metrics[name].append(float(value)),
            log_extra=lambda *a, **k: None,
            **columns,
        )

    @torch.no_grad()
    def _experience(self, rollout: Rollout, rewards: torch.Tensor, kl_coef: float) -> Experience:
        """Forward passes without gradients, the KL-shaped per-token rewards, GAE."""
        args, steps = self.args, rollout.completion_ids.shape[1]
        mask = rollout.completion_mask
        parts = defaultdict(list)
        for rows in _chunks(len(rollout.texts), args.per_device_train_batch_size):
            ids, attn = rollout.rows(rows)
            out = policy_forward(
                self.model, ids, attn, steps, args.temperature, with_entropy=True, with_hidden=isinstance(self.critic, SharedCritic)
            )
            parts["logprobs"].append(out.logprobs)
            parts["entropy"].append(out.entropy)
            parts["ref_logprobs"].append(self._ref_logprobs(ids, attn, steps))
            parts["values"].append(self.critic(ids, attn, steps, out.hidden))
        logprobs, ref_logprobs, entropy, values = (torch.cat(parts[k]) * mask for k in ("logprobs", "ref_logprobs", "entropy", "values"))

        kl = core.per_token_kl(logprobs, ref_logprobs, args.kl_estimator) * mask
        scores = rewards.to(self.device)
        if args.missing_eos_penalty is not None:
            scores = scores - args.missing_eos_penalty * (~rollout.ended).float()
        token_rewards = core.shape_rewards(scores, kl, mask, kl_coef)
        if args.whiten_rewards:
            token_rewards = core.masked_whiten(token_rewards, mask, shift_mean=False)
        advantages, returns = core.gae(token_rewards, values, mask, args.gamma, args.lam)
        advantages = core.masked_whiten(advantages, mask)
        return Experience(rollout, logprobs, values, advantages, returns, kl, entropy, scores)

    def _ref_logprobs(self, ids: torch.Tensor, attn: torch.Tensor, steps: int) -> torch.Tensor:
        if self.is_peft:
            with self.model.disable_adapter():
                return policy_forward(self.model, ids, attn, steps, self.args.temperature).logprobs
        return policy_forward(self.ref_model, ids, attn, steps, self.args.temperature).logprobs

    def _optimise(self, exp: Experience) -> dict[str, float]:
        """``num_ppo_epochs`` passes of ``num_mini_batches`` optimizer steps; mean statistics over all of them."""
        args = self.args
        size = len(exp.rollout.texts)
        mini = size // args.num_mini_batches
        groups = {"policy": self.optimizer.param_groups[0]["params"], "value": self.optimizer.param_groups[1]["params"]}
        sums: dict[str, float] = defaultdict(float)
        updates = args.num_ppo_epochs * args.num_mini_batches
        self.model.train()
        self.critic.train()
        for _ in range(args.num_ppo_epochs):
            order = torch.randperm(size, generator=self.generator)
            for start in range(0, size, mini):
                for key, value in self._minibatch(exp, order[start : start + mini]).items():
                    sums[key] += value / updates
                if args.max_grad_norm and args.max_grad_norm > 0:
                    for name, norm in clip_each(groups, args.max_grad_norm).items():
                        sums[f"grad_norm/{name}"] += norm / updates
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
        return dict(sums)

    def _minibatch(self, exp: Experience, rows: torch.Tensor) -> dict[str, float]:
        """Accumulate the gradients of one minibatch over micro-batches; its token-weighted statistics."""
        args, steps = self.args, exp.rollout.completion_ids.shape[1]
        tokens = exp.mask[rows].sum().clamp(min=1.0)
        stats: dict[str, float] = defaultdict(float)
        for part in _chunks(len(rows), args.per_device_train_batch_size):
            idx = rows[part]
            ids, attn = exp.rollout.rows(idx)
            mask = exp.mask[idx]
            out = policy_forward(self.model, ids, attn, steps, args.temperature, with_hidden=isinstance(self.critic, SharedCritic))
            values = self.critic(ids, attn, steps, out.hidden)
            pg = core.policy_loss(out.logprobs, exp.logprobs[idx], exp.advantages[idx], mask, args.cliprange)
            vf = core.value_loss(values, exp.values[idx], exp.returns[idx], mask, args.cliprange_value)
            share = (mask.sum() / tokens).item()
            ((pg.loss + args.vf_coef * vf.loss) * share).backward()
            stats["ppo/policy_loss"] += pg.loss.item() * share
            stats["ppo/value_loss"] += vf.loss.item() * share
            stats["ppo/clip_fraction"] += pg.clip_fraction.item() * share
            stats["ppo/value_clip_fraction"] += vf.clip_fraction.item() * share
            stats["ppo/approx_kl"] += pg.approx_kl.item() * share
        return stats


def clip_each(groups: dict[str, list[torch.Tensor]], max_norm: float) -> dict[str, float]:
    """Clip each parameter group's gradients to ``max_norm`` on its own; each group's norm before clipping.

    One joint norm over policy and critic would scale the policy's step by a factor the critic's
    (usually larger, and changing) gradients set."""
    return {name: torch.nn.utils.clip_grad_norm_(params, max_norm).item() for name, params in groups.items() if params}


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(i, i + size) for i in range(0, n, size)]


def _eos_ids(model, tokenizer) -> list[int]:
    """The tokenizer's EOS and the generation config's stop tokens (chat models often add ``<|im_end|>``)."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None)


def _frozen_copy(model):
    ref = copy.deepcopy(model)
    ref.requires_grad_(False)
    ref.eval()
    return ref


def _disable_dropout(module: torch.nn.Module) -> None:
    """Zero every dropout: ``nn.Dropout`` modules, the float rates layers pass to their kernels (Llama's
    ``attention_dropout``; any attribute named like a dropout field: ``*dropout``, ``*_prob``, ``*_rate``, ``*pdrop``),
    and the same fields of every model config (layers that read the rate from the config at forward time). A
    config's values before are kept on its model (``rlft.training.selective.START_DROPOUT``) and put back
    before the model is saved, so the saved config is the one the stage started from."""
    from transformers import PretrainedConfig

    seen: set[int] = set()  # a wrapper (PEFT) and the model inside it share one config: the first records it
    for m in module.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        for name, value in list(vars(m).items()):
            if name.endswith(DROPOUT_SUFFIXES) and isinstance(value, float):
                setattr(m, name, 0.0)
        config = getattr(m, "config", None)
        if isinstance(config, PretrainedConfig) and id(config) not in seen:
            seen.add(id(config))
            rates = {
                k: v
                for k, v in vars(config).items()
                if k.endswith(DROPOUT_SUFFIXES) and isinstance(v, int | float) and not isinstance(v, bool)
            }
            if rates and getattr(m, START_DROPOUT, None) is None:
                setattr(m, START_DROPOUT, rates)
            for key in rates:
                setattr(config, key, 0.0)
