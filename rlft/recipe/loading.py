"""Reading a recipe: YAML (with YAML 1.2 floats), dotted command-line overrides, then validation.

``load_recipe(path, overrides)`` reads the file, applies ``stages.rl.trl.learning_rate=1e-6``-style overrides,
validates the schema and the cross-key checks, and reports *every* problem at once as a ``RecipeError``
naming the file, line or key and the fix.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from rlft.errors import RecipeError, RlftError, did_you_mean
from rlft.recipe.checks import cross_key_problems
from rlft.recipe.problems import problems_from
from rlft.recipe.schema import STAGE_KINDS, Recipe


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-6`` as a string; learning rates are written that way, so read it as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def read_yaml(path: Path) -> dict:
    if not path.exists():
        raise RlftError(f"recipe file {path} does not exist", fix="check the path; the bundled recipes are in recipes/")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise RlftError(f"YAML syntax error: {problem}", where=where, fix="fix the indentation or quoting on that line") from exc
    except UnicodeDecodeError as exc:
        raise RlftError(f"recipe file {path} is not UTF-8 text", fix="save it as UTF-8") from exc
    if not isinstance(data, dict):
        raise RlftError(f"recipe {path} must be a YAML mapping (name:, model:, stages:)", fix="see recipes/quickstart.yaml")
    return data


def apply_overrides(data: dict, overrides: list[str], source: str) -> dict:
    """Apply ``a.b.c=value`` overrides; ``stages.<name or index>`` addresses one stage."""
    for item in overrides:
        if "=" not in item:
            raise RlftError(f"override {item!r} has no '='", fix="write overrides as key.path=value, e.g. stages.rl.trl.learning_rate=1e-6")
        key, _, raw = item.partition("=")
        if not key.strip():
            raise RlftError(f"override {item!r} has no key before '='", fix="write overrides as key.path=value, e.g. seed=7")
        try:
            value = parse_yaml(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise RlftError(
                f"override {item!r}: the value is not valid YAML ({getattr(exc, 'problem', None) or exc})",
                where=source,
                fix=f"quote the value ({key}='...'); lists are [a, b], mappings {{k: v}}",
            ) from None
        parts = key.strip().split(".")
        node: Any = data
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                names = [s.get("name") for s in node if isinstance(s, dict)]
                if part in names:
                    idx = names.index(part)
                elif part.isdigit() and int(part) < len(node):
                    idx = int(part)
                else:
                    raise RlftError(
                        f"override {key}: no stage named {part!r}",
                        where=source,
                        fix=f"{did_you_mean(part, names)}stages are: {', '.join(map(str, names))}",
                    )
                if last:
                    node[idx] = value
                else:
                    node = node[idx]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    if part == "data" and isinstance(node.get(part), str):
                        node[part] = {"source": node[part]}  # expand the shorthand to reach its keys
                    node = node.setdefault(part, {})
            else:
                raise RlftError(
                    f"override {key}: {'.'.join(parts[:i])} is {node!r}, not a mapping with keys",
                    where=source,
                    fix=f"set {'.'.join(parts[:i])} itself ({'.'.join(parts[:i])}=VALUE), or check the key path",
                )
    return data


def load_recipe(path: str | os.PathLike, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe file; raise ``RecipeError`` with every problem."""
    path = Path(path)
    data = apply_overrides(read_yaml(path), list(overrides or []), str(path))
    return recipe_from_dict(data, str(path))


def recipe_from_dict(data: dict, source: str = "<recipe>") -> Recipe:
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(source, problems_from(exc, data, Recipe, STAGE_KINDS)) from None
    problems = cross_key_problems(recipe)
    if problems:
        error = RecipeError(source, problems)
        error.recipe = recipe  # valid in shape: deeper checks can still run and add their problems (rlft.cli)
        raise error
    return recipe
