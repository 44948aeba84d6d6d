"""The rich tables the rlft command prints: a run's stages, its held-out scorecard, its rounds, its guards."""

from __future__ import annotations


def print_summary(summary: dict, console) -> None:
    from rich.table import Table

    table = Table(title=f"run {summary['run_id']} — {summary['status']}")
    for col in ("stage", "kind", "status", "wall", "final loss", "final reward"):
        table.add_column(col)
    for s in summary["stages"]:
        m = s.get("metrics") or {}
        wall = s.get("wall_s")
        table.add_row(
            s["name"],
            s["kind"],
            s["status"],
            f"{wall:.0f} s" if wall else "",
            _num(m.get("train/loss")),
            _num(m.get("train/reward")),
        )
    console.print(table)
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


def scorecard_table(stages: list[dict]):
    """The common held-out scorecard of every stage: ``baseline -> eval`` per metric (None when no stage has one)."""
    from rich.table import Table

    def names(m: dict) -> set[str]:
        return {k.split("/", 1)[1] for k in m if k.startswith(("eval/", "baseline/"))}

    seen = set().union(*(names(s.get("metrics") or {}) for s in stages)) if stages else set()
    columns = [c for c in SCORECARD if c in seen] + sorted(c for c in seen if c.startswith("reward/"))
    if not columns:
        return None
    table = Table(title="held-out scorecard: model the stage started from -> after the stage (eval: baseline -> model)")
    table.add_column("stage")
    for c in columns:
        table.add_column(c.removeprefix("reward/"))
    for s in stages:
        m = s.get("metrics") or {}
        if not names(m) & set(columns):
            continue
        cells = []
        for c in columns:
            before, after = m.get(f"baseline/{c}"), m.get(f"eval/{c}")
            cells.append(f"{_num(before)} -> {_num(after)}" if before is not None and after is not None else _num(after))
        table.add_row(f"{s['name']} ({s['kind']})", *cells)
    return table


def gains_table(stages: list[dict]):
    """Each stage's held-out gain over the model it started from, paired on the same prompts, with its 95% interval."""
    from rich.table import Table

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
                (
                    f"{s['name']} ({s['kind']})",
                    name,
                    f"{n:.0f}" if n is not None else "",
                    f"{m[key]:+.3f} [{low:+.3f}, {high:+.3f}]",
                    _p(m.get(f"{key}/p_value")),
                    verdict(low, high, n, m.get(f"{key}/n_needed")),
                )
            )
    if not rows:
        return None
    table = Table(
        title="held-out gain over the starting model (eval: over the baseline): paired on the same prompts, 95% bootstrap interval"
    )
    for col in ("stage", "metric", "n", "gain [95% CI]", "p", "verdict"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    return table


def rounds_table(stages: list[dict]):
    """The per-round curve of stages that learn in rounds (expert_iteration, iterative_dpo): what each round kept, its
    training tries' reward, and its held-out reward with the paired gain over the stage's start (None when no stage has rounds)."""
    from rich.table import Table

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
                gain = f" ({m[key]:+.3f} [{m[key + '/ci_low']:+.3f}, {m[key + '/ci_high']:+.3f}])" if key + "/ci_low" in m else ""
                held.append(f"{name} {m[f'{p}heldout/reward/{name}']:.3f}{gain}")
            learned = m.get(f"{p}kept", m.get(f"{p}pairs"))
            rows.append(
                (
                    f"{s['name']} ({s['kind']})",
                    f"{r}{' (best)' if r == best else ''}",
                    "" if learned is None else f"{learned:.0f}",
                    _num(m.get(f"{p}train/mean_reward")),
                    _num(m.get(f"{p}train/pass_at_k")),
                    "; ".join(held),
                    _num(m.get(f"{p}heldout/kl_to_ref")),
                    f"{m[p + 'wall_s']:.0f} s" if p + "wall_s" in m else "",
                )
            )
    if not rows:
        return None
    table = Table(title="rounds: tries kept (or pairs), training reward, held-out reward (gain over the stage's start, 95% CI)")
    for col in ("stage", "round", "kept", "train reward", "pass@k", "held-out", "KL", "wall"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    return table


def guards_table(stages: list[dict]):
    """The checks beyond the scorecard that stages recorded: general-ability probe, train/held-out gap,
    early stopping, soup vs members; ``baseline -> model`` where there is a baseline (None when no stage has any)."""
    from rich.table import Table

    rows = []
    for s in stages:
        m = s.get("metrics") or {}
        # not the probe's per-category keys, nor the intervals (the gains table shows those)
        for key in sorted(k for k in m if k.startswith(GUARDS) and k.count("/") <= 2 and not k.endswith(INTERVAL)):
            before = m.get(f"baseline/{key}")
            rows.append((f"{s['name']} ({s['kind']})", key, f"{_num(before)} -> {_num(m[key])}" if before is not None else _num(m[key])))
    if not rows:
        return None
    table = Table(title="guards: general ability, train vs held-out gap, early stopping, soup vs members")
    for col in ("stage", "metric", "baseline -> model"):
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    return table


def _p(v) -> str:
    """A p-value as people read it: ``p<0.001`` rather than ``0.000``."""
    return "" if v is None else "<0.001" if v < 0.001 else f"{v:.3f}"


def _num(v) -> str:
    return "" if v is None else f"{v:.3f}"


INTERVAL = ("/ci_low", "/ci_high", "/p_value", "/n", "/n_needed")  # the keys beside a paired difference
PAIRED = ("probe/general/change", "soup_minus_best_member")  # differences with an interval that are not eval/delta/...
SCORECARD = ("accuracy", "loss", "kl_to_ref", "mean_length")


GUARDS = ("probe/general/accuracy", "generalisation_gap/", "early_stopping/best", "soup_minus_best_member")
