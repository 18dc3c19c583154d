"""`fhectl bench --suite accuracy` (fhectl.bench.accuracy) on the tiny Llama checkpoint (SmolLM2's tokenizer over
random weights, tests/tiny_llama.py): the plaintext mirror on the evaluation set, then the fully encrypted run,
with bootstrapping at the insecure N = 2^10 profile tiny-bootstrap-deep-insecure, stopped after its first layer
by the time budget and resumed by the same command.

The bounds: each bootstrapped tiny block is 9.1-10.0 bits of its largest |h| (tests/llama/test_bootstrap_refresh.py);
8 bits leaves about a bit of margin. A resumed run's second layer starts from the key holder's fresh
encryption of the saved state, so it is measured like the first.
"""

import json

import pytest
from typer.testing import CliRunner

from fhectl.ckks.params import load_parameters
from fhectl.cli.main import app
from tiny_llama import write_tiny_llama

runner = CliRunner()
PRECISION_BITS = 8.0

pytestmark = pytest.mark.usefixtures("single_numba_thread")


@pytest.fixture()
def checkpoint(tmp_path, smollm2, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # calibration and the run's state
    return write_tiny_llama(tmp_path / "tiny", smollm2[1])


def accuracy(checkpoint, out, *extra):
    return runner.invoke(app, ["bench", "--suite", "accuracy", "--weights", str(checkpoint), "--profile",
                               "tiny-bootstrap-deep-insecure", "--insecure", "--device", "cpu", "--encrypted-prompts",
                               "2", "--out", str(out), "--json", *extra])


def test_bootstrapped_accuracy_run_stops_and_resumes_per_layer(checkpoint, tmp_path):
    # a zero budget stops after the first layer; what finished is in the report
    res = accuracy(checkpoint, tmp_path / "a", "--refresh", "bootstrap", "--budget-minutes", "0")
    assert res.exit_code == 0, res.output
    first = json.loads((tmp_path / "a").joinpath(next((tmp_path / "a").iterdir()).name, "report.json").read_text())
    e = first["encrypted"]
    assert e["refresh"] == "bootstrap" and e["layers_done"] == 1 and not e["complete"] and e["resumed_at"] == []
    (layer,) = e["per_layer"]
    assert layer["bootstraps"] > 0 and layer["indicator"]["clean"] and layer["precision_bits"] > PRECISION_BITS
    assert "PARTIAL" in (tmp_path / "a" / next((tmp_path / "a").iterdir()).name / "report.md").read_text()

    res = accuracy(checkpoint, tmp_path / "b", "--refresh", "bootstrap")
    assert res.exit_code == 0, res.output
    folder = next((tmp_path / "b").iterdir())
    e = json.loads((folder / "report.json").read_text())["encrypted"]
    assert e["complete"] and e["layers_done"] == e["layers_total"] == 2 and e["resumed_at"] == [1]
    assert [x["layer"] for x in e["per_layer"]] == [0, 1] and e["per_layer"][0] == layer  # kept, not rerun
    assert all(x["commit"] for x in e["per_layer"])  # the code each layer ran
    assert all(x["precision_bits"] > PRECISION_BITS and x["indicator"]["clean"] for x in e["per_layer"])
    assert e["indicator_flagged_layers"] == [] and e["bootstraps"] == sum(x["bootstraps"] for x in e["per_layer"])
    assert e["final"]["stats"]["refresh_round_trips"] == 0 and e["top1_agreement"] is not None
    # the resumed segment's own indicator covers only its block
    assert all(s["stage"].startswith("block 1 ") for s in e["final"]["indicator"]["stages"])
    md = (folder / "report.md").read_text()
    assert "bootstrapping on the server" in md and "resumed at layers 1" in md and "| clean |" in md


def test_client_and_bootstrap_runs_keep_separate_state(checkpoint, tmp_path):
    """A client-refresh run never resumes from a bootstrapped run's state (nor the reverse)."""
    res = accuracy(checkpoint, tmp_path / "a", "--refresh", "bootstrap", "--budget-minutes", "0",
                   "--encrypted-prompts", "1")
    assert res.exit_code == 0, res.output
    res = accuracy(checkpoint, tmp_path / "b", "--refresh", "client", "--encrypted-prompts", "1")
    assert res.exit_code == 0, res.output
    e = json.loads(next((tmp_path / "b").iterdir()).joinpath("report.json").read_text())["encrypted"]
    assert e["refresh"] == "client" and e["resumed_at"] == [] and e["complete"]
    assert all(x["bootstraps"] is None for x in e["per_layer"]) and e["final"]["stats"]["refresh_round_trips"] > 0


def test_refresh_errors_are_one_line(checkpoint, tmp_path):
    res = accuracy(checkpoint, tmp_path, "--refresh", "sometimes")
    assert res.exit_code != 0 and "--refresh must be client or bootstrap" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["bench", "--suite", "accuracy", "--weights", str(checkpoint), "--profile",
                              "tiny-insecure", "--insecure", "--refresh", "bootstrap", "--out", str(tmp_path)])
    assert res.exit_code == 3 and "--refresh bootstrap:" in res.output and "Traceback" not in res.output
    res = accuracy(checkpoint, tmp_path, "--refresh", "client", "--bootstrap-passes", "1")
    assert res.exit_code == 2 and "with --refresh bootstrap only" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["bench", "--suite", "ops", "--bootstrap-passes", "1", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--bootstrap-passes is an option of the accuracy suite" in res.output


def test_the_report_is_current_after_every_layer(checkpoint, tmp_path, monkeypatch):
    """A run killed between layers leaves a report of the layers it finished (the process is not there to
    write one at the end)."""
    from fhectl.bench import accuracy as suite

    seen = []
    real = suite.run_encrypted

    def killed_after_first_layer(*args, on_progress, **kwargs):
        def progress(summary):
            on_progress(summary)
            seen.append(summary["layers_done"])
            raise KeyboardInterrupt  # the session ends here
        return real(*args, on_progress=progress, **kwargs)

    monkeypatch.setattr(suite, "run_encrypted", killed_after_first_layer)
    with pytest.raises(KeyboardInterrupt):
        suite.run_accuracy_report("smollm2-135m", str(checkpoint), load_parameters(
            "tiny-bootstrap-deep-insecure", allow_insecure=True), tmp_path / "out", encrypted_prompts=1,
            refresh="bootstrap")
    (folder,) = (tmp_path / "out").iterdir()
    e = json.loads((folder / "report.json").read_text())["encrypted"]
    assert seen == [1] and e["layers_done"] == 1 and not e["complete"] and e["per_layer"][0]["bootstraps"] > 0
    assert "PARTIAL" in (folder / "report.md").read_text()
