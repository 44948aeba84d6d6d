"""Data sets the project writes itself (no downloads), addressed as ``bundled:<name>``.

``arithmetic`` — two-digit additions, as bare sums and short word problems, each prompt asking for
the answer in ``<answer></answer>`` tags. Columns: ``prompt`` (chat messages), ``answer`` (str).
``arithmetic-sft`` — the same prompts with a worked, column-by-column solution as ``completion``.
``arithmetic-short`` — the same prompts with the column addition in about half the tokens
(``46 + 59: 6+9=15, 4+5+1=10, so <answer>105</answer>``): cheaper to sample and train on, which is
what GRPO needs on a CPU.
``arithmetic-carry`` — the same with the carry as its own step, a successor after a two-term sum
(``46 + 59: 6+9=15, 4+5=9+1=10, so <answer>105</answer>``): a 135M model adds two digits far more
reliably than three.
``arithmetic-carried`` — only the sums of ``arithmetic`` whose ones digits carry (45% of all): mixed into an RL
stage's prompts (``data: {mix: [...]}``) so that RL keeps practising the step the model gets wrong most.
``support-preference`` / ``support-sft`` — customer-support questions with a helpful, correct, polite
``chosen`` answer and a ``rejected`` one (wrong, evasive, rude, off-topic, vague or correct-but-rude);
see ``rlft/data/bundled/support.py``.
``sentiment`` — short product reviews with a ``label`` (positive, negative, neutral) for ``classifier``
stages; see ``rlft/data/bundled/sentiment.py``.
``general-probe`` — 100 general questions with deterministic checks (facts, arithmetic, reasoning, language,
instruction following), ``test`` split only, for eval stages' ``probe:``; see ``rlft/data/bundled/probe.py``.

Splits: ``train`` and ``test``. The test split (held out) draws from number pairs that no train row
uses, in either order, so no stage ever trains on a held-out sum. Everything is generated from a
fixed seed, so the same name always gives the same rows.
"""

from __future__ import annotations

from rlft.data.bundled import arithmetic, probe, sentiment, support

DATASETS = {
    "arithmetic": lambda split: arithmetic.arithmetic_rows(split),
    "arithmetic-sft": lambda split: arithmetic.arithmetic_rows(split, completion="worked"),
    "arithmetic-short": lambda split: arithmetic.arithmetic_rows(split, completion="short"),
    "arithmetic-carry": lambda split: arithmetic.arithmetic_rows(split, completion="carry"),
    "arithmetic-carried": lambda split: arithmetic.arithmetic_rows(split, carried_only=True),
    "support-preference": support.preference_rows,
    "support-sft": support.sft_rows,
    "general-probe": probe.probe_rows,
    "sentiment": sentiment.sentiment_rows,
}
SPLITS = ("train", "test")
