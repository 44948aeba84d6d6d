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
    """The source (every member of a mixture) is bundled or a local file (readable offline, cheap to check before training)."""
    if getattr(spec, "mix", None):
        return all(reads_locally(member, base_dir) for member in spec.mix)
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
        hub_only = [k for k in ("revision", "data_files") if getattr(spec, k, None) is not None]
        if hub_only:
            raise RlftError(
                f"data file {src}: {hub_only[0]} applies to hub data sets only", fix=f"remove {hub_only[0]}: from this data spec"
            )
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
    revision, data_files = getattr(spec, "revision", None), getattr(spec, "data_files", None)
    try:
        label = (f"{src}:{spec.subset}" if spec.subset else src) + (f"@{revision}" if revision else "") + f"[{split}]"
        return datasets.load_dataset(src, spec.subset, split=split, revision=revision, data_files=data_files), label
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
    return _limit(ds, spec.limit)


def _limit(ds, limit: int | None):
    return ds.select(range(min(limit, len(ds)))) if limit is not None else ds


def load_rows(
    spec: DataSpec,
    *,
    split: str,
    required: tuple[str, ...] = (),
    base_dir: Path | None = None,
    kind: str | None = None,
    seed: int = 0,
):
    """Load, rename and check a data set, or a seeded mixture of several. Returns ``(dataset, fingerprint, description)``.

    ``kind="preference"`` also brings preference pairs into one shape (see ``normalise_preference``).
    ShareGPT ``conversations`` and Alpaca ``instruction``/``input``/``output`` rows are recognised without a
    column map (see ``recognise_shape``). ``seed`` draws a mixture's samples (the stage's seed).
    """
    if kind not in (None, "preference"):
        raise ValueError(f"unknown data kind {kind!r}; expected None or 'preference'")
    base_dir = base_dir or Path.cwd()
    if getattr(spec, "mix", None):
        ds, label = _load_mix(spec, split=split, required=required, base_dir=base_dir, kind=kind, seed=seed)
        ds = _limited(ds, spec)
    else:
        ds, label = _load_one(spec, split=split, required=required, base_dir=base_dir, kind=kind, limit=spec.limit)
    system = getattr(spec, "system", None)
    if system is not None:
        ds = _with_system(ds, system, label)
    return ds, fingerprint(ds), label


def _load_one(spec, *, split: str, required: tuple[str, ...], base_dir: Path, kind: str | None, limit: int | None, name: str = ""):
    """One source's rows in canonical shape, checked: ``(dataset, label)``. ``name`` prefixes the label (a mixture member)."""
    ds, label = _load_raw(spec, split, base_dir)
    label = f"{name}{label}"
    ds = _apply_columns(ds, spec, label)
    ds = recognise_shape(ds, label)
    if kind == "preference" and len(ds) > 0:  # no rows: reported below, as for any data
        # Limit first, so row numbers in errors are the source's and a huge set is not all parsed.
        ds = normalise_preference(_limit(ds, limit), label)
    absent = [c for c in required if c not in ds.column_names]
    if absent:
        raise RlftError(
            f"data {label} has no column {', '.join(map(repr, absent))} (needed by this stage)",
            fix=f"its columns are: {', '.join(ds.column_names)}; map one with `columns: {{{absent[0]}: <source column>}}`",
        )
    if len(ds) == 0:
        raise RlftError(f"data {label} has no rows", fix="point the stage at a file with data")
    ds = _limit(ds, limit)
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
    return ds, label


# The columns that decide what a row is (and so how a stage trains on it): every member of a mixture has the same ones.
SHAPE_COLUMNS = ("prompt", "completion", "messages", "text", "chosen", "rejected", "label")


def _load_mix(spec, *, split: str, required: tuple[str, ...], base_dir: Path, kind: str | None, seed: int):
    """A seeded mixture: each member loaded and checked like a single source, sampled (``fraction`` or ``rows``), then shuffled together.

    Members must have the same shape columns (``SHAPE_COLUMNS``); other columns are kept where every member has them.
    Returns ``(dataset, label)``; the label names every member with the rows taken of the rows it has.
    """
    import random

    import datasets

    parts, described = [], []
    for i, member in enumerate(spec.mix):
        name = f"mix[{i}] "
        ds, label = _load_one(member, split=member.split or split, required=required, base_dir=base_dir, kind=kind, limit=None, name=name)
        n = len(ds)
        take = member.rows if member.rows is not None else round(n * member.fraction) if member.fraction is not None else n
        if take > n:
            raise RlftError(
                f"data {label} has {n} rows, and the mixture asks for {take}",
                fix=f"lower mix[{i}].rows to at most {n}, or use fraction: (a share of its rows)",
            )
        if take == 0:
            raise RlftError(f"data {label}: fraction {member.fraction} of its {n} rows is no row", fix=f"raise mix[{i}].fraction")
        if take < n:  # a seeded sample, in the source's order
            ds = ds.select(sorted(random.Random(f"{seed}:{i}").sample(range(n), take)))
        parts.append(ds)
        described.append(f"{label.removeprefix(name)} {take} of {n} rows")
    first = set(parts[0].column_names) & set(SHAPE_COLUMNS)
    for i, ds in enumerate(parts[1:], 1):
        shape = set(ds.column_names) & set(SHAPE_COLUMNS)
        if shape != first:
            raise RlftError(
                f"data mix[{i}] ({spec.mix[i].source}) has rows shaped {sorted(shape)}, mix[0] ({spec.mix[0].source}) {sorted(first)}; "
                "a stage trains on one shape",
                fix=f"map mix[{i}]'s columns to mix[0]'s with mix[{i}].columns, or leave that source out",
            )
    shared = [c for c in parts[0].column_names if all(c in ds.column_names for ds in parts)]
    parts = [ds.select_columns(shared) for ds in parts]
    try:
        mixed = datasets.concatenate_datasets(parts)
    except (ValueError, TypeError):  # the same columns with different types (e.g. a number in one, text in another)
        try:
            mixed = datasets.Dataset.from_list([row for ds in parts for row in ds])
        except Exception as exc:
            raise RlftError(
                f"the members of data mix(...) do not fit together: {str(exc).splitlines()[0]}",
                fix="give the same column the same type in every member (e.g. answer as text everywhere)",
            ) from None
    mixed = mixed.shuffle(seed=seed).flatten_indices()
    return mixed, "mix(" + "; ".join(described) + ")"


def recognise_shape(ds, label: str):
    """ShareGPT and Alpaca rows in rlft's canonical shapes (no column map needed).

    - ShareGPT: ``conversations`` (or ``messages``) as ``[{from, value}, ...]`` with ``from`` human/gpt/system
      (also user/assistant/tool) -> ``messages`` as ``[{role, content}, ...]``, as an OpenAI ``messages`` file gives;
    - Alpaca: ``instruction``, optional ``input``, ``output`` -> ``prompt`` (instruction, a blank line, input)
      and ``completion`` (output), as a prompt/completion file gives; Alpaca's own rendering ``text`` is dropped.
    Anything else comes back as it is.
    """
    cols = ds.column_names
    source = "messages" if "messages" in cols else "conversations" if "conversations" in cols else None
    if source is not None and len(ds) and _sharegpt(ds[0][source]):
        return _from_sharegpt(ds, source, label)
    if {"instruction", "output"} <= set(cols) and not {"prompt", "completion", "messages"} & set(cols):
        extra = [c for c in ("instruction", "input", "output", "text") if c in cols]

        def alpaca(row):
            given = (row.get("input") or "").strip()
            return {"prompt": f"{row['instruction']}\n\n{given}" if given else row["instruction"], "completion": row["output"]}

        return ds.map(alpaca, remove_columns=extra)
    return ds


SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system", "tool": "tool"}


def _sharegpt(value) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict) and "from" in value[0] and "value" in value[0]


def _from_sharegpt(ds, column: str, label: str):
    for i, turns in enumerate(ds[column]):
        for j, turn in enumerate(turns or []):
            if not isinstance(turn, dict) or turn.get("from") not in SHAREGPT_ROLES:
                got = turn.get("from") if isinstance(turn, dict) else turn
                raise RlftError(
                    f"data {label} row {i}: turn {j} of {column!r} is from {got!r}, which is not a ShareGPT role",
                    fix=f"use one of {', '.join(SHAREGPT_ROLES)} (human -> user, gpt -> assistant), or drop the row",
                )
    convert = lambda row: {"messages": [{"role": SHAREGPT_ROLES[t["from"]], "content": t["value"]} for t in row[column]]}  # noqa: E731
    return ds.map(convert, remove_columns=[column])


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
