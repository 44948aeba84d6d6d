"""Keeping secrets out of what a run writes.

rlft writes the resolved recipe to ``recipe.json``, each stage's manifest and its W&B config, and
prints progress lines. None of these may hold a credential. Two rules make that hold:

- a recipe may not carry a secret: a key that names one (``token``, ``api_key``, ``secret``, ``password``
  as a word of the key: ``hub_token``, not ``max_new_tokens`` or ``pad_token``) with a value is refused, with the environment variable to use instead
  (``HF_TOKEN``, ``WANDB_API_KEY``...), which the libraries read themselves;
- rlft never copies the environment into what it writes; ``scrub`` replaces the values of the
  environment's secret-looking variables wherever a text could echo them (error messages).
"""

from __future__ import annotations

import os

SECRET_WORDS = {"token", "secret", "password", "passwd", "credential", "credentials", "apikey"}
SPECIAL_TOKENS = {"pad", "eos", "bos", "unk", "sep", "cls", "mask"}  # pad_token & co. name vocabulary entries, not credentials
ENV_FOR = {"hub_token": "HF_TOKEN", "push_to_hub_token": "HF_TOKEN", "api_key": "WANDB_API_KEY"}


def is_secret_key(key: str) -> bool:
    """``hub_token``, ``HF_TOKEN``, ``WANDB_API_KEY``, ``db_password``: yes; ``max_new_tokens``, ``pad_token``: no."""
    parts = str(key).lower().replace("-", "_").split("_")
    if "api" in parts and "key" in parts:
        return True
    if len(parts) == 2 and parts[0] in SPECIAL_TOKENS and parts[1] == "token":
        return False
    return any(p in SECRET_WORDS for p in parts)


def secret_paths(value, prefix: str = "") -> list[str]:
    """Dotted key paths in a recipe whose key names a secret and whose value is set."""
    out: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if is_secret_key(key) and item not in (None, "", False) and not isinstance(item, dict | list):
                out.append(path)
            else:
                out += secret_paths(item, path)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += secret_paths(item, f"{prefix}.{i}")
    return out


def check_no_secrets(recipe_dict: dict) -> list[tuple[str, str]]:
    """Recipe problems ``(key path, message)`` for every secret written into the recipe."""
    problems = []
    for path in secret_paths(recipe_dict):
        key = path.rsplit(".", 1)[-1]
        env = ENV_FOR.get(key, "an environment variable the library reads (e.g. HF_TOKEN, WANDB_API_KEY)")
        problems.append(
            (path, f"a secret in the recipe would be copied into recipe.json, manifests and W&B; remove it and set {env} instead")
        )
    return problems


def env_secrets() -> list[str]:
    """The values of environment variables whose names look secret (at least 6 characters, so that scrubbing is safe)."""
    return [v for k, v in os.environ.items() if is_secret_key(k) and len(v) >= 6]


def scrub(text: str) -> str:
    """``text`` with every environment secret's value replaced by ``***``."""
    for value in env_secrets():
        text = text.replace(value, "***")
    return text
