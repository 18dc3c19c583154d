"""`fhectl infer` end to end on a tiny checkpoint written by the test (real loader, real tokenizer)."""

import json
import os
import subprocess
import sys

import huggingface_hub.constants
import pytest
from typer.testing import CliRunner

from fhectl.cli.main import app
from fhectl.gpt2 import pipeline
from hfcache import make_hf_snapshot

runner = CliRunner()
ARGS = ["--profile", "tiny-deep-insecure", "--insecure", "--device", "cpu"]


@pytest.fixture(autouse=True)
def calibration_cache(tmp_path, monkeypatch):
    """Calibrated domains go to $XDG_CACHE_HOME/fhectl/calibration: a fresh one per test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path / "xdg-cache" / "fhectl" / "calibration"


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


def test_missing_hf_cache_offline_says_where_it_looked(prompt, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    res = runner.invoke(app, ["infer", str(prompt), "--model", "gpt2", *ARGS])
    assert res.exit_code == 2, res.output
    error = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and "empty-cache" in error[0] and "--weights" in error[0], res.stderr
    assert "openai-community/gpt2" in error[0] and "cannot be downloaded here" not in res.output


@pytest.mark.parametrize("extra,message", [
    (["--layers", "13"], "--layers must be in 1..12"),
    (["--max-new-tokens", "40"], "shorten the prompt"),
])
def test_input_errors_come_before_the_weights(prompt, monkeypatch, extra, message):
    """124M random weights take half a minute to draw: a bad --layers or a long prompt must fail first."""
    def must_not_run(self):
        raise AssertionError("weights loaded before the input was checked")

    monkeypatch.setattr(pipeline.ModelSource, "load", must_not_run)
    res = runner.invoke(app, ["infer", str(prompt), "--random-weights", *ARGS, *extra])
    assert res.exit_code == 2, res.output
    assert message in res.stderr


def test_a_prompt_with_rich_markup_is_printed_as_it_is(checkpoint, tmp_path):
    p = tmp_path / "prompt.txt"
    p.write_text("[/b] :smile:")  # 7 tokens; Rich would fail on [/b] and draw :smile:
    res = runner.invoke(app, ["infer", str(p), "--weights", str(checkpoint), "--layers", "1", *ARGS])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("[/b] :smile:")


def test_first_run_from_the_hf_cache_piped(tmp_path, checkpoint_weights):
    """`fhectl infer --model gpt2` as a user runs it offline with a filled cache, output piped to a log:
    the Hub's snapshot is found through HF_HOME, its tokenizer files pass the published-hash check, every
    stage announces itself on a plain line, and no line is cut or wrapped at 80 columns."""
    make_hf_snapshot(tmp_path / "hf" / "hub", "openai-community/gpt2", "c" * 40, checkpoint_weights)
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Hello world, this is")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "COLUMNS", "FHECTL_DEBUG"))}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", XDG_CACHE_HOME=str(tmp_path / "xdg"),
               NUMBA_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "fhectl.cli", "infer", str(prompt), "--model", "gpt2", "--layers", "1",
                           *ARGS], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Hello world, this is")
    lines = proc.stderr.splitlines()
    for stage in ("model config and tokenizer", "loading weights", "calibrating approximation domains",
                  "generating keys"):
        assert f"{stage}" in proc.stderr and any(ln.startswith(stage) and ln.endswith(" ...") for ln in lines), stage
    assert any(ln.startswith("  block 0: ") for ln in lines)
    model = next(ln for ln in lines if ln.startswith("model: "))
    assert "openai-community/gpt2" in model
    refreshes = next(ln for ln in lines if ln.startswith("client refreshes: "))
    assert len(refreshes) > 80 and refreshes.endswith(" on cpu")  # one line, not wrapped at 80 columns
    assert "\x1b[" not in proc.stderr
