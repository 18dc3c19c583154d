"""The numpy GPT-2 reference: known answers worked out by hand, a naive second implementation,
and properties (causality, normalisation) that a wrong model would break."""

import math

import numpy as np
import pytest

from fhectl.errors import InputError
from fhectl.gpt2.config import GPT2Config
from fhectl.gpt2.model import (GPT2, attention, attention_parts, block_forward, gelu_tanh, layer_norm, mlp,
                               trace_block)
from fhectl.gpt2.weights import GPT2Weights, random_weights

GELU_1 = 0.8411919906082768  # gelu_tanh(1), the value tabulated for the tanh approximation
TOKENS = [3, 14, 15, 92, 65, 35, 89, 79]


def _block_input(model, token_ids):
    """ln_1 output of block 0: a realistic (T, C) input for attention."""
    bw = model.weights.block(0)
    return layer_norm(model.embed(token_ids), bw["ln_1.weight"], bw["ln_1.bias"], model.config.layer_norm_epsilon)


# --- stages -------------------------------------------------------------------------------------


def test_layer_norm_gives_mean_zero_variance_one():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 5.0, (6, 32))
    eps = 1e-5
    y = layer_norm(x, np.ones(32), np.zeros(32), eps)
    np.testing.assert_allclose(y.mean(axis=-1), 0, atol=1e-12)
    # eps sits inside the sqrt, so the variance is v / (v + eps), just below 1.
    v = x.var(axis=-1)
    np.testing.assert_allclose(y.var(axis=-1), v / (v + eps), rtol=1e-12)
    # weight scales and bias shifts each channel after normalising.
    w, b = rng.normal(size=32), rng.normal(size=32)
    np.testing.assert_allclose(layer_norm(x, w, b, eps), y * w + b, rtol=1e-12)


def test_gelu_known_values():
    np.testing.assert_allclose(gelu_tanh(np.array([0.0, 1.0, -1.0, 2.0])),
                               [0.0, GELU_1, -0.15880800939172324, 1.954597694087775], rtol=1e-12)
    np.testing.assert_allclose(gelu_tanh(np.array([30.0, -30.0])), [30.0, 0.0], atol=1e-12)


def test_gelu_is_close_to_the_erf_form():
    # The tanh form approximates x * Phi(x) to within 5e-4; a typo in a constant would not be.
    x = np.linspace(-6, 6, 241)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x])
    assert np.abs(gelu_tanh(x) - exact).max() < 5e-4


def _identity_attention_weights():
    """C = 2, one head: q = k = v = x (c_attn is [I I I]), c_proj = I, no biases."""
    eye = np.eye(2)
    return {"attn.c_attn.weight": np.hstack([eye, eye, eye]), "attn.c_attn.bias": np.zeros(6),
            "attn.c_proj.weight": eye, "attn.c_proj.bias": np.zeros(2)}


def test_attention_known_answer():
    # x0 = (a, 0), x1 = (0, a) with a^2 = sqrt(2) ln 3, so with hs = 2:
    #   token 0 sees only itself                          -> output x0
    #   token 1: scores x1.x0 / sqrt2 = 0, x1.x1 / sqrt2 = ln 3 -> probs (1/4, 3/4)
    #            output x0 / 4 + 3 x1 / 4 = (a/4, 3a/4)
    a = math.sqrt(math.sqrt(2) * math.log(3))
    x = np.array([[a, 0.0], [0.0, a]])
    parts = attention_parts(x, _identity_attention_weights(), n_head=1)
    np.testing.assert_allclose(parts.probs[0], [[1.0, 0.0], [0.25, 0.75]], rtol=1e-12)
    np.testing.assert_allclose(parts.out, [[a, 0.0], [a / 4, 3 * a / 4]], rtol=1e-12)
    assert parts.scores[0, 0, 1] == -np.inf  # masked, not merely small


def test_mlp_known_answer():
    # c_fc copies x[0] into hidden unit 0, c_proj copies unit 0 into channel 1:
    # mlp(x) = (0, gelu(x0)) + c_proj bias.
    w_fc = np.zeros((2, 8))
    w_fc[0, 0] = 1.0
    w_proj = np.zeros((8, 2))
    w_proj[0, 1] = 1.0
    bw = {"mlp.c_fc.weight": w_fc, "mlp.c_fc.bias": np.zeros(8),
          "mlp.c_proj.weight": w_proj, "mlp.c_proj.bias": np.array([0.5, 0.0])}
    np.testing.assert_allclose(mlp(np.array([[1.0, 7.0], [0.0, 7.0]]), bw), [[0.5, GELU_1], [0.5, 0.0]], rtol=1e-12)


def _naive_attention(x, bw, n_head):
    """Causal attention one token, one head, one key at a time, with Python floats."""
    T, C = x.shape
    hs = C // n_head
    W, b = bw["attn.c_attn.weight"], bw["attn.c_attn.bias"]
    qkv = [[sum(x[t, i] * W[i, j] for i in range(C)) + b[j] for j in range(3 * C)] for t in range(T)]
    y = [[0.0] * C for _ in range(T)]
    for h in range(n_head):
        q = [row[h * hs:(h + 1) * hs] for row in qkv]
        k = [row[C + h * hs:C + (h + 1) * hs] for row in qkv]
        v = [row[2 * C + h * hs:2 * C + (h + 1) * hs] for row in qkv]
        for i in range(T):
            scores = [sum(qi * kj for qi, kj in zip(q[i], k[j])) / math.sqrt(hs) for j in range(i + 1)]
            top = max(scores)
            weights = [math.exp(s - top) for s in scores]
            total = sum(weights)
            for d in range(hs):
                y[i][h * hs + d] = sum(weights[j] * v[j][d] for j in range(i + 1)) / total
    Wp, bp = bw["attn.c_proj.weight"], bw["attn.c_proj.bias"]
    return np.array([[sum(y[t][i] * Wp[i, j] for i in range(C)) + bp[j] for j in range(C)] for t in range(T)])


def test_attention_matches_naive_loop(sharp_weights):
    model = GPT2(sharp_weights)
    x = _block_input(model, TOKENS)
    bw = model.weights.block(0)
    probs = attention_parts(x, bw, model.config.n_head).probs
    assert probs.max() > 0.5  # far from uniform, so the comparison tests the scores
    np.testing.assert_allclose(attention(x, bw, model.config.n_head), _naive_attention(x, bw, model.config.n_head),
                               rtol=1e-10, atol=1e-12)


def test_attention_rows_sum_to_one_and_look_only_back(sharp_weights):
    model = GPT2(sharp_weights)
    probs = attention_parts(_block_input(model, TOKENS), model.weights.block(0), model.config.n_head).probs
    T = len(TOKENS)
    assert probs.shape == (model.config.n_head, T, T)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-12)
    assert np.all(probs[:, np.triu_indices(T, k=1)[0], np.triu_indices(T, k=1)[1]] == 0)
    assert np.all(probs[:, 0, 0] == 1.0)


# --- the whole model ----------------------------------------------------------------------------


def _hand_model() -> GPT2:
    """One block, C = 2, V = 3, whose logits can be worked out on paper.

    c_attn, c_fc and both c_proj matrices are zero, so attention adds its c_proj bias (1, 0) to every
    token and the MLP adds (0, gelu(1)): c_fc bias sends 1 into hidden unit 0, mlp.c_proj row 0 is (0, 1).
    ln_f has weight (2, 3) and bias (0.5, 0).
    """
    config = GPT2Config(n_layer=1, n_head=1, n_embd=2, n_positions=3, vocab_size=3)
    t = {"wte.weight": np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
         "wpe.weight": np.array([[0.0, 0.0], [0.0, 2.0], [5.0, 0.0]]),
         "h.0.ln_1.weight": np.ones(2), "h.0.ln_1.bias": np.zeros(2),
         "h.0.attn.c_attn.weight": np.zeros((2, 6)), "h.0.attn.c_attn.bias": np.zeros(6),
         "h.0.attn.c_proj.weight": np.zeros((2, 2)), "h.0.attn.c_proj.bias": np.array([1.0, 0.0]),
         "h.0.ln_2.weight": np.ones(2), "h.0.ln_2.bias": np.zeros(2),
         "h.0.mlp.c_fc.weight": np.zeros((2, 8)), "h.0.mlp.c_fc.bias": np.eye(8)[0],
         "h.0.mlp.c_proj.weight": np.zeros((8, 2)), "h.0.mlp.c_proj.bias": np.zeros(2),
         "ln_f.weight": np.array([2.0, 3.0]), "ln_f.bias": np.array([0.5, 0.0])}
    t["h.0.mlp.c_proj.weight"][0, 1] = 1.0
    return GPT2(GPT2Weights(config, t))


def _hand_logits(x0, x1, eps=1e-5):
    # Block output (x0 + 1, x1 + g). LayerNorm of a 2-vector (p, q): deviations +-d with
    # d = (p - q) / 2 and variance d^2, so it is (n, -n) with n = d / sqrt(d^2 + eps).
    # ln_f then gives (2n + 0.5, -3n); the tied head dots that with wte rows (1,0), (0,1), (1,1).
    d = ((x0 + 1) - (x1 + GELU_1)) / 2
    n = d / math.sqrt(d * d + eps)
    return [2 * n + 0.5, -3 * n, -n + 0.5]


def test_one_layer_model_known_answer():
    model = _hand_model()
    # Token 0 at position 0: x = (1, 0) + (0, 0). Token 1 at position 1: x = (0, 1) + (0, 2).
    np.testing.assert_allclose(model.forward([0, 1]), [_hand_logits(1, 0), _hand_logits(0, 3)], rtol=1e-12)
    # Token 2 at position 2: x = (1, 1) + (5, 0).
    np.testing.assert_allclose(model.forward([1, 1, 2])[2], _hand_logits(6, 1), rtol=1e-12)


def test_greedy_generate_known_answer():
    model = _hand_model()
    # Position 0, token 0: logits (2.5, -3, -0.5) -> 0. Position 1, token 0: x = (1, 2),
    # n = -1 -> logits (-1.5, 3, 1.5) -> 1.
    assert model.greedy_generate([0], 2) == [0, 0, 1]
    with pytest.raises(InputError, match="exceed n_positions=3"):
        model.greedy_generate([0], 3)


def test_greedy_generate_follows_argmax_of_forward(tiny_weights):
    model = GPT2(tiny_weights)
    out = model.greedy_generate([5, 6], 4)
    assert out[:2] == [5, 6] and len(out) == 6
    for t in range(2, 6):
        assert out[t] == int(np.argmax(model.forward(out[:t])[-1]))


def test_causal_later_tokens_do_not_change_earlier_logits(sharp_weights):
    model = GPT2(sharp_weights)
    changed = TOKENS[:5] + [0, 0, 0]
    a, b = model.forward(TOKENS), model.forward(changed)
    np.testing.assert_array_equal(a[:5], b[:5])
    assert np.abs(a[5:] - b[5:]).max() > 1e-3  # and the later ones do change: the test is not vacuous


def test_float32_agrees_with_float64(sharp_weights):
    logits64 = GPT2(sharp_weights, dtype=np.float64).forward(TOKENS)
    logits32 = GPT2(sharp_weights, dtype=np.float32).forward(TOKENS)
    assert logits32.dtype == np.float32 and logits64.dtype == np.float64
    error = np.abs(logits32 - logits64).max() / np.abs(logits64).max()
    assert 0 < error < 2**-16  # float32 carries 24 bits; a few are lost over two blocks


def test_trace_matches_forward_stage_by_stage(sharp_weights):
    model = GPT2(sharp_weights)
    trace = model.trace(TOKENS)
    np.testing.assert_array_equal(trace.logits, model.forward(TOKENS))
    np.testing.assert_array_equal(trace.embeddings, model.embed(TOKENS))
    np.testing.assert_array_equal(trace.blocks[0].x, trace.embeddings)
    for i, block in enumerate(trace.blocks):
        np.testing.assert_array_equal(block.out, block_forward(block.x, model.weights, i))
        np.testing.assert_array_equal(block.out, model.block(block.x, i))
        np.testing.assert_array_equal(block.gelu, gelu_tanh(block.fc))
        np.testing.assert_allclose(block.out, block.x + block.attn_out + block.mlp_out, rtol=1e-12)
        if i + 1 < len(trace.blocks):
            np.testing.assert_array_equal(trace.blocks[i + 1].x, block.out)
    np.testing.assert_array_equal(trace.logits, model.final_logits(trace.blocks[-1].out))
    T, C = len(TOKENS), model.config.n_embd
    b = trace.blocks[1]
    assert b.qkv.shape == (T, 3 * C) and b.att_probs.shape == (2, T, T) and b.fc.shape == (T, 4 * C)
    assert b.ln_1_var.shape == (T,)


def test_trace_ranges_cover_every_stage(sharp_weights):
    model = GPT2(sharp_weights)
    trace = model.trace(TOKENS)
    ranges = trace.ranges()
    assert {"x", "ln_1", "qkv", "att_scores", "att_probs", "attn_out", "ln_2", "fc", "gelu", "out",
            "ln_1_var", "ln_2_var", "embeddings", "ln_f", "logits"} <= set(ranges)
    lo, hi = ranges["fc"]
    assert lo == min(b.fc.min() for b in trace.blocks) and hi == max(b.fc.max() for b in trace.blocks)
    assert 0 <= ranges["att_probs"][0] and ranges["att_probs"][1] <= 1
    assert np.isfinite(ranges["att_scores"]).all()  # masked -inf left out
    assert ranges["ln_1_var"][0] > 0
    assert trace_block(trace.blocks[0].x, model.weights, 0).ranges() == trace.blocks[0].ranges()


def test_bad_token_ids_are_refused(tiny_weights):
    model = GPT2(tiny_weights)
    with pytest.raises(InputError, match="token id 100 is outside the vocabulary 0..99"):
        model.forward([1, 100])
    with pytest.raises(InputError, match="13 tokens exceed the model's n_positions=12"):
        model.forward([1] * 13)
    with pytest.raises(InputError, match="non-empty"):
        model.forward([])
    with pytest.raises(InputError, match="float32 or float64"):
        GPT2(tiny_weights, dtype=np.float16)


def test_weights_are_cast_to_the_compute_dtype(tiny_config):
    weights = random_weights(tiny_config, seed=3)  # float32, as checkpoints are
    model = GPT2(weights, dtype=np.float64)
    assert all(model.weights[name].dtype == np.float64 for name in model.weights)
    assert weights["wte.weight"].dtype == np.float32  # the caller's weights are left alone
