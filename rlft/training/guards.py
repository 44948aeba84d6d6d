"""Reward-hacking guards: watch an RL stage's own logs for signs that its training reward is being gamed.

An RL stage can raise its training reward while the model gets worse: a small reward model pays for
made-up URLs, a length term pays for rambling, one easy reward drowns the others. A stage's
``guards:`` key (``rlft.recipe.GuardsSpec``) checks, every ``every_steps`` optimizer steps, the values
the trainer logs anyway (TRL's GRPO/RLOO and rlft's PPO use the same names):

==================  ====================================================================  ======================================
guard               fires when                                                            reads
==================  ====================================================================  ======================================
``length_drift``    mean completion length is ``length_drift`` times its first value      ``completions/mean_length``
                    (or 1/that)
``length_cap``      more than ``length_cap`` of the completions were cut at the cap       ``completions/clipped_ratio``
``kl_spike``        per-token KL above ``kl_max``, or ``kl_jump`` times the last check's  ``kl`` (GRPO/RLOO log it with
                    (from at least ``kl_floor``)                                          ``beta`` > 0; PPO always)
``silent_groups``   more than ``silent_groups`` of the groups scored all alike: no        ``frac_reward_zero_std`` (GRPO/RLOO)
                    advantage, the step learns nothing
``reward_dominance``  one reward function holds more than ``reward_dominance`` of the     ``rewards/<name>/std`` x weight
                    weighted reward's spread (what the advantages are made of)
``divergence``      with ``early_stopping``: ``divergence_evals`` held-out evaluations    the early-stopping evaluations and
                    in a row where held-out reward is below its best and has not risen    ``reward``
                    since the last evaluation, while the mean training reward since
                    the last evaluation is above its mean before the best one
==================  ====================================================================  ======================================

A guard that cannot be read (its key is not logged, e.g. ``kl`` with ``beta: 0``) stays silent; the
stage's metrics say which guards were active. Each firing prints a line (``[rl] guard length_cap: ...``)
and is logged as ``guards/<name>`` = 1 at that step (with the value checked as ``guards/<name>/value``);
the stage's metrics get ``guards/fired`` (the names, in order, comma-separated), ``guards/active``,
``guards/<name>/first_step`` and ``guards/stopped_by``, and the manifest the list of firings. A guard named in ``stop_on`` stops the
stage at that step; with ``early_stopping`` (``restore_best``) the stage then ends with its best weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


class Guards:
    """The checks and what they found. ``weights``: reward function name -> weight; ``log(values, step)``: W&B;
    ``stopper``: the stage's ``EarlyStopping`` (its evaluations feed ``divergence``), or None."""

    def __init__(self, spec, stage: str, weights: dict[str, float], log: Callable[[dict, int], None], stopper=None):
        self.spec, self.stage, self.weights, self.log, self.stopper = spec, stage, weights, log, stopper
        self.events: list[dict[str, Any]] = []
        self.active: set[str] = set()
        self.stopped_by: str | None = None
        self._start_length: float | None = None
        self._last_kl: float | None = None
        self._rewards: list[float] = []  # training rewards since the last held-out evaluation
        self._windows: list[tuple[float, float, int]] = []  # (held-out value, mean training reward before it, step) per evaluation
        self._diverging = 0

    def check(self, step: int, logs: dict[str, Any]) -> bool:
        """Read one step's logs; on a check step run every guard. True: a guard in ``stop_on`` fired (stop now)."""
        if _number(logs.get("reward")) is not None:
            self._rewards.append(float(logs["reward"]))
        length = _number(logs.get("completions/mean_length"))
        if self._start_length is None and length:
            self._start_length = length
        fired = self._divergence()
        if step % self.spec.every_steps == 0:
            fired += self._length(length) + self._cap(logs) + self._kl(logs) + self._silent(logs) + self._dominance(logs)
        for name, value, message in fired:
            self.events.append({"guard": name, "step": step, "value": value, "message": message})
            self.log({f"guards/{name}": 1.0, f"guards/{name}/value": value}, step)
            print(f"[{self.stage}] guard {name} at step {step}: {message}", flush=True)
        stop = next((name for name, _, _ in fired if name in self.spec.stop_on), None)
        if stop is not None and self.stopped_by is None:
            self.stopped_by = stop
            print(f"[{self.stage}] guard {stop} is in stop_on: stopping the stage at step {step}", flush=True)
        return stop is not None

    def _length(self, length: float | None):
        if length is None or not self._start_length:
            return []
        self.active.add("length_drift")
        ratio = length / self._start_length
        if ratio > self.spec.length_drift or ratio < 1 / self.spec.length_drift:
            return [
                ("length_drift", ratio, f"mean completion length {length:.1f} tokens, {ratio:.2f}x its start ({self._start_length:.1f})")
            ]
        return []

    def _cap(self, logs):
        return self._share(
            logs, "length_cap", "completions/clipped_ratio", "{:.0%} of completions hit the length cap (max_completion_length)"
        )

    def _kl(self, logs):
        kl = _number(logs.get("kl"))
        if kl is None:
            return []
        self.active.add("kl_spike")
        last, self._last_kl = self._last_kl, kl
        if self.spec.kl_max is not None and kl > self.spec.kl_max:
            return [("kl_spike", kl, f"per-token KL to the reference {kl:.3g} > kl_max {self.spec.kl_max:g}")]
        if last is not None and last >= self.spec.kl_floor and kl > self.spec.kl_jump * last:
            return [("kl_spike", kl, f"per-token KL jumped {kl / last:.1f}x since the last check ({last:.3g} -> {kl:.3g})")]
        return []

    def _silent(self, logs):
        return self._share(
            logs, "silent_groups", "frac_reward_zero_std", "{:.0%} of groups scored all alike: no advantage, nothing to learn from them"
        )

    def _share(self, logs, name: str, key: str, message: str):
        """A guard on a logged share: active when ``key`` is logged, fired above its ``spec.<name>`` threshold."""
        share = _number(logs.get(key))
        if share is None:
            return []
        self.active.add(name)
        return [(name, share, message.format(share))] if share > getattr(self.spec, name) else []

    def _dominance(self, logs):
        spread = {n: abs(w) * s for n, w in self.weights.items() if (s := _number(logs.get(f"rewards/{n}/std"))) is not None}
        total = sum(spread.values())
        if len(spread) < 2 or total <= 0:
            return []
        self.active.add("reward_dominance")
        name, top = max(spread.items(), key=lambda kv: kv[1])
        share = top / total
        if share > self.spec.reward_dominance:
            return [("reward_dominance", share, f"reward {name} holds {share:.0%} of the weighted reward's spread")]
        return []

    def _divergence(self):
        """An evaluation diverges when held-out reward is below its best so far and no higher than at the last evaluation,
        while the mean training reward since the last evaluation is above its mean before that best evaluation.

        Measured from the best, not from the last evaluation alone: greedy completions to a few held-out prompts change in
        steps, so a gamed model's held-out reward falls once and then stays down (the same value at every evaluation);
        step-by-step falls would count that plateau as "not falling" and never fire.
        """
        history = self.stopper.history if self.stopper is not None else []
        if len(history) <= len(self._windows):
            return []
        self.active.add("divergence")
        step, held_out = history[-1]
        trained = sum(self._rewards) / len(self._rewards) if self._rewards else math.nan
        self._rewards = []
        previous = self._windows[-1] if self._windows else None
        best = max(self._windows, key=lambda w: w[0], default=None)  # the earliest of equal bests
        self._windows.append((held_out, trained, step))
        if previous is None:
            return []
        diverging = held_out < best[0] and held_out <= previous[0] and trained > best[1]
        self._diverging = self._diverging + 1 if diverging else 0
        if self._diverging >= self.spec.divergence_evals:
            return [
                (
                    "divergence",
                    held_out - best[0],
                    f"held-out reward {held_out:.4g}, down from its best {best[0]:.4g} (step {best[2]:g}), while training "
                    f"reward rose {best[1]:.4g} -> {trained:.4g} ({self._diverging} evaluation(s) in a row)",
                )
            ]
        return []

    def metrics(self) -> dict[str, Any]:
        """The stage's ``guards/...`` metrics (and the manifest's ``guards`` note is ``self.events``)."""
        fired = list(dict.fromkeys(e["guard"] for e in self.events))
        out: dict[str, Any] = {
            "guards/fired": ", ".join(fired),  # text, as every summary and W&B value is a scalar
            "guards/active": ", ".join(sorted(self.active)),
            "guards/stopped_by": self.stopped_by or "",
        }
        for name in fired:
            out[f"guards/{name}/first_step"] = next(e["step"] for e in self.events if e["guard"] == name)
        return out


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) else None


def guard_trainer(trainer, cfg, ctx, weights: dict[str, float], stopper=None) -> Guards | None:
    """Watch a TRL GRPO/RLOO trainer's logs (a ``TrainerCallback`` after the others); None without ``guards:``."""
    if cfg.guards is None:
        return None
    from transformers import TrainerCallback

    guards = Guards(cfg.guards, cfg.name, weights, lambda v, step: ctx.tracker.log({**v, "train/global_step": step}), stopper)

    class RlftGuards(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and guards.check(state.global_step, logs):  # a training step's log, not an evaluation's
                control.should_training_stop = True

    trainer.add_callback(RlftGuards())
    return guards


def guard_ppo(trainer, cfg, ctx, weights: dict[str, float], stopper=None) -> Guards | None:
    """Watch rlft's PPO trainer: a step callback after early stopping's; None without ``guards:``."""
    if cfg.guards is None:
        return None
    guards = Guards(cfg.guards, cfg.name, weights, lambda v, step: ctx.tracker.log(v, step=step), stopper)
    trainer.callbacks.append(lambda step, max_steps, logs: guards.check(step, logs))
    return guards
