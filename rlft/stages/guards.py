"""Guards against overfitting and forgetting: what an eval stage scores besides its held-out prompts.

Both models of an eval stage (the model under test and its baseline) answer, greedily and with the
same settings:

- ``overfit_check: {stage: rl, prompts: 32}`` — a seeded sample of the training rows of stage ``rl``
  (exactly the rows it trained on: its ``data:`` after its held-out split), scored with the eval
  stage's own rewards. A model that memorised its training prompts scores higher there than on
  held-out prompts. (A stage that trained for less than an epoch never saw part of its rows, which
  shrinks the gap: size ``data.limit`` to what it trains on.)
- ``probe: {}`` — the general-ability probe ``bundled:general-probe`` (``rlft.data.bundled.probe``), scored by the
  ``general_ability`` reward (``rewards.general``).
- ``forgetting: {max_drop: 0.05}`` — runs the probe, and fails the stage (after its metrics and samples
  are written) when the model's probe accuracy is more than ``max_drop`` below the baseline's.

======================================  =========================================================================
metric                                  meaning
======================================  =========================================================================
``train_sample/reward/<name>``          mean reward on the sampled training prompts (``eval/reward/<name>``: held out)
``generalisation_gap/<name>``           ``train_sample/reward/<name>`` minus ``eval/reward/<name>``
``probe/general/accuracy``              share of probe questions answered right
``probe/general/accuracy/<category>``   the same per category (facts, arithmetic, reasoning, language, instructions)
``probe/general/change``                model minus baseline probe accuracy (negative: general ability was lost)
``baseline/<same>``                     the first four for the baseline
======================================  =========================================================================

Samples go to ``train_samples.jsonl`` and ``probe_samples.jsonl`` beside ``samples.jsonl`` (and W&B
tables ``train_sample/samples``, ``probe/samples``).
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass

from rlft.errors import CheckFailed, RlftError
from rlft.evaluation.scorecard import Scorecard
from rlft.evaluation.statistics import paired_bootstrap
from rlft.layout import StageLayout
from rlft.stages.context import StageNotes

SPEED = ("tokens_per_s", "generation_s", "generated_tokens")  # a card's generation speed, kept under the guard's name
PROBE_SOURCE = "bundled:general-probe"
PROBE_REWARD = "general_ability"


@dataclass
class Guards:
    """An eval stage's extra scorecards: a sample of training prompts (``train``) and the probe (``probe``); either may be None."""

    train: Scorecard | None = None
    probe: Scorecard | None = None

    @classmethod
    def build(cls, cfg, ctx, rewards: list) -> Guards:
        """Load the rows (before any model loads, so that a bad setting fails fast); ``rewards``: the stage's resolved rewards."""
        return cls(
            train=_train_card(cfg, ctx, rewards) if cfg.overfit_check else None,
            probe=_probe_card(cfg, ctx) if cfg.probe_spec else None,
        )

    def score(self, model, tok, prefix: str) -> dict[str, float]:
        """Score one model: ``prefix`` ``eval`` (the model under test: metrics without a prefix) or ``baseline``."""
        head = "" if prefix == "eval" else f"{prefix}/"
        out: dict[str, float] = {}
        if self.train is not None:
            for key, value in self.train.score(model, tok, prefix).items():
                if key.startswith(f"{prefix}/reward/") or key.removeprefix(f"{prefix}/") in SPEED:
                    out[f"{head}train_sample/{key.removeprefix(f'{prefix}/')}"] = value
        if self.probe is not None:
            for key, value in self.probe.score(model, tok, prefix).items():
                if key.removeprefix(f"{prefix}/") in SPEED:
                    out[f"{head}probe/{key.removeprefix(f'{prefix}/')}"] = value
            values = self.probe.scores[prefix][PROBE_REWARD]
            categories = self.probe.columns["category"]
            out[f"{head}probe/general/accuracy"] = _mean(values)
            for category in dict.fromkeys(categories):
                out[f"{head}probe/general/accuracy/{category}"] = _mean(
                    [v for v, c in zip(values, categories, strict=True) if c == category]
                )
        return out

    def generation(self) -> dict[str, dict]:
        """How each guard card's completions were made (``Scorecard.generation``), by ``train_sample/<prefix>``, ``probe/<prefix>``."""
        out = {}
        for name, card in (("train_sample", self.train), ("probe", self.probe)):
            for prefix, record in card.generation.items() if card is not None else ():
                out[f"{name}/{prefix}"] = record
        return out

    @staticmethod
    def differences(metrics: dict[str, float]) -> dict[str, float]:
        """``generalisation_gap/<name>`` (model and baseline) and ``probe/general/change`` from the scored metrics."""
        out = {}
        for head, held_out in (("", "eval/"), ("baseline/", "baseline/")):
            for key in [k for k in metrics if k.startswith(f"{head}train_sample/reward/")]:
                name = key.removeprefix(f"{head}train_sample/reward/")
                out[f"{head}generalisation_gap/{name}"] = metrics[key] - metrics[f"{held_out}reward/{name}"]
        if "baseline/probe/general/accuracy" in metrics and "probe/general/accuracy" in metrics:
            out["probe/general/change"] = metrics["probe/general/accuracy"] - metrics["baseline/probe/general/accuracy"]
        return out

    def intervals(self, seed: int = 0) -> dict[str, float]:
        """The interval of ``probe/general/change`` (``/ci_low``, ``/ci_high``, ``/p_value``, ``/n``): a paired bootstrap over probe items."""
        scores = self.probe.scores if self.probe is not None else {}
        if not {"baseline", "eval"} <= set(scores):
            return {}
        change = paired_bootstrap(scores["baseline"][PROBE_REWARD], scores["eval"][PROBE_REWARD], seed=seed)
        return change.metrics("probe/general/change", value=False)  # the change itself: differences()

    def write_samples(self, ctx) -> None:
        if self.train is not None:
            self.train.write_samples(ctx.paths.train_samples, ctx.tracker, table="train_sample/samples")
        if self.probe is not None:
            self.probe.write_samples(ctx.paths.probe_samples, ctx.tracker, table="probe/samples")


def _mean(values: list) -> float:
    applicable = [v for v in values if v is not None]
    return statistics.fmean(applicable) if applicable else float("nan")


def _train_card(cfg, ctx, rewards: list) -> Scorecard:
    from rlft.stages.inputs import load_split

    spec = cfg.overfit_check
    stage = ctx.recipe.stage(spec.stage)
    # The same split the stage made, so the sample holds rows it trained on; a copy of the context keeps
    # that stage's data notes out of this stage's manifest.
    train, _ = load_split(stage, dataclasses.replace(ctx, notes=StageNotes()))
    where = f"stages.{cfg.name}.overfit_check"
    fix = f"map one with stages.{spec.stage}.data.columns, or remove overfit_check"
    card = Scorecard.from_rows(
        train,
        rewards,
        sample=spec.prompts,
        seed=ctx.seed_for(cfg),
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
        check=(f"the training rows of stage {spec.stage!r}", where, fix),
    )
    if card is None:
        raise RlftError(
            f"the training rows of stage {spec.stage!r} have no prompts (columns: {', '.join(train.column_names)})",
            where=f"{where}.stage",
            fix="name a stage trained on prompts (prompt/completion, messages, or prompt/chosen/rejected rows)",
        )
    ctx.notes.overfit_check = {"stage": spec.stage, "train_rows": len(train), "sampled": len(card.prompts)}
    card.label = "train sample"  # what its progress lines say
    return card


def _probe_card(cfg, ctx) -> Scorecard:
    from rlft.data.rows import load_rows
    from rlft.recipe import DataSpec
    from rlft.reward_refs import resolve_reward

    spec = cfg.probe_spec
    rows, fp, label = load_rows(DataSpec(source=PROBE_SOURCE, limit=spec.limit), split="test")
    ctx.notes.probe = {"data": label, "rows": len(rows), "fingerprint": fp}
    card = Scorecard.from_rows(
        rows, [resolve_reward(PROBE_REWARD)], all_columns=True, max_new_tokens=spec.max_new_tokens, batch_size=cfg.batch_size
    )
    card.label = "probe"  # what its progress lines say
    return card


def check_forgetting(cfg, ctx, result, under_test: str | None) -> None:
    """Raise ``CheckFailed`` when the probe accuracy of the model under test fell more than ``forgetting.max_drop`` below the baseline's."""
    if cfg.forgetting is None:
        return
    m = result.metrics
    before, after = m["baseline/probe/general/accuracy"], m["probe/general/accuracy"]
    drop, limit = before - after, cfg.forgetting.max_drop
    if drop <= limit + 1e-9:  # "more than": a drop of exactly max_drop passes, whatever the float rounding
        return
    lost = sorted(((m[f"baseline/{k}"] - m[k], k.rsplit("/", 1)[1]) for k in m if k.startswith("probe/general/accuracy/")), reverse=True)
    worst = ", ".join(
        f"{name} {m[f'baseline/probe/general/accuracy/{name}']:.2f} -> {m[f'probe/general/accuracy/{name}']:.2f}"
        for d, name in lost[:3]
        if d > 0
    )
    how = ""
    if under_test:
        stay = ctx.recipe.stage(under_test).stay_close  # how that stage kind keeps a model near where it started
        stay = stay.format(s=under_test)
        how = f"keep {under_test} closer to where it started: lower stages.{under_test}.trl.learning_rate, train fewer steps, or {stay}; "
    raise CheckFailed(
        f"general ability dropped: probe/general/accuracy fell from {before:.3f} (baseline {cfg.baseline}) to {after:.3f} "
        f"(model {under_test or 'base'}), a drop of {drop:.3f}, more than forgetting.max_drop {limit:g} (most lost: {worst})",
        where=f"stages.{cfg.name}.forgetting",
        fix=f"{how}or, if that loss is acceptable, raise stages.{cfg.name}.forgetting.max_drop. "
        f"The probe answers are in {cfg.name}/{StageLayout.PROBE_SAMPLES}",
        result=result,
    )
