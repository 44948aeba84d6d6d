"""Self-improvement in rounds, the bookkeeping: what a round keeps of its own tries, how it pairs them, what it
records, and where an interrupted stage picks up.

A round samples ``k`` completions for each of its training prompts and scores each with the stage's
rewards; a completion's *total* is TRL's weighted sum of its rewards (a reward that returns None for
it adds nothing; a completion no reward applies to has no total and is never kept or paired).

- **Expert iteration** (``keep_best``): per prompt, the completions with the highest totals, at most
  ``per_prompt`` distinct texts, each at least ``min_reward``; with ``top_fraction``, only the prompts
  whose best total ranks in that top share of the round (ties at the cut are kept).
- **Iterative DPO** (``best_vs_worst``): per prompt, its highest total against its lowest; a pair
  needs best - worst above ``min_margin`` (above 0 at least: ties never pair) and different texts.

``RoundState`` is what a finished round leaves for a resumed stage: the rounds' metrics, the best
round so far and the count of rounds without improvement. It is written as
``trainer/checkpoint-<round>/round_state.json``: the pipeline keeps a stage folder that holds a complete
checkpoint (``rlft.training.checkpoints``), so a stage killed in round 3 starts again at round 3 with
rounds 1-2's samples, models and figures as they were.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE = "round_state.json"  # a finished round's marker in trainer/checkpoint-<round>


@dataclass
class Tries:
    """One round's samples: for prompt ``i`` of the round, ``texts[i]`` (k completions), ``totals[i]`` and, per reward, its values."""

    texts: list[list[str]]
    totals: list[list[float | None]]
    by_reward: dict[str, list[list[float | None]]] = field(default_factory=dict)


def weighted_totals(by_reward: dict[str, list[float | None]], weights: dict[str, float]) -> list[float | None]:
    """Per completion: sum of weight x value over the rewards that scored it (TRL's ``nansum``); None when none did."""
    n = len(next(iter(by_reward.values()))) if by_reward else 0
    out: list[float | None] = []
    for j in range(n):
        values = [(weights[name], vals[j]) for name, vals in by_reward.items() if vals[j] is not None]
        out.append(sum(w * v for w, v in values) if values else None)
    return out


def _ranked(texts: list[str], totals: list[float | None]) -> list[int]:
    """Indices of the scored completions, highest total first (ties keep sampling order)."""
    scored = [j for j, t in enumerate(totals) if t is not None]
    return sorted(scored, key=lambda j: -totals[j])


def keep_best(tries: Tries, *, min_reward: float | None, top_fraction: float | None, per_prompt: int = 1) -> list[tuple[int, int]]:
    """(prompt, completion) indices an expert-iteration round fine-tunes on; see the module's docstring."""
    chosen: dict[int, list[int]] = {}
    for i, (texts, totals) in enumerate(zip(tries.texts, tries.totals, strict=True)):
        picked, seen = [], set()
        for j in _ranked(texts, totals):
            if min_reward is not None and totals[j] < min_reward:
                break
            if texts[j] in seen:
                continue
            picked.append(j)
            seen.add(texts[j])
            if len(picked) == per_prompt:
                break
        if picked:
            chosen[i] = picked
    if top_fraction is not None and chosen:
        count = max(1, math.ceil(top_fraction * len(tries.texts)))  # a share of the round's prompts, not of those kept
        best = sorted((tries.totals[i][js[0]] for i, js in chosen.items()), reverse=True)
        cut = best[min(count, len(best)) - 1]
        chosen = {i: js for i, js in chosen.items() if tries.totals[i][js[0]] >= cut}
    return [(i, j) for i in sorted(chosen) for j in chosen[i]]


def best_vs_worst(tries: Tries, *, min_margin: float = 0.0, min_chosen_reward: float | None = None) -> list[tuple[int, int, int]]:
    """(prompt, chosen, rejected) indices of an iterative-DPO round; see the module's docstring."""
    pairs = []
    for i, (texts, totals) in enumerate(zip(tries.texts, tries.totals, strict=True)):
        ranked = _ranked(texts, totals)
        if len(ranked) < 2:
            continue
        best = ranked[0]
        if min_chosen_reward is not None and totals[best] < min_chosen_reward:
            continue
        # the lowest total; among equal lowest, the first sampled — and never a copy of the best's text
        lowest_first = sorted(ranked, key=lambda j: totals[j])  # stable: equal totals stay in sampling order
        worst = next((j for j in lowest_first if texts[j] != texts[best]), None)
        if worst is None or totals[best] - totals[worst] <= min_margin:
            continue
        pairs.append((i, best, worst))
    return pairs


def round_figures(tries: Tries, *, bar: float | None) -> dict[str, float]:
    """What a round's training tries show: the mean total, the mean of each prompt's best (best-of-k), and with a
    ``bar`` pass@k — the share of prompts with at least one completion at or above it."""
    flat = [t for totals in tries.totals for t in totals if t is not None]
    bests = [max(t for t in totals if t is not None) for totals in tries.totals if any(t is not None for t in totals)]
    out = {
        "train/mean_reward": sum(flat) / len(flat) if flat else float("nan"),
        "train/best_of_k_reward": sum(bests) / len(bests) if bests else float("nan"),
        "train/unscored": sum(t is None for totals in tries.totals for t in totals),
    }
    if bar is not None:
        out["train/pass_at_k"] = sum(b >= bar for b in bests) / len(tries.texts) if tries.texts else float("nan")
    return out


def round_prompts(n_rows: int, per_round: int | None, round_no: int, seed: int) -> list[int]:
    """Row indices round ``round_no`` (1-based) samples: the rows shuffled once with ``seed``, taken ``per_round`` at a
    time and wrapping around (None: every row each round)."""
    import random

    if per_round is None or per_round >= n_rows:
        return list(range(n_rows))
    order = list(range(n_rows))
    random.Random(seed).shuffle(order)
    start = (round_no - 1) * per_round
    return [order[(start + k) % n_rows] for k in range(per_round)]


@dataclass
class RoundState:
    """The rounds finished so far: their metrics (in order), the best round, rounds since it, whether the stage stopped."""

    rounds: list[dict] = field(default_factory=list)
    best_round: int | None = None
    best: float | None = None
    without_improvement: int = 0
    stopped: bool = False

    @property
    def done(self) -> int:
        return len(self.rounds)

    def update(self, value: float, *, higher: bool = True, min_delta: float = 0.0, patience: int | None = None) -> bool:
        """Record the round just finished (already appended to ``rounds``) scoring ``value``; True when it is the best so far.

        With ``patience`` the state stops after that many rounds in a row without an improvement larger than ``min_delta``.
        A NaN value (nothing scored) never improves.
        """
        better = not math.isnan(value) and (
            self.best is None or (value - self.best > min_delta if higher else self.best - value > min_delta)
        )
        if better:
            self.best, self.best_round, self.without_improvement = value, self.done, 0
        else:
            self.without_improvement += 1
        if patience is not None and self.without_improvement >= patience:
            self.stopped = True
        return better

    def save(self, trainer_dir: Path) -> Path:
        """Write ``checkpoint-<round>/round_state.json`` (atomically: a half-written state is never read as complete)."""
        folder = Path(trainer_dir) / f"checkpoint-{self.done}"
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (STATE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1, default=float))
        os.replace(tmp, folder / STATE)
        return folder

    @classmethod
    def load(cls, checkpoint: Path | None) -> RoundState:
        """The state in a ``checkpoint-<round>`` folder, or a fresh one (None, or a folder without a round state)."""
        if checkpoint is None or not (Path(checkpoint) / STATE).exists():
            return cls()
        return cls(**json.loads((Path(checkpoint) / STATE).read_text()))
