"""`fhectl infer --model gpt2 --refresh bootstrap|client|auto`: the tiny GPT-2 checkpoint of the CLI tests (GPT-2's
vocabulary and offline tokenizer over tiny random weights, tests/gpt2/conftest.py), at the insecure N = 2^10 profile
tiny-bootstrap-deep-insecure (32 levels: 16 for bootstrapping, 1 for the refresh's mask product, 15 for the stages),
as tests/llama/test_bootstrap_refresh.py does for the Llama family.

Measured (this checkpoint, prompt "Hello world, this is", both blocks encrypted, 6 runs with fresh keys): 14
bootstraps per block (ln_1 1, c_attn 3, softmax 3, residual 1, ln_2 1, gelu 4 (one per 16 of the 64 c_fc features),
block output 1; the level simulator's plan and the run agree), zero round trips, range indicator clean; each block's
output against the float64 model: precision 9.8-10.8 bits relative to the largest |h| (max error 2.8e-4 - 6.1e-4),
cosine >= 0.9999996, against 13.9 bits with client refresh on the same profile; next-token KL 3e-8 - 1.2e-7 nats.
GELU on [-32, 32] takes 9 levels, one stage within the 15 a refresh gives, so its output needs no refresh here.
The precision bound below is about a bit under the worst run.
"""

import json

import pytest
from typer.testing import CliRunner

from fhectl.circuits.wide import gelu_wide
from fhectl.cli.main import app
from fhectl.gpt2 import calibration, pipeline

runner = CliRunner()
TEXT = "Hello world, this is"
BOOT = ["--model", "gpt2", "--profile", "tiny-bootstrap-deep-insecure", "--insecure", "--device", "cpu"]
SHALLOW = ["--model", "gpt2", "--profile", "tiny-bootstrap-insecure", "--insecure", "--device", "cpu", "--layers", "1"]
PRECISION_BITS = 8.8  # bootstrapped blocks vs float64 (measured 9.8-10.8)


pytestmark = pytest.mark.usefixtures("single_numba_thread")


@pytest.fixture()
def prompt(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # calibration cache
    p = tmp_path / "prompt.txt"
    p.write_text(TEXT)
    return p


def test_bootstrap_is_the_default_and_makes_no_round_trip(checkpoint, prompt):
    res = runner.invoke(app, ["infer", str(prompt), "--weights", str(checkpoint), "--json", *BOOT])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["refresh"] == "bootstrap" and data["indicator_clean"] is True
    st = data["stats"]
    assert st["refresh_round_trips"] == 0 and st["refresh_bytes_to_client"] == 0
    boot, plans = data["bootstrap"], data["plans"]
    assert len(plans) == 2 and all(p["round_trips"] == 0 for p in plans)
    assert boot["bootstraps"] == sum(p["bootstraps_per_block"] for p in plans) == sum(boot["by_stage"].values()) > 0
    for stage, used in boot["levels"].items():  # the simulator planned the levels the run used
        planned = [p["levels"][stage] for p in plans]
        assert set(used["in"]) == {x for p in planned for x in p["in"]} and used["out"] == planned[0]["out"], stage
    assert boot["levels"]["softmax"]["out"] == plans[0]["refresh_level"] == 32 - 16 - 1
    (verdict,) = data["indicators"]
    assert verdict["clean"] and verdict["stages"]
    assert set(st["stage_seconds"]) >= {"ln_1", "c_attn", "softmax", "gelu", "residual", "block output"}
    (blocks,) = data["blocks"]
    for b in blocks:
        assert b["precision_bits"] > PRECISION_BITS and b["cosine"] > 0.9999, b
    assert data["top1_agreement"] == 1.0 and data["generated_ids"] == data["reference_ids"]
    assert "bootstraps per block planned" in res.stderr and "0 round trips" in res.stderr
    assert data["bootstrap_passes"] == 1 and "one pass, real slots" in res.stderr  # the dense circuit: no refinement


def test_out_of_domain_is_detected_without_the_key_holder(checkpoint, prompt, monkeypatch):
    """Attention scores up to 25% beyond the softmax's interval in block 0: the range indicator, read with the
    outputs, names the stage and infer exits 7 (DomainError), as a client refresh would; with
    --allow-out-of-domain the run finishes and says so."""
    real = pipeline.calibrated_domains

    def tight(model, tokenizer, n_layers, max_tokens, seed=0):
        domains, source = real(model, tokenizer, n_layers, max_tokens, seed)
        seen = calibration.measure(model, [tokenizer.encode(TEXT)], 1)[0].score_abs
        d = domains[0]
        return [calibration.BlockDomains(d.stream_scale, d.ln1_var, d.ln2_var, seen / 1.25, d.gelu_bound),
                *domains[1:]], source

    monkeypatch.setattr(pipeline, "calibrated_domains", tight)
    res = runner.invoke(app, ["infer", str(prompt), "--weights", str(checkpoint), "--layers", "1", *BOOT])
    assert res.exit_code == 7, res.output
    assert "range indicator: OUT OF DOMAIN at block 0 softmax" in res.stderr and "Traceback" not in res.output
    res = runner.invoke(app, ["infer", str(prompt), "--weights", str(checkpoint), "--layers", "1", "--json",
                              "--allow-out-of-domain", *BOOT])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["indicator_clean"] is False and data["indicators"][0]["flagged"] == ["block 0 softmax"]


def test_client_refresh_stays_the_explicit_option_and_the_fallback(checkpoint, prompt):
    """Where the blocks' circuits do not fit between bootstraps (tiny-bootstrap-insecure: 22 levels, 16 go to
    bootstrapping and 1 to the mask product; the softmax needs stages of more than 4), the default falls back to client refresh with one note
    line; an explicit --refresh bootstrap there is one error line, exit 3 (parameters), before any key is made."""
    res = runner.invoke(app, ["infer", str(prompt), "--weights", str(checkpoint), "--json", *SHALLOW])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["refresh"] == "client" and data["indicator_clean"] is None and data["bootstrap"] == {}
    assert data["stats"]["refresh_round_trips"] > 0
    why = "profile tiny-bootstrap-insecure: the circuits do not fit the 5 levels a bootstrapping refresh gives"
    assert f"client refresh: {why}" in res.stderr
    res = runner.invoke(app, ["infer", str(prompt), "--weights", str(checkpoint), "--refresh", "bootstrap", *SHALLOW])
    assert res.exit_code == 3, res.output
    (line,) = [x for x in res.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: --refresh bootstrap: {why}")


def test_a_chain_too_short_to_bootstrap_is_refused_before_the_model_opens(prompt, monkeypatch):
    """tiny-insecure (5 levels at 40 bits) cannot even run the bootstrapping circuit: an explicit --refresh
    bootstrap is one error line, exit 3, decided from the profile alone, before the config, the tokenizer or the
    weights."""
    def must_not_run(*args, **kwargs):
        raise AssertionError("the model was opened before the profile was checked")

    monkeypatch.setattr(pipeline, "open_model", must_not_run)
    res = runner.invoke(app, ["infer", str(prompt), "--model", "gpt2", "--refresh", "bootstrap", "--profile",
                              "tiny-insecure", "--insecure"])
    assert res.exit_code == 3, res.output
    (line,) = [x for x in res.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith("error: --refresh bootstrap: profile tiny-insecure cannot bootstrap: its circuits would "
                           "run on its 40-bit scaling primes")


def test_gelu_keeps_every_stage_within_a_refresh():
    """gelu_wide takes ``max_stage_levels`` as silu_wide does: on [-128, 128] (11 levels whole) with 8 levels per
    refresh (boot-n16-128) it becomes a Cheon map and a gate with one refresh between, within its tolerance; where
    the whole circuit fits one refresh it is the circuit without a limit."""
    whole, split = gelu_wide(128.0), gelu_wide(128.0, max_stage_levels=8)
    assert whole.depth() > 8 and split.maps and max(split.stage_depths()) <= 8
    assert split.gate_error() <= 1e-4
    assert gelu_wide(128.0, max_stage_levels=15) == whole
