"""Preference pairs in one shape, whatever public shape they came in; pairs unpaired into KTO rows."""

from __future__ import annotations

import re

from rlft.errors import RlftError

PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")
HH_ROLES = {"Human": "user", "Assistant": "assistant"}
HH_TURN = re.compile(r"\n\n(Human|Assistant):")
HH_FIX = "write it as '\\n\\nHuman: ...\\n\\nAssistant: ...' (turns alternating, ending with the answer), or drop the row"
NO_PROMPT_FIX = (
    "add a prompt column (or map one with `columns: {prompt: <source column>}`), or give whole conversations: "
    "message lists or HH-RLHF '\\n\\nHuman: ...\\n\\nAssistant: ...' text"
)


def normalise_preference(ds, label: str):
    """Bring preference pairs into one shape: ``prompt`` messages, one-message ``chosen`` and ``rejected``.

    Accepted, row by row: (1) ``prompt``/``chosen``/``rejected`` strings; (2) ``chosen``/``rejected`` as whole
    conversations sharing their first turns (UltraFeedback-binarized; a ``prompt`` column, if any, is ignored
    in favour of the shared turns); (3) HH-RLHF text ("\\n\\nHuman: ...\\n\\nAssistant: ..."), multi-turn;
    (4) the canonical shape itself, returned as it is. Only the three columns are kept: TRL's preference
    trainers reject a row that also carries e.g. a ``messages`` column. ``label`` names the data in errors.
    """
    import datasets

    missing = [c for c in ("chosen", "rejected") if c not in ds.column_names]
    if missing:
        raise RlftError(
            f"data {label} has no column {', '.join(map(repr, missing))} (needed for preference pairs)",
            fix=f"its columns are: {', '.join(ds.column_names)}; map them with `columns: {{chosen: <column>, rejected: <column>}}`",
        )
    rows = [_preference_row(row, f"data {label} row {i}") for i, row in enumerate(ds)]
    return datasets.Dataset.from_list(rows)


def unpair_preference(ds):
    """KTO-style rows from canonical pairs: ``{prompt, completion, label}``, chosen (True) then rejected (False)."""
    import datasets

    missing = [c for c in PREFERENCE_COLUMNS if c not in ds.column_names]
    if missing:
        raise RlftError(
            f"cannot unpair preference data without column {', '.join(map(repr, missing))}",
            fix="bring it into the canonical shape first: load_rows(..., kind='preference') or normalise_preference()",
        )
    rows = []
    for row in ds:
        rows.append({"prompt": row["prompt"], "completion": row["chosen"], "label": True})
        rows.append({"prompt": row["prompt"], "completion": row["rejected"], "label": False})
    return datasets.Dataset.from_list(rows)


def _blank(value) -> bool:
    return value is None or (isinstance(value, (str, list)) and not (value.strip() if isinstance(value, str) else value))


def _looks_hh(value) -> bool:
    return isinstance(value, str) and value.lstrip().startswith("Human:")


def _preference_row(row: dict, where: str) -> dict:
    """One row in any accepted shape -> ``{prompt, chosen, rejected}``; ``where`` is "data X row N"."""
    prompt, chosen, rejected = row.get("prompt"), row["chosen"], row["rejected"]
    for col, value in (("chosen", chosen), ("rejected", rejected)):
        if value is None:
            raise RlftError(f"{where}: no {col!r} answer", fix="remove or fill the row")
    if _blank(prompt) and (_looks_hh(chosen) or _looks_hh(rejected)):
        chosen, rejected = _parse_hh(chosen, where, "chosen"), _parse_hh(rejected, where, "rejected")
    chosen, rejected = _messages(chosen, "assistant", where, "chosen"), _messages(rejected, "assistant", where, "rejected")
    prompt = None if _blank(prompt) else _messages(prompt, "user", where, "prompt")
    prompt, chosen, rejected = _split_prompt(prompt, chosen, rejected, where)
    for col, answer in (("chosen", chosen), ("rejected", rejected)):
        if answer[0].get("role") != "assistant":
            raise RlftError(
                f"{where}: the last turn of {col!r} is a {answer[0].get('role')!r} turn, not an assistant answer",
                fix="end each conversation with the assistant answer being compared",
            )
        if not isinstance(answer[0].get("content"), str) or not answer[0]["content"].strip():
            raise RlftError(f"{where}: empty {col!r} answer", fix="remove the row or fill in the answer")
    if chosen[0]["content"].strip() == rejected[0]["content"].strip():
        raise RlftError(
            f"{where}: 'chosen' and 'rejected' are the same answer", fix="remove the row: a preference needs two different answers"
        )
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _messages(value, role: str, where: str, col: str) -> list:
    """A string becomes one message with ``role``; a list must already be {role, content} messages."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
        return value
    raise RlftError(
        f"{where}: {col!r} is neither text nor a list of {{role, content}} messages",
        fix='give a string or chat messages like [{"role": "user", "content": "..."}]',
    )


def _split_prompt(prompt, chosen: list, rejected: list, where: str) -> tuple[list, list, list]:
    """Separate the shared conversation (the prompt) from the two final answers."""
    n = len(prompt) if prompt is not None else 0
    if prompt is not None and min(len(chosen), len(rejected)) > n and chosen[:n] == prompt == rejected[:n]:
        # The answers repeat the prompt's turns (TRL's implicit-prompt form with the prompt also given).
        return prompt, chosen[n:], rejected[n:]
    if prompt is not None and len(chosen) == 1 and len(rejected) == 1:
        return prompt, chosen, rejected
    if prompt is None and len(chosen) == 1 and len(rejected) == 1:
        raise RlftError(f"{where}: no prompt: 'chosen' and 'rejected' hold only the answers", fix=NO_PROMPT_FIX)
    if chosen[:-1] != rejected[:-1]:
        raise RlftError(
            f"{where}: 'chosen' and 'rejected' do not share the conversation before their last turn",
            fix="both must hold the same prompt turns and differ only in the final assistant answer",
        )
    return chosen[:-1], chosen[-1:], rejected[-1:]


def _parse_hh(text, where: str, col: str) -> list:
    """HH-RLHF text ("\\n\\nHuman: q\\n\\nAssistant: a ...") -> chat messages."""
    if not isinstance(text, str):
        raise RlftError(f"{where}: {col!r} is not HH-RLHF text like the other answer", fix=HH_FIX)
    parts = HH_TURN.split("\n\n" + text.lstrip())
    turns = list(zip(parts[1::2], parts[2::2], strict=True))
    roles = [r for r, _ in turns]
    if parts[0].strip() or not turns or roles[0] != "Human":
        problem = "it does not start with 'Human:'"
    elif any(a == b for a, b in zip(roles, roles[1:], strict=False)):
        problem = "its Human and Assistant turns do not alternate"
    elif roles[-1] != "Assistant":
        problem = "it does not end with an 'Assistant:' turn"
    else:
        return [{"role": HH_ROLES[r], "content": c.strip()} for r, c in turns]
    raise RlftError(f"{where}: {col!r} is not HH-RLHF text: {problem}", fix=HH_FIX)
