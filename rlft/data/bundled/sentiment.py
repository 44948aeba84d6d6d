"""A product-review sentiment data set, written from parts (no downloads), for ``classifier`` stages.

``sentiment`` — one short review per row. Columns: ``text`` (the review) and ``label`` (``positive``,
``negative`` or ``neutral``, a third each). Every review names its product, and most name one of its
aspects ("the battery life of this smartwatch"); positive and negative reviews use negations too ("not
bad at all", "not worth the money"), and neutral ones are factual, lukewarm or mixed ("I like the sound
but not the fit"), so that no single word gives the label away.

Splits: ``train`` (18 products x 21 reviews = 378 rows) and ``test`` (6 other products, 126 rows). The
test products never appear in train, and every review names its product, so no test review is a train
review; the sentiment phrasing is shared, so what a classifier learns carries over. Everything is drawn
from fixed seeds: the same name always gives the same rows.

The words are data, in ``sentiment_catalog.yaml`` next to this module (package data, read by ``catalog()``): the
products with their aspects, the review templates per label, and the openers and closers.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from importlib.resources import files

import yaml

DATA_FILE = "sentiment_catalog.yaml"  # the products, their aspects and the review phrasing, next to this module
SEED = 77
TEST_PRODUCTS = 6
REVIEWS_PER_LABEL = 7  # per product, for each label
LABELS = ("positive", "negative", "neutral")


@dataclass(frozen=True)
class Catalog:
    """``sentiment_catalog.yaml`` as read: the fields are its top-level keys (see its comments)."""

    products: tuple[tuple[str, tuple[str, ...]], ...]  # (product, three of its aspects)
    reviews: dict[str, tuple[str, ...]]  # label -> review templates
    openers: tuple[str, ...]
    closers: tuple[str, ...]
    days: tuple[str, ...]
    colors: tuple[str, ...]


@functools.cache
def catalog() -> Catalog:
    """The sentiment catalogue, read once from the package data ``sentiment_catalog.yaml``."""
    raw = yaml.safe_load(files("rlft.data.bundled").joinpath(DATA_FILE).read_text(encoding="utf-8"))
    return Catalog(
        products=tuple((p["name"], tuple(p["aspects"])) for p in raw["products"]),
        reviews={label: tuple(raw["reviews"][label]) for label in LABELS},
        openers=tuple(raw["openers"]),
        closers=tuple(raw["closers"]),
        days=tuple(raw["days"]),
        colors=tuple(raw["colors"]),
    )


def _products() -> tuple[list[tuple[str, tuple[str, ...]]], list[tuple[str, tuple[str, ...]]]]:
    """Train and test products: the test ones are drawn once, from a fixed seed."""
    products = catalog().products
    held_out = set(random.Random(SEED).sample(range(len(products)), TEST_PRODUCTS))
    train = [p for i, p in enumerate(products) if i not in held_out]
    test = [p for i, p in enumerate(products) if i in held_out]
    return train, test


def _reviews(product: str, aspects: tuple[str, ...]) -> list[dict]:
    """``REVIEWS_PER_LABEL`` reviews per label of one product, each from a different template."""
    c = catalog()
    rng = random.Random(f"{SEED}-{product}")
    rows = []
    for label in LABELS:
        for template in rng.sample(c.reviews[label], REVIEWS_PER_LABEL):
            aspect, aspect2 = rng.sample(aspects, 2)
            slots = {
                "product": product,
                "aspect": aspect,
                "aspect2": aspect2,
                "day": rng.choice(c.days),
                "days": rng.randint(2, 9),
                "color": rng.choice(c.colors),
            }
            text = (rng.choice(c.openers) + template + rng.choice(c.closers)).format(**slots)
            rows.append({"text": text[0].upper() + text[1:], "label": label})
    return rows


def sentiment_rows(split: str) -> list[dict]:
    """``sentiment``: ``text`` and ``label`` rows of one split, shuffled (labels do not come in runs)."""
    train, test = _products()
    rows = [row for product, aspects in {"train": train, "test": test}[split] for row in _reviews(product, aspects)]
    random.Random(f"{SEED}-{split}").shuffle(rows)
    return rows
