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
"""

from __future__ import annotations

import random

SEED = 77
TEST_PRODUCTS = 6
REVIEWS_PER_LABEL = 7  # per product, for each label
LABELS = ("positive", "negative", "neutral")

# (product, three of its aspects: singular nouns, as the templates say "the {aspect} is")
PRODUCTS = (
    ("kettle", ("boil time", "lid", "handle")),
    ("blender", ("motor", "jug", "noise level")),
    ("toaster", ("browning", "crumb tray", "control panel")),
    ("coffee grinder", ("grind", "burr set", "hopper")),
    ("rice cooker", ("timer", "inner pot", "steam vent")),
    ("air fryer", ("basket", "temperature control", "fan")),
    ("desk lamp", ("brightness", "arm", "switch")),
    ("office chair", ("seat cushion", "back support", "height lever")),
    ("backpack", ("main zip", "shoulder padding", "side pocket")),
    ("umbrella", ("canopy", "frame", "grip")),
    ("water bottle", ("lid", "insulation", "seal")),
    ("yoga mat", ("grip", "thickness", "surface")),
    ("pair of wireless earbuds", ("sound", "battery life", "fit")),
    ("phone case", ("button cover", "edge protection", "finish")),
    ("keyboard", ("typing feel", "backlight", "battery life")),
    ("computer mouse", ("scroll wheel", "sensor", "click")),
    ("smartwatch", ("screen", "strap", "battery life")),
    ("bluetooth speaker", ("bass", "volume", "battery life")),
    ("electric toothbrush", ("brush head", "charger", "timer")),
    ("hair dryer", ("airflow", "cord", "heat setting")),
    ("pair of running shoes", ("cushioning", "lacing", "sole")),
    ("winter jacket", ("hood", "zip", "lining")),
    ("frying pan", ("non-stick coating", "handle", "base")),
    ("vacuum cleaner", ("suction", "filter", "hose")),
)

REVIEWS = {
    "positive": (
        "This {product} is excellent, and the {aspect} works perfectly.",
        "I love this {product}. The {aspect} is so much better than on my old one.",
        "Best {product} I have ever owned; the {aspect} is superb.",
        "The {aspect} of this {product} is fantastic and it feels very well made.",
        "Really happy with the {product}: the {aspect} is great and it was worth every penny.",
        "Not bad at all! The {product} surprised me, especially the {aspect}.",
        "I was worried about the {aspect}, but this {product} has been flawless.",
        "I would happily buy this {product} again, the {aspect} is brilliant.",
        "After three months the {product} still works like new and the {aspect} is still great.",
        "Highly recommend this {product}; the {aspect} is a real pleasure to use.",
        "No complaints about the {product} at all, the {aspect} is spot on.",
        "My whole family loves the new {product}, and the {aspect} is the best part.",
    ),
    "negative": (
        "The {product} stopped working after a week and the {aspect} was flimsy from the start.",
        "Terrible {product}. The {aspect} broke on the second day.",
        "I regret buying this {product}; the {aspect} is awful.",
        "Not worth the money: the {aspect} of this {product} is poor.",
        "Very disappointed with the {product}, the {aspect} never worked properly.",
        "I would not buy this {product} again, the {aspect} is a joke.",
        "The {aspect} of this {product} is cheap and it already feels like it will fall apart.",
        "I returned the {product} after two days because the {aspect} was so bad.",
        "Avoid this {product}. The {aspect} is useless and support never replied.",
        "The {product} looked nice in the photos, but the {aspect} is a huge letdown.",
        "Not good at all: the {aspect} failed and the {product} is now in a drawer.",
        "Worst {product} I have owned; I can't believe how bad the {aspect} is.",
    ),
    "neutral": (
        "The {product} arrived on {day} in plain packaging.",
        "It is an average {product}; the {aspect} is fine, nothing special.",
        "I bought the {product} as a gift, so I can't say much about the {aspect} yet.",
        "The {product} does what it says. The {aspect} is okay.",
        "The {aspect} of the {product} is good, but the {aspect2} is poor, so it evens out.",
        "It is a {color} {product} with a standard {aspect}, about what you'd expect for the price.",
        "I have only used the {product} twice, so it is too early to judge the {aspect}.",
        "The {product} is similar to the one I had before, and the {aspect} is about the same.",
        "Delivery of the {product} took {days} days, which matched the estimate.",
        "The {aspect} is neither great nor terrible; it is a perfectly ordinary {product}.",
        "The {product} comes in {color}, and the box includes a short manual about the {aspect}.",
        "Mixed feelings about the {product}: I like the {aspect} but not the {aspect2}.",
    ),
}
# Openers and closers shared by every label, so that neither tells the label.
OPENERS = ("", "", "", "Bought this last month. ", "Update: ", "Second purchase from this brand. ", "Ordered online. ")
CLOSERS = ("", "", "", " I got the {color} one.", " It came in a cardboard box.", " Bought it on sale.", " It replaced an older model.")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
COLORS = ("black", "white", "grey", "blue", "green", "red")


def _products() -> tuple[list[tuple[str, tuple[str, ...]]], list[tuple[str, tuple[str, ...]]]]:
    """Train and test products: the test ones are drawn once, from a fixed seed."""
    held_out = set(random.Random(SEED).sample(range(len(PRODUCTS)), TEST_PRODUCTS))
    train = [p for i, p in enumerate(PRODUCTS) if i not in held_out]
    test = [p for i, p in enumerate(PRODUCTS) if i in held_out]
    return train, test


def _reviews(product: str, aspects: tuple[str, ...]) -> list[dict]:
    """``REVIEWS_PER_LABEL`` reviews per label of one product, each from a different template."""
    rng = random.Random(f"{SEED}-{product}")
    rows = []
    for label in LABELS:
        for template in rng.sample(REVIEWS[label], REVIEWS_PER_LABEL):
            aspect, aspect2 = rng.sample(aspects, 2)
            slots = {
                "product": product,
                "aspect": aspect,
                "aspect2": aspect2,
                "day": rng.choice(DAYS),
                "days": rng.randint(2, 9),
                "color": rng.choice(COLORS),
            }
            text = (rng.choice(OPENERS) + template + rng.choice(CLOSERS)).format(**slots)
            rows.append({"text": text[0].upper() + text[1:], "label": label})
    return rows


def sentiment_rows(split: str) -> list[dict]:
    """``sentiment``: ``text`` and ``label`` rows of one split, shuffled (labels do not come in runs)."""
    train, test = _products()
    rows = [row for product, aspects in {"train": train, "test": test}[split] for row in _reviews(product, aspects)]
    random.Random(f"{SEED}-{split}").shuffle(rows)
    return rows
