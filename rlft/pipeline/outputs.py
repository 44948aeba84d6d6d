"""What a finished stage offers others: a model card in its ``model/`` and ``adapter/`` folders, and their upload to the Hub.

The runner (``rlft.pipeline.runner``) writes the cards from the stage's manifest when the stage ends, and uploads
when the stage says ``push:`` — only online and with a token; otherwise it prints what it would upload and the
``rlft push`` command that does it later. ``rlft push runs/RUN/STAGE`` uploads a finished stage's folder (writing its
card first when it has none).

A card is the Hub's model-card format (``huggingface_hub.ModelCard``): YAML front matter (base_model, library_name,
tags, license, pipeline_tag), then the base model, what the stage trained on, its held-out scorecard with paired
intervals, its recipe block, the versions and the command that made it.
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import Any

from rlft.errors import RlftError
from rlft.layout import RunLayout, StageLayout
from rlft.models import BUNDLED_HUB, BUNDLED_PREFIX

TEXT_GENERATION = "text-generation"
SCORING_KINDS = ("reward_model", "classifier")  # their model scores text: a text-classification head


# --- the card ----------------------------------------------------------------------------------------------------------


def write_cards(stage_dir: Path, manifest: dict, run_dir: Path) -> list[Path]:
    """Write ``README.md`` into the stage's ``model/`` and ``adapter/`` folders (those that exist); returns the cards written."""
    layout = StageLayout(stage_dir)
    written = []
    for folder, adapter in ((layout.model, False), (layout.adapter, True)):
        if folder.is_dir():
            model_card(manifest, run_dir=run_dir, adapter=adapter).save(folder / StageLayout.CARD)
            written.append(folder / StageLayout.CARD)
    return written


def model_card(manifest: dict, *, run_dir: Path, adapter: bool = False):
    """The model card (``huggingface_hub.ModelCard``) of a stage's model, or of its adapter, from the stage's manifest."""
    from huggingface_hub import ModelCard, ModelCardData

    result, stage, recipe = manifest["result"], manifest["stage"], manifest["recipe"]
    kind = result["kind"]
    base_model, license_ = _base_model(stage, recipe)
    data = ModelCardData(
        base_model=base_model,
        library_name="peft" if adapter else "transformers",
        license=license_,
        pipeline_tag="text-classification" if kind in SCORING_KINDS else TEXT_GENERATION,
        tags=["rlft", kind, *(["lora"] if adapter else [])],
    )
    sections = [
        f"# {stage['name']} ({kind}{', LoRA adapter' if adapter else ''})",
        _about(manifest, adapter=adapter),
        _data_section(manifest.get("data")),
        _scorecard_section(result.get("metrics") or {}),
        "## Recipe\n\nThe stage's block of the recipe (keys left at their defaults are not shown):\n\n```yaml\n"
        + _recipe_block(stage)
        + "```",
        "## How it was made\n\n```bash\n" + reproduce_command(manifest, run_dir) + "\n```",
        _versions_section(manifest.get("versions") or {}),
        _usage_section(adapter, kind),
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(s for s in sections if s) + "\n")


def _hub_id_of(ref: str) -> tuple[str | None, str | None]:
    """(Hub repository, licence) of a model reference: a bundled model's source, a hub id itself, else (None, None)."""
    if ref.startswith(BUNDLED_PREFIX):
        return BUNDLED_HUB.get(ref[len(BUNDLED_PREFIX) :], (None, None))
    path = Path(ref).expanduser()
    if ref.startswith((".", "/", "~")) or path.exists():
        return None, _folder_license(path)
    return ref, None


def _folder_license(path: Path) -> str | None:
    """The licence a local model folder's own card declares, if it has one."""
    from huggingface_hub import ModelCard

    card = path / StageLayout.CARD
    try:
        return ModelCard.load(card).data.license if card.is_file() else None
    except Exception:  # a README that is not a model card: no licence known
        return None


def _base_model(stage: dict, recipe: dict) -> tuple[str | None, str | None]:
    """What the card names as base model: the pushed repository of the stage it started from, else the recipe's model."""
    root_id, license_ = _hub_id_of(recipe["model"])
    start = stage.get("init_from")
    if start:
        earlier = next((s for s in recipe.get("stages", []) if s.get("name") == start), {})
        pushed = (earlier.get("push") or {}).get("hub_model_id")
        if pushed:
            return pushed, license_
    return root_id, license_


def _about(manifest: dict, *, adapter: bool) -> str:
    result, stage, recipe = manifest["result"], manifest["stage"], manifest["recipe"]
    start = stage.get("init_from")
    origin = f"stage `{start}` of the same run (which itself descends from `{recipe['model']}`)" if start else f"`{recipe['model']}`"
    lines = [
        f"A `{result['kind']}` stage trained with rlft on Hugging Face TRL: stage `{stage['name']}` of run "
        f"`{manifest.get('run_id')}` (recipe `{recipe.get('name')}`).",
        "",
        f"- **Base model**: {origin}",
    ]
    if start and manifest.get("start_model"):
        lines.append(f"- **Started from** (on the machine that trained it): `{manifest['start_model']}`")
    if adapter:
        lines.append(
            "- **This folder** holds the LoRA adapter only (PEFT); its `adapter_config.json` names the model it applies to"
            + (" — an earlier stage of the run, so upload that stage too or use the merged model" if start else "")
        )
    return "\n".join(lines)


def _data_section(data: dict | None) -> str:
    if not data:
        return ""
    lines = ["## Training data", ""]
    if "train" in data:
        lines.append(f"- trained on `{data['train']}` ({data.get('rows', '?')} rows)")
    if "held_out" in data:
        lines.append(f"- held out: `{data['held_out']}` ({data.get('held_out_rows', '?')} rows), never trained on")
    if data.get("fingerprint"):
        lines.append(f"- data fingerprint: `{data['fingerprint']}`")
    return "\n".join(lines)


def scorecard_rows(metrics: dict[str, Any]) -> list[list[str]]:
    """Rows of the held-out scorecard: metric, this model, start model, change, 95% interval, n, verdict (strings)."""
    rows = []
    for key in sorted(metrics):
        if not key.startswith("eval/") or key.startswith("eval/delta/"):
            continue
        name = key.removeprefix("eval/")
        delta = f"eval/delta/{name}"
        low, high = metrics.get(f"{delta}/ci_low"), metrics.get(f"{delta}/ci_high")
        interval = f"[{_fmt(low)}, {_fmt(high)}]" if _real(low) and _real(high) else "-"
        verdict = ("not separable" if low <= 0 <= high else "separable") if interval != "-" else "-"
        n = metrics.get(f"{delta}/n")
        rows.append([name, _fmt(metrics[key]), _fmt(metrics.get(f"baseline/{name}")), _fmt(metrics.get(delta)), interval, _fmt(n), verdict])
    return rows


def _scorecard_section(metrics: dict[str, Any]) -> str:
    rows = scorecard_rows(metrics)
    if not rows:
        return "## Held-out scorecard\n\nThis stage reported no held-out figures."
    head = ["metric", "this model", "start model", "change", "95% CI of the change", "n", "verdict"]
    table = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 2) + ["---"]) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]
    return (
        "## Held-out scorecard\n\nOn rows the stage did not train on; the start model is the model the stage started from, "
        "scored on the same prompts or pairs. The interval is a 95% paired bootstrap over them, n their number; "
        "*not separable*: the interval holds 0.\n\n" + "\n".join(table)
    )


def _real(value) -> bool:
    return isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value))


def _fmt(value) -> str:
    if not _real(value):
        return "-"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}"


def _recipe_block(stage: dict) -> str:
    """The stage's recipe block without the keys left at their defaults, as YAML."""
    import yaml

    from rlft.recipe import STAGE_KINDS

    try:
        block = STAGE_KINDS[stage["kind"]].model_validate(stage).model_dump(mode="json", exclude_defaults=True)
        block = {"name": block.pop("name"), "kind": block.pop("kind"), **block}
    except Exception:  # a manifest from another rlft version: its block as recorded
        block = stage
    return yaml.safe_dump(block, sort_keys=False, allow_unicode=True)


def _flat(node: dict, prefix: str = "") -> dict[str, Any]:
    """A recipe as dotted override keys (stages by name, as ``rlft run`` overrides address them)."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "stages" and not prefix and isinstance(value, list):
            for s in value:
                out.update(_flat(s, f"stages.{s.get('name')}."))
        elif isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def reproduce_command(manifest: dict, run_dir: Path) -> str:
    """``rlft run RECIPE --run-id ID`` with, as overrides, where the recorded recipe differs from the recipe file as it is now."""
    from rlft.recipe import load_recipe

    source = manifest.get("recipe_source") or "RECIPE.yaml"
    parts = ["rlft", "run", source, "--run-id", str(manifest.get("run_id"))]
    try:
        now = _flat(load_recipe(source).model_dump(mode="json"))
    except Exception:  # the file moved or changed shape: its resolved form is in the run's recipe.json
        return shlex.join(parts) + f"  # the recipe as run (overrides included) is in {RunLayout(run_dir).recipe}"
    recorded = _flat(manifest["recipe"])
    overrides = [
        f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in recorded.items() if k != "output_dir" and now.get(k, None) != v
    ]
    if Path(manifest["recipe"].get("output_dir", "runs")).resolve() != Path(run_dir).parent.resolve():
        parts += ["--output-dir", str(Path(run_dir).parent)]
    return shlex.join(parts + overrides)


def _versions_section(versions: dict[str, str]) -> str:
    shown = [f"{name} {versions[name]}" for name in ("rlft", "trl", "transformers", "peft", "torch", "python") if name in versions]
    return "## Versions\n\n" + ", ".join(shown) if shown else ""


def _usage_section(adapter: bool, kind: str) -> str:
    if adapter:
        code = (
            "from peft import AutoPeftModelForCausalLM\n\n"
            "model = AutoPeftModelForCausalLM.from_pretrained(REPO_OR_FOLDER)  # its base, with the adapter on it\n"
            "model = model.merge_and_unload()  # optional: one plain model"
        )
    elif kind in SCORING_KINDS:
        code = "from transformers import AutoModelForSequenceClassification\n\nmodel = AutoModelForSequenceClassification.from_pretrained(REPO_OR_FOLDER)"
    else:
        code = "from transformers import AutoModelForCausalLM\n\nmodel = AutoModelForCausalLM.from_pretrained(REPO_OR_FOLDER)"
    return f"## Use\n\n```python\n{code}\n```"


# --- the upload --------------------------------------------------------------------------------------------------------


def hub_api():
    """The Hub client (a function, so that tests can put a recording fake in its place)."""
    from huggingface_hub import HfApi

    return HfApi()


def hub_token() -> str | None:
    """The Hugging Face token this user has (``HF_TOKEN`` or ``hf auth login``), or None."""
    from huggingface_hub import get_token

    return get_token()


def push_folder(stage_dir: Path, *, adapter_only: bool) -> Path:
    """The folder of a finished stage that a push uploads: ``model/``, or ``adapter/`` with ``adapter_only``; an error when it is missing."""
    layout = StageLayout(Path(stage_dir))
    folder = layout.adapter if adapter_only else layout.model
    if folder.is_dir():
        return folder
    if adapter_only:
        raise RlftError(
            f"{stage_dir} has no adapter folder", fix="push the merged model (leave out --adapter-only); adapters come from LoRA stages"
        )
    if layout.adapter.is_dir():
        raise RlftError(f"{stage_dir} saved only its LoRA adapter (save.merged: false)", fix="push it with --adapter-only")
    raise RlftError(f"{stage_dir} has no saved model folder", fix="name a finished stage that trains a model: runs/RUN/STAGE")


def push_command(stage_dir: Path, hub_model_id: str, *, private: bool = False, adapter_only: bool = False) -> str:
    """The ``rlft push`` command line that uploads a stage folder."""
    parts = ["rlft", "push", str(stage_dir), "--hub-model-id", hub_model_id]
    return shlex.join(parts + (["--private"] if private else []) + (["--adapter-only"] if adapter_only else []))


def upload(stage_dir: Path, hub_model_id: str, *, private: bool = False, adapter_only: bool = False, run_dir: Path | None = None) -> str:
    """Create the repository (if new) and upload the stage's model or adapter folder with its card; returns the commit's URL.

    A folder without a card gets one from the stage's manifest first.
    """
    stage_dir = Path(stage_dir)
    folder = push_folder(stage_dir, adapter_only=adapter_only)
    card = folder / StageLayout.CARD
    layout = StageLayout(stage_dir)
    if not card.exists() and layout.manifest.exists():
        manifest = json.loads(layout.manifest.read_text())
        model_card(manifest, run_dir=run_dir or stage_dir.parent, adapter=adapter_only).save(card)
    api = hub_api()
    api.create_repo(hub_model_id, private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=hub_model_id,
        folder_path=str(folder),
        commit_message=f"rlft: upload {stage_dir.parent.name}/{stage_dir.name} ({'adapter' if adapter_only else 'model'})",
    )
    return str(getattr(commit, "commit_url", None) or f"https://huggingface.co/{hub_model_id}")


def push_after_stage(stage_dir: Path, final_dir: Path, spec, *, say=print) -> dict:
    """The runner's push at the end of a stage: upload when online with a token, else say what would go where and how to push later.

    ``stage_dir``: the folder as it is now (the stage's ``.partial`` folder); ``final_dir``: its name once finished, for the
    command. A failed upload does not fail the stage (its training is done): it is reported, with the command to retry.
    Returns the manifest's ``push`` note.
    """
    from rlft.models import hub_offline

    folder = push_folder(stage_dir, adapter_only=spec.adapter_only)
    command = push_command(final_dir, spec.hub_model_id, private=spec.private, adapter_only=spec.adapter_only)
    note = {"hub_model_id": spec.hub_model_id, "folder": folder.name, "private": spec.private, "command": command}
    why = (
        "HF_HUB_OFFLINE is set" if hub_offline() else "no Hugging Face token (HF_TOKEN or `hf auth login`)" if hub_token() is None else None
    )
    if why is not None:
        files = sorted(p.name for p in folder.iterdir())
        say(f"[push] not uploaded: {why}. It would upload {final_dir / folder.name} ({', '.join(files)}) to {spec.hub_model_id}")
        say(f"[push] to upload it later: {command}")
        return {**note, "status": "not pushed", "why": why}
    try:
        url = upload(stage_dir, spec.hub_model_id, private=spec.private, adapter_only=spec.adapter_only, run_dir=final_dir.parent)
    except Exception as exc:  # the network, the token's rights: the stage itself succeeded
        say(f"[push] upload to {spec.hub_model_id} failed: {type(exc).__name__}: {exc}")
        say(f"[push] to retry: {command}")
        return {**note, "status": "failed", "why": f"{type(exc).__name__}: {exc}"}
    say(f"[push] uploaded {folder.name}/ to {url}")
    return {**note, "status": "pushed", "url": url}
