"""Combine several rewards per sample: mean, min, or mean - k * std.

Example (a recipe)::

    rewards:
      - ensemble: [{model: rm}, {model: ./rm2}, {name: answer_format}]
        reduce: mean_minus_std   # penalise samples the members disagree on
        k: 1.0

``min`` and ``mean_minus_std`` are the classic guards against a policy exploiting one reward model:
a completion only scores high when every member (or the members on average, minus their
disagreement) agrees. Members that return None for a sample are left out of that sample.
"""

from __future__ import annotations

import statistics

REDUCERS = ("mean", "min", "mean_minus_std")


class Ensemble:
    """A picklable reward made of member rewards (each TRL-signature callables) and a reducer."""

    def __init__(self, members: list, weights: list[float] | None = None, reduce: str = "mean", k: float = 1.0, name: str | None = None):
        if reduce not in REDUCERS:
            raise ValueError(f"reduce must be one of {', '.join(REDUCERS)}, got {reduce!r}")
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        self.members = list(members)
        self.weights = list(weights) if weights is not None else [1.0] * len(members)
        self.reduce = reduce
        self.k = k
        self.__name__ = name or "ensemble"

    def member_scores(self, prompts, completions, **kwargs) -> list[list[float | None]]:
        return [m(prompts=prompts, completions=completions, **kwargs) for m in self.members]

    def __call__(self, prompts, completions, **kwargs) -> list[float | None]:
        columns = self.member_scores(prompts, completions, **kwargs)
        log_metric = kwargs.get("log_metric")  # TRL's GRPO passes it: members then show up in W&B too
        if callable(log_metric):
            for member, col in zip(self.members, columns, strict=True):
                applicable = [v for v in col if v is not None]
                if applicable:
                    log_metric(
                        f"rewards/{self.__name__}/{getattr(member, '__name__', type(member).__name__)}/mean", statistics.fmean(applicable)
                    )
        out: list[float | None] = []
        for i in range(len(completions)):
            values = [w * col[i] for w, col in zip(self.weights, columns, strict=True) if col[i] is not None]
            if not values:
                out.append(None)
            elif self.reduce == "min":
                out.append(min(values))
            elif self.reduce == "mean":
                out.append(statistics.fmean(values))
            else:
                spread = statistics.pstdev(values) if len(values) > 1 else 0.0
                out.append(statistics.fmean(values) - self.k * spread)
        return out
