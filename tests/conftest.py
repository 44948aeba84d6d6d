"""Shared fixtures: a tiny Llama with a character-level chat tokenizer, built from a config (no download)."""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_report_header(config):
    """Say which code-sandbox layers this machine enforces: the sandbox tests skip the layers it lacks."""
    from rewards.code import LAYERS, sandbox_layers

    active = sandbox_layers()
    missing = [layer for layer in LAYERS if layer not in active]
    return f"code sandbox layers active: {', '.join(active) or 'none'}" + (
        f" (missing, their tests skip: {', '.join(missing)})" if missing else ""
    )


CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_model(path: Path, seed: int = 0) -> Path:
    """Write a 2-layer Llama (hidden 32) and a character tokenizer with a chat template to ``path``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    chars = sorted(set(string.printable) - set("\x0b\x0c"))
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    tk.add_special_tokens(specials)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<unk>", eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|im_start|>"
    )
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=vocab["<|im_start|>"],
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<|endoftext|>"],
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(autouse=True)
def _one_thread(request, monkeypatch):
    """Tiny models gain nothing from threads, and spinning OpenMP threads run 10x slower when other jobs share the 2 cores.

    Slow tests on the bundled model keep every core.
    """
    import torch

    if request.node.get_closest_marker("slow"):
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # stage subprocesses of pipeline tests
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch):
    """No test reaches the network or the user's caches."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("WANDB_MODE", os.environ.get("RLFT_TEST_WANDB_MODE", "offline"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sum_rows(n: int, with_completion: bool = True) -> list[dict]:
    """Tiny one-digit sums in the bundled answer format."""
    rows = []
    for i in range(n):
        a, b = i % 5, (i * 3) % 5
        row = {"prompt": f"{a}+{b}=", "answer": str(a + b)}
        if with_completion:
            row["completion"] = f"<answer>{a + b}</answer>"
        rows.append(row)
    return rows
