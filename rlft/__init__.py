"""rlft — one YAML recipe takes a language model through SFT, reward models, preference and RL stages."""

__version__ = "0.1.0"
