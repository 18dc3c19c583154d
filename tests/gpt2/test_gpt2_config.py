"""GPT2Config: Hugging Face config.json in, checked and frozen config out."""

import dataclasses

import pytest

from fhectl.errors import InputError
from fhectl.gpt2.config import GPT2Config

# The config.json of the Hugging Face "gpt2" repository (openai-community/gpt2), trimmed of
# task-specific keys that do not change the network.
HF_GPT2_CONFIG = {
    "activation_function": "gelu_new",
    "architectures": ["GPT2LMHeadModel"],
    "attn_pdrop": 0.1,
    "bos_token_id": 50256,
    "embd_pdrop": 0.1,
    "eos_token_id": 50256,
    "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05,
    "model_type": "gpt2",
    "n_ctx": 1024,
    "n_embd": 768,
    "n_head": 12,
    "n_layer": 12,
    "n_positions": 1024,
    "resid_pdrop": 0.1,
    "vocab_size": 50257,
}


def test_hf_gpt2_config_is_gpt2_small():
    config = GPT2Config.from_hf_json(HF_GPT2_CONFIG)
    assert config == GPT2Config.gpt2_small()
    assert config.head_size == 64 and config.n_inner == 3072


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        GPT2Config.gpt2_small().n_layer = 2


def test_n_ctx_stands_in_for_n_positions():
    data = {k: v for k, v in HF_GPT2_CONFIG.items() if k != "n_positions"}
    data["n_ctx"] = 64
    assert GPT2Config.from_hf_json(data).n_positions == 64


def test_round_trip_through_hf_json():
    config = GPT2Config(n_layer=3, n_head=4, n_embd=32, n_positions=20, vocab_size=77, layer_norm_epsilon=1e-6)
    assert GPT2Config.from_hf_json(config.to_hf_json()) == config


@pytest.mark.parametrize("key, value, words", [
    ("n_layer", 0, "n_layer"),
    ("n_head", -1, "n_head"),
    ("n_embd", 768.0, "n_embd"),
    ("vocab_size", True, "vocab_size"),
    ("n_positions", "1024", "n_positions"),
    ("layer_norm_epsilon", 0.0, "layer_norm_epsilon"),
    ("n_head", 7, "not divisible by n_head=7"),
    ("activation_function", "relu", "activation_function='relu'"),
    ("model_type", "gpt_neo", "gpt_neo"),
    ("n_inner", 100, "n_inner=100"),
])
def test_bad_values_are_named(key, value, words):
    with pytest.raises(InputError, match=words) as info:
        GPT2Config.from_hf_json({**HF_GPT2_CONFIG, key: value})
    assert repr(value) in str(info.value) or str(value) in str(info.value)


def test_missing_key_is_named():
    data = {k: v for k, v in HF_GPT2_CONFIG.items() if k != "n_embd"}
    with pytest.raises(InputError, match="'n_embd' is missing"):
        GPT2Config.from_hf_json(data)


def test_direct_construction_is_checked_too():
    with pytest.raises(InputError, match="n_embd=10 is not divisible by n_head=3"):
        GPT2Config(n_layer=1, n_head=3, n_embd=10, n_positions=8, vocab_size=10)
