"""`fhectl infer` end to end on a tiny checkpoint written by the test (real loader, real tokenizer)."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from fhectl.cli.main import app
from fhectl.gpt2.config import GPT2Config
from fhectl.gpt2.weights import random_weights, save_weights

runner = CliRunner()
ARGS = ["--profile", "tiny-deep-insecure", "--insecure", "--device", "cpu"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    # GPT-2's real vocabulary (so the offline tokenizer's ids fit), everything else tiny.
    cfg = GPT2Config(n_layer=2, n_head=2, n_embd=16, n_positions=16, vocab_size=50257)
    d = tmp_path_factory.mktemp("tiny-gpt2")
    save_weights(random_weights(cfg, seed=3, std=0.1), d)
    return d


@pytest.fixture()
def prompt(tmp_path):
    p = tmp_path / "prompt.txt"
    p.write_text("Hello world, this is")
    return p


def test_infer_json_reports_everything(checkpoint, prompt):
    res = runner.invoke(app, ["infer", str(prompt), "--weights", str(checkpoint), "--max-new-tokens", "2", "--json", *ARGS])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["label"] is None and len(data["generated_ids"]) == 2
    assert data["generated_ids"] == data["reference_ids"]
    assert data["top1_agreement"] == 1.0
    for per_token in data["blocks"]:
        assert len(per_token) == 2 and all(b["cosine"] > 0.999 for b in per_token)
    assert data["stats"]["refresh_round_trips"] > 0 and data["key_bytes"] > 0
    assert set(data["stats"]["stage_seconds"]) >= {"ln_1", "c_attn", "scores", "softmax", "gelu"}
    plans = data["plans"]  # from the level simulator, per encrypted block
    assert len(plans) == 2 and set(plans[0]["refreshes"]) <= set(data["stats"]["refreshes_by_stage"])
    assert plans[0]["round_trips"] * 2 * 2 == data["stats"]["refresh_round_trips"]  # 2 blocks, 2 tokens
    assert len(data["stream_scales"]) == 2


def test_a_profile_too_shallow_for_the_circuits_fails_before_keygen(checkpoint, prompt):
    """tiny-insecure has 5 levels: the circuits need more, which the level simulator says before keygen."""
    res = runner.invoke(app, ["infer", str(prompt), "--weights", str(checkpoint), "--profile", "tiny-insecure",
                              "--insecure", "--device", "cpu"])
    assert res.exit_code == 4, res.output
    assert "profile tiny-insecure (fresh ciphertexts have 5 levels) is too shallow" in res.output
    assert "needs" in res.output
    assert "Traceback" not in res.output


def test_infer_as_a_subprocess_prints_the_continuation(checkpoint, prompt):
    proc = subprocess.run(
        [sys.executable, "-m", "fhectl.cli", "infer", str(prompt), "--weights", str(checkpoint), "--layers", "1", *ARGS],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Hello world, this is")
    assert "client refreshes" in proc.stderr and "top-1 agreement" in proc.stderr
    assert "\x1b[" not in proc.stderr  # no colour codes when not a terminal


@pytest.mark.parametrize(
    "extra,code,message",
    [
        (["--weights", "/nonexistent/dir"], 2, "nonexistent"),
        (["--random-weights", "--weights", "x"], 2, "either --weights or --random-weights"),
        (["--layers", "9"], 2, "--layers must be in 1..2"),
        (["--max-new-tokens", "0"], 2, "--max-new-tokens"),
    ],
)
def test_infer_bad_input_is_one_line(checkpoint, prompt, extra, code, message):
    args = ["infer", str(prompt), *ARGS]
    if "--weights" not in extra and "--random-weights" not in extra:
        args += ["--weights", str(checkpoint)]
    res = runner.invoke(app, args + extra)
    assert res.exit_code == code, res.output
    assert message in res.output and "Traceback" not in res.output


def test_infer_refuses_missing_and_empty_prompts(checkpoint, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    res = runner.invoke(app, ["infer", str(empty), "--weights", str(checkpoint), *ARGS])
    assert res.exit_code == 2 and "empty" in res.output
    res = runner.invoke(app, ["infer", str(tmp_path / "nope.txt"), "--weights", str(checkpoint), *ARGS])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_infer_refuses_prompts_longer_than_a_ciphertext(checkpoint, tmp_path):
    long = tmp_path / "long.txt"
    long.write_text("word " * 200)
    res = runner.invoke(app, ["infer", str(long), "--weights", str(checkpoint), *ARGS])
    assert res.exit_code == 2 and "shorten the prompt" in res.output


def test_missing_hf_cache_says_where_it_looked(prompt, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    res = runner.invoke(app, ["infer", str(prompt), "--model", "gpt2", *ARGS])
    assert res.exit_code == 2
    assert "empty-cache" in res.output and "--weights" in res.output
