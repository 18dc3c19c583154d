"""Encrypted GPT-2 pieces against their plaintext definitions, on a tiny model and N = 2^10.

Precision is -log2(max |error|) against float64; the bounds below leave a few
bits under what the tiny-deep profile (Delta = 2^40, fresh ~26 bits) and the
approximation errors of each piece allow.
"""

import numpy as np
import pytest

from fhectl.ckks.precision import precision_bits
from fhectl.ckks.params import load_parameters
from fhectl.ckks.sampling import SeededRandom
from fhectl.errors import DomainError, InputError
from fhectl.circuits import approximations as approx
from fhectl.circuits.polynomial import check_domain
from fhectl.circuits.refresh import Stats
from fhectl.circuits.softmax import softmax_circuit
from fhectl.gpt2.calibration import calibrate
from fhectl.gpt2.inference import EncryptedGPT2
from fhectl.circuits.linear import PackedLinear
from fhectl.gpt2.model import GPT2
from fhectl.circuits.packing import Layout
from fhectl.gpt2.weights import random_weights


@pytest.fixture(scope="module")
def deep_params():
    return load_parameters("tiny-deep-insecure", allow_insecure=True)


def test_layout_round_trip_and_feature_rotation():
    lay = Layout.for_model(512, 3, 12)
    assert (lay.tokens, lay.chunk) == (4, 16)
    x = np.arange(36.0).reshape(3, 12)
    (v,) = lay.pack(x)
    assert v.shape == (512,)
    assert np.array_equal(lay.unpack([v], 3, 12), x)
    # a rotation by k*T shifts features by k, the same for every token, cyclically inside the chunk
    shifted = lay.unpack([np.roll(v, -lay.feature_step(5))], 3, 16)
    padded = np.zeros((3, 16))
    padded[:, :12] = x
    assert np.array_equal(shifted, np.roll(padded, -5, axis=1))
    assert Layout.max_tokens(32768, 768) == 32


@pytest.mark.parametrize("cin,cout,tokens,chunk_in,chunk_out", [(16, 48, 3, 16, 16), (12, 36, 4, 12, 12), (48, 16, 2, None, None)])
def test_packed_linear_plain_matches_matmul(cin, cout, tokens, chunk_in, chunk_out):
    rng = np.random.default_rng(cin * 100 + cout)
    w, b, x = rng.normal(size=(cin, cout)), rng.normal(size=cout), rng.normal(size=(tokens, cin))
    lay = Layout.for_model(512, tokens, max(chunk_in or cin, 16))
    lin = PackedLinear(w, b, lay, chunk_in=chunk_in, chunk_out=chunk_out)
    assert np.allclose(lin.evaluate_plain(x), x @ w + b, atol=1e-12)


def test_packed_linear_encrypted(deep_params, make_kit):
    rng = np.random.default_rng(5)
    w, b, x = rng.normal(size=(16, 48)), rng.normal(size=48), rng.normal(size=(4, 16))
    lin = PackedLinear(w, b, Layout.for_model(deep_params.slots, 4, 16), chunk_in=16, chunk_out=16)
    kit = make_kit(deep_params, "linear", sorted(lin.rotation_steps()))
    cts = [kit.encryptor.encrypt(v) for v in lin.pack_input(x)]
    outs = lin.apply(kit.evaluator, cts, target_scale=cts[0].scale)
    assert all(o.scale == cts[0].scale and o.level == cts[0].level - 1 for o in outs)
    got = lin.unpack_output([kit.decryptor.decrypt(o).real for o in outs], 4)
    assert precision_bits(got, x @ w + b) >= 20


def test_hopeless_domains_are_refused_with_a_clear_error():
    """A calibrated variance range of 12 decades cannot be served by a seed plus Newton steps."""
    with pytest.raises(InputError, match="narrow the domain"):
        approx.inverse_sqrt(1e-6, 1e6, tol=2.0**-16)


def test_calibration_covers_the_trace_and_detects_outliers(tiny_weights):
    model = GPT2(tiny_weights)
    rng = np.random.default_rng(1)
    prompts = [list(rng.integers(0, 100, 6)) for _ in range(4)]
    doms = calibrate(model, prompts)
    tr = model.trace(prompts[0]).blocks[0]
    eps = model.config.layer_norm_epsilon
    check_domain(tr.ln_1_var + eps, *doms[0].ln1_var, "ln_1 var + eps")  # fitted on what the circuit sees
    check_domain(tr.fc, -doms[0].gelu_bound, doms[0].gelu_bound, "gelu")
    with pytest.raises(DomainError, match="outside the domain"):
        check_domain(np.array([doms[0].gelu_bound * 10]), -doms[0].gelu_bound, doms[0].gelu_bound, "gelu")
    with pytest.raises(DomainError):
        check_domain(np.array([np.nan]), *doms[0].ln1_var, "ln_1 var + eps")  # NaN is outside, not let through


@pytest.fixture(scope="module")
def moderate_weights(tiny_config):
    """std 0.2: attention clearly non-uniform (scores about +-3)."""
    return random_weights(tiny_config, seed=2, std=0.2)


@pytest.fixture(scope="module")
def encrypted_run(moderate_weights, deep_params):
    model = GPT2(moderate_weights)
    rng = np.random.default_rng(11)
    prompts = [list(rng.integers(0, 100, 4)) for _ in range(8)]
    doms = calibrate(model, prompts)
    engine = EncryptedGPT2(moderate_weights, deep_params, doms, n_layers=2, max_tokens=4, random=SeededRandom("gpt2"))
    return engine, engine.generate(prompts[0], 1), prompts[0]


def test_encrypted_blocks_match_the_reference(encrypted_run):
    engine, result, _ = encrypted_run
    (blocks,) = result.blocks
    for r in blocks:
        assert r.cosine >= 0.999, r
        assert r.precision_bits >= 8, r
    (tok,) = result.tokens
    assert tok.encrypted_top1 == tok.reference_top1
    assert tok.top5_overlap >= 4 and tok.kl_divergence < 1e-3
    assert result.generated_ids == result.reference_ids
    st = result.stats
    assert st.refresh_round_trips >= 5 * 2  # at least the refreshes before each nonlinear stage, per block
    assert st.refresh_bytes_to_client > 0 and st.refresh_bytes_to_server > 0


def test_server_holds_no_secret(encrypted_run):
    engine, _, _ = encrypted_run
    server = engine.server
    assert not any(hasattr(server, name) for name in ("sk", "decryptor", "secret_key"))
    assert server.relin_key is engine.client.relin_key


def test_out_of_domain_inputs_are_reported(encrypted_run, monkeypatch):
    engine, _, ids = encrypted_run
    block = engine.blocks[0]
    monkeypatch.setattr(block, "softmax", softmax_circuit(0.01, engine.layout.tokens))
    with pytest.raises(DomainError, match="softmax"):
        engine.run_blocks(ids, Stats())
