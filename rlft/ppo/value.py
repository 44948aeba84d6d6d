"""The critic: a value for the state before each completion token, (B, P + T) tokens -> (B, T) values.

- ``SeparateCritic`` (``critic: separate``): its own backbone and a one-output linear head, i.e. a
  transformers ``*ForTokenClassification`` model with ``num_labels=1``. It starts from the reward
  model when the first reward is one (the RM's score head becomes the value head, as in TRL's PPOv2
  and OpenRLHF) and from the starting policy otherwise. Saved as a plain checkpoint:
  ``AutoModelForTokenClassification.from_pretrained(out_dir / "value_model")`` reloads it.
- ``SharedCritic`` (``critic: shared``): a linear head on the policy's last hidden states; one forward
  serves both, the value loss trains the policy's backbone too. Saved as ``value_head.safetensors``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from rlft.ppo.rollout import position_ids


class SeparateCritic(nn.Module):
    """A one-label token-classification model read as per-token values."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_completion: int, policy_hidden=None) -> torch.Tensor:
        """(B, P + T) tokens -> (B, T) values; the value of token t is read at the position before it."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask), use_cache=False)
        return out.logits[:, -n_completion - 1 : -1, 0]

    def save(self, path: Path, tokenizer) -> str:
        """Save as plain safetensors (a LoRA adapter merged) for ``AutoModelForTokenClassification``, with the
        dropout values its config had before PPO zeroed them."""
        from rlft.training.selective import restore_dropout

        restore_dropout(self.model)
        model = self.model.merge_and_unload() if hasattr(self.model, "merge_and_unload") else self.model
        model.save_pretrained(path, safe_serialization=True)
        tokenizer.save_pretrained(path)
        return str(path)


class SharedCritic(nn.Module):
    """A linear value head on the policy's last hidden states, (B, T, H) -> (B, T)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids, attention_mask, n_completion: int, policy_hidden: torch.Tensor) -> torch.Tensor:
        return self.head(policy_hidden).squeeze(-1)

    def save(self, path: Path, tokenizer=None) -> str:
        """Write ``value_head.safetensors`` (``weight`` (1, H), ``bias`` (1,)) and ``value_head.json``."""
        from safetensors.torch import save_file

        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()}, str(path / "value_head.safetensors"))
        info = {"critic": "shared", "hidden_size": self.head.in_features, "reads": "the policy model's last hidden state"}
        (path / "value_head.json").write_text(json.dumps(info, indent=2))
        return str(path)

    @classmethod
    def load(cls, path: Path) -> SharedCritic:
        from safetensors.torch import load_file

        info = json.loads((Path(path) / "value_head.json").read_text())
        critic = cls(info["hidden_size"])
        critic.head.load_state_dict(load_file(str(Path(path) / "value_head.safetensors")))
        return critic


def load_value_model(path: str, tokenizer, *, peft_config=None, trust_remote_code: bool = False) -> SeparateCritic:
    """A separate critic from a causal-LM or sequence-classification folder (its backbone, and its head if it has one)."""
    from transformers import AutoModelForTokenClassification

    from rlft.models import require_safetensors

    require_safetensors(path)
    model = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=1, dtype=torch.float32, trust_remote_code=trust_remote_code, use_safetensors=True
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    if peft_config is not None:
        import copy

        from peft import get_peft_model

        # The head trains in full (peft's modules_to_save for TOKEN_CLS), so no adapter may target it too.
        peft_config = copy.deepcopy(peft_config)
        peft_config.exclude_modules = [name for name, child in model.named_children() if isinstance(child, nn.Linear)]
        model = get_peft_model(model, peft_config)
    return SeparateCritic(model)


def critic_start(first_reward, policy_ref: str, tokenizer) -> tuple[str, str]:
    """Where a separate critic starts: ``(folder, reason)``.

    The reward model's folder when the first reward is a ``model:`` reward whose tokenizer is the
    policy's (the critic reads the policy's token ids); the starting policy otherwise.
    """
    path = getattr(getattr(first_reward, "target", None), "path", None)
    if path is None or not (Path(path) / "config.json").exists():
        return policy_ref, "the starting policy"
    from transformers import AutoTokenizer

    if AutoTokenizer.from_pretrained(path).get_vocab() != tokenizer.get_vocab():
        return policy_ref, f"the starting policy (reward model {path} has another tokenizer)"
    return path, f"the reward model {path}"
