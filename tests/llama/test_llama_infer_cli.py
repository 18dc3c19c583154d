"""`fhectl infer --model smollm2-135m` end to end: a tiny Llama checkpoint with SmolLM2's real tokenizer
(so real text encodes), written by the test as a Hugging Face directory, encrypted at the insecure N = 2^10
profile; and bad input refused before anything heavy runs."""

import json

import pytest
from typer.testing import CliRunner

from fhectl.cli.main import app
from tiny_llama import write_tiny_llama

runner = CliRunner()
ARGS = ["--model", "smollm2-135m", "--profile", "tiny-deep-insecure", "--insecure", "--device", "cpu"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, smollm2):
    return write_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), smollm2[1])


@pytest.fixture()
def prompt(tmp_path):
    p = tmp_path / "prompt.txt"
    p.write_text("Hello world")
    return p


def test_infer_runs_every_block_encrypted_and_matches_the_reference(checkpoint, prompt, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # calibration cache
    res = runner.invoke(app, ["infer", str(prompt), "--weights", str(checkpoint), "--layers", "2",
                              "--max-new-tokens", "2", "--json", *ARGS])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["encrypted_layers"] == 2 == data["layers"]
    assert data["top1_agreement"] == 1.0
    assert data["continuation"] == data["reference_continuation"]
    assert all(r["cosine_min"] > 0.9999 for step in data["steps"] for r in step["layers"])


def test_bad_input_fails_fast_with_one_line(checkpoint, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    res = runner.invoke(app, ["infer", str(empty), "--weights", str(checkpoint), *ARGS])
    assert res.exit_code == 2 and "empty" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["infer", str(tmp_path / "missing.txt"), *ARGS])
    assert res.exit_code == 2 and "does not exist" in res.output
    long = tmp_path / "long.txt"
    long.write_text("word " * 40)
    res = runner.invoke(app, ["infer", str(long), "--weights", str(checkpoint), *ARGS])
    assert res.exit_code == 2 and "fit one ciphertext" in res.output


def test_chat_wraps_the_prompt_and_system_needs_chat(checkpoint, prompt, tmp_path, monkeypatch):
    """The tiny model holds 8 tokens (its head width), so the chat runs stop at the capacity check, which
    shows how many tokens the template made of the 2-token prompt."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    res = runner.invoke(app, ["infer", str(prompt), "--weights", str(checkpoint), "--chat", "--system", "", *ARGS])
    assert res.exit_code == 2 and "the prompt has 16 tokens" in res.output  # ChatML turns around "Hello world"
    res = runner.invoke(app, ["infer", str(prompt), "--weights", str(checkpoint), "--system", "x", *ARGS])
    assert res.exit_code == 2 and "--system only applies with --chat" in res.output
    res = runner.invoke(app, ["infer", str(prompt), "--weights", str(checkpoint), "--chat", *ARGS])
    assert res.exit_code == 2 and "--system ''" in res.output  # the default system turn is the hint


def test_input_errors_come_before_the_weights_are_read(checkpoint, tmp_path, monkeypatch):
    """The prompt and flags are checked against config.json and the tokenizer; the weights are never read."""
    import fhectl.llama.pipeline as pipeline

    def no_weights(path):
        raise AssertionError("the weights were read before the input was checked")

    monkeypatch.setattr(pipeline, "load_safetensors_dir", no_weights)
    long = tmp_path / "long.txt"
    long.write_text("word " * 40)
    res = runner.invoke(app, ["infer", str(long), "--weights", str(checkpoint), *ARGS])
    assert res.exit_code == 2 and "fit one ciphertext" in res.output
    short = tmp_path / "short.txt"
    short.write_text("Hi")
    res = runner.invoke(app, ["infer", str(short), "--weights", str(checkpoint), "--layers", "3", *ARGS])
    assert res.exit_code == 2 and "--layers must be in 0..2" in res.output


def test_the_gguf_header_gives_the_config_and_tokenizer_without_the_tensors(smollm2):
    from fhectl.llama.gguf import read_gguf_header

    config, tok = read_gguf_header()
    assert config == smollm2[0].config
    assert tok.encode("The capital of France is") == smollm2[1].encode("The capital of France is")
