"""Weights: save a tiny checkpoint, load it through the real loader, and every way loading must fail."""

import json
import os
import subprocess
import sys

import huggingface_hub.constants
import numpy as np
import pytest
import safetensors.numpy

from fhectl.errors import InputError
from fhectl.gpt2.config import GPT2Config
from fhectl.gpt2.weights import (Checkpoint, GPT2Weights, expected_shapes, load_config, load_weights, random_weights,
                                 resolve_checkpoint, save_weights)
from hfcache import make_hf_snapshot


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
    with pytest.raises(InputError, match=r"model\.safetensors is missing.*openai-community/gpt2"):
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


# --- the Hugging Face cache, through huggingface_hub ------------------------------------------------

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


def test_default_gpt2_resolves_from_the_offline_cache(offline_hub, tiny_weights):
    snap = make_hf_snapshot(offline_hub, "openai-community/gpt2", COMMIT_A, tiny_weights)
    found = resolve_checkpoint()
    assert found.path == snap and found.repo == "openai-community/gpt2" and found.is_openai_gpt2
    assert load_weights(found.path).config == tiny_weights.config


def test_the_old_repo_name_is_found_too(offline_hub, tiny_weights):
    snap = make_hf_snapshot(offline_hub, "gpt2", COMMIT_A, tiny_weights)
    assert resolve_checkpoint() == Checkpoint(snap, "gpt2")


def test_revisions_and_repo_ids(offline_hub, tiny_weights):
    a = make_hf_snapshot(offline_hub, "someone/tiny-gpt2", COMMIT_A, tiny_weights)
    b = make_hf_snapshot(offline_hub, "someone/tiny-gpt2", COMMIT_B, tiny_weights, ref="v2")
    assert resolve_checkpoint("someone/tiny-gpt2") == Checkpoint(a, "someone/tiny-gpt2")  # refs/main
    assert resolve_checkpoint("someone/tiny-gpt2", revision="v2").path == b
    assert resolve_checkpoint("someone/tiny-gpt2", revision=COMMIT_A).path == a
    assert not resolve_checkpoint("someone/tiny-gpt2").is_openai_gpt2


def test_nothing_cached_offline_is_one_line_naming_the_cache(offline_hub):
    with pytest.raises(InputError) as info:
        resolve_checkpoint()
    message = str(info.value)
    assert "\n" not in message
    assert "openai-community/gpt2" in message and str(offline_hub) in message and "--weights DIR" in message
    assert "cannot be downloaded here" not in message
    with pytest.raises(InputError, match="someone/absent"):
        resolve_checkpoint("someone/absent")


def test_local_folders_are_used_as_they_are(tmp_path, tiny_weights):
    save_weights(tiny_weights, tmp_path / "ckpt")
    assert resolve_checkpoint(tmp_path / "ckpt") == Checkpoint(tmp_path / "ckpt")
    assert resolve_checkpoint(str(tmp_path / "ckpt")).repo is None
    with pytest.raises(InputError, match="is not a folder"):
        resolve_checkpoint(tmp_path / "ckpt" / "config.json")
    with pytest.raises(InputError, match="does not exist"):
        resolve_checkpoint(str(tmp_path / "absent"))


def test_hf_home_and_offline_are_read_from_the_environment(tmp_path, tiny_weights):
    """In a fresh interpreter, as a user runs it: HF_HOME and HF_HUB_OFFLINE only, nothing patched."""
    make_hf_snapshot(tmp_path / "hf" / "hub", "openai-community/gpt2", COMMIT_A, tiny_weights)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    code = "from fhectl.gpt2.weights import resolve_checkpoint; print(resolve_checkpoint().path)"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "hf" / "hub" / "models--openai-community--gpt2" / "snapshots"
                                      / COMMIT_A)


def test_load_config_reads_no_weights(tmp_path, tiny_weights):
    save_weights(tiny_weights, tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not read")
    assert load_config(tmp_path) == tiny_weights.config
