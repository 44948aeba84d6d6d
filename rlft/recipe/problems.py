"""Render pydantic validation errors as the key paths a user wrote, with a did-you-mean and a fix."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from rlft.errors import did_you_mean


def _path(loc: tuple, data: dict, kinds: dict) -> str:
    """Render a pydantic location as the dotted key path a user writes (stages by name)."""
    out: list[str] = []
    node: Any = data
    for part in loc:
        if isinstance(part, int) and isinstance(node, list):
            item = node[part] if part < len(node) else None
            name = item.get("name") if isinstance(item, dict) else None
            out.append(str(name) if name else str(part))
            node = item
        elif isinstance(node, dict) and part in node:
            out.append(str(part))
            node = node[part]
        elif part in kinds or isinstance(part, int) or str(part).startswith("function-"):
            continue  # discriminator tags and internal union branches are not keys the user wrote
        else:
            out.append(str(part))
            node = None
    return ".".join(out)


def _model_at(loc: tuple, data: dict, root, kinds: dict):
    """The schema class whose field set applies at ``loc`` (for did-you-mean on unknown keys)."""
    cls: Any = root
    node: Any = data
    for part in loc:
        if isinstance(part, int):
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        if part in kinds and (cls is None or part not in getattr(cls, "model_fields", {})):
            cls = kinds[part]  # a discriminated union's tag picks the stage class
            continue
        if cls is None or not hasattr(cls, "model_fields") or part not in cls.model_fields:
            return cls
        ann = cls.model_fields[part].annotation
        node = node.get(part) if isinstance(node, dict) else None
        cls = _unwrap(ann)
    return cls


def _unwrap(ann):
    """Find the BaseModel class inside an annotation like ``list[X]`` or ``X | None``."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    for a in args:
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a
        inner = _unwrap(a)
        if inner is not None:
            return inner
    return None


def _other_kinds_hint(key, parent, kinds: dict) -> str:
    """A key that other stage kinds take (``rewards:`` on an ``sft`` stage): say which kinds, and the nearest key here."""
    if parent not in kinds.values():
        return ""
    owners = [kind for kind, cls in kinds.items() if key in cls.model_fields]
    if not owners:
        return ""
    kind = next(k for k, cls in kinds.items() if cls is parent)
    nested = [
        f"{field}.{key}" for field, info in parent.model_fields.items() if key in getattr(_unwrap(info.annotation), "model_fields", {})
    ]
    nearest = f"; did you mean {nested[0]}?" if nested else "."
    return f"{kind} stages take no `{key}:` ({', '.join(owners)} stages do){nearest} "


def problems_from(exc: ValidationError, data: dict, root, kinds: dict) -> list[tuple[str, str]]:
    """Turn pydantic's errors into (key path, message with the fix) pairs, one per problem."""
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = _path(loc, data, kinds)
        if err["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1], data, root, kinds)
            allowed = list(parent.model_fields) if parent is not None and hasattr(parent, "model_fields") else []
            hint = _other_kinds_hint(loc[-1], parent, kinds) or did_you_mean(loc[-1], allowed)
            problems.append((path, f"unknown key. {hint}allowed here: {', '.join(allowed)}"))
        elif err["type"] == "value_error":  # our own validators: the message carries the fix; the input can be a whole list
            problems.append((path, str(err["msg"]).removeprefix("Value error, ")))
        elif err["type"] == "missing":
            problems.append((path, "required key is missing; add it"))
        elif err["type"] == "union_tag_invalid":
            problems.append((path, f"unknown stage kind {err['input'].get('kind')!r}; kinds: {', '.join(kinds)}"))
        elif err["type"] == "union_tag_not_found":
            problems.append((path, f"stage has no `kind:`; add one of: {', '.join(kinds)}"))
        else:
            problems.append((path, f"{err['msg']} (got {err.get('input')!r})"))
    return problems
