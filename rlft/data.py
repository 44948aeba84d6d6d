"""Load a stage's rows: bundled sets, local json/jsonl/csv/parquet files, or ``datasets`` hub ids.

Rows come out with rlft's canonical column names (``prompt``, ``completion``, ``answer``, ...):
``columns:`` in the recipe maps canonical names to the source's names. A plain-string prompt or
completion is turned into chat messages so the model's chat template applies.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rlft.errors import RlftError
from rlft.recipe import DataSpec

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


def _load_raw(spec: DataSpec, split: str, base_dir: Path):
    import datasets

    src = spec.source
    if src.startswith("bundled:"):
        from rlft import bundled

        name = src.split(":", 1)[1]
        if name not in bundled.DATASETS:
            raise RlftError(f"unknown bundled data set {name!r}", fix=f"use one of: {', '.join('bundled:' + n for n in bundled.DATASETS)}")
        if split not in bundled.SPLITS:
            raise RlftError(f"bundled:{name} has no split {split!r}", fix=f"use one of: {', '.join(bundled.SPLITS)}")
        return datasets.Dataset.from_list(bundled.DATASETS[name](split)), f"{src}[{split}]"
    path = Path(src).expanduser()
    if not path.is_absolute() and not path.exists():
        path = base_dir / path
    suffix = path.suffix.lower()
    if suffix in FILE_BUILDERS or src.startswith((".", "/", "~")):
        if not path.exists():
            raise RlftError(
                f"data file {src} does not exist",
                fix="check the path (relative paths are read from the recipe's folder or the current one)",
            )
        if suffix not in FILE_BUILDERS:
            raise RlftError(f"data file {src} has an unsupported type", fix=f"use one of: {', '.join(FILE_BUILDERS)}")
        try:
            ds = datasets.load_dataset(FILE_BUILDERS[suffix], data_files=str(path), split="train")
        except Exception as exc:
            raise RlftError(
                f"could not read data file {src}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                fix="check that the file is valid " + FILE_BUILDERS[suffix],
            ) from exc
        return ds, str(path)
    try:
        return datasets.load_dataset(src, split=split), f"{src}[{split}]"
    except Exception as exc:
        raise RlftError(
            f"could not load data set {src!r} (split {split}): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            fix="offline, use bundled: data or a local .jsonl/.csv/.parquet file",
        ) from exc


def _as_messages(value, role: str):
    return [{"role": role, "content": value}] if isinstance(value, str) else value


def load_rows(spec: DataSpec, *, split: str, required: tuple[str, ...] = (), base_dir: Path | None = None):
    """Load, rename and check a data set. Returns ``(dataset, fingerprint, description)``."""
    base_dir = base_dir or Path.cwd()
    ds, label = _load_raw(spec, split, base_dir)
    missing = [src for src in spec.columns.values() if src not in ds.column_names]
    if missing:
        raise RlftError(
            f"data {label} has no column {', '.join(map(repr, missing))}",
            fix=f"its columns are: {', '.join(ds.column_names)}; fix `columns:` in the recipe",
        )
    renames = {src: dst for dst, src in spec.columns.items() if src != dst}
    clash = [dst for dst in renames.values() if dst in ds.column_names]
    if clash:
        ds = ds.remove_columns(clash)
    if renames:
        ds = ds.rename_columns(renames)
    absent = [c for c in required if c not in ds.column_names]
    if absent:
        raise RlftError(
            f"data {label} has no column {', '.join(map(repr, absent))} (needed by this stage)",
            fix=f"its columns are: {', '.join(ds.column_names)}; map one with `columns: {{{absent[0]}: <source column>}}`",
        )
    if len(ds) == 0:
        raise RlftError(f"data {label} has no rows", fix="point the stage at a file with data")
    if spec.limit is not None:
        ds = ds.select(range(min(spec.limit, len(ds))))
    for col, role in (("prompt", "user"), ("completion", "assistant")):
        if col in ds.column_names:
            bad = [i for i, v in enumerate(ds[col]) if v is None or (isinstance(v, str) and not v.strip())]
            if bad:
                raise RlftError(f"data {label} row {bad[0]}: empty {col!r}", fix=f"remove or fill the {len(bad)} empty row(s)")
            if isinstance(ds[0][col], str):
                ds = ds.map(lambda r, c=col, ro=role: {c: _as_messages(r[c], ro)})
    return ds, fingerprint(ds), label


def fingerprint(ds) -> str:
    """A content hash of the rows (order-sensitive), for the manifest."""
    h = hashlib.sha256()
    for row in ds:
        h.update(json.dumps(row, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]
