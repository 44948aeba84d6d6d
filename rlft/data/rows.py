"""Load a stage's rows: bundled sets, local json/jsonl/csv/parquet files, or ``datasets`` hub ids.

Rows come out with rlft's canonical column names (``prompt``, ``completion``, ``answer``, ...):
``columns:`` in the recipe maps canonical names to the source's names. A plain-string prompt or
completion is turned into chat messages so the model's chat template applies.

Preference data (``kind="preference"``) comes in several public shapes; ``normalise_preference`` turns
each into one: ``prompt`` (chat messages), ``chosen`` and ``rejected`` (one assistant message each).
``unpair_preference`` splits such pairs into KTO-style rows with a boolean ``label``.
``check_lengths`` counts the rows longer than a stage's ``max_length`` (TRL truncates them), or with
``data.too_long: error`` refuses them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from rlft.data.preference import normalise_preference
from rlft.errors import RlftError

if TYPE_CHECKING:  # the recipe layer sits above this one: a spec arrives as an object, by duck typing
    from rlft.recipe import DataSpec

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


def reads_locally(spec: DataSpec, base_dir: Path) -> bool:
    """The source is bundled or a local file (readable offline, cheap to check before training); not a hub data set."""
    src = spec.source
    if src.startswith("bundled:") or src.startswith((".", "/", "~")):
        return True
    path = Path(src).expanduser()
    return path.suffix.lower() in FILE_BUILDERS or path.exists() or (base_dir / path).exists()


def _load_raw(spec: DataSpec, split: str, base_dir: Path):
    import datasets

    src = spec.source
    if src.startswith("bundled:"):
        from rlft.data import bundled

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
        if suffix == ".parquet" and path.stat().st_size == 0:
            raise RlftError(f"data file {src} is empty", where=str(path), fix="point the stage at a file with rows, or fill this one")
        if suffix != ".parquet":
            _check_text_file(path, src)
        try:
            ds = datasets.load_dataset(FILE_BUILDERS[suffix], data_files=str(path), split="train")
        except Exception as exc:
            if "corresponds to no data" in str(exc):  # datasets' words for a file without rows: `[]`, a csv header alone
                raise RlftError(
                    f"data file {src} has no rows", where=str(path), fix="point the stage at a file with rows, or fill this one"
                ) from None
            bad = _json_error(path) if FILE_BUILDERS[suffix] == "json" else None
            if bad is not None:
                line, column, problem = bad
                raise RlftError(
                    f"not valid JSON: {problem}",
                    where=f"{path}, line {line}, column {column}",
                    fix="fix that line" + (" (one JSON object per line)" if suffix == ".jsonl" else ""),
                ) from None
            raise RlftError(
                f"could not read data file {src}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                fix="check that the file is valid " + FILE_BUILDERS[suffix],
            ) from exc
        return ds, str(path)
    try:
        label = f"{src}:{spec.subset}[{split}]" if spec.subset else f"{src}[{split}]"
        return datasets.load_dataset(src, spec.subset, split=split), label
    except Exception as exc:
        raise RlftError(
            f"could not load data set {src!r} (split {split}): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            fix="offline, use bundled: data or a local .jsonl/.csv/.parquet file",
        ) from exc


def _check_text_file(path: Path, src: str) -> None:
    """A json/jsonl/csv file must be UTF-8 and not blank; name the line of the first bad byte (datasets does not)."""
    blank = True
    with path.open("rb") as f:
        for lineno, line in enumerate(f, 1):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RlftError(
                    f"data file {src} is not UTF-8 text (byte 0x{line[exc.start]:02x})",
                    where=f"{path}, line {lineno}, column {exc.start + 1}",
                    fix="save the file as UTF-8, e.g. iconv -f latin1 -t utf-8 IN > OUT",
                ) from None
            blank = blank and not text.strip()
    if blank:
        raise RlftError(f"data file {src} is empty", where=str(path), fix="point the stage at a file with rows, or fill this one")


def _json_error(path: Path) -> tuple[int, int, str] | None:
    """(line, column, problem) of the first JSON error in a .json document or JSON-lines file; None when it parses."""
    text = path.read_text(encoding="utf-8")
    try:
        json.loads(text)
        return None
    except json.JSONDecodeError as whole:
        first = (whole.lineno, whole.colno, whole.msg)
    for lineno, line in enumerate(text.splitlines(), 1):
        try:
            if line.strip():
                json.loads(line)
        except json.JSONDecodeError as exc:
            as_lines = lineno > 1 or path.suffix.lower() == ".jsonl"  # a pretty-printed .json document fails on its first line
            return (lineno, exc.colno, exc.msg) if as_lines else first
    return None  # valid JSON lines: the loader failed for another reason


def _as_messages(value, role: str):
    return [{"role": role, "content": value}] if isinstance(value, str) else value


def _apply_columns(ds, spec: DataSpec, label: str):
    """Rename the source's columns to canonical names as ``columns:`` says."""
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
    return ds


def _limited(ds, spec: DataSpec):
    return ds.select(range(min(spec.limit, len(ds)))) if spec.limit is not None else ds


def load_rows(spec: DataSpec, *, split: str, required: tuple[str, ...] = (), base_dir: Path | None = None, kind: str | None = None):
    """Load, rename and check a data set. Returns ``(dataset, fingerprint, description)``.

    ``kind="preference"`` also brings preference pairs into one shape (see ``normalise_preference``).
    """
    if kind not in (None, "preference"):
        raise ValueError(f"unknown data kind {kind!r}; expected None or 'preference'")
    base_dir = base_dir or Path.cwd()
    ds, label = _load_raw(spec, split, base_dir)
    ds = _apply_columns(ds, spec, label)
    if kind == "preference" and len(ds) > 0:  # no rows: reported below, as for any data
        # Limit first, so row numbers in errors are the source's and a huge set is not all parsed.
        ds = normalise_preference(_limited(ds, spec), label)
    absent = [c for c in required if c not in ds.column_names]
    if absent:
        raise RlftError(
            f"data {label} has no column {', '.join(map(repr, absent))} (needed by this stage)",
            fix=f"its columns are: {', '.join(ds.column_names)}; map one with `columns: {{{absent[0]}: <source column>}}`",
        )
    if len(ds) == 0:
        raise RlftError(f"data {label} has no rows", fix="point the stage at a file with data")
    ds = _limited(ds, spec)
    for col, role in (("prompt", "user"), ("completion", "assistant"), ("messages", None)):
        if col in ds.column_names:
            values = ds[col]
            bad = [i for i, v in enumerate(values) if v is None or (isinstance(v, str) and not v.strip())]
            if bad:
                raise RlftError(f"data {label} row {bad[0]}: empty {col!r}", fix=f"remove or fill the {len(bad)} empty row(s)")
            wrong = next((i for i, v in enumerate(values) if not _text_or_messages(v, text=role is not None)), None)
            if wrong is not None:
                raise RlftError(
                    f"data {label} row {wrong}: {col!r} is not {'text or ' if role else ''}a list of {{role, content}} messages "
                    f"(got {str(values[wrong])[:80]})",
                    fix='write chat messages like [{"role": "user", "content": "..."}]' + (", or plain text" if role else ""),
                )
            if role and isinstance(values[0], str):
                ds = ds.map(lambda r, c=col, ro=role: {c: _as_messages(r[c], ro)})
    system = getattr(spec, "system", None)
    if system is not None:
        ds = _with_system(ds, system, label)
    return ds, fingerprint(ds), label


def _with_system(ds, system: str, label: str):
    """``system`` as the first message of every chat prompt (``prompt``, else ``messages``) that has no system message."""
    col = next((c for c in ("prompt", "messages") if c in ds.column_names), None)
    if col is None:
        raise RlftError(
            f"data {label}: `system` applies to chat prompts, and these rows have neither a prompt nor a messages column "
            f"(columns: {', '.join(ds.column_names)})",
            fix="remove system: from this data spec, or map the prompt column with columns: {prompt: <source column>}",
        )

    def add(row):
        messages = row[col]
        return {col: messages if messages and messages[0].get("role") == "system" else [{"role": "system", "content": system}, *messages]}

    return ds.map(add)


def _text_or_messages(value, *, text: bool) -> bool:
    """A prompt or completion is text or chat messages; ``messages`` is chat messages only.

    A message needs a role, and content (or, for an assistant's tool call, ``tool_calls``).
    """
    if isinstance(value, str):
        return text
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and (m.get("content") is not None or m.get("tool_calls")) for m in value
        )
    )


def check_lengths(ds, tokenizer, max_length: int, *, policy: str, label: str, where: str) -> int:
    """Count the rows longer than ``max_length`` tokens; with ``policy="error"`` (``data.too_long``) refuse them instead.

    A row's length is that of the longest sequence a trainer builds from it: its chat-templated prompt + answer
    (the longer of chosen and rejected), its ``messages``, or its ``text`` (give or take a special token).
    Returns the count of rows TRL will truncate, for the caller to report. ``where`` is the stage's data key path.
    """
    lengths = [_row_tokens(row, tokenizer) for row in ds]
    over = [i for i, n in enumerate(lengths) if n > max_length]
    if over and policy == "error":
        raise RlftError(
            f"data {label} row {over[0]} is {lengths[over[0]]} tokens, longer than max_length {max_length} "
            f"({len(over)} of {len(ds)} rows are)",
            where=where,
            fix=f"shorten or drop those rows, raise the stage's trl.max_length, or let TRL cut them: {where}.too_long=truncate",
        )
    return len(over)


def _row_tokens(row: dict, tok) -> int:
    if isinstance(row.get("text"), str):
        texts = [row["text"]]
    else:
        prompt = _as_messages(row.get("prompt") or [], "user")
        answers = [_as_messages(row[c], "assistant") for c in ("completion", "chosen", "rejected") if row.get(c)]
        chats = [row["messages"]] if row.get("messages") else [prompt + answer for answer in answers or [[]]]
        texts = [tok.apply_chat_template(chat, tokenize=False) for chat in chats]
    return max(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)


def fingerprint(ds) -> str:
    """A content hash of the rows (order-sensitive), for the manifest."""
    h = hashlib.sha256()
    for row in ds:
        h.update(json.dumps(row, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]
