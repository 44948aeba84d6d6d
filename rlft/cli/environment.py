"""``rlft env``: the versions and the machine a bug report needs, as text or JSON.

Versions come from ``importlib.metadata`` (no package is imported for its version); torch is imported only
to ask for CUDA and the GPUs' names. An optional package that is absent reads ``not installed``.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

NOT_INSTALLED = "not installed"
CORE = ("rlft", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "wandb")
OPTIONAL = ("vllm", "deepspeed", "bitsandbytes", "flash-attn", "trackio", "tensorboard")


def package_versions(names=CORE + OPTIONAL) -> dict[str, str]:
    """``{distribution: version}``, ``not installed`` for one that is absent."""
    from rlft.pipeline.fingerprint import installed_versions

    return installed_versions(names, missing=NOT_INSTALLED)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _accelerator() -> dict:
    """CUDA (its version and each GPU's name) or ``cpu``; nothing when torch is not installed."""
    try:
        import torch
    except ImportError:
        return {"device": "cpu", "cuda": None, "gpus": []}
    if not torch.cuda.is_available():
        return {"device": "cpu", "cuda": None, "gpus": []}
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {"device": "cuda", "cuda": torch.version.cuda, "gpus": gpus}


def environment() -> dict:
    """Everything ``rlft env`` prints: ``python``, ``platform``, ``packages``, ``accelerator``, ``cpu``."""
    return {
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "packages": package_versions(),
        "accelerator": _accelerator(),
        "cpu": {"model": _cpu_model(), "cores": os.cpu_count(), "memory_gib": _memory_gib()},
    }


def render(env: dict) -> str:
    """The text form: one ``name: value`` line each, to paste into an issue."""
    acc = env["accelerator"]
    device = f"cuda {acc['cuda']}: " + ", ".join(acc["gpus"]) if acc["device"] == "cuda" else "cpu"
    cpu = env["cpu"]
    lines = [
        f"python: {env['python']} ({env['python_executable']})",
        f"platform: {env['platform']}",
        f"device: {device}",
        f"cpu: {cpu['model']}, {cpu['cores']} cores, {cpu['memory_gib']} GiB memory",
    ]
    lines += [f"{name}: {version}" for name, version in env["packages"].items()]
    return "\n".join(lines)
