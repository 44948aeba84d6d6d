"""W&B run files read back: one shape for a W&B run, from the local ``run-<id>.wandb`` file.

wandb 0.31 keeps an offline run's config, summary and history only inside ``run-<id>.wandb``. That
file is a LevelDB-style log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks
of chunks (crc32c:4, length:2, type:1 — full, first, middle, last), each record a serialised
``wandb_internal_pb2.Record``. ``read_wandb_file`` decodes it into a ``WandbRun``; a file cut short
(a killed run) yields everything up to the cut, with state ``crashed``; bytes that are not a W&B
log give an ``RlftError`` naming the file.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlft.errors import RlftError

MAGIC = b":W&B"
HEADER = struct.Struct("<4sHB")  # magic, 0xBEE1, version
CHUNK = struct.Struct("<IHB")  # crc32c, length, type
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class WandbRun:
    """A run as rlft reads it back, from whichever source (local file or W&B API)."""

    id: str
    project: str = ""
    group: str = ""
    job_type: str = ""
    name: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # one dict per logged step, with "_step"
    state: str = "running"  # finished | failed | crashed | running
    exit_code: int | None = None
    source: str = ""


def _payloads(data: bytes, path: Path) -> tuple[list[bytes], bool]:
    """The record payloads of a W&B log, and whether the file ended in the middle of one (truncated)."""
    if len(data) < HEADER.size:
        raise RlftError(f"{path} is not a W&B run file (only {len(data)} bytes)", fix="pass a run-<id>.wandb file written by wandb")
    magic, ident, version = HEADER.unpack_from(data, 0)
    if magic != MAGIC or ident != 0xBEE1 or version != 0:
        raise RlftError(f"{path} is not a W&B run file (bad header)", fix="pass a run-<id>.wandb file written by wandb")
    out, pending, pos = [], None, HEADER.size
    while pos < len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < CHUNK.size:  # block trailer: zero padding
            pos += left_in_block
            continue
        if pos + CHUNK.size > len(data):
            return out, True
        _crc, length, kind = CHUNK.unpack_from(data, pos)
        if kind == 0 and length == 0:  # zeroed tail: preallocated or padded space
            pos += left_in_block
            continue
        start, end = pos + CHUNK.size, pos + CHUNK.size + length
        if kind not in (FULL, FIRST, MIDDLE, LAST) or length > left_in_block - CHUNK.size:
            raise RlftError(
                f"{path} is corrupted at byte {pos} (chunk type {kind}, length {length})", fix="the run file is damaged; re-run the stage"
            )
        if end > len(data):
            return out, True
        piece = data[start:end]
        if kind == FULL:
            out.append(piece)
        elif kind == FIRST:
            pending = piece
        elif pending is not None:
            pending += piece
            if kind == LAST:
                out.append(pending)
                pending = None
        pos = end
    return out, pending is not None


def _value(item) -> Any:
    return json.loads(item.value_json)


def _key(item) -> list[str]:
    return list(item.nested_key) if item.nested_key else [item.key]


def _set(target: dict, keys: list[str], value) -> None:
    for k in keys[:-1]:
        target = target.setdefault(k, {})
    target[keys[-1]] = value


def _apply(target: dict, updates, removes=()) -> None:
    """Apply a record's items (``key`` or ``nested_key`` + ``value_json``) and removals to ``target``."""
    for item in updates:
        _set(target, _key(item), _value(item))
    for item in removes:
        target.pop(item.key, None)


def read_wandb_file(path: str | Path) -> WandbRun:
    """Decode a ``run-<id>.wandb`` file: meta, config, summary and the full step history."""
    from google.protobuf.message import DecodeError
    from wandb.proto import wandb_internal_pb2 as pb

    path = Path(path)
    if not path.exists():
        raise RlftError(f"W&B run file {path} does not exist", fix="look under runs/<run id>/wandb/*/run-*.wandb")
    payloads, truncated = _payloads(path.read_bytes(), path)
    run = WandbRun(id=path.stem.removeprefix("run-"), source=str(path))
    for i, payload in enumerate(payloads):
        record = pb.Record()
        try:
            record.ParseFromString(payload)
        except DecodeError as exc:
            raise RlftError(
                f"{path} is corrupted: record {i} does not decode ({exc})", fix="the run file is damaged; re-run the stage"
            ) from None
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.id, run.project, run.group, run.job_type = r.run_id or run.id, r.project, r.run_group, r.job_type
            run.name, run.tags = r.display_name, list(r.tags)
            _apply(run.config, r.config.update)
        elif kind == "config":
            _apply(run.config, record.config.update, record.config.remove)
        elif kind == "history":
            row: dict[str, Any] = {}
            _apply(row, record.history.item)
            if record.history.HasField("step"):
                row["_step"] = record.history.step.num
            run.history.append(row)
        elif kind == "summary":
            _apply(run.summary, record.summary.update, record.summary.remove)
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    run.config.pop("_wandb", None)  # wandb's own bookkeeping
    run.summary.pop("_wandb", None)
    if run.exit_code is not None:
        run.state = "finished" if run.exit_code == 0 else "failed"
    else:
        run.state = "crashed" if truncated else "running"
    return run


def merge_attempts(attempts: list[WandbRun]) -> WandbRun:
    """One run from the files of a resumed W&B run (oldest first): an interrupted stage continued under its id.

    Offline, wandb writes each attempt to its own file. The history is stitched by ``train/global_step``
    (else ``_step``): a later attempt restarts from its checkpoint, so the earlier attempt's rows from that
    step on (logged after the checkpoint, then redone) are dropped — no step twice, none missing.
    Config, state and exit code come from the last attempt; its summary updates the earlier ones'.
    """
    if len(attempts) == 1:
        return attempts[0]
    merged = WandbRun(**{**attempts[-1].__dict__, "history": [], "summary": {}})
    for i, run in enumerate(attempts):
        history = run.history
        if i + 1 < len(attempts):
            resumed_at = _first_step(attempts[i + 1].history)
            if resumed_at is not None:
                history = [row for row in history if (_row_step(row) is None or _row_step(row) < resumed_at)]
        merged.history += history
        merged.summary.update(run.summary)
    merged.source = ", ".join(run.source for run in attempts)
    return merged


def _row_step(row: dict) -> float | None:
    value = row.get("train/global_step", row.get("_step"))
    return value if isinstance(value, int | float) else None


def _first_step(history: list[dict]) -> float | None:
    steps = [s for s in map(_row_step, history) if s is not None]
    return min(steps) if steps else None


def read_wandb_files(paths: list[Path]) -> WandbRun:
    """Read one W&B run from its file(s), oldest first (several when an interrupted stage was resumed)."""
    return merge_attempts([read_wandb_file(p) for p in sorted(paths, key=lambda p: p.parent.name)])
