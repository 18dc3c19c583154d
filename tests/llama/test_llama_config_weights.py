"""LlamaConfig from HF config.json, and LlamaWeights: shape checks, digest, random, safetensors folders."""

import json

import numpy as np
import pytest
import safetensors.numpy

from fhectl.errors import InputError
from fhectl.llama.config import LlamaConfig
from fhectl.llama.model import Llama
from fhectl.llama.weights import (LlamaWeights, expected_shapes, load_safetensors_dir, random_weights,
                                  save_safetensors_dir)

# SmolLM2-135M-Instruct's config.json, the keys that matter.
SMOLLM2_JSON = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu", "hidden_size": 576,
    "intermediate_size": 1536, "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3,
    "max_position_embeddings": 8192, "rms_norm_eps": 1e-05, "rope_theta": 100000, "rope_scaling": None,
    "tie_word_embeddings": True, "vocab_size": 49152, "bos_token_id": 1, "eos_token_id": 2,
    "attention_bias": False, "pretraining_tp": 1,
}


def test_hf_json_gives_the_gguf_config(smollm2):
    assert LlamaConfig.from_hf_json(SMOLLM2_JSON) == smollm2[0].config


def test_config_round_trips_through_hf_json(tiny_config):
    assert LlamaConfig.from_hf_json(tiny_config.to_hf_json()) == tiny_config


@pytest.mark.parametrize("change, message", [
    ({"num_key_value_heads": 4}, "not a multiple"),
    ({"num_hidden_layers": 0}, "n_layer must be a positive integer"),
    ({"num_hidden_layers": True}, "positive integer"),
    ({"rope_theta": -1}, "rope_theta"),
    ({"rope_scaling": {"type": "linear", "factor": 2}}, "rope_scaling"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"model_type": "gpt2"}, "model_type"),
    ({"eos_token_id": 49152}, "eos_token_id"),
    ({"head_dim": 63}, "even"),
])
def test_bad_hf_json_names_the_value(change, message):
    with pytest.raises(InputError, match=message):
        LlamaConfig.from_hf_json({**SMOLLM2_JSON, **change})


def test_missing_hf_key_is_named():
    with pytest.raises(InputError, match="'intermediate_size' is missing"):
        LlamaConfig.from_hf_json({k: v for k, v in SMOLLM2_JSON.items() if k != "intermediate_size"})


def test_wrong_shape_names_the_tensor(tiny_config, sharp_weights):
    tensors = dict(sharp_weights.items())
    tensors["model.layers.1.self_attn.k_proj.weight"] = np.zeros((32, 24))  # (H*hd, C) instead of (Hkv*hd, C)
    with pytest.raises(InputError, match=r"'model.layers.1.self_attn.k_proj.weight' has shape \(32, 24\), "
                                         r"expected \(16, 24\)"):
        LlamaWeights(tiny_config, tensors)
    del tensors["model.norm.weight"]
    with pytest.raises(InputError, match="missing tensors model.norm.weight"):
        LlamaWeights(tiny_config, tensors)


def test_block_uses_short_names_and_weights_are_frozen(sharp_weights):
    block = sharp_weights.block(1)
    assert block["k_proj"] is sharp_weights["model.layers.1.self_attn.k_proj.weight"]
    assert sorted(block) == sorted(["input_layernorm", "q_proj", "k_proj", "v_proj", "o_proj",
                                    "post_attention_layernorm", "gate_proj", "up_proj", "down_proj"])
    with pytest.raises(ValueError):
        block["q_proj"][0, 0] = 1.0
    with pytest.raises(IndexError):
        sharp_weights.block(2)


def test_digest_follows_the_values(tiny_config, sharp_weights):
    same = random_weights(tiny_config, seed=3, std=0.5)
    assert same.weights_digest() == sharp_weights.weights_digest()
    tensors = dict(sharp_weights.items())
    tensors["model.norm.weight"] = tensors["model.norm.weight"] + 2.0 ** -40
    assert LlamaWeights(tiny_config, tensors).weights_digest() != sharp_weights.weights_digest()
    assert random_weights(tiny_config, seed=4).weights_digest() != sharp_weights.weights_digest()


def test_safetensors_folder_round_trip(tmp_path, sharp_weights):
    loaded = load_safetensors_dir(save_safetensors_dir(sharp_weights, tmp_path, dtype=np.float64))
    assert loaded.config == sharp_weights.config
    assert loaded.weights_digest() == sharp_weights.weights_digest()


def test_sharded_folder_with_tied_head_copy_loads(tmp_path, sharp_weights):
    names = list(sharp_weights)
    state = {name: np.asarray(a, dtype=np.float32) for name, a in sharp_weights.items()}
    state["lm_head.weight"] = state["model.embed_tokens.weight"]  # exporters sometimes write the tied copy
    (tmp_path / "config.json").write_text(json.dumps(sharp_weights.config.to_hf_json()))
    half = len(names) // 2
    safetensors.numpy.save_file({n: state[n] for n in names[:half]}, tmp_path / "model-00001-of-00002.safetensors")
    safetensors.numpy.save_file({n: state[n] for n in [*names[half:], "lm_head.weight"]},
                                tmp_path / "model-00002-of-00002.safetensors")
    loaded = load_safetensors_dir(tmp_path)
    np.testing.assert_allclose(Llama(loaded).forward([1, 2, 3]), Llama(sharp_weights).forward([1, 2, 3]),
                               rtol=1e-5, atol=1e-5)


def test_untied_head_is_required_and_used(tiny_config):
    untied = LlamaConfig(**{**vars(tiny_config), "tie_word_embeddings": False})
    assert "lm_head.weight" in expected_shapes(untied)
    weights = random_weights(untied, seed=1, std=0.5)
    assert weights.lm_head is weights["lm_head.weight"]
    tensors = {n: a for n, a in weights.items() if n != "lm_head.weight"}
    with pytest.raises(InputError, match="missing tensors lm_head.weight"):
        LlamaWeights(untied, tensors)


def test_bad_folder_errors(tmp_path, sharp_weights):
    with pytest.raises(InputError, match="config.json is missing"):
        load_safetensors_dir(tmp_path)
    save_safetensors_dir(sharp_weights, tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(InputError, match="cannot read"):
        load_safetensors_dir(tmp_path)


def test_gguf_metadata_needs_llama_keys():
    metadata = {"general.architecture": "llama", "llama.embedding_length": 24, "llama.attention.head_count": 4,
                "llama.feed_forward_length": 40, "llama.attention.layer_norm_rms_epsilon": 1e-5,
                "llama.context_length": 16, "llama.vocab_size": 50}
    with pytest.raises(InputError, match="'llama.block_count' is missing"):
        LlamaConfig.from_gguf_metadata(metadata, tie_word_embeddings=True)
    with pytest.raises(InputError, match="general.architecture is 'qwen2'"):
        LlamaConfig.from_gguf_metadata({**metadata, "general.architecture": "qwen2"}, tie_word_embeddings=True)
    cfg = LlamaConfig.from_gguf_metadata({**metadata, "llama.block_count": 2}, tie_word_embeddings=False)
    assert (cfg.n_kv_head, cfg.head_dim, cfg.rope_theta, cfg.tie_word_embeddings) == (4, 6, 10000.0, False)
