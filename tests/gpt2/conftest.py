"""A tiny GPT-2 for the reference-model tests: small enough that the whole folder runs in seconds."""

import pytest

from fhectl.gpt2.config import GPT2Config
from fhectl.gpt2.weights import random_weights, save_weights


@pytest.fixture(scope="session")
def tiny_config() -> GPT2Config:
    # 2 heads of size 8, vocabulary 100: every code path of GPT-2 small at a size a test can afford.
    return GPT2Config(n_layer=2, n_head=2, n_embd=16, n_positions=12, vocab_size=100)


@pytest.fixture(scope="session")
def tiny_weights(tiny_config):
    """GPT-2's own initialisation (std 0.02)."""
    return random_weights(tiny_config, seed=1)


@pytest.fixture(scope="session")
def sharp_weights(tiny_config):
    """Larger weights (std 0.5): attention far from uniform and GELU off its linear part,
    so comparisons between implementations cannot pass on near-constant values."""
    return random_weights(tiny_config, seed=2, std=0.5)


@pytest.fixture(scope="session")
def checkpoint_weights():
    """For `fhectl infer` end to end: GPT-2's real vocabulary (so the offline tokenizer's ids fit), everything
    else tiny."""
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=16, n_positions=16, vocab_size=50257)
    return random_weights(cfg, seed=3, std=0.1)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, checkpoint_weights):
    """``checkpoint_weights`` as a checkpoint folder (config.json + model.safetensors)."""
    d = tmp_path_factory.mktemp("tiny-gpt2")
    save_weights(checkpoint_weights, d)
    return d
