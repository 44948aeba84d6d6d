"""The tables the rlft command prints: a run's stages, its held-out scorecard, gains, rounds and guards.

Each is an ``rlft.analysis.tables.Table`` printed through ``fitted``: laid out for the terminal's width (metrics as
rows and stages as columns when that fits, else one row per stage, else one per stage and metric), figures to 3
significant digits that never wrap, text that wraps rather than being cut.
"""

from __future__ import annotations

from rlft.analysis.tables import Column, Fitted, Table, fitted, sig3


def print_summary(summary: dict, console) -> None:
    stages = Table(
        columns=[
            Column("stage"),
            Column("kind"),
            Column("status"),
            Column("wall", no_wrap=True, justify="right"),
            Column("final loss", justify="right"),
            Column("final reward", justify="right"),
        ],
        rows=[
            [
                s["name"],
                s["kind"],
                s["status"],
                f"{s['wall_s']:.0f} s" if s.get("wall_s") else None,
                (s.get("metrics") or {}).get("train/loss"),
                (s.get("metrics") or {}).get("train/reward"),
            ]
            for s in summary["stages"]
        ],
        title=f"run {summary['run_id']} — {summary['status']}",
    )
    console.print(fitted(stages))
    tables = (
        scorecard_table(summary["stages"]),
        gains_table(summary["stages"]),
        rounds_table(summary["stages"]),
        guards_table(summary["stages"]),
    )
    for extra in tables:
        if extra is not None:
            console.print(extra)
    for s in summary["stages"]:
        if s.get("error"):
            console.print(f"[red]stage {s['name']} failed:[/red] {s['error']}", markup=True)
    console.print(f"outputs: {summary['run_dir']} (summary.json, one folder per stage)")


def scorecard_table(stages: list[dict]) -> Fitted | None:
    """The common held-out scorecard of every stage: ``baseline -> eval`` per metric (None when no stage has one)."""

    def names(m: dict) -> set[str]:
        return {k.split("/", 1)[1] for k in m if k.startswith(("eval/", "baseline/"))}

    seen = set().union(*(names(s.get("metrics") or {}) for s in stages)) if stages else set()
    columns = [c for c in SCORECARD if c in seen] + sorted(c for c in seen if c.startswith("reward/"))
    shown = [s for s in stages if names(s.get("metrics") or {}) & set(columns)]
    if not columns or not shown:
        return None
    title = "held-out scorecard: model the stage started from -> after the stage (eval: baseline -> model)"

    def change(m: dict, c: str) -> str | None:
        before, after = m.get(f"baseline/{c}"), m.get(f"eval/{c}")
        return f"{_num(before)} -> {_num(after)}" if before is not None and after is not None else _num(after) or None

    labels = [f"{s['name']} ({s['kind']})" for s in shown]
    by_metric = Table(
        columns=[Column("metric"), *[Column(label, no_wrap=True, justify="right") for label in labels]],
        rows=[[c.removeprefix("reward/"), *[change(s.get("metrics") or {}, c) for s in shown]] for c in columns],
        title=title,
    )
    by_stage = Table(
        columns=[Column("stage"), *[Column(c.removeprefix("reward/"), no_wrap=True, justify="right") for c in columns]],
        rows=[[label, *[change(s.get("metrics") or {}, c) for c in columns]] for label, s in zip(labels, shown, strict=True)],
        title=title,
    )
    long = Table(
        columns=[Column("stage"), Column("metric"), Column("start", justify="right"), Column("after", justify="right")],
        rows=[
            [label, c.removeprefix("reward/"), m.get(f"baseline/{c}"), m.get(f"eval/{c}")]
            for label, s in zip(labels, shown, strict=True)
            for m in [s.get("metrics") or {}]
            for c in columns
            if m.get(f"eval/{c}") is not None or m.get(f"baseline/{c}") is not None
        ],
        title=title,
    )
    return fitted(by_metric, by_stage, long)


def gains_table(stages: list[dict]) -> Fitted | None:
    """Each stage's held-out gain over the model it started from, paired on the same prompts, with its 95% interval."""
    from rlft.evaluation.statistics import verdict  # here, not at the top: `rlft --help` imports this module

    rows = []
    for s in stages:
        m = s.get("metrics") or {}
        for key in [k for k in m if k.startswith(("eval/delta/", *PAIRED)) and not k.endswith(INTERVAL)]:
            name = key.removeprefix("eval/delta/").removeprefix("reward/")
            low, high = m.get(f"{key}/ci_low"), m.get(f"{key}/ci_high")
            if low is None:
                continue
            n = m.get(f"{key}/n")
            rows.append(
                [
                    f"{s['name']} ({s['kind']})",
                    name,
                    f"{n:.0f}" if n is not None else None,
                    f"{_signed(m[key])} [{_signed(low)}, {_signed(high)}]",
                    _p(m.get(f"{key}/p_value")),
                    verdict(low, high, n, m.get(f"{key}/n_needed"), p_value=m.get(f"{key}/p_value")),
                ]
            )
    if not rows:
        return None
    return fitted(
        Table(
            columns=[
                Column("stage"),
                Column("metric"),
                Column("n", no_wrap=True, justify="right"),
                Column("gain [95% CI]", no_wrap=True),
                Column("p", no_wrap=True, justify="right"),
                Column("verdict"),
            ],
            rows=rows,
            title="held-out gain over the starting model (eval: over the baseline): paired on the same prompts, 95% bootstrap interval",
        )
    )


def rounds_table(stages: list[dict]) -> Fitted | None:
    """The per-round curve of stages that learn in rounds (expert_iteration, iterative_dpo): what each round kept, its
    training tries' reward, and its held-out reward with the paired gain over the stage's start (None when no stage has rounds)."""
    rows = []
    for s in stages:
        m = s.get("metrics") or {}
        done, best = m.get("rounds/done"), m.get("rounds/best_round")
        for r in range(1, int(done or 0) + 1):
            p = f"round{r}/"
            rewards = sorted(k.removeprefix(f"{p}heldout/reward/") for k in m if k.startswith(f"{p}heldout/reward/"))
            held = []
            for name in rewards:
                key = f"{p}heldout/delta/reward/{name}"
                gain = (
                    f" ({_signed(m[key])} [{_signed(m[key + '/ci_low'])}, {_signed(m[key + '/ci_high'])}])" if key + "/ci_low" in m else ""
                )
                held.append(f"{name} {_num(m[f'{p}heldout/reward/{name}'])}{gain}")
            learned = m.get(f"{p}kept", m.get(f"{p}pairs"))
            rows.append(
                [
                    s["name"],  # its kind is in the stages table above
                    f"{r}{' (best)' if r == best else ''}",
                    None if learned is None else f"{learned:.0f}",
                    m.get(f"{p}train/mean_reward"),
                    m.get(f"{p}train/pass_at_k"),
                    "; ".join(held) or None,
                    m.get(f"{p}heldout/kl_to_ref"),
                    f"{m[p + 'wall_s']:.0f} s" if p + "wall_s" in m else None,
                ]
            )
    if not rows:
        return None
    return fitted(
        Table(
            columns=[
                Column("stage"),
                Column("round"),
                Column("kept", no_wrap=True, justify="right"),
                Column("train reward", justify="right"),
                Column("pass@k", justify="right"),
                Column("held-out"),
                Column("KL", justify="right"),
                Column("wall", no_wrap=True, justify="right"),
            ],
            rows=rows,
            title="rounds: tries kept (or pairs), training reward, held-out reward (gain over the stage's start, 95% CI)",
        )
    )


def guards_table(stages: list[dict]) -> Fitted | None:
    """The checks beyond the scorecard that stages recorded: general-ability probe, train/held-out gap,
    early stopping, soup vs members; ``baseline -> model`` where there is a baseline (None when no stage has any)."""
    rows = []
    for s in stages:
        m = s.get("metrics") or {}
        # not the probe's per-category keys, nor the intervals (the gains table shows those)
        for key in sorted(k for k in m if k.startswith(GUARDS) and k.count("/") <= 2 and not k.endswith(INTERVAL)):
            before = m.get(f"baseline/{key}")
            rows.append([f"{s['name']} ({s['kind']})", key, f"{_num(before)} -> {_num(m[key])}" if before is not None else _num(m[key])])
    if not rows:
        return None
    return fitted(
        Table(
            columns=[Column("stage"), Column("metric"), Column("baseline -> model", no_wrap=True, justify="right")],
            rows=rows,
            title="guards: general ability, train vs held-out gap, early stopping, soup vs members",
        )
    )


def _p(v) -> str | None:
    """A p-value as people read it: ``<0.001`` rather than ``0.000``."""
    return None if v is None else "<0.001" if v < 0.001 else sig3(float(v))


def _num(v) -> str:
    return "" if v is None else sig3(float(v))


def _signed(v) -> str:
    return sig3(float(v), sign=True)


INTERVAL = ("/ci_low", "/ci_high", "/p_value", "/n", "/n_needed")  # the keys beside a paired difference
PAIRED = ("probe/general/change", "soup_minus_best_member")  # differences with an interval that are not eval/delta/...
SCORECARD = ("accuracy", "loss", "kl_to_ref", "mean_length")


GUARDS = ("probe/general/accuracy", "generalisation_gap/", "early_stopping/best", "soup_minus_best_member")
