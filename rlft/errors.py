"""The one error type users see: what went wrong, where, and the smallest fix."""

from __future__ import annotations

import difflib


class RlftError(Exception):
    """A user-facing error: printed without a traceback by the CLI, exit code 2.

    ``where`` names the file, key path or row; ``fix`` is the smallest change that makes it work.
    """

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None):
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.where}: {self.what}" if self.where else self.what
        return f"{head}\n  fix: {self.fix}" if self.fix else head


class RecipeError(RlftError):
    """Several recipe problems reported at once (one line each)."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems  # (key path, message incl. fix)
        self.recipe = None  # the parsed recipe when only cross-key checks failed, so deeper checks can still run
        lines = [f"{len(problems)} problem(s) in recipe {source}:"]
        lines += [f"  - {path}: {msg}" if path else f"  - {msg}" for path, msg in problems]
        super().__init__("\n".join(lines))

    def render(self) -> str:
        return self.what


class CheckFailed(RlftError):
    """A stage ran to its end, but its result fails a check its recipe set (an eval stage's ``forgetting.max_drop``).

    ``result`` is the stage's ``StageResult``: the runner still writes its manifest (status ``failed``) and
    outputs, and the pipeline copies its metrics into the summary, so the numbers behind the failure are kept.
    """

    def __init__(self, what: str, *, result, where: str | None = None, fix: str | None = None):
        self.result = result
        super().__init__(what, where=where, fix=fix)


def did_you_mean(word: str, options) -> str:
    near = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"did you mean {near[0]!r}? " if near else ""
