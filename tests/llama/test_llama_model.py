"""The float64 reference against a slow loop-by-loop Llama, and the pluggable nonlinearities."""

import math

import numpy as np
import pytest

from fhectl.errors import InputError
from fhectl.llama.model import (EXACT, Llama, Nonlinearities, apply_rope, block_with_trace, exact_softmax,
                                rope_tables)

# --- a naive Llama: explicit pair rotations, explicit head -> kv-head index, plain loops ------------


def _naive_rotate(vec, position, theta):
    """Turn pair (i, i + hd/2) by position * theta^(-2i/hd), one pair at a time."""
    hd = len(vec)
    out = vec.copy()
    for i in range(hd // 2):
        angle = position * theta ** (-2 * i / hd)
        a, b = vec[i], vec[i + hd // 2]
        out[i] = a * math.cos(angle) - b * math.sin(angle)
        out[i + hd // 2] = a * math.sin(angle) + b * math.cos(angle)
    return out


def _naive_attention(x, bw, cfg):
    T, hd = x.shape[0], cfg.head_dim
    q, k, v = x @ bw["q_proj"].T, x @ bw["k_proj"].T, x @ bw["v_proj"].T
    y = np.zeros((T, cfg.n_head * hd))
    for h in range(cfg.n_head):
        kv = h // (cfg.n_head // cfg.n_kv_head)  # query heads 0..n_rep-1 share kv head 0, and so on
        qs, ks = slice(h * hd, (h + 1) * hd), slice(kv * hd, (kv + 1) * hd)
        for t in range(T):
            qt = _naive_rotate(q[t, qs], t, cfg.rope_theta)
            scores = np.array([qt @ _naive_rotate(k[j, ks], j, cfg.rope_theta) / math.sqrt(hd)
                               for j in range(t + 1)])
            p = np.exp(scores - scores.max())
            p /= p.sum()
            y[t, qs] = sum(p[j] * v[j, ks] for j in range(t + 1))
    return y @ bw["o_proj"].T


def _naive_norm(x, g, eps):
    return np.stack([row / math.sqrt(np.mean(row ** 2) + eps) for row in x]) * g


def _naive_logits(weights, ids):
    cfg = weights.config
    x = weights["model.embed_tokens.weight"][ids]
    for i in range(cfg.n_layer):
        bw = weights.block(i)
        x = x + _naive_attention(_naive_norm(x, bw["input_layernorm"], cfg.rms_norm_eps), bw, cfg)
        h = _naive_norm(x, bw["post_attention_layernorm"], cfg.rms_norm_eps)
        gate = h @ bw["gate_proj"].T
        x = x + (gate / (1 + np.exp(-gate)) * (h @ bw["up_proj"].T)) @ bw["down_proj"].T
    return _naive_norm(x, weights["model.norm.weight"], cfg.rms_norm_eps) @ weights["model.embed_tokens.weight"].T


def test_forward_matches_naive_llama(sharp_weights):
    ids = [3, 17, 5, 42, 8, 0, 29]
    np.testing.assert_allclose(Llama(sharp_weights).forward(ids), _naive_logits(sharp_weights, ids),
                               rtol=1e-11, atol=1e-11)


def test_rope_scores_depend_only_on_relative_position():
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(1, 1, 16)), rng.normal(size=(1, 1, 16))
    def score(m, n):
        cq, sq = rope_tables([m], 16, 1e4)
        ck, sk = rope_tables([n], 16, 1e4)
        return float(apply_rope(q, cq, sq)[0, 0] @ apply_rope(k, ck, sk)[0, 0])
    assert score(7, 3) == pytest.approx(score(104, 100), rel=1e-12)
    assert score(7, 3) != pytest.approx(score(8, 3), rel=1e-3)


def test_softmax_gives_hidden_keys_exactly_zero():
    scores = np.random.default_rng(1).normal(size=(2, 4, 4)) * 30
    mask = np.tril(np.ones((4, 4), dtype=bool))
    probs = exact_softmax(scores, mask)
    assert np.all(probs[:, ~mask] == 0.0)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-14)


def test_nonlinearities_are_used_where_plugged(sharp_weights):
    model = Llama(sharp_weights)
    x = model.embed([4, 9, 1, 33])
    seen = []
    def recording_rsqrt(v):
        seen.append(v.copy())
        return EXACT.rsqrt(v)
    no_mlp = Nonlinearities(rsqrt=recording_rsqrt, softmax=EXACT.softmax, silu=np.zeros_like)
    out = model.block(x, 0, nonlinear=no_mlp)
    _, layer = block_with_trace(x, sharp_weights.block(0), sharp_weights.config)
    # With SiLU = 0 the MLP adds nothing, so the block output is the stream after attention.
    np.testing.assert_allclose((out * out).mean(axis=-1) + sharp_weights.config.rms_norm_eps, layer.mlp_norm_ms)
    np.testing.assert_array_equal(seen[0], layer.attn_norm_ms)
    assert not np.allclose(out, model.block(x, 0))  # the override did not stick to the model
    np.testing.assert_array_equal(Llama(sharp_weights, nonlinear=no_mlp).block(x, 0), out)


def test_trace_records_what_the_nonlinearities_saw(sharp_weights):
    model = Llama(sharp_weights)
    ids = [5, 6, 7, 8, 9]
    trace = model.trace(ids)
    np.testing.assert_array_equal(trace.logits, model.forward(ids))
    assert len(trace.layers) == sharp_weights.config.n_layer
    first = trace.layers[0]
    assert first.scores.shape == (4, 5, 5) and np.all(np.isneginf(first.scores[:, 0, 1:]))
    np.testing.assert_array_equal(first.score_row_max[:, 0], first.scores[:, 0, 0])
    x0 = model.embed(ids)
    np.testing.assert_allclose(first.attn_norm_ms, (x0 ** 2).mean(axis=-1) + 1e-5)
    assert first.residual_max_abs >= np.abs(model.block(x0, 0)).max()
    ranges = trace.ranges()
    assert ranges["gate"][0] < 0 < ranges["gate"][1] and ranges["scores_minus_row_max"][1] == 0.0


def test_greedy_generate_stops_on_stop_ids(sharp_weights):
    model = Llama(sharp_weights)
    full = model.greedy_generate([3, 4], 6)
    assert len(full) == 8 and full[:2] == [3, 4]
    assert model.greedy_generate([3, 4], 6, stop_ids=[full[3]]) == full[:4]


@pytest.mark.parametrize("ids", [[], [[1, 2]], [1, 50], [-1], list(range(17))])
def test_bad_token_ids_are_input_errors(sharp_weights, ids):
    with pytest.raises(InputError):
        Llama(sharp_weights).forward(ids)
