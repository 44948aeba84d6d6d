"""Greedy batched generation for evaluation (left padding, chat template applied)."""

from __future__ import annotations


def generate_greedy(model, tokenizer, prompts: list, *, max_new_tokens: int = 64, batch_size: int = 16) -> list[str]:
    """Return the completion text for each prompt (chat message lists or plain strings)."""
    import torch

    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) if isinstance(p, list) else p for p in prompts]
    out: list[str] = []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(texts[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
            gen = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            new = gen[:, batch["input_ids"].shape[1] :]
            out += tokenizer.batch_decode(new, skip_special_tokens=True)
    return out
