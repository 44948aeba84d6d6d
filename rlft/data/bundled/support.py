"""A customer-support preference data set, written from parts (no downloads), for reward models and DPO.

``support-preference`` — a customer asks the support desk of "Brightleaf", a made-up maker of app-connected
home gadgets, one question; ``chosen`` is a helpful, correct, specific and polite answer and ``rejected`` a bad
one. Columns: ``prompt`` (``[user message]``), ``chosen`` and ``rejected`` (``[assistant message]``): TRL's
conversational preference format with an explicit prompt.
``support-sft`` — the same prompts with the chosen answer as ``completion``, for an SFT stage before DPO.

Every question is one *scenario* (an intent such as "cancel my order" or "the app keeps crashing", across
orders, returns, billing, accounts, product use, subscriptions, technical problems and complaints) asked about
one *product*. Answers are "correct" against one fixed, made-up store policy (``policy`` in the catalogue): 30-day free returns,
refunds 5-7 business days after we receive the item, and so on. Rejected answers come in six styles
(``STYLES``): wrong information in a polite tone, evasive non-answers, rude brush-offs, answers to a different
question, vague hand-waving, and the correct answer delivered rudely. Polite openers and closers are shared by
chosen and wrong answers, and both sides have short and long forms, so neither tone words nor length give the
label away: a reward model has to read the content and the manner.

Splits: ``train`` (376 rows) and ``test`` (141). For every scenario, three products are held out, so no (scenario,
product) combination of the test split appears in train (but every scenario is seen in training with other products).
Everything is drawn from fixed seeds: the same name always gives the same rows.

The words are data, in ``support_catalog.yaml`` next to this module (package data, read by ``catalog()``): the
policy, the products, the scenarios and the phrase banks. This module holds only the code that puts them together.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from importlib.resources import files

import yaml

DATA_FILE = "support_catalog.yaml"  # the policy, products, scenarios and phrase banks, next to this module
SEED = 2024
TEST_PRODUCTS_PER_SCENARIO = 3  # 141 held-out pairs: enough to separate a preference-accuracy gain of ~0.1
STYLES = ("wrong", "evasive", "rude", "off_topic", "vague", "correct_but_rude")


@dataclass(frozen=True)
class Product:
    name: str
    short: str
    warranty: int  # years
    price: int
    button: str  # what to press and hold, e.g. "the Brew button"
    battery: bool
    care: str


@dataclass(frozen=True)
class Scenario:
    key: str
    topic: str
    about: str  # a noun phrase, for answers that only talk *about* the question
    questions: tuple[str, ...]
    chosen: tuple[str, str]  # (short, long) correct answers
    wrong: tuple[str, ...]  # polite but factually wrong answers


@dataclass(frozen=True)
class Catalog:
    """``support_catalog.yaml`` as read: the fields are its top-level keys, in its order (see its comments)."""

    policy: dict[str, str]
    products: tuple[Product, ...]
    scenarios: tuple[Scenario, ...]
    q_prefix: tuple[str, ...]
    q_suffix: tuple[str, ...]
    polite_open: tuple[str, ...]
    polite_close: tuple[str, ...]
    rude_open: tuple[str, ...]
    rude_close: tuple[str, ...]
    rude_mid: tuple[str, ...]
    wrong_pad: tuple[str, ...]
    evasive_open: tuple[str, ...]
    evasive_mid: tuple[str, ...]
    evasive_close: tuple[str, ...]
    vague_topic: dict[str, str]  # topic -> its vague line
    vague_filler: tuple[str, ...]
    off_topic: tuple[str, ...]
    power_tip: dict[str, str]  # "battery" / "mains" -> the {power_tip} slot
    courtesy_starts: tuple[str, ...]


def _tuples(record: dict) -> dict:
    """YAML lists as tuples, so that the catalogue is as immutable as the dataclasses holding it."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in record.items()}


@functools.cache
def catalog() -> Catalog:
    """The support catalogue, read once from the package data ``support_catalog.yaml``."""
    raw = yaml.safe_load(files("rlft.data.bundled").joinpath(DATA_FILE).read_text(encoding="utf-8"))
    products = tuple(Product(**p) for p in raw.pop("products"))
    scenarios = tuple(Scenario(**_tuples(s)) for s in raw.pop("scenarios"))
    return Catalog(products=products, scenarios=scenarios, **_tuples(raw))


def _slots(scenario: Scenario, product: Product, rng: random.Random) -> dict:
    """The values a scenario's templates refer to, drawn per (scenario, product) row."""
    power_tip = catalog().power_tip["battery" if product.battery else "mains"]
    slots = {
        "product": product.name,
        "short": product.short,
        "order": f"BL-{rng.randint(100000, 999999)}",
        "days": rng.randint(3, 9),
        "price": product.price,
        "warranty": product.warranty,
        "button": product.button,
        "care": product.care,
        "power_tip": power_tip.format(short=product.short),
    }
    slots["about"] = scenario.about.format(**slots)
    return slots


def _fill(rng: random.Random, slots: dict, *parts) -> str:
    """Pick one item from each tuple (or take a str as is), format them, and join them into one answer."""
    picked = [p if isinstance(p, str) else rng.choice(p) for p in parts]
    # Optional parts may be empty strings; collapse the double spaces they leave behind.
    return " ".join("".join(picked).format(**slots).split())


def _without_courtesy(body: str) -> str:
    """Drop an opening apology, so that the correct-but-rude answer does not apologise and sneer at once."""
    if body.startswith(catalog().courtesy_starts):
        cut = min((i for i in (body.find(". "), body.find("! ")) if i >= 0), default=-1)
        if cut >= 0:
            return body[cut + 2 :]
    return body


def _chosen(scenario: Scenario, rng: random.Random, slots: dict) -> str:
    c = catalog()
    # Short answers are a little more common than long ones, to keep chosen lengths near rejected ones.
    body = scenario.chosen[0] if rng.random() < 0.65 else scenario.chosen[1]
    return _fill(rng, slots, c.polite_open, body, c.polite_close)


def _rejected(style: str, scenario: Scenario, rng: random.Random, slots: dict) -> str:
    """One bad answer in the given style (see ``STYLES``)."""
    c = catalog()
    if style == "wrong":
        pads = " ".join(rng.sample(c.wrong_pad, rng.randint(0, 3)))
        return _fill(rng, slots, c.polite_open, rng.choice(scenario.wrong) + " " + pads, c.polite_close)
    if style == "evasive":
        middle = " ".join(rng.sample(c.evasive_mid, rng.randint(1, 3)))
        return _fill(rng, slots, c.evasive_open, middle, c.evasive_close)
    if style == "rude":
        middle = " ".join(rng.sample(c.rude_mid, rng.randint(1, 3)))
        return _fill(rng, slots, c.rude_open, middle, c.rude_close)
    if style == "off_topic":
        # Half the time a good answer to a *different* question about the same product: helpful in
        # form, useless here, so a reward model must read the prompt to reject it.
        if rng.random() < 0.5:
            other = rng.choice([s for s in c.scenarios if s.topic != scenario.topic])
            return _fill(rng, slots, c.polite_open, other.chosen, c.polite_close)
        middle = " ".join(rng.sample(c.off_topic, rng.randint(1, 3)))
        return _fill(rng, slots, c.polite_open, middle, c.polite_close)
    if style == "vague":
        fillers = " ".join(rng.sample(c.vague_filler, rng.randint(1, 3)))
        return _fill(rng, slots, c.polite_open, c.vague_topic[scenario.topic] + " " + fillers, c.polite_close)
    if style == "correct_but_rude":
        body = _without_courtesy(rng.choice(scenario.chosen))
        return _fill(rng, slots, c.rude_open, body, c.rude_close)
    raise ValueError(f"unknown rejection style {style!r}")


def _combinations() -> tuple[list[tuple[Scenario, Product]], list[tuple[Scenario, Product]]]:
    """(scenario, product) pairs for train and test; each scenario holds out its own three products."""
    c = catalog()
    rng = random.Random(SEED)
    train, test = [], []
    for scenario in c.scenarios:
        held_out = set(rng.sample(range(len(c.products)), TEST_PRODUCTS_PER_SCENARIO))
        for i, product in enumerate(c.products):
            (test if i in held_out else train).append((scenario, product))
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def support_records(split: str) -> list[dict]:
    """Rows with their provenance: ``scenario``, ``topic``, ``product``, ``style`` besides the answers.

    The published data sets drop those keys (TRL's preference format has none); tests and analysis use them.
    """
    c = catalog()
    train, test = _combinations()
    combos = {"train": train, "test": test}[split]
    records = []
    for i, (scenario, product) in enumerate(combos):
        rng = random.Random(f"{SEED}-{scenario.key}-{product.short}")
        slots = _slots(scenario, product, rng)
        question = _fill(rng, slots, c.q_prefix, scenario.questions, c.q_suffix)
        # Styles rotate over the shuffled rows so every style is equally common in both splits.
        style = STYLES[i % len(STYLES)]
        chosen = _chosen(scenario, rng, slots)
        rejected = _rejected(style, scenario, rng, slots)
        records.append(
            {
                "question": question,
                "chosen": chosen,
                "rejected": rejected,
                "scenario": scenario.key,
                "topic": scenario.topic,
                "product": product.short,
                "style": style,
            }
        )
    return records


def preference_rows(split: str) -> list[dict]:
    """``support-preference``: conversational prompt / chosen / rejected."""
    return [
        {
            "prompt": [{"role": "user", "content": r["question"]}],
            "chosen": [{"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "assistant", "content": r["rejected"]}],
        }
        for r in support_records(split)
    ]


def sft_rows(split: str) -> list[dict]:
    """``support-sft``: the same prompts with the chosen answer as the completion."""
    return [
        {"prompt": [{"role": "user", "content": r["question"]}], "completion": [{"role": "assistant", "content": r["chosen"]}]}
        for r in support_records(split)
    ]
