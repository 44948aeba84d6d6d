"""Reward-model scores: a sequence-classification model turns each (prompt, completion) into a scalar.

Example (a recipe)::

    rewards:
      - model: rm            # an earlier `kind: reward_model` stage, a local folder, or a hub id
        normalize: true      # standardise by the first scored batch (mean 0, std 1); see RewardModelScorer
        batch_size: 8

The model loads lazily on the first call, on CUDA when there is one, so a scorer pickles cheaply
(the loaded weights are not part of its pickled state).
"""

from __future__ import annotations

import statistics


class RewardModelScorer:
    """Score completions with a one-output sequence-classification model (a Bradley-Terry reward model).

    ``normalize``: subtract the mean and divide by the standard deviation of the first scores it sees that have a
    spread — the first batch, or, when that batch is one completion or all alike (a one-prompt held-out scorecard
    before training), the scores pooled over calls until they differ; then fixed, so every later batch is on one scale.
    """

    def __init__(self, path: str, batch_size: int = 8, normalize: bool = False, max_length: int = 1024, name: str | None = None):
        self.path = path
        self.batch_size = batch_size
        self.normalize = normalize
        self.max_length = max_length
        self.__name__ = name or str(path).rstrip("/").rsplit("/", 1)[-1]
        self._model = None
        self._tok = None
        self._stats: tuple[float, float] | None = None  # (mean, std) of the reference scores
        self._pool: list[float] = []  # scores seen before they had a spread (a one-prompt held-out scorecard, say)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_model"] = state["_tok"] = None
        return state

    def _load(self):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(self.path)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        from rlft.models import require_safetensors

        require_safetensors(self.path)
        model = AutoModelForSequenceClassification.from_pretrained(self.path, num_labels=1, dtype=torch.float32, use_safetensors=True)
        model.config.pad_token_id = tok.pad_token_id
        model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
        self._tok, self._model = tok, model

    def _texts(self, prompts, completions) -> list[str]:
        texts = []
        for p, c in zip(prompts, completions, strict=True):
            if isinstance(c, list):  # conversational: score the whole chat as the model saw it in training
                messages = (p if isinstance(p, list) else [{"role": "user", "content": p}]) + c
                texts.append(self._tok.apply_chat_template(messages, tokenize=False))
            else:
                texts.append(
                    (p if isinstance(p, str) else self._tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True)) + c
                )
        return texts

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        import torch

        if self._model is None:
            self._load()
        texts = self._texts(prompts, completions)
        scores: list[float] = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                batch = self._tok(
                    texts[i : i + self.batch_size],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    add_special_tokens=False,
                ).to(self._model.device)
                scores += self._model(**batch).logits[:, 0].float().tolist()
        if self.normalize:
            if self._stats is None:
                self._pool += scores
                std = statistics.pstdev(self._pool) if len(self._pool) > 1 else 0.0
                if std > 1e-6:  # fixed from here on: the first scores with a spread (pooled over calls until then)
                    self._stats = (statistics.fmean(self._pool), std)
                else:  # one score, or all alike so far: centred on them, not scaled
                    return [s - statistics.fmean(self._pool) for s in scores]
            mean, std = self._stats
            scores = [(s - mean) / std for s in scores]
        return scores
