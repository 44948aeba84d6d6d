"""Trying a model: ``rlft chat`` (a multi-turn chat in the terminal, streamed) and ``rlft generate`` (a prompts file in, completions out).

Which model (``find_model``): a run id under the runs folder or a run folder (its last finished stage that saved
a model), ``RUN/STAGE``, a stage's ``model/`` or ``adapter/`` folder, any ``from_pretrained`` folder, or
``bundled:NAME``. An adapter-only stage (``save: {merged: false}``) loads as ``rlft compare --winrate`` loads it
(``rlft.models.load_causal_lm``: the base, the adapter merged in memory).

Both send chat messages through the model's chat template: a text prompt becomes one user message, ``system``
a system message first. ``generate_file`` generates with the scorecard's code (``rlft.evaluation.scorecard.generate``:
left-padded batches, greedy when the temperature is 0), so its completions are what a stage's held-out scorecard
would have seen. vLLM is not used: generation runs through transformers, on the GPU when there is one.

Example::

    target = find_model("quickstart-20261125-120000/sft", Path("runs"))
    generate_file(target, Path("prompts.txt"), Path("out.jsonl"), max_new_tokens=64)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rlft.data.rows import FILE_BUILDERS
from rlft.errors import RlftError
from rlft.models import BUNDLED_PREFIX, is_adapter_dir, is_model_dir

TEXT_SUFFIX = ".txt"  # one prompt per line
PROMPT_SUFFIXES = (*FILE_BUILDERS, TEXT_SUFFIX)


@dataclass(frozen=True)
class Target:
    """A model to try: ``label`` for messages (``RUN/STAGE`` or the reference as given) and ``path``, a model or adapter folder."""

    label: str
    path: str


def find_model(ref: str, runs_dir: Path) -> Target:
    """The model ``ref`` names: ``bundled:NAME``, a model or adapter folder, or a run (``RUN``, ``RUN/STAGE``, a run folder).

    A run without a stage gives its last finished stage that saved a model (``model/``, else ``adapter/``).
    """
    from rlft.analysis.compare import _resolve
    from rlft.analysis.winrate import final_model
    from rlft.models import resolve_model

    if ref.startswith(BUNDLED_PREFIX):
        return Target(ref, resolve_model(ref))
    ref = ref.rstrip("/") or ref
    path = Path(ref).expanduser()
    if is_model_dir(path) or is_adapter_dir(path):
        return Target(ref, str(path))
    try:
        run_dir, stage = _resolve(ref, runs_dir)
    except RlftError as exc:
        if path.is_dir():
            raise RlftError(
                f"{ref} is neither a run folder (no summary.json), a model folder (no config.json) nor an adapter (no adapter_config.json)",
                fix="name a run folder, RUN/STAGE, a stage's model/ or adapter/ folder, or bundled:smollm2-135m-instruct",
            ) from None
        raise RlftError(exc.what, fix=f"{exc.fix}; or a model folder, or bundled:smollm2-135m-instruct") from None
    saved = final_model(run_dir, stage)
    return Target(f"{run_dir.name}/{saved.parent.name}", str(saved))


def load(target: Target):
    """``(model, tokenizer)`` of ``target``, by rlft's own loader (an adapter folder: its base with the adapter merged in)."""
    from rlft.models import load_causal_lm

    tok = chat_tokenizer(target)
    return load_causal_lm(target.path), tok


def chat_tokenizer(target: Target):
    """The tokenizer of ``target``; it must have a chat template, as both commands send chat messages."""
    from rlft.models import load_tokenizer

    tok = load_tokenizer(target.path)
    if not tok.chat_template:
        raise RlftError(
            f"the tokenizer of {target.label} ({target.path}) has no chat template, and chat and generate send chat messages",
            fix="use an instruct/chat model, or give this one a template: set tokenizer.chat_template and save_pretrained it",
        )
    return tok


def check_sampling(temperature: float, top_p: float) -> float | None:
    """The temperature ``rlft.evaluation.scorecard.generate`` takes: None (greedy) for 0; refuse values it cannot use."""
    if temperature < 0:
        raise RlftError(f"--temperature must be 0 or more, got {temperature:g}", fix="use 0 for greedy decoding, or e.g. 0.7 to sample")
    if not 0 < top_p <= 1:
        raise RlftError(f"--top-p must be above 0 and at most 1, got {top_p:g}", fix="use 1.0 to keep every token, or e.g. 0.9")
    return temperature or None


def read_prompts(path: Path, system: str | None = None) -> tuple[list, dict[str, list]]:
    """The prompts of a file, as chat messages in file order, and the file's other columns (one value per prompt).

    ``.jsonl``/``.json``/``.csv``/``.parquet``: read as a stage reads its data (``rlft.data.rows.load_rows``), with a
    ``prompt`` column (text or chat messages; a ``messages`` column also works: its prompt is all but the last
    assistant turn). ``.txt``: one prompt per line, blank lines skipped. ``system``: a system message first in every
    prompt that has none.
    """
    from rlft.data.rows import load_rows
    from rlft.evaluation.scorecard import prompts_of
    from rlft.recipe import DataSpec

    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in PROMPT_SUFFIXES:
        raise RlftError(
            f"prompts file {path} has an unsupported type ({suffix or 'no suffix'})",
            fix=f"use a {', '.join(PROMPT_SUFFIXES)} file (.txt: one prompt per line)",
        )
    if not path.is_file():
        raise RlftError(f"prompts file {path} does not exist", fix="check the path given to --prompts")
    if suffix == TEXT_SUFFIX:
        return [_with_system([{"role": "user", "content": line}], system) for line in _text_lines(path)], {}
    # an absolute path, so that the file is read as a file and never tried as a hub data set
    rows, _, label = load_rows(DataSpec(source=str(path.absolute()), system=system), split="train")
    found = prompts_of(rows)
    if found is None:
        raise RlftError(
            f"prompts file {path} has no 'prompt' column (its columns: {', '.join(rows.column_names)})",
            fix="rename the column that holds the prompts to 'prompt', or write a .txt file with one prompt per line",
        )
    return found


def _text_lines(path: Path) -> list[str]:
    """The non-blank lines of a UTF-8 text file, without their line ends."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise RlftError(
            f"prompts file {path} is not UTF-8 text",
            where=f"{path}, line {line}",
            fix="save it as UTF-8, e.g. iconv -f latin1 -t utf-8 IN > OUT",
        ) from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise RlftError(f"prompts file {path} has no prompts", fix="write one prompt per line")
    return lines


def _with_system(messages: list[dict], system: str | None) -> list[dict]:
    if system is None or (messages and messages[0].get("role") == "system"):
        return messages
    return [{"role": "system", "content": system}, *messages]


def generate_file(
    target: Target,
    prompts_file: Path,
    out: Path,
    *,
    max_new_tokens: int = 256,
    batch_size: int = 16,
    temperature: float = 0.0,
    top_p: float = 1.0,
    system: str | None = None,
    seed: int = 0,
) -> int:
    """Answer every prompt of ``prompts_file`` with ``target`` and write ``out`` (JSONL, in the file's order); returns the row count.

    Each row: ``prompt`` (the chat messages the model answered), ``completion`` (text), ``tokens`` (completion tokens,
    EOS included), then the prompts file's other columns (so that ``rlft rewards test REF --data OUT`` can score them).
    ``temperature`` 0 decodes greedily; above 0 it samples with ``top_p``, seeded by ``seed``.
    """
    from transformers import set_seed

    from rlft.evaluation.scorecard import generate

    sampled = check_sampling(temperature, top_p)
    prompts, columns = read_prompts(prompts_file, system)
    model, tok = load(target)
    set_seed(seed)
    gen = generate(
        model,
        tok,
        prompts,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        temperature=sampled,
        top_p=top_p,
        desc=f"generate {target.label}",
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for i, prompt in enumerate(prompts):
            row = {"prompt": prompt, "completion": gen.texts[i], "tokens": gen.lengths[i]}
            row.update({k: v[i] for k, v in columns.items() if k not in row})
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return len(prompts)


@dataclass
class ChatSession:
    """A multi-turn chat with one model: the history of user and assistant messages, rendered by the model's chat template.

    ``reply(text, write)`` answers one user turn (streaming the answer through ``write`` as tokens come) and adds
    both messages to ``history``; ``reset()`` clears it. ``prompts`` keeps every prompt the model was given, rendered.
    ``temperature`` 0 decodes greedily (the answer ``rlft generate`` gives at temperature 0).
    """

    model: object
    tok: object
    system: str | None = None
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 256
    history: list[dict] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)

    def __post_init__(self):
        from rlft.evaluation.scorecard import accelerator

        self.sampled = check_sampling(self.temperature, self.top_p)
        self.device = accelerator()
        self.model.to(self.device).eval()

    def reply(self, text: str, write: Callable[[str], object] | None = None) -> str:
        """The model's answer to ``text`` after the history so far; ``write`` gets it piece by piece, then a line end."""
        import torch

        user = {"role": "user", "content": text}
        rendered = self.tok.apply_chat_template(
            _with_system([*self.history, user], self.system), add_generation_prompt=True, tokenize=False
        )
        self.prompts.append(rendered)
        batch = self.tok(rendered, return_tensors="pt", add_special_tokens=False).to(self.device)
        decoding = (
            {"do_sample": False}
            if self.sampled is None
            else {"do_sample": True, "temperature": self.sampled, "top_p": self.top_p, "top_k": 0}  # as the scorecard samples
        )
        with torch.inference_mode():
            seq = self.model.generate(
                **batch,
                max_new_tokens=self.max_new_tokens,
                **decoding,
                streamer=_streamer(self.tok, write) if write is not None else None,
                pad_token_id=self.tok.pad_token_id,
                eos_token_id=self.tok.eos_token_id,
            )
        answer = self.tok.decode(seq[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        self.history += [user, {"role": "assistant", "content": answer}]
        return answer

    def reset(self) -> None:
        self.history = []


def _streamer(tok, write: Callable[[str], object]):
    """A transformers ``TextStreamer`` that hands the answer's text to ``write`` as it is decoded (not the prompt)."""
    from transformers import TextStreamer

    class Streamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            write(text + ("\n" if stream_end else ""))

    return Streamer(tok, skip_prompt=True, skip_special_tokens=True)


def _stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


RESET, EXIT = "/reset", ("/exit", "/quit")
HELP = "/reset clears the history, /exit (or Ctrl-D) quits"


def chat_loop(
    session: ChatSession, *, read: Callable[[str], str] = input, write: Callable[[str], object] | None = None, prompt: str = ""
) -> int:
    """Read user turns with ``read(prompt)`` until ``/exit``, end of input or Ctrl-C; ``/reset`` clears the history. Returns turns answered.

    ``write`` (default: stdout, flushed) gets the streamed answers and the loop's own notes.
    """
    write = write or _stdout
    turns = 0
    while True:
        try:
            line = read(prompt)
        except (EOFError, KeyboardInterrupt):
            write("\n")
            return turns
        command = line.strip()
        if not command:
            continue
        if command in EXIT:
            return turns
        if command == RESET:
            session.reset()
            write("(history cleared)\n")
            continue
        if command.startswith("/") and " " not in command:
            write(f"unknown command {command}: {HELP}\n")
            continue
        try:
            session.reply(line, write=write)
        except KeyboardInterrupt:  # Ctrl-C while it answers: stop, and leave the chat
            write("\n")
            return turns
        turns += 1
