"""Pairwise win rates: the same prompts for every model, greedy completions, one judge, who wins how often.

``rlft compare --winrate --judge REF --prompts FILE`` uses it. Each model answers every prompt greedily
(``rlft.evaluation.scorecard.generate``, one model loaded at a time); the judge scores each completion; for every
ordered pair of models (A, B) a prompt is a win for A when A's score is higher, a tie when equal, and
*not judged* when either score is ``None`` (the judge does not apply). The win rate of A is
``(wins_A + 0.5 * ties) / judged``, so A-vs-B and B-vs-A add up to 1.

The prompts file is a local .jsonl/.json/.csv/.parquet file, read as a stage reads its data: a ``prompt``
column (text or chat messages) and any columns the judge needs (e.g. ``answer``), which reach it as
keyword arguments.

A judge reference is written as in a recipe's ``rewards:``, one string per judge:

- ``math_accuracy`` — a registered reward;
- ``rewards.format:tag_format`` — ``module:function``;
- ``./judge.py:score`` — ``file.py:function`` (relative to the current folder);
- ``model:PATH`` — a reward model: a saved sequence-classification folder (e.g.
  ``runs/<run>/rm/model``) or a hub id. (A module literally named ``model`` cannot be used as a judge.)

Several judges add up per completion with weight 1 each, as a stage's rewards do; a judge that returns
``None`` for a completion is left out of its sum, and the sum is ``None`` when no judge applies.

Example::

    result = winrates({"sft": Path("runs/a/sft/model"), "grpo": Path("runs/a/rl/model")},
                      Path("held_out.jsonl"), ["math_accuracy"], max_new_tokens=64)
    render_winrates(result, "markdown")
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlft.analysis.tables import Column, Table, cell, write_table
from rlft.errors import RlftError
from rlft.evaluation.statistics import bootstrap_mean
from rlft.layout import RunLayout
from rlft.models import is_adapter_dir, is_model_dir

MODEL_JUDGE_PREFIX = "model:"
# csv, markdown and json: one row per ordered pair of models
HEAD = (
    "model_a",
    "model_b",
    "prompts",
    "judged",
    "wins_a",
    "wins_b",
    "ties",
    "not_judged",
    "win_rate_a",
    "win_rate_a_ci_low",
    "win_rate_a_ci_high",
    "mean_score_a",
    "mean_score_b",
)


@dataclass
class PairResult:
    """Model ``a`` against model ``b`` over the same prompts."""

    a: str
    b: str
    n: int  # prompts
    wins_a: int
    wins_b: int
    ties: int
    not_judged: int  # prompts where either score is None
    ci_low: float | None = None  # 95% bootstrap interval of the win rate over the judged prompts
    ci_high: float | None = None

    @classmethod
    def tally(cls, a: str, b: str, scores_a: list[float | None], scores_b: list[float | None]) -> PairResult:
        """Count wins, ties and unjudged prompts from per-prompt scores (``None`` = judge does not apply)."""
        judged = [(x, y) for x, y in zip(scores_a, scores_b, strict=True) if x is not None and y is not None]
        wins_a = sum(x > y for x, y in judged)
        wins_b = sum(x < y for x, y in judged)
        interval = bootstrap_mean([1.0 if x > y else 0.0 if x < y else 0.5 for x, y in judged]) if judged else None
        return cls(
            a,
            b,
            len(scores_a),
            wins_a,
            wins_b,
            len(judged) - wins_a - wins_b,
            len(scores_a) - len(judged),
            interval.ci_low if interval else None,
            interval.ci_high if interval else None,
        )

    @property
    def judged(self) -> int:
        return self.n - self.not_judged

    @property
    def win_rate(self) -> float | None:
        """``(wins_a + 0.5 * ties) / judged``; None when no prompt was judged."""
        return (self.wins_a + 0.5 * self.ties) / self.judged if self.judged else None


@dataclass
class WinrateResult:
    """Everything a win-rate comparison produced: completions and scores per model, and every ordered pair.

    ``completions[label][i]`` and ``scores[label][i]`` belong to ``prompts[i]``; ``columns`` are the prompt
    file's other columns (what the judge saw).
    """

    judge: list[str]
    prompts: list
    columns: dict[str, list]
    completions: dict[str, list[str]] = field(default_factory=dict)
    scores: dict[str, list[float | None]] = field(default_factory=dict)
    pairs: list[PairResult] = field(default_factory=list)

    def mean_score(self, label: str) -> float | None:
        """Mean judge score of a model over the prompts the judge applies to (None when it applies to none)."""
        applicable = [s for s in self.scores[label] if s is not None]
        return statistics.fmean(applicable) if applicable else None

    def rows(self) -> list[dict[str, Any]]:
        """One row per prompt: the prompt, its columns, and each model's completion and score (for a samples file)."""
        out = []
        for i, prompt in enumerate(self.prompts):
            row: dict[str, Any] = {"prompt": prompt, **{k: v[i] for k, v in self.columns.items()}}
            for label in self.completions:
                row[f"{label}_completion"] = self.completions[label][i]
                row[f"{label}_score"] = self.scores[label][i]
            out.append(row)
        return out


def winrates(
    models: dict[str, Path],
    prompts_file: Path,
    judge: list[str],
    *,
    max_new_tokens: int = 128,
    batch_size: int | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> WinrateResult:
    """Generate greedily with each model (label -> saved model folder) on the file's prompts, judge, and tally every pair.

    Everything that can be checked (models, prompts, judges and the columns they need) is checked before a
    model loads. ``batch_size``: prompts generated at once (None: as many as free memory allows). ``limit`` keeps
    the first N prompts; ``seed`` is set before each model's completions are
    judged, so that a judge that samples scores every model under the same random state.
    """
    _check_models(models)
    prompts, columns, label = _load_prompts(Path(prompts_file), limit)
    judges = resolve_judges(judge, columns, label)
    result = WinrateResult(judge=list(judge), prompts=prompts, columns=columns)
    for i, (name, path) in enumerate(models.items(), 1):
        # stderr: stdout may be carrying the csv or json table
        print(f"[winrate] model {i}/{len(models)}: {name}, {len(prompts)} greedy completions ...", file=sys.stderr, flush=True)
        gen = _complete(path, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, desc=f"winrate {name}")
        result.completions[name] = gen.texts
        result.scores[name] = _judge(judges, prompts, gen.texts, columns, seed=seed, completion_ids=gen.ids)
    result.pairs = [PairResult.tally(a, b, result.scores[a], result.scores[b]) for a in models for b in models if a != b]
    return result


def final_model(run_dir: Path, stage: str | None = None) -> Path:
    """The saved model a pipeline run ends with: ``<run>/<stage>/model`` (or ``adapter`` for a stage saved adapter-only),
    by default of its last finished stage that saved one."""
    run_dir = Path(run_dir)
    summary = RunLayout(run_dir).summary
    if not summary.exists():
        raise RlftError(f"{run_dir} has no summary.json", fix="name a run folder written by `rlft run`")
    stages = json.loads(summary.read_text()).get("stages", [])
    with_model = [s["name"] for s in stages if s.get("status") in ("done", "cached") and RunLayout(run_dir).stage(s["name"]).saved_model]
    if stage is None:
        if not with_model:
            raise RlftError(
                f"run {run_dir.name} has no finished stage with a saved model",
                fix="finish the run (`rlft run` with the same --run-id resumes it), or compare another run",
            )
        return RunLayout(run_dir).stage(with_model[-1]).saved_model
    if stage not in [s["name"] for s in stages]:
        raise RlftError(f"run {run_dir.name} has no stage {stage!r}", fix=f"its stages are: {', '.join(s['name'] for s in stages)}")
    if stage not in with_model:
        raise RlftError(
            f"stage {stage!r} of run {run_dir.name} has no finished saved model in {run_dir / stage / 'model'}",
            fix=f"stages with a model: {', '.join(with_model) or '(none)'}",
        )
    return RunLayout(run_dir).stage(stage).saved_model


def resolve_judges(judge: list[str], columns: dict[str, list], data_label: str) -> list:
    """Resolve judge strings as a recipe's rewards resolve (``ResolvedReward``s), and check the columns they need."""
    from rlft.recipe import RewardRef
    from rlft.reward_refs import resolve_ref

    if not judge:
        raise RlftError("no judge given", fix="add --judge REF: a reward name, module:function, ./file.py:function or model:PATH")
    resolved = []
    for text in judge:
        if text.startswith(MODEL_JUDGE_PREFIX):
            path = text[len(MODEL_JUDGE_PREFIX) :]
            if not path:
                raise RlftError(f"judge {text!r} names no reward model", fix="write model:PATH, e.g. model:runs/<run>/rm/model")
            ref = RewardRef(model=path)
        else:
            ref = RewardRef(name=text)
        r = resolve_ref(ref, base_dir=Path.cwd())
        missing = [c for c in r.required_columns if c not in columns]
        if missing:
            raise RlftError(
                f"judge {text} needs column(s) {missing}, which {data_label} lacks",
                fix=f"its columns besides the prompt are {sorted(columns) or '(none)'}; add the column to the prompts file",
            )
        resolved.append(r)
    return resolved


def _check_models(models: dict[str, Path]) -> None:
    if len(models) < 2:
        raise RlftError(f"a win rate needs at least 2 models, got {len(models)}", fix="name two or more runs (or RUN/STAGE) to compare")
    for name, path in models.items():
        if not is_model_dir(Path(path)) and not is_adapter_dir(path):
            raise RlftError(
                f"model {name}: {path} is not a saved model folder (no config.json) nor a LoRA adapter (no adapter_config.json)",
                fix="point at a folder written by save_pretrained, e.g. runs/<run>/<stage>/model or runs/<run>/<stage>/adapter",
            )


def _load_prompts(path: Path, limit: int | None) -> tuple[list, dict[str, list], str]:
    """Prompts (chat messages), the file's other columns, and its label, through rlft's own data loading."""
    from rlft.data.rows import load_rows
    from rlft.evaluation.scorecard import prompts_of
    from rlft.recipe import DataSpec

    if limit is not None and limit < 1:
        raise RlftError(f"limit must be at least 1, got {limit}", fix="leave it out to use every prompt")
    # An absolute path so that a missing or odd file is reported as a file, never tried as a hub data set.
    rows, _, label = load_rows(DataSpec(source=str(path.expanduser().absolute()), limit=limit), split="train")
    found = prompts_of(rows)
    if found is None:
        raise RlftError(
            f"prompts file {path} has no 'prompt' column", fix=f"its columns are: {', '.join(rows.column_names)}; add a 'prompt' column"
        )
    prompts, columns = found
    return prompts, columns, label


def _complete(path: Path, prompts: list, *, max_new_tokens: int, batch_size: int | None, desc: str = "generate"):
    """Greedy completions (``Generated``: texts and token ids) of the model saved at ``path``; the model is freed before returning."""
    from rlft.evaluation.scorecard import generate
    from rlft.models import load_causal_lm, load_tokenizer

    tok = load_tokenizer(str(path))
    model = load_causal_lm(str(path))
    gen = generate(model, tok, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, desc=desc)
    del model
    gc.collect()
    return gen


def _judge(
    judges: list, prompts: list, texts: list[str], columns: dict[str, list], *, seed: int, completion_ids: list[list[int]] | None = None
) -> list[float | None]:
    """Per completion: the weighted sum of the judges that apply to it, or None when none does.

    Judges are called as TRL calls a reward (the scorecard does the same): the prompt's columns, the
    completions' ``completion_ids`` and TRL's ``log_metric``/``log_extra`` (no-ops here)."""
    from transformers import set_seed

    from rlft.evaluation.scorecard import TRL_LOGGERS

    set_seed(seed)
    kwargs = {**columns, **TRL_LOGGERS, **({"completion_ids": completion_ids} if completion_ids is not None else {})}
    per_judge = [(j.weight, j.reward(prompts, texts, **kwargs)) for j in judges]
    totals: list[float | None] = []
    for i in range(len(texts)):
        applicable = [w * values[i] for w, values in per_judge if values[i] is not None]
        totals.append(sum(applicable) if applicable else None)
    return totals


def render_winrates(result: WinrateResult, fmt: str = "rich", console=None) -> str | None:
    """Print (rich) or return the pair table as csv, markdown or json text: one row per ordered pair of models."""
    means = {label: result.mean_score(label) for label in result.scores}
    if fmt == "rich":  # what differs per pair as columns (narrow enough for 80 columns), the rest in title and caption
        shown = " · ".join(f"{label} {cell(mean, blank='-')}" for label, mean in means.items())
        table = Table(
            columns=[
                *[Column(h) for h in ("A", "B")],
                *[Column(h, justify="right") for h in ("A win rate", "95% CI", "A wins", "B wins", "ties", "not judged")],
            ],
            rows=[[p.a, p.b, p.win_rate, _interval(p), p.wins_a, p.wins_b, p.ties, p.not_judged] for p in result.pairs],
            title=f"pairwise win rates on {len(result.prompts)} prompts, judge {' + '.join(result.judge)}",
            caption=f"mean score: {shown}\nties count half; not judged: a score is None; 95% CI: bootstrap over the judged prompts",
            blank="-",
        )
    else:
        table = Table(
            columns=[Column(h) for h in HEAD],
            rows=[
                [p.a, p.b, p.n, p.judged, p.wins_a, p.wins_b, p.ties, p.not_judged, p.win_rate, p.ci_low, p.ci_high, means[p.a], means[p.b]]
                for p in result.pairs
            ],
            json_head={"judge": result.judge, "prompts": len(result.prompts), "models": {k: {"mean_score": v} for k, v in means.items()}},
            json_rows="pairs",
        )
    return write_table(table, fmt, console)


def _interval(p: PairResult) -> str | None:
    """``[0.45, 0.58]``; a win rate whose interval excludes 0.5 is a real preference, marked ``*``."""
    if p.ci_low is None or p.ci_high is None:
        return None
    mark = " *" if p.ci_low > 0.5 or p.ci_high < 0.5 else ""
    return f"[{p.ci_low:.2f}, {p.ci_high:.2f}]{mark}"
