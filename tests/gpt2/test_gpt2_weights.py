"""Weights: save a tiny checkpoint, load it through the real loader, and every way loading must fail."""

import json
import os

import numpy as np
import pytest
import safetensors.numpy

from fhectl.errors import InputError
from fhectl.gpt2.config import GPT2Config
from fhectl.gpt2.weights import (GPT2Weights, expected_shapes, find_hf_cache_model, load_weights,
                                 locate_weights, random_weights, save_weights)


def _write_checkpoint(directory, config, state_dict):
    """A checkpoint folder written by hand, to control exactly which names the file holds."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config.to_hf_json()))
    safetensors.numpy.save_file(state_dict, directory / "model.safetensors")
    return directory


def _assert_same(a: GPT2Weights, b: GPT2Weights):
    assert list(a) == list(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_gpt2_small_has_124m_parameters():
    # The published size of GPT-2 small (wte counted once, as it is tied to the head).
    shapes = expected_shapes(GPT2Config.gpt2_small())
    assert sum(int(np.prod(s)) for s in shapes.values()) == 124_439_808
    assert len(shapes) == 2 + 12 * 12 + 2


def test_save_then_load_round_trip(tmp_path, tiny_config, tiny_weights):
    save_weights(tiny_weights, tmp_path / "ckpt")
    keys = safetensors.numpy.load_file(tmp_path / "ckpt" / "model.safetensors").keys()
    assert all(k.startswith("transformer.") for k in keys)  # GPT2LMHeadModel's layout
    loaded = load_weights(tmp_path / "ckpt")
    assert loaded.config == tiny_config
    _assert_same(loaded, tiny_weights)


@pytest.mark.parametrize("prefix", ["", "transformer."])
def test_prefix_buffers_and_tied_head_are_accepted(tmp_path, tiny_config, tiny_weights, prefix):
    state = {prefix + name: a for name, a in tiny_weights.items()}
    T = tiny_config.n_positions
    for i in range(tiny_config.n_layer):  # what older transformers versions saved beside the parameters
        state[f"{prefix}h.{i}.attn.bias"] = np.tril(np.ones((1, 1, T, T), dtype=np.float32))
        state[f"{prefix}h.{i}.attn.masked_bias"] = np.array(-1e4, dtype=np.float32)
    state["lm_head.weight"] = tiny_weights["wte.weight"].copy()
    loaded = load_weights(_write_checkpoint(tmp_path / "ckpt", tiny_config, state))
    _assert_same(loaded, tiny_weights)


def test_untied_head_is_refused(tmp_path, tiny_config, tiny_weights):
    state = dict(tiny_weights.items())
    state["lm_head.weight"] = tiny_weights["wte.weight"] + 1
    with pytest.raises(InputError, match="lm_head.weight differs from wte.weight"):
        load_weights(_write_checkpoint(tmp_path / "ckpt", tiny_config, state))


def test_shape_mismatch_names_tensor_and_both_shapes(tmp_path, tiny_config, tiny_weights):
    state = dict(tiny_weights.items())
    # nn.Linear layout instead of Conv1D: the mistake this check exists for.
    state["h.1.attn.c_attn.weight"] = np.ascontiguousarray(state["h.1.attn.c_attn.weight"].T)
    with pytest.raises(InputError) as info:
        load_weights(_write_checkpoint(tmp_path / "ckpt", tiny_config, state))
    message = str(info.value)
    assert "'h.1.attn.c_attn.weight'" in message
    assert "shape (48, 16), expected (16, 48)" in message
    assert "model.safetensors" in message


def test_missing_tensors_are_named(tmp_path, tiny_config, tiny_weights):
    state = {name: a for name, a in tiny_weights.items() if name not in ("ln_f.bias", "h.0.mlp.c_fc.weight")}
    with pytest.raises(InputError, match=r"missing tensors h\.0\.mlp\.c_fc\.weight, ln_f\.bias"):
        load_weights(_write_checkpoint(tmp_path / "ckpt", tiny_config, state))


def test_extra_layer_is_refused(tmp_path, tiny_config, tiny_weights):
    state = dict(tiny_weights.items())
    state["h.2.ln_1.weight"] = np.ones(16, dtype=np.float32)
    with pytest.raises(InputError, match=r"unexpected tensors h\.2\.ln_1\.weight"):
        load_weights(_write_checkpoint(tmp_path / "ckpt", tiny_config, state))


def test_missing_files_and_bad_config(tmp_path, tiny_config, tiny_weights):
    with pytest.raises(InputError, match="is not a folder"):
        load_weights(tmp_path / "nowhere")
    ckpt = save_weights(tiny_weights, tmp_path / "ckpt")
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(InputError, match=r"model\.safetensors is missing.*huggingface-cli download"):
        load_weights(ckpt)
    save_weights(tiny_weights, ckpt)
    (ckpt / "config.json").write_text(json.dumps({**tiny_config.to_hf_json(), "n_head": 3}))
    with pytest.raises(InputError, match=r"config\.json: .*not divisible by n_head=3"):
        load_weights(ckpt)
    (ckpt / "config.json").write_text("{not json")
    with pytest.raises(InputError, match="cannot read"):
        load_weights(ckpt)


def test_random_weights_are_reproducible_and_gpt2_shaped(tiny_config):
    a = random_weights(tiny_config, seed=5)
    _assert_same(a, random_weights(tiny_config, seed=5))
    assert not np.array_equal(a["wte.weight"], random_weights(tiny_config, seed=6)["wte.weight"])
    assert np.all(a["h.0.ln_1.weight"] == 1) and np.all(a["ln_f.bias"] == 0)
    assert np.all(a["h.1.attn.c_attn.bias"] == 0)
    # std 0.02, and 0.02 / sqrt(2 * n_layer) = 0.01 for the projections into the residual stream.
    big = random_weights(GPT2Config(n_layer=2, n_head=4, n_embd=128, n_positions=8, vocab_size=2000), seed=0)
    assert big["wte.weight"].std() == pytest.approx(0.02, rel=0.02)
    assert big["h.0.mlp.c_proj.weight"].std() == pytest.approx(0.01, rel=0.02)
    assert big["h.1.attn.c_proj.weight"].std() == pytest.approx(0.01, rel=0.05)


def test_block_view_uses_relative_names(tiny_weights):
    block = tiny_weights.block(1)
    assert set(block) == {name[len("h.1."):] for name in tiny_weights if name.startswith("h.1.")}
    assert block["attn.c_attn.weight"] is tiny_weights["h.1.attn.c_attn.weight"]
    with pytest.raises(IndexError):
        tiny_weights.block(2)


# --- the Hugging Face cache ---------------------------------------------------------------------


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def _snapshot(cache, repo, revision, weights):
    return save_weights(weights, cache / repo / "snapshots" / revision)


def test_cache_prefers_the_revision_refs_main_names(hf_cache, tiny_weights):
    old = _snapshot(hf_cache, "models--gpt2", "aaaa", tiny_weights)
    newer = _snapshot(hf_cache, "models--gpt2", "bbbb", tiny_weights)
    os.utime(old, (1_000_000, 1_000_000))
    os.utime(newer, (2_000_000, 2_000_000))
    assert find_hf_cache_model("gpt2") == newer  # without refs/main: the newest snapshot
    (hf_cache / "models--gpt2" / "refs").mkdir()
    (hf_cache / "models--gpt2" / "refs" / "main").write_text("aaaa\n")
    assert find_hf_cache_model("gpt2") == old
    assert load_weights(locate_weights(name="gpt2")).config == tiny_weights.config


def test_cache_finds_the_openai_community_name(hf_cache, tiny_weights):
    snap = _snapshot(hf_cache, "models--openai-community--gpt2", "cccc", tiny_weights)
    assert find_hf_cache_model("gpt2") == snap


def test_cache_skips_a_snapshot_without_safetensors(hf_cache, tiny_weights):
    snap = _snapshot(hf_cache, "models--gpt2", "dddd", tiny_weights)
    (snap / "model.safetensors").unlink()
    assert find_hf_cache_model("gpt2") is None


def test_hf_home_is_used_when_hub_cache_is_not_set(tmp_path, monkeypatch, tiny_weights):
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    snap = _snapshot(tmp_path / "hf" / "hub", "models--gpt2", "eeee", tiny_weights)
    assert find_hf_cache_model() == snap


def test_nothing_found_says_where_and_how(hf_cache):
    assert find_hf_cache_model("gpt2") is None
    with pytest.raises(InputError) as info:
        locate_weights(name="gpt2")
    message = str(info.value)
    assert str(hf_cache / "models--gpt2") in message
    assert str(hf_cache / "models--openai-community--gpt2") in message
    assert "huggingface-cli download gpt2 config.json model.safetensors" in message
    assert "--weights DIR" in message
