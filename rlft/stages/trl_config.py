"""A training stage's real TRL config: rlft's defaults, the recipe's trl: keys, then the keys rlft fixes."""

from __future__ import annotations

import dataclasses

from rlft.errors import RecipeError, RlftError, did_you_mean
from rlft.recipe import TrainStage

# Keys that older transformers/TRL releases (and many published recipes) use, with where they went.
REPORT_TO = (
    "rlft chooses the trainer's trackers, so trl.report_to is not taken",
    "remove it and list the trackers in tracking.backends (e.g. tracking: {backends: [wandb, tensorboard]}; "
    "the choices are wandb, tensorboard, trackio)",
)
MOVED_KEYS = {"warmup_ratio": "transformers 5 folded it into warmup_steps: a value below 1 is a share of the steps (warmup_steps: 0.1). "}


def config_class(ref: str):
    """``SFTConfig`` -> ``trl.SFTConfig``; ``module.path:Class`` -> that class (rlft's PPO, TRL's experimental trainers)."""
    import importlib
    import os

    module, _, name = ref.rpartition(":") if ":" in ref else ("trl", "", ref)
    if module.startswith("trl.experimental"):
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # the stage kind is documented as experimental
    return getattr(importlib.import_module(module), name)


def trl_config_for(stage: TrainStage, output_dir: str, *, report_to: str = "none", seed: int = 42, check_only: bool = False):
    """Build the real TRL config of a training stage: rlft defaults < recipe ``trl:`` < fixed keys.

    On a machine without CUDA, ``bf16``/``fp16: true`` is an error naming the override that turns it off,
    except with ``check_only`` (``rlft plan`` of a GPU recipe on a laptop), where the rest is still checked.
    """
    import torch

    cls = config_class(stage.trl_config)
    fields = {f.name for f in dataclasses.fields(cls)}
    aliases = {k.replace("activation_", "gradient_") for k in fields} | {k.replace("gradient_", "activation_") for k in fields}
    unknown = [k for k in stage.trl if k not in fields and not (k.endswith(("checkpointing", "checkpointing_kwargs")) and k in aliases)]
    where = f"stages.{stage.name}.trl"
    problems = [(where, f"unknown {cls.__name__} key {k!r}. {MOVED_KEYS.get(k) or did_you_mean(k, fields)}".strip()) for k in unknown]
    bad_values, numbers = checked_values(cls, {k: v for k, v in stage.trl.items() if k in fields})
    problems += [(f"{where}.{k}", message) for k, message in bad_values]
    fields_hint = f"see the fields of {cls.__module__}.{cls.__name__}"
    if "report_to" in stage.trl:  # rlft sets it from tracking.backends: taken silently, the user's trackers would be dropped
        if not problems:
            raise RlftError(REPORT_TO[0], where=f"{where}.report_to", fix=REPORT_TO[1])
        problems.append((f"{where}.report_to", "; ".join(REPORT_TO)))
    if len(problems) == 1 and unknown:
        raise RlftError(problems[0][1], where=where, fix=fields_hint)
    if problems:  # every bad key of this stage at once, not the first one found
        raise RecipeError(where, [(k, m if k.endswith(".report_to") else f"{m}; {fields_hint}") for k, m in problems])
    kwargs = dict(stage.trl_defaults)
    if not torch.cuda.is_available():
        kwargs.update(bf16=False, fp16=False, use_cpu=True)  # bf16 is 5-7x slower (and an error) on CPU
    kwargs.update(seed=seed)
    kwargs.update(stage.trl)
    kwargs.update(numbers)  # a number written as quoted text ('1e-4') reaches TRL as the number it means
    half = [k for k in ("bf16", "fp16") if stage.trl.get(k) and not torch.cuda.is_available()]
    if half and check_only:
        kwargs.update(bf16=False, fp16=False, use_cpu=True)
    elif half:
        raise RlftError(
            f"{half[0]}: true needs a GPU, and this machine has none (CPU training runs in fp32)",
            where=f"stages.{stage.name}.trl.{half[0]}",
            fix=f"run it on a GPU machine, or override: stages.{stage.name}.trl.{half[0]}=false",
        )
    _checkpointing_names(cls, kwargs, stage.trl)
    kwargs.update(output_dir=output_dir, report_to=report_to, run_name=None)
    try:
        args = cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise RlftError(f"TRL rejects this config: {exc}", where=f"stages.{stage.name}.trl", fix="change the named key") from exc
    from rlft.training.selective import check_dropout_kept

    check_dropout_kept(stage, args)
    return args


def checked_values(cls, given: dict) -> tuple[list[tuple[str, str]], dict]:
    """``(problems, numbers)``: (key, message) for each value that cannot have its field's type (text where a number
    or a switch belongs), and the numbers meant by numeric text in number fields (a quoted ``'1e-4'``; rlft's
    YAML loader already reads an unquoted ``1e-4`` as a number).

    TRL's configs check their values one ``__post_init__`` at a time and some not at all (``learning_rate: fast``,
    or the text ``"1e-4"``, would fail at the first optimizer step), so the plain scalar types are checked here,
    every key at once.
    """
    import types
    import typing

    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an unresolvable annotation: leave the value to TRL
        return [], {}
    found, numbers = [], {}
    for key, value in given.items():
        hint = hints.get(key)
        options = set(typing.get_args(hint)) if typing.get_origin(hint) in (typing.Union, types.UnionType) else {hint}
        options.discard(type(None))
        if value is None or not options or not options <= {float, int, bool}:
            continue
        if isinstance(value, bool) and bool not in options:
            found.append((key, f"{value!r} is a switch, but {key} takes a number"))
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                kind = "true or false" if options == {bool} else "a number"
                found.append((key, f"{value!r} is not {kind}"))
                continue
            if float in options:
                numbers[key] = number
            elif int in options and number.is_integer():
                numbers[key] = int(number)
            else:
                found.append((key, f"{value!r} is not {'true or false' if options == {bool} else 'a whole number'}"))
    return found, numbers


def _checkpointing_names(cls, kwargs: dict, given: dict) -> None:
    """transformers renamed ``gradient_checkpointing*`` to ``activation_checkpointing*``: accept either, pass what ``cls`` has."""
    fields = {f.name for f in dataclasses.fields(cls)}
    new = "activation_checkpointing" in fields
    for suffix in ("", "_kwargs"):
        old_key, new_key = f"gradient_checkpointing{suffix}", f"activation_checkpointing{suffix}"
        if new and old_key in kwargs and new_key not in given:
            kwargs[new_key] = kwargs.pop(old_key)
        elif not new and new_key in kwargs:
            value = kwargs.pop(new_key)
            kwargs.setdefault(old_key, value)
