"""A customer-support preference data set, written from parts (no downloads), for reward models and DPO.

``support-preference`` — a customer asks the support desk of "Brightleaf", a made-up maker of app-connected
home gadgets, one question; ``chosen`` is a helpful, correct, specific and polite answer and ``rejected`` a bad
one. Columns: ``prompt`` (``[user message]``), ``chosen`` and ``rejected`` (``[assistant message]``): TRL's
conversational preference format with an explicit prompt.
``support-sft`` — the same prompts with the chosen answer as ``completion``, for an SFT stage before DPO.

Every question is one *scenario* (an intent such as "cancel my order" or "the app keeps crashing", across
orders, returns, billing, accounts, product use, subscriptions, technical problems and complaints) asked about
one *product*. Answers are "correct" against one fixed, made-up store policy (``POLICY``): 30-day free returns,
refunds 5-7 business days after we receive the item, and so on. Rejected answers come in six styles
(``STYLES``): wrong information in a polite tone, evasive non-answers, rude brush-offs, answers to a different
question, vague hand-waving, and the correct answer delivered rudely. Polite openers and closers are shared by
chosen and wrong answers, and both sides have short and long forms, so neither tone words nor length give the
label away: a reward model has to read the content and the manner.

Splits: ``train`` and ``test``. For every scenario, two products are held out, so no (scenario, product)
combination of the test split appears in train (but every scenario is seen in training with other products).
Everything is drawn from fixed seeds: the same name always gives the same rows.
"""

from __future__ import annotations

import random

from rlft.data.bundled.support_catalog import POLICY, PRODUCTS, SCENARIOS, Product, Scenario  # noqa: F401 (re-exported)

SEED = 2024
TEST_PRODUCTS_PER_SCENARIO = 2
STYLES = ("wrong", "evasive", "rude", "off_topic", "vague", "correct_but_rude")

Q_PREFIX = ("", "", "", "Hi! ", "Hello! ", "Hey there. ", "Quick question: ", "Good morning. ")
Q_SUFFIX = ("", "", "", " Thanks!", " Thanks in advance.", " Any help appreciated.", " Cheers.")

# Polite wrappers, shared by chosen and "wrong" answers so that tone alone never decides the pair.
POLITE_OPEN = ("", "", "Thanks for reaching out! ", "Happy to help with that. ", "Thanks for the question. ", "Hi there! ", "Sure thing. ")
POLITE_OPEN += ("I can help with that. ", "Thanks for getting in touch. ")
POLITE_CLOSE = ("", "", " Hope that helps!", " Let me know if there's anything else I can do.", " Have a great day!")
POLITE_CLOSE += (" If anything's unclear, just reply here and we'll sort it out.", " Happy to help further if you need it.")

RUDE_OPEN = ("Ugh. ", "Look. ", "Honestly? ", "Seriously. ", "We've said this many times. ", "This is in the FAQ. ", "Fine. ", "Sigh. ")
RUDE_CLOSE = (" Next time, read the help pages before writing in.", " Don't make us repeat this.", " Not that complicated.", "")
RUDE_CLOSE += (" We have better things to do than answer this.", " Try to keep up.", " Please don't email again about this.")
RUDE_MID = (
    "That's not our problem. Figure it out yourself.",
    "We get this question a hundred times a day.",
    "Did you even try looking it up before writing to us?",
    "If {about} is too much for you, maybe the {short} isn't the right product for you.",
    "Read the manual that came with your {short}. It's all in there.",
    "I'm not going to walk you through {about} step by step.",
    "People who actually read instructions don't have this problem.",
    "You're the third person today to ask about {about}, and frankly it's getting tiresome. Everything you need is on our website, which you clearly haven't bothered to open.",
    "We're a support desk, not a babysitting service, and I'm not here to hold your hand through {about}.",
    "Complaining to us won't change anything, so I don't know what you expect me to do about it.",
    "Honestly, questions like this are why our queue is so long. The answer is the same as it was the last ten times someone asked.",
    "I'm not sure what part of this is confusing, but it really isn't our job to explain the obvious about {about}.",
    "Maybe ask someone more tech-savvy to help you with the {short}, because this isn't hard.",
)
# Confident, polite padding for "wrong" answers: it makes them read like real (mistaken) policy answers
# and keeps them as long as chosen ones, so length does not mark them.
WRONG_PAD = (
    "I know that's not the answer you were hoping for, but it's our standard policy.",
    "This applies to all our products, including the {short}.",
    "You'll find the same information in our help centre.",
    "I've added a note to your account so the rest of the team has the context.",
    "Many customers ask about {about}, so you're not alone in this.",
    "That's been the case since we launched the {short}, and it hasn't changed.",
    "Our team confirmed this again just last week, so it's up to date.",
)
EVASIVE_OPEN = ("Thank you for contacting Brightleaf about {about}. ", "Thanks for your message regarding {about}. ", "")
EVASIVE_OPEN += ("We appreciate you reaching out. ", "I've noted your question about {about}. ")
EVASIVE_MID = (
    "We understand how important this is to you, and we're committed to giving every customer a great experience.",
    "Every situation is a little different, and a number of factors can be involved.",
    "Questions about {about} are handled according to our policies, which are designed to be fair to everyone.",
    "Our team regularly reviews cases like yours as part of our ongoing commitment to quality.",
    "Unfortunately I'm not able to go into specifics here.",
    "Rest assured that your feedback has been recorded and shared with the relevant department.",
    "We're always working to improve the experience of owning your {short}, and input like yours helps us do that.",
    "This is something we take very seriously, and it's being looked at as part of a broader review.",
)
EVASIVE_CLOSE = ("", " Thank you for your patience and understanding.", " We'll be in touch if there's anything further.")
EVASIVE_CLOSE += (" We value your business.", " Please keep an eye on your inbox for any updates.")
VAGUE_TOPIC = {
    "orders": "Shipping can vary, so it should turn up at some point.",
    "returns": "Returns and refunds take a while and depend on a lot of things.",
    "billing": "Charges can look a bit odd sometimes, but it's probably fine.",
    "account": "There's a settings page for that somewhere in your account, I think.",
    "usage": "There's a button or a setting for most things on the {short}; try a few and see.",
    "subscriptions": "Subscriptions can be changed online, somewhere in the account area.",
    "technical": "Tech issues like that usually go away if you turn things off and on again.",
    "complaints": "Sorry about that, these things happen from time to time.",
}
VAGUE_FILLER = (
    "Maybe give it some time.",
    "It depends on the situation.",
    "You could try checking the app or the website.",
    "Hard to say exactly without looking into it, but it's usually nothing serious.",
    "Some customers find that trying again later helps, and others find it sorts itself out eventually, so it could go either way.",
    "There might be an option for {about} somewhere, I'm not totally sure where, so have a look around and it should turn up.",
    "I'd probably just wait and see what happens, and if it still doesn't work, try again.",
)
OFF_TOPIC = (
    "Did you know the {short} comes in three colours? Our new accessories collection just launched too.",
    "Our support hours are 8 am to 8 pm, Monday to Saturday, and we're closed on public holidays.",
    "Fun fact: the {short} was designed in our Portland studio, where the team tested over forty prototypes before settling on the final design.",
    "Have you tried our other products? The Brightleaf range covers the whole home, from the kitchen to the nursery.",
    "Don't forget to follow us on social media for tips, product news and the occasional giveaway!",
    "We recently planted a tree for every order placed this spring, and we're proud to say our packaging is now fully recyclable.",
)
POWER_TIP = {
    True: "Charge it for at least 30 minutes with the cable from the box; a fully drained battery can take a few minutes to show any light.",
    False: "Make sure it's plugged into a working outlet (test the socket with a lamp) and that the cable is pushed fully into the {short}.",
}

COURTESY_STARTS = ("I'm sorry", "I'm really sorry", "Sorry", "No problem", "Let's try")


def _slots(scenario: Scenario, product: Product, rng: random.Random) -> dict:
    """The values a scenario's templates refer to, drawn per (scenario, product) row."""
    slots = {
        "product": product.name,
        "short": product.short,
        "order": f"BL-{rng.randint(100000, 999999)}",
        "days": rng.randint(3, 9),
        "price": product.price,
        "warranty": product.warranty,
        "button": product.button,
        "care": product.care,
        "power_tip": POWER_TIP[product.battery].format(short=product.short),
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
    if body.startswith(COURTESY_STARTS):
        cut = min((i for i in (body.find(". "), body.find("! ")) if i >= 0), default=-1)
        if cut >= 0:
            return body[cut + 2 :]
    return body


def _chosen(scenario: Scenario, rng: random.Random, slots: dict) -> str:
    # Short answers are a little more common than long ones, to keep chosen lengths near rejected ones.
    body = scenario.chosen[0] if rng.random() < 0.65 else scenario.chosen[1]
    return _fill(rng, slots, POLITE_OPEN, body, POLITE_CLOSE)


def _rejected(style: str, scenario: Scenario, rng: random.Random, slots: dict) -> str:
    """One bad answer in the given style (see ``STYLES``)."""
    if style == "wrong":
        pads = " ".join(rng.sample(WRONG_PAD, rng.randint(0, 3)))
        return _fill(rng, slots, POLITE_OPEN, rng.choice(scenario.wrong) + " " + pads, POLITE_CLOSE)
    if style == "evasive":
        middle = " ".join(rng.sample(EVASIVE_MID, rng.randint(1, 3)))
        return _fill(rng, slots, EVASIVE_OPEN, middle, EVASIVE_CLOSE)
    if style == "rude":
        middle = " ".join(rng.sample(RUDE_MID, rng.randint(1, 3)))
        return _fill(rng, slots, RUDE_OPEN, middle, RUDE_CLOSE)
    if style == "off_topic":
        # Half the time a good answer to a *different* question about the same product: helpful in
        # form, useless here, so a reward model must read the prompt to reject it.
        if rng.random() < 0.5:
            other = rng.choice([s for s in SCENARIOS if s.topic != scenario.topic])
            return _fill(rng, slots, POLITE_OPEN, other.chosen, POLITE_CLOSE)
        middle = " ".join(rng.sample(OFF_TOPIC, rng.randint(1, 3)))
        return _fill(rng, slots, POLITE_OPEN, middle, POLITE_CLOSE)
    if style == "vague":
        fillers = " ".join(rng.sample(VAGUE_FILLER, rng.randint(1, 3)))
        return _fill(rng, slots, POLITE_OPEN, VAGUE_TOPIC[scenario.topic] + " " + fillers, POLITE_CLOSE)
    if style == "correct_but_rude":
        body = _without_courtesy(rng.choice(scenario.chosen))
        return _fill(rng, slots, RUDE_OPEN, body, RUDE_CLOSE)
    raise ValueError(f"unknown rejection style {style!r}")


def _combinations() -> tuple[list[tuple[Scenario, Product]], list[tuple[Scenario, Product]]]:
    """(scenario, product) pairs for train and test; each scenario holds out its own two products."""
    rng = random.Random(SEED)
    train, test = [], []
    for scenario in SCENARIOS:
        held_out = set(rng.sample(range(len(PRODUCTS)), TEST_PRODUCTS_PER_SCENARIO))
        for i, product in enumerate(PRODUCTS):
            (test if i in held_out else train).append((scenario, product))
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def support_records(split: str) -> list[dict]:
    """Rows with their provenance: ``scenario``, ``topic``, ``product``, ``style`` besides the answers.

    The published data sets drop those keys (TRL's preference format has none); tests and analysis use them.
    """
    train, test = _combinations()
    combos = {"train": train, "test": test}[split]
    records = []
    for i, (scenario, product) in enumerate(combos):
        rng = random.Random(f"{SEED}-{scenario.key}-{product.short}")
        slots = _slots(scenario, product, rng)
        question = _fill(rng, slots, Q_PREFIX, scenario.questions, Q_SUFFIX)
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
