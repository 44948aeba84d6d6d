"""Progress of long phases (generation, merging, loading, conversion): a rich bar on a terminal, plain lines in a log.

Training steps have their own line per logged step (``rlft.stages.progress``); everything else that takes long
reports here, on stderr (stdout may carry a csv or json table):

- ``Progress(what, total)``: a loop of known length. On a terminal a rich bar (done/total, rate, elapsed, ETA);
  otherwise one flushed line for the first update, the last, and at most one every ``RLFT_PROGRESS_SECONDS``
  seconds between (default 10; 0 prints every update)::

      [generate eval] 3/8 batches · 1.2 batches/s · 412 tok/s · 00:02 elapsed · ETA 00:04

- ``phase(what)``: a step of unknown length (loading a model, converting one): a spinner on a terminal, else a
  line when it starts and one with its duration when it ends.

Example::

    with Progress("merge", total=len(members), unit="members") as bar:
        for m in members:
            add(m)
            bar.update()
"""

from __future__ import annotations

import math
import os
import sys
import time
from contextlib import contextmanager

EVERY_ENV = "RLFT_PROGRESS_SECONDS"
DEFAULT_EVERY_S = 10.0


def clock(seconds: float) -> str:
    """``04:10``, ``1:02:03`` past an hour, ``--:--`` when unknown (NaN, inf)."""
    if not math.isfinite(seconds):
        return "--:--"
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def every_s() -> float:
    """Seconds between two plain progress lines: ``RLFT_PROGRESS_SECONDS``, read now (tests and users set it late)."""
    try:
        return max(0.0, float(os.environ.get(EVERY_ENV, DEFAULT_EVERY_S)))
    except ValueError:
        return DEFAULT_EVERY_S


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or stand-in stream
        return False


class Progress:
    """Progress through ``total`` units of one phase; ``update(n, tokens=...)`` after each. A context manager.

    ``stream``: where it goes (default stderr); a terminal gets a rich bar, anything else plain lines.
    """

    def __init__(self, what: str, total: int, *, unit: str = "batches", stream=None):
        self.what, self.total, self.unit = what, max(int(total), 0), unit
        self.stream = stream if stream is not None else sys.stderr
        self.done = self.tokens = 0
        self.t0 = time.monotonic()
        self.last_line: float | None = None
        self.every = every_s()
        self.bar = None
        if _is_terminal(self.stream):
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self.bar = Bar(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(unit),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
            )
            self.task = self.bar.add_task(what, total=self.total, rate="")
            self.bar.start()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1, *, tokens: int = 0) -> None:
        """``n`` more units done (``tokens``: tokens they made, for a tokens/s figure)."""
        self.done += n
        self.tokens += tokens
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done, rate=self.rate())
            return
        now = time.monotonic()
        if self.last_line is None or self.done >= self.total or now - self.last_line >= self.every:
            self.last_line = now
            print(self.line(now - self.t0), file=self.stream, flush=True)

    def rate(self) -> str:
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        per_s = f"{self.done / elapsed:.3g} {self.unit}/s"
        return per_s + (f" · {self.tokens / elapsed:.0f} tok/s" if self.tokens else "")

    def line(self, elapsed: float) -> str:
        """``[what] done/total unit · rate · elapsed · ETA``: the plain form of the bar."""
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        return f"[{self.what}] {self.done}/{self.total} {self.unit} · {self.rate()} · {clock(elapsed)} elapsed · ETA {clock(eta)}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


@contextmanager
def phase(what: str, stream=None):
    """A step of unknown length: a spinner on a terminal, else ``[what] ...`` when it starts; then ``[what] done in 1.2 s``."""
    stream = stream if stream is not None else sys.stderr
    t0 = time.monotonic()
    if _is_terminal(stream):
        from rich.console import Console

        console = Console(file=stream)
        with console.status(f"[{what}] ...", spinner="dots"):
            yield
        console.print(f"[{what}] done in {time.monotonic() - t0:.1f} s", markup=False, highlight=False)
        return
    print(f"[{what}] ...", file=stream, flush=True)
    yield
    print(f"[{what}] done in {time.monotonic() - t0:.1f} s", file=stream, flush=True)
