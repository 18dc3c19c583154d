"""Server and client in two processes: encrypted inference over HTTP gives the local run's results, and the
server never receives secret material."""

import numpy as np
import pytest

from fhectl.ckks.params import load_parameters
from fhectl.io.container import read_container, read_header, unbundle_containers
from fhectl.llama.inference import EncryptedLlama
from fhectl.llama.pipeline import calibrated_domains
from fhectl.service.client import ServiceClient
from fhectl.service.remote_llama import RemoteLlama

from .conftest import MODEL, PROFILE

PROMPTS = [[3, 17, 5, 9], [7, 7, 41]]


@pytest.fixture(scope="module")
def remote(server, tiny_model):
    service = ServiceClient(server.url)
    engine = RemoteLlama(service, MODEL, tiny_model[0], allow_insecure=True)
    yield engine
    engine.close()
    service.close()


def test_health_and_model_listing(server):
    service = ServiceClient(server.url)
    assert service.health()["status"] == "ok"
    (info,) = service.models()
    assert info["name"] == MODEL and info["encrypted_layers"] == info["n_layer"] == 2
    assert info["profile"] == PROFILE and info["refresh"] == "client" and info["rotation_steps"]


def test_remote_run_matches_the_local_run(remote, tiny_model, monkeypatch, service_cache):
    monkeypatch.setenv("XDG_CACHE_HOME", str(service_cache))
    weights, tok = tiny_model
    logits, result = remote.run(PROMPTS)
    domains, _ = calibrated_domains(weights, tok)
    local = EncryptedLlama(weights, load_parameters(PROFILE, allow_insecure=True), domains, 2,
                           max_tokens=remote.info["max_tokens"])
    local_logits, local_result = local.run(PROMPTS)
    for got, want in zip(logits, local_logits):
        assert int(np.argmax(got)) == int(np.argmax(want))
        assert np.max(np.abs(got - want)) < 1e-2 * np.max(np.abs(want))  # both within CKKS noise of the reference
    assert all(p.top1_agrees for p in result.prompts)
    # the same circuits made the same round trips, now over HTTP
    assert result.stats.refresh_round_trips == local_result.stats.refresh_round_trips > 0


def test_the_server_holds_no_secret_material(remote, server):
    stored = server.store / "bundles" / remote.client.sk.key_id / "bundle.fhe"
    assert stored.stat().st_size == remote.bundle_bytes  # what the client streamed, as it arrived
    members = unbundle_containers(read_container(stored))
    assert {c.kind for c in members.values()} == {"public-key", "relin-key", "galois-keys"}
    kinds = {read_header(p).kind for p in server.store.rglob("*.fhe")}
    assert kinds and "secret-key" not in kinds
    assert kinds <= {"keyset-public", "ciphertext", "refresh-request", "refresh-reply"}


def test_infer_with_server_matches_the_local_infer(server, tiny_checkpoint, tmp_path, monkeypatch, service_cache):
    import json

    from typer.testing import CliRunner

    from fhectl.cli.main import app

    monkeypatch.setenv("XDG_CACHE_HOME", str(service_cache))
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Hello world")
    common = ["infer", str(prompt), "--model", "smollm2-135m", "--weights", str(tiny_checkpoint), "--insecure",
              "--device", "cpu", "--max-new-tokens", "1", "--json"]
    runner = CliRunner()
    remote = runner.invoke(app, [*common, "--server", server.url])
    assert remote.exit_code == 0, remote.output
    local = runner.invoke(app, [*common, "--profile", PROFILE, "--layers", "2"])
    assert local.exit_code == 0, local.output
    got, want = json.loads(remote.stdout), json.loads(local.stdout)
    assert got["continuation"] == want["continuation"] == want["reference_continuation"]
    assert got["encrypted_layers"] == 2 and got["top1_agreement"] == 1.0
    # refused before any work: the server decides the encrypted blocks, and GPT-2 is not served
    res = runner.invoke(app, [*common, "--server", server.url, "--layers", "1"])
    assert res.exit_code == 2 and "drop --layers" in res.output
    res = runner.invoke(app, ["infer", str(prompt), "--server", server.url])
    assert res.exit_code == 2 and "not served" in res.output
    res = runner.invoke(app, [*common, "--server", "http://127.0.0.1:9"])
    assert res.exit_code == 9 and "cannot reach" in res.output


def test_a_port_in_use_is_one_error_before_the_model_loads(tmp_path):
    import socket

    from typer.testing import CliRunner

    from fhectl.cli.main import app

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = CliRunner().invoke(app, ["serve", "--model", "not-loaded", "--port", str(port), "--store",
                                       str(tmp_path / "store")])
    assert res.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in res.output
    assert "loading model" not in res.output and "Traceback" not in res.output


def test_an_unusable_store_is_one_error_before_the_model_loads(tmp_path):
    from typer.testing import CliRunner

    from fhectl.cli.main import app

    a_file = tmp_path / "store"
    a_file.write_text("not a folder")
    res = CliRunner().invoke(app, ["serve", "--model", "never-loaded", "--weights", str(tmp_path / "absent"),
                                   "--port", "0", "--store", str(a_file)])
    assert res.exit_code == 2 and "cannot use it as the server's store folder" in res.output
    assert "Traceback" not in res.output
