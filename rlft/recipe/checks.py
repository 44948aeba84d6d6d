"""Cross-key recipe checks that pydantic cannot express: chaining by name, and each feature's own rules."""

from __future__ import annotations

from typing import Any

from rlft.errors import did_you_mean
from rlft.recipe.options import RewardRef, RoundStoppingSpec
from rlft.recipe.schema import STAGE_KINDS, EvalStage, MergeStage, Recipe, TrainStage


def cross_key_problems(recipe: Recipe) -> list[tuple[str, str]]:
    """Cross-key checks pydantic cannot express: chaining by name."""
    problems = []
    earlier: dict[str, Any] = {}
    names = [s.name for s in recipe.stages]
    for stage in recipe.stages:
        refs = [("init_from", stage.init_from)]
        if isinstance(stage, EvalStage) and stage.baseline not in (None, "base"):
            refs.append(("baseline", stage.baseline))
        if isinstance(stage, MergeStage):
            refs += [(f"models[{i}].stage", m.stage) for i, m in enumerate(stage.models) if m.stage != "base"]
        for key, ref in refs:
            if ref is None:
                continue
            if ref not in earlier:
                if ref == stage.name:
                    why = "is this stage itself; a stage starts from an earlier stage, or from the recipe's model without init_from"
                else:
                    why = "comes later; stages run in order" if ref in names else "is not a stage of this recipe"
                problems.append(
                    (
                        f"stages.{stage.name}.{key}",
                        f"{ref!r} {why}. {did_you_mean(ref, earlier)}earlier stages: {', '.join(earlier) or '(none)'}",
                    )
                )
            elif not earlier[ref].produces_model:
                problems.append(
                    (
                        f"stages.{stage.name}.{key}",
                        f"stage {ref!r} ({earlier[ref].kind}) makes no model to start from; name a stage that trains one",
                    )
                )
            elif isinstance(stage, EvalStage) and not earlier[ref].makes_policy:
                problems.append(
                    (
                        f"stages.{stage.name}.{key}",
                        f"stage {ref!r} ({earlier[ref].kind}) makes a model that scores text and does not generate it; "
                        "an eval stage generates: name a stage that trains a policy (sft, dpo, grpo, ...)",
                    )
                )
            elif isinstance(stage, MergeStage) and not earlier[ref].makes_policy:
                problems.append(
                    (
                        f"stages.{stage.name}.{key}",
                        f"stage {ref!r} ({earlier[ref].kind}) makes a model that scores text; a merge averages policies: "
                        "name a stage that trains one (sft, dpo, grpo, ...)",
                    )
                )
        for key, ref in stage_reward_refs(stage):
            for model_ref in _model_refs(ref):
                if model_ref in names and not (model_ref in earlier and earlier[model_ref].kind == "reward_model"):
                    problems.append((f"stages.{stage.name}.{key}", f"model: {model_ref!r} must name an earlier reward_model stage"))
        if stage.kind == "ppo" and recipe.launch_for(stage).distributed:
            problems.append(
                (
                    f"stages.{stage.name}.launch",
                    f"rlft's PPO trainer runs in one process; launch this stage alone with stages.{stage.name}.launch.num_processes=1",
                )
            )
        if isinstance(stage, EvalStage) and (stage.overfit_check or stage.forgetting):
            problems += guard_problems(stage, earlier)
        if getattr(stage, "early_stopping", None) is not None:
            problems += early_stopping_problems(stage)
        guards = getattr(stage, "guards", None)
        if guards is not None and "divergence" in guards.stop_on and stage.early_stopping is None:
            problems.append(
                (
                    f"stages.{stage.name}.guards.stop_on",
                    "divergence compares training reward with held-out reward, which only early_stopping evaluates during training; "
                    f"add stages.{stage.name}.early_stopping (e.g. {{every_steps: 10}}) or drop divergence from stop_on",
                )
            )
        if any(getattr(getattr(stage, key, None), "augment", None) is not None for key in ("data", "eval_data")):
            problems += augment_problems(stage)
        problems += adapter_only_problems(stage, earlier)
        problems += four_bit_problems(recipe, stage)
        earlier[stage.name] = stage
    return problems


def four_bit_problems(recipe: Recipe, stage) -> list[tuple[str, str]]:
    """``model_kwargs.load_in_4bit`` (QLoRA): 4-bit weights do not train, so a training stage needs a LoRA adapter; a merge averages full weights."""
    if not recipe.model_kwargs_for(stage).load_in_4bit:
        return []
    own = stage.model_kwargs is not None and stage.model_kwargs.load_in_4bit
    where = f"stages.{stage.name}.model_kwargs.load_in_4bit" if own else "model_kwargs.load_in_4bit"
    if isinstance(stage, MergeStage):
        return [
            (
                where,
                f"stage {stage.name!r} (merge) averages full weights, which 4-bit ones are not; set stages.{stage.name}.model_kwargs.load_in_4bit=false",
            )
        ]
    if isinstance(stage, TrainStage) and (stage.peft is None or stage.peft.lora is None):
        return [
            (
                where,
                f"stage {stage.name!r} would train 4-bit weights, which cannot be trained directly (QLoRA trains a LoRA adapter on them); "
                f"add stages.{stage.name}.peft: {{lora: {{r: 16}}}}, or set stages.{stage.name}.model_kwargs.load_in_4bit=false",
            )
        ]
    return []


def adapter_only_problems(stage, earlier: dict) -> list[tuple[str, str]]:
    """A stage that starts from an earlier stage saved as a LoRA adapter only (``save.merged: false``) must load it as a causal LM.

    Causal-LM loads put the adapter on its base and merge it in memory (``rlft.models.load_causal_lm``); a reward model,
    a classifier and PPO's separate critic load the start folder with another head, which an adapter folder cannot give.
    """
    start = earlier.get(stage.init_from) if stage.init_from else None
    if start is None or getattr(start, "save", None) is None or start.save.merged:
        return []
    fix = f"set stages.{start.name}.save.merged=true (it keeps its adapter too)"
    if stage.kind in ("reward_model", "classifier"):
        why = f"a {stage.kind} stage loads its start folder whole with a new head"
    elif stage.kind == "ppo" and stage.trl.get("critic", "separate") == "separate":
        why, fix = (
            "PPO's separate critic may start from the policy's folder, loaded whole",
            fix + f", or stages.{stage.name}.trl.critic=shared",
        )
    else:
        return []
    return [(f"stages.{stage.name}.init_from", f"{start.name!r} saves only its LoRA adapter (save.merged: false), and {why}; {fix}")]


def stage_reward_refs(stage) -> list[tuple[str, RewardRef]]:
    """Every reward reference of a stage with its key path (``rewards[0]``, ``scorecard.rewards[1]``)."""
    refs = [(f"rewards[{i}]", r) for i, r in enumerate(getattr(stage, "rewards", None) or [])]
    card = getattr(stage, "scorecard", None)
    refs += [(f"scorecard.rewards[{i}]", r) for i, r in enumerate((card.rewards if card else None) or [])]
    return refs


def _model_refs(ref: RewardRef) -> list[str]:
    if ref.model is not None:
        return [ref.model]
    return [m for member in ref.ensemble or [] for m in _model_refs(member)]


def augment_problems(stage) -> list[tuple[str, str]]:
    """Recipe problems of ``augment:`` keys: only a training stage's ``data`` is augmented, never held-out or eval rows."""
    problems = []
    eval_data = getattr(stage, "eval_data", None)
    if eval_data is not None and eval_data.augment is not None:
        problems.append(
            (
                f"stages.{stage.name}.eval_data.augment",
                "held-out rows are never augmented; remove this key (data.augment augments training rows)",
            )
        )
    data = getattr(stage, "data", None)
    if not isinstance(stage, TrainStage) and data is not None and data.augment is not None:
        problems.append(
            (
                f"stages.{stage.name}.data.augment",
                f"a {stage.kind} stage does not train on its rows, and only training rows are augmented; remove this key",
            )
        )
    return problems


def guard_problems(stage, earlier: dict) -> list[tuple[str, str]]:
    """Recipe checks: ``overfit_check.stage`` is an earlier stage that trained a policy; ``forgetting`` has a baseline."""
    problems = []
    check = stage.overfit_check
    trained = [name for name, s in earlier.items() if isinstance(s, TrainStage) and s.makes_policy]
    if check is not None and check.stage not in trained:
        why = (
            f"is an earlier {earlier[check.stage].kind} stage, which trains no policy on prompts"
            if check.stage in earlier
            else "is not an earlier stage"
        )
        problems.append(
            (
                f"stages.{stage.name}.overfit_check.stage",
                f"{check.stage!r} {why}. {did_you_mean(check.stage, trained)}stages whose training prompts can be sampled: "
                f"{', '.join(trained) or '(none)'}",
            )
        )
    if stage.forgetting is not None and stage.baseline is None:
        problems.append(
            (
                f"stages.{stage.name}.forgetting",
                "forgetting compares the model's probe accuracy with its baseline's, and baseline is null; "
                "set baseline: base (the recipe's model) or an earlier stage",
            )
        )
    return problems


def early_stopping_problems(stage) -> list[tuple[str, str]]:
    """What is wrong with a stage's ``early_stopping:``, as (key path, message with the fix) pairs."""
    spec, where = stage.early_stopping, f"stages.{stage.name}.early_stopping"
    known = stage.early_stopping_metrics()
    reward_kinds = [kind for kind, cls in STAGE_KINDS.items() if cls.stops_on_reward]
    if not known:
        kinds = ", ".join([*(kind for kind, cls in STAGE_KINDS.items() if cls.stop_metrics), *reward_kinds])
        return [(where, f"{stage.kind} stages have no held-out metric to stop on (early stopping: {kinds}); remove early_stopping")]
    problems = []
    if spec.metric is not None and spec.metric not in known:
        problems.append(
            (
                f"{where}.metric",
                f"{spec.metric!r} is not a metric {stage.kind} stages produce. {did_you_mean(spec.metric, known)}"
                f"choose one of: {', '.join(known)}",
            )
        )
    if isinstance(spec, RoundStoppingSpec):  # rounds: every round is scored on the scorecard's prompts
        if stage.scorecard.prompts == 0:
            problems.append(
                (
                    f"stages.{stage.name}.scorecard.prompts",
                    f"early stopping by round scores each round on the scorecard's held-out prompts, which is 0 here; "
                    f"set stages.{stage.name}.scorecard.prompts=64",
                )
            )
        return problems
    if spec.prompts is not None and not stage.stops_on_reward:
        problems.append(
            (
                f"{where}.prompts",
                f"prompts: sets how many held-out prompts a reward metric generates from ({', '.join(reward_kinds)}); "
                f"{stage.kind} stages stop on the Trainer's held-out evaluation; remove it",
            )
        )
    if spec.prompts is None and stage.stops_on_reward and stage.scorecard.prompts == 0:
        problems.append(
            (
                f"{where}.prompts",
                f"held-out reward needs prompts to complete, and it takes scorecard.prompts, which is 0 here; set {where}.prompts=16",
            )
        )
    max_steps = stage.trl.get("max_steps")
    if isinstance(max_steps, int) and 0 < max_steps <= spec.every_steps:
        problems.append(
            (
                f"{where}.every_steps",
                f"{spec.every_steps} is not below trl.max_steps {max_steps}: the stage would evaluate only at its "
                f"last step, too late to stop; set e.g. {where}.every_steps={max(1, max_steps // 5)}",
            )
        )
    if stage.trl.get("restore_callback_states_from_checkpoint"):
        problems.append(
            (
                f"stages.{stage.name}.trl.restore_callback_states_from_checkpoint",
                "transformers would replace rlft's early-stopping callback on resume (rlft restores its state itself); remove it",
            )
        )
    return problems
