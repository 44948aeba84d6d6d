"""Applying the transforms: which rows get a copy, the copies, and the counts reported for them."""

from __future__ import annotations

import math
import random

from rlft.data.augment.transforms import TRANSFORMS, HeldOut, _key, prompt_text


def augment_rows(rows: list[dict], spec, *, seed: int, held_out: HeldOut = HeldOut()) -> tuple[list[dict], dict]:
    """``rows`` followed by their augmented copies (in the order of the rows copied), and the counts; ``spec`` is an ``AugmentSpec``.

    The counts: ``rows_in``, ``target`` (``ratio x rows_in``, rounded half up), ``added``, ``rows_out``,
    ``transforms`` (per transform: copies it ``augmented``, rows it ``skipped``), ``unchanged`` (rows walked
    that no transform could change) and ``held_out_collisions`` (copies dropped for equalling a held-out prompt).
    """
    chosen = {t.name: t for t in spec.transforms}
    active = [(t, chosen[n].p, t.options.model_validate(chosen[n].model_extra or {})) for n, t in TRANSFORMS.items() if n in chosen]
    counts = {t.name: {"augmented": 0, "skipped": 0} for t, _, _ in active}
    target = math.floor(spec.ratio * len(rows) + 0.5)
    copies: dict[int, dict] = {}  # by the index of the row copied
    unchanged = collisions = 0
    for index in random.Random(f"{seed}:order").sample(range(len(rows)), len(rows)):
        if len(copies) == target:
            break
        rng = random.Random(f"{seed}:{index}")  # a row's copy depends on the seed and the row only
        row, done = rows[index], []
        for t, p, options in active:
            if rng.random() >= p:
                continue
            new = t.fn(row, rng, options, held_out)
            if new is None:
                counts[t.name]["skipped"] += 1
            else:
                row, done = new, [*done, t.name]
        if not done:
            unchanged += 1
        elif _key(prompt_text(row)) in held_out.prompts:
            collisions += 1
        else:
            copies[index] = row
            for name in done:
                counts[name]["augmented"] += 1
    report = {
        "seed": seed,
        "ratio": spec.ratio,
        "rows_in": len(rows),
        "target": target,
        "added": len(copies),
        "rows_out": len(rows) + len(copies),
        "transforms": counts,
        "unchanged": unchanged,
        "held_out_collisions": collisions,
    }
    return rows + [copies[i] for i in sorted(copies)], report


def flat_counts(report: dict) -> dict[str, int]:
    """The counts as W&B summary keys: ``augment/rows_in``, ``augment/numbers/augmented``, ..."""
    out = {f"augment/{k}": report[k] for k in ("rows_in", "added", "rows_out", "unchanged", "held_out_collisions")}
    for name, c in report["transforms"].items():
        out.update({f"augment/{name}/augmented": c["augmented"], f"augment/{name}/skipped": c["skipped"]})
    return out


def summary_line(stage: str, report: dict) -> str:
    """``[sft] augment (seed 0, ratio 0.5): 14 rows in, +7 copies, 21 rows out · numbers +7 (skipped 0) · noise +7 (skipped 0)``."""
    r = report
    line = (
        f"[{stage}] augment (seed {r['seed']}, ratio {r['ratio']}): {r['rows_in']} rows in, +{r['added']} copies, {r['rows_out']} rows out"
    )
    line += "".join(f" · {name} +{c['augmented']} (skipped {c['skipped']})" for name, c in r["transforms"].items())
    if r["added"] < r["target"]:
        line += f" · {r['target']} copies asked for: {r['unchanged']} rows no transform could change"
    if r["held_out_collisions"]:
        line += f" · {r['held_out_collisions']} copies dropped: they equalled a held-out prompt"
    return line
