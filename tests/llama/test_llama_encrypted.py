"""Encrypted Llama blocks at the insecure N = 2^10 profile: against the float64 model and the plaintext mirror.

Tiny random Llama (4 query heads over 2 key/value heads, head width 8, so GQA and RoPE both matter), two
prompts packed into one ciphertext, and a "massive activation" variant whose first token carries residual
features in the thousands.
"""

import numpy as np
import pytest

from fhectl.ckks.params import load_parameters
from fhectl.errors import DomainError
from fhectl.llama import calibration
from fhectl.llama.encrypted import EncryptedLlamaBlock, Segments
from fhectl.llama.inference import EncryptedLlama, plan_block
from fhectl.llama.mirror import BlockMirror, SilentErrors
from fhectl.llama.model import Llama
from fhectl.llama.weights import LlamaWeights

PROMPTS = [[3, 17, 5, 9, 30], [7, 7, 41]]
CALIBRATION = [[1, 2, 3, 4, 5, 6, 7, 8], [40, 12, 33, 8, 19, 21], [11, 45, 2]]


@pytest.fixture(scope="module")
def deep_params():
    return load_parameters("tiny-deep-insecure", allow_insecure=True)


def _massive(weights: LlamaWeights) -> LlamaWeights:
    """The embedding rows of two tokens get two features of magnitude ~2000 (Sun et al. 2024's pattern)."""
    tensors = dict(weights.items())
    emb = tensors["model.embed_tokens.weight"].copy()
    emb[[3, 7], 5] = 2000.0
    emb[[3, 7], 11] = -1500.0
    tensors["model.embed_tokens.weight"] = emb
    return LlamaWeights(weights.config, tensors)


def test_segments_positions_and_masks():
    seg = Segments((3, 2))
    assert seg.starts == (0, 3) and seg.total == 5
    assert seg.positions(8).tolist() == [0, 1, 2, 0, 1, 0, 0, 0]
    # token 3 starts the second prompt: it sees itself only, never token 2 of the first prompt
    assert seg.key_visible(8, 0).tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    assert seg.key_visible(8, 1).tolist() == [0, 1, 1, 0, 1, 0, 0, 0]
    assert seg.key_visible(8, 2).tolist() == [0, 0, 1, 0, 0, 0, 0, 0]


def _run(weights, params, prompts):
    model = Llama(weights)
    domains = calibration.calibrate(model, CALIBRATION + prompts)
    engine = EncryptedLlama(weights, params, domains, weights.config.n_layer, max_tokens=8)
    logits, result = engine.run(prompts)
    return engine, domains, logits, result


@pytest.fixture(scope="module")
def sharp_run(sharp_weights, deep_params):
    return _run(sharp_weights, deep_params, PROMPTS)


def test_encrypted_blocks_match_the_reference(sharp_run):
    engine, _, logits, result = sharp_run
    assert [r.layer for r in result.layers] == [0, 1]
    for r in result.layers:
        assert r.cosine_min > 0.9999, r
        assert r.precision_bits > 9, r
    assert all(p.top1_agrees for p in result.prompts)
    assert result.stats.refresh_round_trips > 0


def test_packed_prompts_do_not_see_each_other(sharp_weights, deep_params, sharp_run):
    """The second prompt alone gives the same next-token logits as when packed after the first."""
    _, _, logits_packed, _ = sharp_run
    engine = sharp_run[0]
    logits_alone, _ = engine.run([PROMPTS[1]])
    ref = Llama(sharp_weights).forward(PROMPTS[1])[-1]
    scale = np.max(np.abs(ref))
    assert np.max(np.abs(logits_alone[0] - logits_packed[1])) < 1e-2 * scale


def test_mirror_predicts_the_encrypted_run(sharp_weights, sharp_run):
    """The plaintext mirror (circuits' eval_plain) lands as close to the encrypted hidden state as CKKS noise."""
    engine, domains, _, _ = sharp_run
    model = Llama(sharp_weights)
    ids = PROMPTS[0]
    x_mir = x_ref = model.embed(ids)
    errors = SilentErrors()
    for i, b in enumerate(engine.blocks):
        x_mir = model.block(x_mir, i, nonlinear=BlockMirror(b.circuits, errors).nonlinearities())
        x_ref = model.block(x_ref, i)
    enc = engine.run([ids])[1]
    assert not errors.violations
    assert errors.softmax_tv_max < 1e-3 and errors.rsqrt_rel_max < 2.0**-12
    mirror_err = np.max(np.abs(x_mir - x_ref)) / np.max(np.abs(x_ref))
    assert mirror_err < 2.0**-9
    assert enc.layers[-1].cosine_min > 0.9999


def test_massive_activations_fit_by_stream_scale(sharp_weights, deep_params):
    weights = _massive(sharp_weights)
    engine, domains, _, result = _run(weights, deep_params, PROMPTS)
    assert domains[0].stream_scale >= 32  # |h| ~ 2000 -> h / s <= 64
    for r in result.layers:
        assert r.cosine_min > 0.9999, r
    assert all(p.top1_agrees for p in result.prompts)


def test_out_of_domain_values_are_refused(sharp_weights, deep_params):
    model = Llama(sharp_weights)
    domains = calibration.calibrate(model, CALIBRATION)
    tight = [calibration.BlockDomains(d.stream_scale, d.ms_attn, d.ms_mlp, 0.01, d.gate_bound) for d in domains]
    engine = EncryptedLlama(sharp_weights, deep_params, tight, 1, max_tokens=8)
    with pytest.raises(DomainError, match="softmax"):
        engine.run([PROMPTS[0]])


def test_plan_comes_from_the_simulator(sharp_weights, deep_params):
    model = Llama(sharp_weights)
    domains = calibration.calibrate(model, CALIBRATION)
    from fhectl.circuits.packing import Layout

    layout = Layout.for_model(deep_params.slots, 8, 32)
    plan = plan_block(EncryptedLlamaBlock(sharp_weights, 0, layout, domains[0]), deep_params)
    assert plan["round_trips"] >= 4  # two norms, softmax, silu, the two residual refreshes at least
    assert plan["rotation_steps"] and all(0 < s < deep_params.slots for s in plan["rotation_steps"])
