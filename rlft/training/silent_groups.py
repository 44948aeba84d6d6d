"""Skip the GRPO/RLOO micro-batches that cannot move the policy: groups whose completions all scored alike.

A group of completions to one prompt that all got the same reward has advantage 0 for every member.
With no KL term (``beta: 0``), no entropy bonus and a loss whose normaliser does not depend on which
rows share a micro-batch, such rows add exactly nothing to the gradient, yet TRL still runs their
forward and backward pass. On a CPU that is most of a step once the model gets most prompts right.

``skipping_silent_groups(trl.GRPOTrainer)`` returns a subclass that, after each generation batch is
scored, zeroes the advantages of silent groups (TRL leaves ~1e-3 there from float rounding when it
divides by a group's ~1e-7 standard deviation), moves their rows behind the rows that carry signal,
re-splits the batch into the same number of equal micro-batches (rows stay within the optimizer step
TRL gave them; each group's rows stay together, so ``rlft.training.shared_prefix`` runs their prompt
once) and skips every micro-batch made only of silent rows. The sum of the micro-batch gradients is unchanged: each loss below divides by the
micro-batch's row count or by the generation batch's token count, both fixed. Where the conditions do
not hold the subclass behaves exactly like its parent. Logged per generation batch:
``silent_groups/frac_rows`` and ``silent_groups/frac_microbatches_skipped`` (of the micro-batch passes
that generation batch is trained with).
"""

from __future__ import annotations

from typing import Any

# Loss types whose zero-advantage rows add zero loss and whose normaliser is fixed per micro-batch size
# (grpo, sapo: mean over the micro-batch's sequences; dr_grpo: rows x max_completion_length; dapo, cispo:
# the generation batch's token count). bnpo divides by the micro-batch's own token count; luspo and vespo
# weight sequences in ways that a repack would change.
_GRPO_LOSSES = frozenset({"grpo", "dr_grpo", "dapo", "cispo", "sapo"})
SILENT = "rlft_silent"  # key of the per-row flag carried in each micro-batch
GROUP = "rlft_group"  # key of the per-row group (prompt) index within its generation batch
SKIPPED = "silent_groups/frac_microbatches_skipped"  # logged once per generation batch


def why_not_skipping(trainer) -> str | None:
    """None when silent micro-batches can be skipped without changing the gradient, else the reason."""
    if getattr(trainer, "beta", 0.0) != 0.0:
        return "beta is not 0 (the KL term has a gradient on every row)"
    if getattr(trainer, "aux_loss_enabled", False):
        return "the model has a router auxiliary loss"
    if getattr(trainer, "_entropy_bonus_enabled", False):
        return "an entropy bonus has a gradient on every row"
    if getattr(trainer, "normalize_advantages", False):
        return "normalize_advantages shifts every row's advantage"
    if getattr(trainer, "multi_objective_aggregation", "sum_then_normalize") != "sum_then_normalize":
        return "multi_objective_aggregation normalize_then_sum centres rewards on the batch, not the group"
    loss_type = getattr(trainer, "loss_type", None)
    if loss_type is not None and loss_type not in _GRPO_LOSSES:
        return f"loss_type {loss_type!r} normalises by what each micro-batch holds"
    if getattr(getattr(trainer, "args", None), "use_vllm", False):
        return "vLLM generation (not used on the machines rlft targets; left as TRL does it)"
    return None


def silent_rows(rewards_per_func, weights, group_size: int):
    """Per row, True when every scored completion of its group got the same weighted reward.

    ``rewards_per_func``: (rows, reward functions), NaN where a function did not score a row, as TRL
    builds it; rows are consecutive groups of ``group_size``. A group nobody could score is silent too.
    """
    import torch

    rewards = (rewards_per_func * weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)
    rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
    grouped = rewards.view(-1, group_size)
    scored = ~torch.isnan(grouped)
    hi = torch.where(scored, grouped, -torch.inf).max(dim=1).values
    lo = torch.where(scored, grouped, torch.inf).min(dim=1).values
    alike = ~scored.any(dim=1) | torch.isclose(hi, lo, rtol=1e-6, atol=1e-9)
    return alike.repeat_interleave(group_size)


def signal_first(chunks: list[dict[str, Any]], window: int | None = None) -> list[dict[str, Any]]:
    """The same rows re-split into as many equal micro-batches: rows that carry signal first, each group's rows together.

    ``window``: how many consecutive micro-batches one optimizer step accumulates; rows move only within
    their window, so every optimizer step trains on the rows TRL gave it (all micro-batches when None).
    Within a window the order is (silent, group), stable: silent micro-batches gather at the end, where
    they can be skipped, and the completions of one prompt share micro-batches, where
    ``rlft.training.shared_prefix`` runs their prompt once.
    """
    window = window or len(chunks)
    return [c for start in range(0, len(chunks), window) for c in _repacked(chunks[start : start + window])]


def _repacked(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import torch
    from trl.trainer.utils import split_tensor_dict

    merged: dict[str, Any] = {}
    for key, first in chunks[0].items():
        if first is None or (isinstance(first, torch.Tensor) and first.ndim == 0):
            merged[key] = first
        elif isinstance(first, torch.Tensor):
            merged[key] = torch.cat([c[key] for c in chunks], dim=0)
        else:
            merged[key] = [row for c in chunks for row in c[key]]
    key = merged[SILENT].long()
    if GROUP in merged:
        key = key * (int(merged[GROUP].max()) + 1) + merged[GROUP].long()
    order = torch.argsort(key, stable=True)
    for name, value in merged.items():
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            merged[name] = value[order]
        elif isinstance(value, list):
            merged[name] = [value[i] for i in order.tolist()]
    return split_tensor_dict(merged, len(chunks))


def skipping_silent_groups(trainer_cls: type) -> type:
    """``trainer_cls`` (TRL's GRPOTrainer or RLOOTrainer) with silent micro-batches skipped where that is exact."""

    class SkippingSilentGroups(trainer_cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.silent_groups_off = why_not_skipping(self)
            self._rlft_rewards = None

        def _calculate_rewards(self, *args, **kwargs):
            self._rlft_rewards = super()._calculate_rewards(*args, **kwargs)
            return self._rlft_rewards

        def _generate_and_score_completions(self, generation_batch):
            import torch

            out = super()._generate_and_score_completions(generation_batch)
            if self.silent_groups_off is None and self.model.training and self._rlft_rewards is not None:
                silent = silent_rows(self._rlft_rewards, self.reward_weights, self.num_generations)
                n = out["advantages"].shape[0]
                start = self.accelerator.process_index * n
                silent = silent[start : start + n].to(out["advantages"].device)
                out["advantages"] = out["advantages"].masked_fill(silent, 0.0)
                out[SILENT] = silent
                out[GROUP] = torch.arange(n, device=silent.device) // self.num_generations
                self._metrics["train"]["silent_groups/frac_rows"].append(silent.float().mean().item())
            self._rlft_rewards = None
            return out

        def _prepare_inputs(self, generation_batch):
            before = self._buffered_inputs
            inputs = super()._prepare_inputs(generation_batch)
            chunks = self._buffered_inputs
            if self.model.training and chunks is not before and chunks and SILENT in chunks[0]:
                accumulation = self.args.gradient_accumulation_steps
                if len(chunks) % accumulation == 0:  # else rows would cross optimizer steps: leave TRL's split
                    self._buffered_inputs = signal_first(chunks, window=accumulation)
                # Each micro-batch is visited num_iterations times; the very first visit (this step) always runs.
                silent = sum(bool(c[SILENT].all()) for c in self._buffered_inputs)
                visits = self.num_iterations * len(chunks)
                self._metrics["train"][SKIPPED].append((self.num_iterations * silent - (silent == len(chunks))) / visits)
                inputs = self._buffered_inputs[self._step % self.args.steps_per_generation]
            return inputs

        def _next_is_silent(self) -> bool:
            """The micro-batch the coming training step takes is all silent rows (known only once generated)."""
            chunks = self._buffered_inputs
            if not self.model.training or not chunks or SILENT not in chunks[0]:
                return False
            if self._step % (self.args.steps_per_generation * self.num_iterations) == 0:
                return False  # this step generates a new batch first; its first micro-batch holds the signal
            return bool(chunks[self._step % self.args.steps_per_generation][SILENT].all())

        def training_step(self, model, inputs, num_items_in_batch):
            # HF's training_step calls _prepare_inputs, so the micro-batch is looked up from the buffer here.
            if not self._next_is_silent():
                return super().training_step(model, inputs, num_items_in_batch)
            # Every row's loss and gradient is exactly 0: keep TRL's step bookkeeping, skip the passes.
            import torch

            self._step += 1
            if self._step % self.current_gradient_accumulation_steps == 0:
                self._metrics["train"]["step_time"].append(self._current_train_step_time)
                self._current_train_step_time = 0.0
            return torch.zeros((), device=self.args.device)

    SkippingSilentGroups.__name__ = SkippingSilentGroups.__qualname__ = f"{trainer_cls.__name__}SkippingSilentGroups"
    return SkippingSilentGroups
