"""A catalogue of bad inputs (docs/bad_inputs.md): each ends in rlft's own error, naming where and the fix.

Every case is one ``Case``: it makes its bad input in a fresh folder and returns the message a user
sees (an error that is not rlft's shows as ``uncaught <type>: ...`` and fails the case). The
run-time cases also check that earlier output (a finished stage's folder, summary.json) is untouched.
docs/bad_inputs.md's table is generated from ``CASES``: ``.venv/bin/python tests/test_bad_inputs.py`` prints it.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import sum_rows, write_jsonl

from rlft.errors import RlftError
from rlft.recipe import DataSpec, load_recipe, recipe_from_dict

# --------------------------------------------------------------------------------------------- scaffolding


class Scene:
    """One case's fresh folder and helpers to write its bad input; the tiny model is built on first use."""

    def __init__(self, root: Path, tiny_model: Callable[[], Path]):
        self.root = root
        self._tiny_model = tiny_model

    @property
    def tiny_model(self) -> Path:
        return self._tiny_model()

    def file(self, name: str, content: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return path

    def recipe(self, data: dict) -> Path:
        return self.file("r.yaml", yaml.safe_dump(data, sort_keys=False))


@dataclass(frozen=True)
class Case:
    id: str
    bad_input: str
    action: str  # what the user does
    expect: tuple[str, ...]  # what the message must name: the file / key path / row, and the fix
    run: Callable[[Scene], str]  # makes the bad input, returns the message the user sees


CASES: list[Case] = []


def case(id: str, bad_input: str, action: str, *expect: str):
    def register(run: Callable[[Scene], str]):
        CASES.append(Case(id, bad_input, action, expect, run))
        return run

    return register


def error_of(fn, *args, **kwargs) -> str:
    """The message of what ``fn`` raises; an error that is not an ``RlftError`` comes back as ``uncaught <type>: ...``."""
    try:
        fn(*args, **kwargs)
    except RlftError as exc:
        return str(exc)
    except Exception as exc:
        return f"uncaught {type(exc).__name__}: {exc}"
    raise AssertionError(f"{getattr(fn, '__name__', fn)} raised nothing")


def base_recipe() -> dict:
    return {
        "name": "t",
        "model": "bundled:smollm2-135m-instruct",
        "stages": [
            {"name": "sft", "kind": "sft", "data": "bundled:arithmetic-sft", "trl": {"max_steps": 2}},
            {"name": "rl", "kind": "grpo", "init_from": "sft", "data": "bundled:arithmetic", "rewards": [{"name": "math_accuracy"}]},
        ],
    }


def with_stage(key: str, value, stage: int = 0, data: dict | None = None) -> dict:
    data = data or base_recipe()
    data["stages"][stage][key] = value
    return data


def load(scene: Scene, data: dict, overrides: list[str] | tuple = ()):
    return load_recipe(scene.recipe(data), list(overrides))


def check(scene: Scene, data: dict, overrides: list[str] | tuple = (), *, here: bool = False) -> None:
    """What `rlft plan` (and, with ``here``, `rlft run`) checks before anything is written."""
    from rlft.pipeline.checks import check_recipe

    path = scene.recipe(data)
    check_recipe(load_recipe(path, list(overrides)), str(path), here=here)


def rows_error(scene: Scene, rows_file: str, **spec) -> str:
    from rlft.data.rows import load_rows

    kind = spec.pop("kind", None)
    return error_of(load_rows, DataSpec(source=rows_file, **spec), split="train", base_dir=scene.root, kind=kind)


def reward_error(scene: Scene, source: str, ref: str, *call, timeout_s: float | None = None, **kwargs) -> str:
    """Resolve ``ref`` from a reward file holding ``source``; with ``call`` (prompts, completions), also call it."""
    from rlft.reward_refs import resolve_reward

    scene.file("my_rewards.py", source)
    if not call:
        return error_of(resolve_reward, ref, base_dir=scene.root, **kwargs)
    reward = resolve_reward(ref, base_dir=scene.root, timeout_s=timeout_s, **kwargs).reward
    return error_of(reward, *call)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def finished_run(scene: Scene, stages: list[dict], model: str = "bundled:smollm2-135m-instruct") -> tuple[Path, Path]:
    """A run folder as `rlft run` leaves it once its first stage finished: recipe.json, summary.json, <stage>/.

    Returns (recipe file, run folder). The first stage's model is a copy of ``model`` when that is a folder.
    """
    data = {"name": "t", "model": model, "tracking": {"mode": "disabled"}, "stages": stages}
    path = scene.recipe(data)
    recipe = recipe_from_dict(data, str(path))
    run_dir = scene.root / "runs" / "r"
    first = run_dir / stages[0]["name"]
    if Path(model).is_dir():
        shutil.copytree(model, first / "model")
    else:
        (first / "model").mkdir(parents=True)
        (first / "model" / "config.json").write_text("{}")
    result = {"name": first.name, "kind": stages[0]["kind"], "status": "done", "model_path": str(first / "model"), "metrics": {}}
    (first / "manifest.json").write_text(json.dumps({"result": result}))
    plan = {"recipe": recipe.model_dump(mode="json"), "source": str(path), "recipe_dir": str(scene.root), "run_id": "r"}
    (run_dir / "recipe.json").write_text(json.dumps(plan))
    (run_dir / "summary.json").write_text(json.dumps({"run_id": "r", "status": "failed", "stages": [{**result, "status": "done"}]}))
    return path, run_dir


def run_stage_here(run_dir: Path, stage: str) -> str:
    """Run one stage as the stage process does (``rlft.pipeline.runner``, in this process); return the error it records.

    Checks the run folder is exactly as before — the finished stage, recipe.json, summary.json — apart from that record.
    """
    from rlft.pipeline import runner

    before = snapshot(run_dir)
    assert runner.main([str(run_dir), stage]) != 0
    record = run_dir / f".{stage}.error.json"
    message = json.loads(record.read_text())["message"]
    record.unlink()
    assert snapshot(run_dir) == before, "a failed stage changed the run folder"
    return message


def no_stage_starts(*args, **kwargs):
    """Stands in for the pipeline's subprocess.run: these cases must stop before any stage process starts."""
    raise AssertionError("the run went on to start a stage")


@contextlib.contextmanager
def no_wandb_key(scene: Scene):
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("WANDB_API_KEY", raising=False)
        mp.setenv("NETRC", str(scene.root / "no-netrc"))
        yield mp


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` made read-only (chmod 555); as root, where chmod does not bind, ``os.access`` reports it as a user would see it."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    try:
        with pytest.MonkeyPatch.context() as mp:
            if os.geteuid() == 0:
                real = os.access
                mp.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == folder and mode & os.W_OK else real(p, mode, **kw))
            yield mp
    finally:
        folder.chmod(0o755)


# --------------------------------------------------------------------------------------------- recipe


@case(
    "recipe-missing",
    "the recipe file does not exist",
    "`rlft plan nope.yaml`",
    "recipe file",
    "nope.yaml does not exist",
    "fix: check the path",
)
def _(scene):
    return error_of(load_recipe, scene.root / "nope.yaml")


@case(
    "recipe-yaml-syntax",
    "a YAML syntax error (bad indentation)",
    "`rlft plan bad.yaml` with `kind:` indented one space too far",
    "r.yaml, line 5, column 4: YAML syntax error",
    "fix: fix the indentation or quoting on that line",
)
def _(scene):
    return error_of(load_recipe, scene.file("r.yaml", "name: x\nmodel: m\nstages:\n  - name: a\n   kind: sft\n"))


@case(
    "recipe-not-utf8",
    "the recipe file is not UTF-8 (Latin-1 bytes)",
    "save r.yaml as Latin-1",
    "is not UTF-8 text",
    "fix: save it as UTF-8",
)
def _(scene):
    return error_of(load_recipe, scene.file("r.yaml", "name: t\ndescription: caf\xe9\n".encode("latin-1")))


@case(
    "recipe-unknown-key",
    "an unknown key (a typo)",
    "`init_fron: sft` in stage rl",
    "stages.rl.init_fron: unknown key",
    "did you mean 'init_from'?",
)
def _(scene):
    return error_of(load, scene, with_stage("init_fron", "sft", stage=1))


@case("recipe-wrong-type", "a value of the wrong type", "`seed: forty-two`", "seed: Input should be a valid integer", "(got 'forty-two')")
def _(scene):
    return error_of(load, scene, {**base_recipe(), "seed": "forty-two"})


@case(
    "recipe-out-of-range",
    "a value out of range",
    "`peft: {lora: {r: 0}}` in stage sft",
    "stages.sft.peft.lora.r: Input should be greater than or equal to 1",
    "(got 0)",
)
def _(scene):
    return error_of(load, scene, with_stage("peft", {"lora": {"r": 0}}))


@case("recipe-missing-key", "a required key is missing", "leave out `model:`", "model: required key is missing; add it")
def _(scene):
    data = base_recipe()
    del data["model"]
    return error_of(load, scene, data)


@case("recipe-unknown-kind", "an unknown stage kind", "`kind: ppo2`", "stages.rl: unknown stage kind 'ppo2'", "kinds: sft, reward_model")
def _(scene):
    return error_of(load, scene, with_stage("kind", "ppo2", stage=1))


@case(
    "recipe-duplicate-stage",
    "two stages with the same name",
    "name both stages `sft`",
    "stages: two stages are named 'sft' (stages 0 and 1)",
    "rename one, e.g. stages.1.name=sft-2",
)
def _(scene):
    data = with_stage("name", "sft", stage=1)
    del data["stages"][1]["init_from"]
    return error_of(load, scene, data)


@case(
    "recipe-forward-init-from",
    "`init_from` names a later stage",
    "`init_from: rl` in stage sft (the first stage)",
    "stages.sft.init_from: 'rl' comes later; stages run in order",
    "earlier stages: (none)",
)
def _(scene):
    return error_of(load, scene, with_stage("init_from", "rl"))


@case(
    "recipe-init-from-cycle",
    "a cycle: a stage starts from itself",
    "`init_from: rl` in stage rl",
    "stages.rl.init_from: 'rl' is this stage itself",
    "a stage starts from an earlier stage, or from the recipe's model without init_from",
)
def _(scene):
    return error_of(load, scene, with_stage("init_from", "rl", stage=1))


@case(
    "recipe-init-from-eval",
    "`init_from` names a stage that makes no model",
    "`init_from: ev` where `ev` is an eval stage",
    "stages.rl.init_from: stage 'ev' (eval) makes no model",
    "name a stage that trains one",
)
def _(scene):
    data = with_stage("init_from", "ev", stage=1)
    data["stages"].insert(1, {"name": "ev", "kind": "eval", "data": "bundled:arithmetic", "rewards": [{"name": "math_accuracy"}]})
    return error_of(load, scene, data)


@case(
    "recipe-stage-takes-no-rewards",
    "a stage kind that takes no rewards is given some",
    "`rewards: [{name: math_accuracy}]` in an sft stage",
    "stages.sft.rewards: unknown key. sft stages take no `rewards:` (grpo, rloo, ppo, expert_iteration, iterative_dpo, online_dpo, eval, merge stages do)",
    "did you mean scorecard.rewards?",
)
def _(scene):
    return error_of(load, scene, with_stage("rewards", [{"name": "math_accuracy"}]))


@case(
    "recipe-reward-model-not-rm-stage",
    "a `model:` reward names a stage that is not a reward model",
    "`rewards: [{model: sft}]` in stage rl",
    "stages.rl.rewards[0]: model: 'sft' must name an earlier reward_model stage",
)
def _(scene):
    return error_of(load, scene, with_stage("rewards", [{"model": "sft"}], stage=1))


@case(
    "override-no-equals",
    "an override without `=`",
    "`rlft run r.yaml seed`",
    "override 'seed' has no '='",
    "fix: write overrides as key.path=value",
)
def _(scene):
    return error_of(load, scene, base_recipe(), ["seed"])


@case(
    "override-bad-yaml",
    "an override whose value is not YAML",
    "`rlft run r.yaml 'seed=[1,'`",
    "override 'seed=[1,': the value is not valid YAML",
    "fix: quote the value (seed='...')",
)
def _(scene):
    return error_of(load, scene, base_recipe(), ["seed=[1,"])


@case(
    "override-unknown-stage",
    "an override names no stage",
    "`rlft run r.yaml stages.rll.seed=1`",
    "override stages.rll.seed: no stage named 'rll'",
    "fix: did you mean 'rl'? stages are: sft, rl",
)
def _(scene):
    return error_of(load, scene, base_recipe(), ["stages.rll.seed=1"])


@case(
    "override-into-scalar",
    "an override reaches into a plain value",
    "`rlft run r.yaml stages.sft.kind.x=1`",
    "override stages.sft.kind.x: stages.sft.kind is 'sft', not a mapping with keys",
    "fix: set stages.sft.kind itself",
)
def _(scene):
    return error_of(load, scene, base_recipe(), ["stages.sft.kind.x=1"])


@case(
    "trl-unknown-key",
    "an unknown TRL config key",
    "`trl: {learning_rat: 1e-4}` in stage sft",
    "stages.sft.trl: unknown SFTConfig key 'learning_rat'. did you mean 'learning_rate'?",
    "see the fields of trl",
)
def _(scene):
    return error_of(check, scene, with_stage("trl", {"learning_rat": 1e-4}))


@case(
    "trl-rejects",
    "a TRL config TRL itself rejects",
    "`num_generations: 3` with `per_device_train_batch_size: 4` in a grpo stage",
    "stages.rl.trl: TRL rejects this config",
    "change the named key",
)
def _(scene):
    return error_of(check, scene, with_stage("trl", {"num_generations": 3, "per_device_train_batch_size": 4}, stage=1))


@case(
    "trl-bf16-on-cpu",
    "`bf16: true` on a machine without a GPU",
    "`rlft run` a GPU recipe on a laptop",
    "stages.sft.trl.bf16: bf16: true needs a GPU",
    "override: stages.sft.trl.bf16=false",
)
def _(scene):
    import torch

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.cuda, "is_available", lambda: False)
        return error_of(check, scene, with_stage("trl", {"bf16": True}), here=True)


# --------------------------------------------------------------------------------------------- data


@case(
    "data-missing", "the data file does not exist", "`data: ./nope.jsonl`", "data file ./nope.jsonl does not exist", "fix: check the path"
)
def _(scene):
    return rows_error(scene, "./nope.jsonl")


@case(
    "data-empty",
    "the data file is empty",
    "`data: d.jsonl`, an empty file",
    "d.jsonl: data file d.jsonl is empty",
    "fix: point the stage at a file",
)
def _(scene):
    scene.file("d.jsonl", "\n")
    return rows_error(scene, "d.jsonl")


@case(
    "data-unsupported-type",
    "a data file of an unsupported type",
    "`data: ./d.txt`",
    "data file ./d.txt has an unsupported type",
    "use one of: .json",
)
def _(scene):
    scene.file("d.txt", "hello\n")
    return rows_error(scene, "./d.txt")


@case(
    "data-bad-json-line",
    "a line of a .jsonl file is not JSON",
    "line 2 misses a closing brace",
    "d.jsonl, line 2, column 15: not valid JSON: Expecting ',' delimiter",
    "fix: fix that line (one JSON object per line)",
)
def _(scene):
    scene.file("d.jsonl", '{"prompt": "a"}\n{"prompt": "b"\n{"prompt": "c"}\n')
    return rows_error(scene, "d.jsonl")


@case(
    "data-not-utf8",
    "non-UTF-8 bytes in a data file",
    "line 2 holds a Latin-1 `é`",
    "d.jsonl, line 2, column 16: data file d.jsonl is not UTF-8 text (byte 0xe9)",
    "fix: save the file as UTF-8",
)
def _(scene):
    scene.file("d.jsonl", b'{"prompt": "a"}\n{"prompt": "caf\xe9"}\n')
    return rows_error(scene, "d.jsonl")


@case(
    "data-missing-mapped-column",
    "`columns:` maps to a column the file lacks",
    "`columns: {prompt: q}` on rows with `question`",
    "d.jsonl has no column 'q'",
    "fix: its columns are: question; fix `columns:` in the recipe",
)
def _(scene):
    write_jsonl(scene.root / "d.jsonl", [{"question": "1+1?"}])
    return rows_error(scene, "d.jsonl", columns={"prompt": "q"})


@case(
    "data-missing-column",
    "the data lacks a column the stage needs",
    "a grpo stage on rows without `prompt`",
    "d.jsonl has no column 'prompt' (needed by this stage)",
    "map one with `columns: {prompt: <source column>}`",
)
def _(scene):
    from rlft.data.rows import load_rows

    write_jsonl(scene.root / "d.jsonl", [{"question": "1+1?"}])
    return error_of(load_rows, DataSpec(source="d.jsonl"), split="train", required=("prompt",), base_dir=scene.root)


@case(
    "data-no-rows",
    "a data file with a header and no rows",
    "a .csv with only its header line",
    "d.csv: data file d.csv has no rows",
    "fix: point the stage at a file with rows",
)
def _(scene):
    scene.file("d.csv", "prompt,answer\n")
    return rows_error(scene, "d.csv")


@case(
    "data-empty-prompt",
    "a row with an empty prompt",
    "row 1 has `prompt: ''`",
    "d.jsonl row 1: empty 'prompt'",
    "fix: remove or fill the 1 empty row(s)",
)
def _(scene):
    write_jsonl(scene.root / "d.jsonl", [{"prompt": "1+1?"}, {"prompt": " "}])
    return rows_error(scene, "d.jsonl")


@case(
    "data-bad-message-format",
    "a prompt that is neither text nor chat messages",
    'row 1 has `prompt: [{"text": "hi"}]` (no role/content)',
    "d.jsonl row 1: 'prompt' is not text or a list of {role, content} messages",
    'fix: write chat messages like [{"role": "user", "content": "..."}], or plain text',
)
def _(scene):
    scene.file("d.jsonl", '{"prompt": [{"role": "user", "content": "1+1?"}]}\n{"prompt": [{"text": "hi"}]}\n')
    return rows_error(scene, "d.jsonl")


@case(
    "data-bad-messages-column",
    "a `messages` row with a message that has no content",
    '`messages: [{"role": "user", "content": "a"}, {"role": "assistant"}]`',
    "d.jsonl row 0: 'messages' is not a list of {role, content} messages",
    'fix: write chat messages like [{"role": "user"',
)
def _(scene):
    write_jsonl(scene.root / "d.jsonl", [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant"}]}])
    return rows_error(scene, "d.jsonl")


@case(
    "data-preference-same-answer",
    "a preference pair whose two answers are the same",
    "`chosen` equals `rejected` in row 0",
    "d.jsonl row 0: 'chosen' and 'rejected' are the same answer",
    "fix: remove the row",
)
def _(scene):
    write_jsonl(scene.root / "d.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "a"}])
    return rows_error(scene, "d.jsonl", kind="preference")


LONG_ROWS = [{"prompt": "1+1=", "completion": "2"}, {"prompt": "9" * 120 + "=", "completion": "x"}, {"prompt": "2+2=", "completion": "4"}]


@case(
    "data-row-too-long",
    "a row longer than the stage's `trl.max_length`, with `data.too_long: error` (default `truncate`: counted, TRL cuts it)",
    "a 120-character prompt, max_length 48, tiny character tokenizer",
    "stages.sft.data: data",
    "row 1 is",
    "tokens, longer than max_length 48 (1 of 3 rows are)",
    "fix: shorten or drop those rows, raise the stage's trl.max_length, or let TRL cut them: stages.sft.data.too_long=truncate",
)
def _(scene):
    from rlft.data.rows import check_lengths, load_rows
    from rlft.models import load_tokenizer

    write_jsonl(scene.root / "d.jsonl", LONG_ROWS)
    rows, _, label = load_rows(DataSpec(source="d.jsonl"), split="train", base_dir=scene.root)
    tok = load_tokenizer(str(scene.tiny_model))
    assert check_lengths(rows, tok, 48, policy="truncate", label=label, where="stages.sft.data") == 1  # counted; TRL cuts it
    assert check_lengths(rows, tok, 4096, policy="error", label=label, where="stages.sft.data") == 0
    return error_of(check_lengths, rows, tok, 48, policy="error", label=label, where="stages.sft.data")


@case(
    "data-row-too-long-in-a-run",
    "the same, while `rlft run` trains the stage",
    "`data: {source: d.jsonl, too_long: error}`, `trl: {max_length: 48}`",
    "stages.sft.data: data",
    "longer than max_length 48",
    "too_long=truncate",
)
def _(scene):
    import trl

    from rlft.stages import sft
    from rlft.stages.context import StageContext
    from rlft.tracking import NullRun

    write_jsonl(scene.root / "d.jsonl", LONG_ROWS)
    stage = {
        "name": "sft",
        "kind": "sft",
        "data": {"source": "d.jsonl", "too_long": "error"},
        "eval_data": "d.jsonl",
        "scorecard": {"prompts": 0, "baseline": False},
        "trl": {"max_length": 48, "max_steps": 1},
    }
    recipe = recipe_from_dict({"name": "t", "model": str(scene.tiny_model), "stages": [stage]})
    out = scene.root / ".sft.partial"
    out.mkdir()
    ctx = StageContext(recipe=recipe, run_id="r", run_dir=scene.root, out_dir=out, recipe_dir=scene.root, results={}, tracker=NullRun())

    def built(*args, **kwargs):
        raise AssertionError("the trainer was built: the too-long row was not refused")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trl, "SFTTrainer", built)
        return error_of(sft.run, recipe.stage("sft"), ctx)


@case(
    "data-unknown-bundled",
    "an unknown bundled data set",
    "`data: bundled:arith`",
    "unknown bundled data set 'arith'",
    "fix: use one of: bundled:arithmetic",
)
def _(scene):
    return rows_error(scene, "bundled:arith")


@case(
    "data-unknown-bundled-split",
    "a split the bundled set does not have",
    "`data: {source: bundled:arithmetic, split: valid}`",
    "bundled:arithmetic has no split 'valid'",
    "fix: use one of: train, test",
)
def _(scene):
    from rlft.data.rows import load_rows

    return error_of(load_rows, DataSpec(source="bundled:arithmetic"), split="valid")


@case(
    "data-system-without-prompts",
    "`system:` on rows that have no chat prompt to put it in",
    "`data: {source: t.jsonl, system: ''}`, rows `{text: ...}`",
    "`system` applies to chat prompts, and these rows have neither a prompt nor a messages column (columns: text)",
    "fix: remove system: from this data spec, or map the prompt column with columns: {prompt: <source column>}",
)
def _(scene):
    from rlft.data.rows import load_rows

    write_jsonl(scene.root / "t.jsonl", [{"text": "plain text row"}])
    return error_of(load_rows, DataSpec(source="t.jsonl", system=""), split="train", base_dir=scene.root)


@case(
    "data-hub-offline",
    "a hub data set while offline",
    "`data: openai/gsm8k` with HF_DATASETS_OFFLINE=1",
    "could not load data set 'openai/gsm8k'",
    "fix: offline, use bundled: data or a local .jsonl/.csv/.parquet file",
)
def _(scene):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        return rows_error(scene, "openai/gsm8k")


# --------------------------------------------------------------------------------------------- model


def model_folder(scene: Scene, config: dict | None = None, tokenizer: dict | None = None) -> Path:
    """A model folder as far as rlft looks before loading weights: config.json and tokenizer_config.json."""
    folder = scene.root / "m"
    scene.file("m/config.json", json.dumps({"model_type": "llama", **(config or {})}))
    scene.file("m/tokenizer_config.json", json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", **(tokenizer or {})}))
    return folder


@case(
    "model-missing-path",
    "the model path does not exist",
    "`model: ./no-such-model`",
    "model: model path ./no-such-model does not exist",
    "point `model:` at a folder with config.json",
)
def _(scene):
    return error_of(check, scene, {**base_recipe(), "model": "./no-such-model"})


@case(
    "model-no-config",
    "the model folder has no config.json",
    "`model: /path/m`, a folder of other files",
    "m has no config.json",
    "point `model:` at a folder written by save_pretrained",
)
def _(scene):
    scene.file("m/weights.bin", b"")
    return error_of(check, scene, {**base_recipe(), "model": str(scene.root / "m")})


@case(
    "model-unknown-bundled",
    "an unknown bundled model",
    "`model: bundled:gpt5`",
    "model: unknown bundled model 'gpt5'",
    "use one of: bundled:smollm2-135m-instruct",
)
def _(scene):
    return error_of(check, scene, {**base_recipe(), "model": "bundled:gpt5"})


@case(
    "model-hub-offline",
    "a hub id while offline (HF_HUB_OFFLINE=1), not in the local cache",
    "`rlft run` with `model: rlft-tests/no-such-model`",
    "model: model 'rlft-tests/no-such-model' is neither a local folder nor in the local hub cache",
    "HF_HUB_OFFLINE=1 forbids downloading it",
    "`hf download rlft-tests/no-such-model`",
)
def _(scene):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        t0 = time.monotonic()
        message = error_of(check, scene, {**base_recipe(), "model": "rlft-tests/no-such-model"}, here=True)
        assert time.monotonic() - t0 < 30  # fails at once, no waiting on the network
        check(scene, {**base_recipe(), "model": "rlft-tests/no-such-model"})  # `rlft plan` of a GPU recipe offline stays fine
        return message


@case(
    "model-no-chat-template",
    "the tokenizer has no chat template, and a stage needs one",
    "`model: ./m` (no chat_template) with a grpo stage",
    "has no chat template, and this recipe's prompts are chat messages",
    "start from an instruct/chat model, or give this one a template",
)
def _(scene):
    folder = model_folder(scene)
    message = error_of(check, scene, {**base_recipe(), "model": str(folder)})
    scene.file("m/chat_template.jinja", "{{ messages }}")
    check(scene, {**base_recipe(), "model": str(folder)})  # with a template it passes
    return message


@case(
    "model-remote-code",
    "a model with its own code (config.json `auto_map`) without `trust_remote_code: true`",
    "`model: ./m` whose config.json has auto_map",
    "ships its own Python code (config.json has auto_map)",
    "the recipe does not allow that",
    "set `trust_remote_code: true` at the top of the recipe",
)
def _(scene):
    folder = model_folder(scene, config={"auto_map": {"AutoModelForCausalLM": "modeling_x.XForCausalLM"}}, tokenizer={"chat_template": "x"})
    message = error_of(check, scene, {**base_recipe(), "model": str(folder)})
    check(scene, {**base_recipe(), "model": str(folder), "trust_remote_code": True})  # opted in: accepted
    return message


@case(
    "model-pickle-weights",
    "a model folder whose weights are only pickle files (`pytorch_model.bin`)",
    "`model: ./m` holding pytorch_model.bin and no model.safetensors",
    "holds its weights only as pickle files (pytorch_model.bin); rlft loads safetensors only",
    "convert it once where you trust the file",
)
def _(scene):
    from rlft.models import load_causal_lm

    folder = model_folder(scene, tokenizer={"chat_template": "x"})
    scene.file("m/pytorch_model.bin", "not really a pickle")
    message = error_of(check, scene, {**base_recipe(), "model": str(folder)})
    loading = error_of(load_causal_lm, str(folder))  # and when a stage loads it: refused before any pickle is read
    assert "rlft loads safetensors only\n  fix: convert it once" in loading, loading
    return message


@case(
    "recipe-secret",
    "a credential written into the recipe",
    "`trl: {hub_token: hf_...}` in a stage",
    "stages.0.trl.hub_token: a secret in the recipe would be copied into recipe.json, manifests and W&B",
    "set HF_TOKEN instead",
)
def _(scene):
    return error_of(check, scene, with_stage("trl", {"max_steps": 2, "hub_token": "hf_abcdef123456"}))


# --------------------------------------------------------------------------------------------- rewards


@case(
    "reward-unknown-name",
    "an unknown reward name",
    "`rewards: [{name: math_acuracy}]`",
    "stages.rl.rewards[0].name: unknown reward 'math_acuracy'",
    "did you mean math_accuracy?",
    "registered rewards: ",
)
def _(scene):
    return error_of(check, scene, with_stage("rewards", [{"name": "math_acuracy"}], stage=1))


@case(
    "reward-file-missing",
    "the reward file does not exist",
    "`name: ./mine.py:polite`",
    "mine.py does not exist",
    "give the path relative to the recipe file",
)
def _(scene):
    return error_of(check, scene, with_stage("rewards", [{"name": "./mine.py:polite"}], stage=1))


@case(
    "reward-import-error",
    "the reward file fails to import",
    "my_rewards.py imports a module that is not installed",
    "importing reward file",
    "my_rewards.py failed: ModuleNotFoundError: No module named 'nonexistent_module_xyz'",
    "fix: fix the error in that file",
)
def _(scene):
    return reward_error(scene, "import nonexistent_module_xyz\n", "./my_rewards.py:r")


@case(
    "reward-no-such-function",
    "the module has no such reward",
    "`name: rewards.math:nope`",
    "rewards.math has no reward 'nope'",
    "fix: callables there: ",
)
def _(scene):
    return reward_error(scene, "", "rewards.math:nope")


@case(
    "reward-wrong-signature",
    "a reward with the wrong signature",
    "`def r(x)` instead of TRL's `(prompts, completions, **kwargs)`",
    "reward ./my_rewards.py:r has signature r(x), which does not fit TRL's contract",
    "fix: define it as fn(prompts, completions, **kwargs) -> list[float | None]",
)
def _(scene):
    return reward_error(scene, "def r(x):\n    return [1.0]\n", "./my_rewards.py:r")


@case(
    "reward-bad-kwargs",
    "kwargs a reward does not take",
    "`{name: tag_format, kwargs: {tagg: x}}`",
    "reward tag_format does not accept kwargs {'tagg': 'x'}",
    "fix: check the kwargs: of this reward",
)
def _(scene):
    return reward_error(scene, "", "tag_format", kwargs={"tagg": "x"})


@case(
    "reward-raises",
    "a reward that raises",
    "`raise ValueError('bad row')` inside the reward",
    "reward boom raised ValueError: bad row",
    "fix: fix the reward function",
)
def _(scene):
    return reward_error(
        scene, "def boom(prompts, completions, **kw):\n    raise ValueError('bad row')\n", "./my_rewards.py:boom", ["a"], ["x"]
    )


@case(
    "reward-nan",
    "a reward that returns NaN",
    "`return [1.0, float('nan')]`",
    "reward nan gave nan for sample 1",
    "fix: return a finite float",
)
def _(scene):
    source = "def nan(prompts, completions, **kw):\n    return [1.0, float('nan')]\n"
    return reward_error(scene, source, "./my_rewards.py:nan", ["a", "b"], ["x", "y"])


@case(
    "reward-wrong-length",
    "a reward that returns the wrong number of values",
    "`return [1.0]` for two completions",
    "reward short returned 1 values for 2 completions",
    "fix: return one float (or None) per completion",
)
def _(scene):
    return reward_error(
        scene, "def short(prompts, completions, **kw):\n    return [1.0]\n", "./my_rewards.py:short", ["a", "b"], ["x", "y"]
    )


@case(
    "reward-not-a-number",
    "a reward that returns text",
    "`return ['high']`",
    "reward word gave 'high' for sample 0",
    "fix: return a finite float",
)
def _(scene):
    return reward_error(scene, "def word(prompts, completions, **kw):\n    return ['high']\n", "./my_rewards.py:word", ["a"], ["x"])


SLOW_REWARD = "import time\n\ndef slow(prompts, completions, **kw):\n    time.sleep(60)\n    return [0.0] * len(completions)\n"


@case(
    "reward-hangs",
    "a reward that hangs (sleeps), with `timeout_s: 0.5` (default 600)",
    "a reward calls `time.sleep(60)`",
    "reward slow (one call on 2 completions) did not return within 0.5 s",
    "fix: make it faster, or give it more time: `timeout_s:` on this reward in the recipe (null: no limit)",
)
def _(scene):
    from rewards.math import math_accuracy
    from rlft.reward_refs import time_limit

    handler = signal.getsignal(signal.SIGALRM)
    t0 = time.monotonic()
    message = reward_error(scene, SLOW_REWARD, "./my_rewards.py:slow", ["a", "b"], ["x", "y"], timeout_s=0.5)
    assert time.monotonic() - t0 < 5
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0) and signal.getsignal(signal.SIGALRM) is handler  # nothing left armed
    with time_limit(30, "outer"):  # math-verify's own per-sample alarm must not cancel an enclosing limit
        assert math_accuracy(["q"], ["<answer>2</answer>"], answer=["2"]) == [1.0]
        assert signal.getitimer(signal.ITIMER_REAL)[0] > 0
    return message


@case(
    "reward-hangs-in-a-run",
    "a reward hangs while a grpo stage trains (`timeout_s: 1`)",
    "`rlft run`: stage sft finished, stage rl's reward sleeps",
    "reward slow (one call on 2 completions) did not return within 1 s",
    "`timeout_s:` on this reward",
)
def _(scene):
    scene.file("my_rewards.py", SLOW_REWARD)
    write_jsonl(scene.root / "prompts.jsonl", sum_rows(8, with_completion=False))
    rl = {
        "name": "rl",
        "kind": "grpo",
        "init_from": "sft",
        "data": "prompts.jsonl",
        "rewards": [{"name": "./my_rewards.py:slow", "timeout_s": 1}],
        "scorecard": {"prompts": 0},
        "trl": {"max_steps": 1, "num_generations": 2, "per_device_train_batch_size": 2, "max_completion_length": 4},
    }
    _, run_dir = finished_run(scene, [{"name": "sft", "kind": "sft", "data": "prompts.jsonl"}, rl], model=str(scene.tiny_model))
    return run_stage_here(run_dir, "rl")


# --------------------------------------------------------------------------------------------- environment


@case(
    "wandb-online-without-key",
    "`tracking.mode: online` without a W&B API key",
    "`rlft run r.yaml tracking.mode=online` with no WANDB_API_KEY and no `wandb login`",
    "tracking.mode: tracking.mode is online, but there is no W&B API key",
    "run `wandb login` (or export WANDB_API_KEY)",
    "tracking.mode=offline",
    "tracking.fallback_offline=true",
)
def _(scene):
    with no_wandb_key(scene):
        return error_of(check, scene, base_recipe(), ["tracking.mode=online"], here=True)


@case(
    "wandb-online-fallback",
    "the same, with `tracking.fallback_offline: true` (not an error)",
    "`rlft run r.yaml tracking.mode=online tracking.fallback_offline=true`",
    "[sft] no W&B API key: tracking offline (tracking.fallback_offline)",
    "upload later with `wandb sync`",
)
def _(scene):
    import wandb

    from rlft import tracking

    with no_wandb_key(scene) as mp:
        for key in ("WANDB_SILENT", "WANDB_LOG_MODEL", "WANDB_WATCH"):  # start_stage_run sets them; put them back after
            mp.setenv(key, os.environ.get(key, "false"))
        started: list[dict] = []
        mp.setattr(wandb, "init", lambda **kw: started.append(kw) or SimpleNamespace(id="x"))
        overrides = ["tracking.mode=online", "tracking.fallback_offline=true"]
        check(scene, base_recipe(), overrides, here=True)  # passes
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            tracking.start_stage_run(
                tracking=load(scene, base_recipe(), overrides).tracking,
                run_id="r",
                run_dir=scene.root,
                stage_name="sft",
                stage_kind="sft",
                config={},
            )
        assert started[0]["mode"] == "offline"
        return printed.getvalue()


@case(
    "output-dir-not-writable",
    "`output_dir:` is a folder this user cannot write (chmod 555)",
    "`rlft run r.yaml output_dir=ro/runs`",
    "output_dir: ",
    "ro is not a folder this user can write",
    "choose another folder (output_dir=PATH, or rlft run --output-dir PATH), or make it writable",
)
def _(scene):
    with read_only(scene.root / "ro"):
        return error_of(check, scene, base_recipe(), [f"output_dir={scene.root / 'ro' / 'runs'}"], here=True)


@case(
    "output-dir-option-not-writable",
    "`rlft run --output-dir` names a folder this user cannot write",
    "`rlft run r.yaml --output-dir ro/runs`",
    "exit 2",
    "output_dir: ",
    "is not a folder this user can write",
)
def _(scene):
    from typer.testing import CliRunner

    from rlft.cli.app import app
    from rlft.pipeline import run as pipeline

    path = scene.recipe(base_recipe())
    with read_only(scene.root / "ro") as mp:
        mp.setattr(pipeline.subprocess, "run", no_stage_starts)
        result = CliRunner().invoke(app, ["run", str(path), "--output-dir", str(scene.root / "ro" / "runs")])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return f"uncaught {type(result.exception).__name__}: {result.exception}"
    return f"exit {result.exit_code}: {result.output}"


@case(
    "disk-full-saving-model",
    "the disk fills while a stage saves its model",
    "`rlft run`, stage sft2 saving model.safetensors hits ENOSPC",
    "No space left on device",
    "model.safetensors",
    "fix: free space",
)
def _(scene):
    def save_fails(cfg, ctx):
        target = ctx.out_dir / "model" / "model.safetensors"
        target.parent.mkdir(parents=True)
        target.write_bytes(b"\0" * 1024)  # half written when the disk filled
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    sft = {"name": "sft", "kind": "sft", "data": "bundled:arithmetic-sft"}
    _, run_dir = finished_run(scene, [sft, {**sft, "name": "sft2", "init_from": "sft"}])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("rlft.stages.get", lambda kind: SimpleNamespace(run=save_fails))
        return run_stage_here(run_dir, "sft2")


def pipeline_write_fails(scene: Scene, code: int) -> str:
    """A rerun of a finished run whose folder can no longer be written; checks recipe.json and summary.json are untouched."""
    from rlft.pipeline import run as pipeline

    path, run_dir = finished_run(scene, [{"name": "sft", "kind": "sft", "data": "bundled:arithmetic-sft"}])
    before = snapshot(run_dir)
    real = Path.write_text

    def write_text(self, *args, **kwargs):
        if self.parent == run_dir:
            raise OSError(code, os.strerror(code), str(self))
        return real(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Path, "write_text", write_text)
        mp.setattr(pipeline.subprocess, "run", no_stage_starts)
        message = error_of(pipeline.run_pipeline, load_recipe(path), source=str(path), run_id="r", output_dir=str(run_dir.parent))
    assert {k: v for k, v in snapshot(run_dir).items() if k != ".lock"} == {k: v for k, v in before.items() if k != ".lock"}
    return message


@case(
    "disk-full-writing-summary",
    "the disk is full when `rlft run` writes recipe.json / summary.json",
    "rerun a finished run on a full disk",
    "cannot write",
    "recipe.json",
    "fix:",
)
def _(scene):
    return pipeline_write_fails(scene, errno.ENOSPC)


@case(
    "run-folder-read-only",
    "the run folder became read-only (permission denied)",
    "rerun a finished run whose folder was chmod 555",
    "cannot write",
    "recipe.json",
    "fix:",
)
def _(scene):
    return pipeline_write_fails(scene, errno.EACCES)


@case(
    "run-folder-in-use",
    "the run folder is in use by another `rlft run`",
    "start a second `rlft run --run-id r` while the first runs",
    "is in use by another rlft pipeline (pid ",
    "fix: wait for it to finish, or choose another --run-id",
)
def _(scene):
    from rlft.pipeline.run import RunLock

    with RunLock(scene.root / "busy"):
        return error_of(RunLock(scene.root / "busy").__enter__)


# --------------------------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("c", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_input(c: Case, tmp_path, request):
    message = c.run(Scene(tmp_path, lambda: request.getfixturevalue("tiny_model")))
    assert not message.startswith("uncaught "), message
    assert "Traceback" not in message
    for part in c.expect:
        assert part in message, f"{part!r} is not in the message:\n{message}"


def test_catalogue_ids_are_unique_and_at_least_30():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 30


def rlft(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "rlft"
    full = {k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"} | env
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, timeout=300, env=full)


def test_cli_bad_override_exits_2_without_traceback(tmp_path):
    path = Scene(tmp_path, lambda: tmp_path).recipe(base_recipe())
    out = rlft("run", str(path), "seed=[1,", "--output-dir", "runs", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("error: ") and "override 'seed=[1,'" in out.stderr and "fix: quote the value" in out.stderr
    assert not (tmp_path / "runs").exists()


def test_cli_offline_hub_model_and_online_without_key_exit_2_before_any_output(tmp_path):
    """Both problems at once, before a run folder exists: a hub id offline, and online tracking without a key."""
    path = Scene(tmp_path, lambda: tmp_path).recipe({**base_recipe(), "model": "rlft-tests/no-such-model", "tracking": {"mode": "online"}})
    out = rlft("run", str(path), "--output-dir", "runs", cwd=tmp_path, HF_HUB_OFFLINE="1", NETRC=str(tmp_path / "no-netrc"))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "2 problem(s) in recipe" in out.stderr
    assert "- model: model 'rlft-tests/no-such-model' is neither a local folder nor in the local hub cache" in out.stderr
    assert "- tracking.mode: tracking.mode is online, but there is no W&B API key" in out.stderr
    assert not (tmp_path / "runs").exists()


def render_catalogue(root: Path, tiny_model: Callable[[], Path], tests: dict[str, list[str]]) -> str:
    """docs/bad_inputs.md's table: every case run in a fresh folder under ``root``; ``tests`` adds test names per case id."""
    lines = ["| # | case | what you do | the exact message (first line + fix line) | test |", "|---|---|---|---|---|"]
    for i, c in enumerate(CASES, 1):
        folder = root / c.id
        folder.mkdir(parents=True)
        try:
            message = c.run(Scene(folder, tiny_model))
        except AssertionError as exc:
            message = f"uncaught AssertionError: {exc}"
        shown = _first_and_fix(message.replace(str(folder) + "/", "").replace(str(folder), "."))
        case_text = c.bad_input
        names = " ".join(f"`{n}`" for n in (f"test_bad_input[{c.id}]", *tests.get(c.id, ())))
        lines.append(f"| {i} | {case_text} | {c.action} | {shown} | {names} |")
    return "\n".join(lines) + "\n"


def _first_and_fix(message: str) -> str:
    lines = [line.rstrip() for line in message.strip().splitlines()]
    picked = lines[:1] + [line for line in lines[1:] if line.lstrip().startswith(("fix:", "- "))][:2]
    return "<br>".join(f"`` {line.strip()} ``".replace("|", "\\|") for line in picked)  # double backticks: messages hold `key:`


if __name__ == "__main__":  # regenerate docs/bad_inputs.md's table: .venv/bin/python tests/test_bad_inputs.py
    import functools
    import tempfile

    from conftest import build_tiny_model

    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="offline", OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        tiny = functools.cache(lambda: build_tiny_model(Path(tmp) / "tiny"))
        cli = {
            "override-bad-yaml": ["test_cli_bad_override_exits_2_without_traceback"],
            "model-hub-offline": ["test_cli_offline_hub_model_and_online_without_key_exit_2_before_any_output"],
            "wandb-online-without-key": ["test_cli_offline_hub_model_and_online_without_key_exit_2_before_any_output"],
        }
        with contextlib.redirect_stdout(sys.stderr):  # libraries print notes; only the table goes to stdout
            table = render_catalogue(Path(tmp) / "cases", tiny, cli)
    sys.stdout.write(table)
