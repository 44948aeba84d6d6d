"""Data augmentation (``transforms``: the registry and the four transforms; ``arithmetic``: reading sums;
``apply``: choosing rows and counting) — cheap, meaning-keeping text transforms that add altered copies of training rows.

A training stage's ``data:`` may carry ``augment:``::

    data:
      source: bundled:arithmetic-sft
      augment:
        seed: 0              # which rows and which variations; default: the stage's seed
        ratio: 0.5           # share of training rows that get one augmented copy, added to them
        transforms: [numbers, template, {name: noise, p: 0.5, case: 0.2}]

How it works: the rows are walked in an order drawn from the seed; each row walked gets one copy, made
by every listed transform in turn (always in the order ``numbers``, ``shuffle_shots``, ``template``,
``noise``, whatever the list's; ``p`` is the chance that a copy gets that transform). A transform that
cannot apply to a row (no arithmetic it can recompute, no few-shot block) leaves it as it is and counts
it as *skipped*; a row that no transform changed gets no copy, and the walk goes on, so exactly
``ratio x rows`` (rounded half up) copies are added whenever that many rows can be augmented. The same
seed gives the same rows. Copies are added after the originals (the trainers shuffle); nothing is replaced.

Only the training split is augmented, after the held-out rows are set apart (``rlft.stages.inputs.load_split``),
and no copy may recreate a held-out prompt: a copy whose prompt equals one (ignoring case and spacing) is
dropped, and ``numbers`` never picks numbers a held-out prompt uses. The counts (rows in, copies added per
transform, skipped per transform, rows out) go to stdout, the manifest (``augment``) and the W&B summary
(``augment/...``).

The transforms, each a small function ``fn(row, rng, options, held_out) -> new row | None`` (None: skipped)
registered with ``@register(name, OptionsModel)``. They edit the prompt text, i.e. the last user message
of ``prompt`` (or of ``messages``), or a classifier row's ``text``; other rows with a ``text`` column are
skipped, as their prompt and answer cannot be told apart.

- ``numbers`` — new operands for a prompt holding one two-number sum, difference or product (a bundled
  arithmetic question, or ``a + b`` / ``a - b`` / ``a * b`` with no other number in it), of the same number of
  digits; every answer column — ``answer``, ``completion``, ``chosen``, ``rejected``, the final assistant turn
  of ``messages`` — is recomputed (the bundled worked solution is written anew; elsewhere each number is
  mapped by its role: operand, result, or a rejected answer's wrong result, kept as far from the right one).
  Every column is checked with the reward library's math checker (``rewards.math``): a column that was right
  (``answer``, ``completion``, ``chosen``) must be right again, a wrong one (``rejected``, a KTO row labelled
  false) must stay wrong; rows that fail, or that it cannot parse, are skipped.
- ``shuffle_shots`` — reorders the worked examples of a few-shot prompt. The format: examples are
  paragraphs (separated by blank lines), each starting ``Q:``, ``Question:``, ``Input:`` or ``Problem:`` with
  an answer line ``A:``, ``Answer:``, ``Output:`` or ``Solution:``; at least two in a row. Text before and after
  (the instruction, the final question) stays in place. With ``turns: true``, (user, assistant) exchanges
  before the final user turn of a chat prompt count as examples too.
- ``template`` — rewrites an arithmetic question with another template of its kind (``What is 12 + 7?`` ->
  ``Compute 12 + 7.``, ``12 + 7 = ?``, ``Find the sum of 12 and 7.``; the bundled word problems in other words)
  and the bundled answer-format instruction in other words; any other prompt gets a polite prefix and/or
  suffix (``prefixes``, ``suffixes``; ``generic: false`` skips such rows instead).
- ``noise`` — casing (``case``: per-word probability) and doubled spaces (``space``: per-gap probability)
  in the prompt; numbers, markup such as ``<answer>`` and the answers are never touched.
"""
