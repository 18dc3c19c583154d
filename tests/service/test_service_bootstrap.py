"""`fhectl serve --refresh bootstrap`: the server bootstraps with the bundle's public keys and a job runs its
blocks with zero round trips; the key holder reads the range indicator with the outputs, as a local
bootstrapped run does.

A real server process on 127.0.0.1 serving the tiny Llama's first block at the insecure N = 2^10 profile
tiny-bootstrap-deep-insecure (its dense-secret circuit needs no encapsulation keys); the encapsulated, two-pass
circuit of boot-n16-128 runs end to end at tiny-boot-encap-insecure (its chain at N = 2^10), and its bundle
rules and key format are checked too (``check_bundle_covers``, tests/io/test_io_truncated_keys.py). Measured: 16 bootstraps per block, the remote logits equal to the local
bootstrapped run's within 1e-3 of their scale (both are ~10 bits from float64), the same top-1 token.
"""

import json

import numpy as np
import pytest

from fhectl.ckks.bootstrap import rotation_levels
from fhectl.ckks.params import load_parameters
from fhectl.circuits.bootstrap_refresh import bootstrap_config
from fhectl.circuits.range_indicator import ACCUMULATOR_LEVEL
from fhectl.errors import DomainError, FormatError
from fhectl.io.container import read_container, unbundle_containers
from fhectl.llama.inference import RunResult
from fhectl.service.client import RemoteError, ServiceClient
from fhectl.service.models import check_bundle_covers
from fhectl.service.remote_llama import RemoteLlama
from fhectl.service.wire import JobResult

from .conftest import MODEL, ServerProcess
from .helpers import ONE_THREAD, KeyHolder, local_run

PROFILE = "tiny-bootstrap-deep-insecure"
PROMPTS = [[3, 17, 5, 9], [7, 7, 41]]

pytestmark = pytest.mark.usefixtures("single_numba_thread")


@pytest.fixture(scope="module")
def boot_server(tiny_checkpoint, service_cache, tmp_path_factory):
    root = tmp_path_factory.mktemp("boot-server")
    srv = ServerProcess(tiny_checkpoint, root / "store", service_cache, "--refresh", "bootstrap", "--layers", "1",
                        "--workers", "1", "--max-bundle-mib", "256", profile=PROFILE, env=ONE_THREAD).start()
    yield srv
    assert srv.stop() == 0, srv.log.read_text()[-2000:]


@pytest.fixture(scope="module")
def remote(boot_server, tiny_model):
    service = ServiceClient(boot_server.url)

    def no_refresh(*args, **kwargs):  # the client never fetches a refresh request of a bootstrapped job
        raise AssertionError("a bootstrapped job asked for a refresh")

    service.refresh_request = no_refresh
    engine = RemoteLlama(service, MODEL, tiny_model[0], allow_insecure=True)
    yield engine
    engine.close()
    service.close()


def test_the_server_publishes_bootstrapping(boot_server):
    info = ServiceClient(boot_server.url).model(MODEL)
    assert info["refresh"] == "bootstrap" and info["round_trips_per_block"] == 0 and info["conjugation"]
    assert info["encrypted_layers"] == 1 and info["profile"] == PROFILE
    assert info["encapsulation_weight"] is None  # the dense-secret circuit of the tiny profile
    boot = info["bootstrap"]
    assert boot["bootstraps_per_block"] > 0 and boot["refresh_level"] == boot["output_level"] - 1
    # the levels the keys may be truncated to, all below the top: the bootstrapper's steps at the levels its
    # transforms rotate at (above any block's), the other (the blocks' own) at most at the level a refresh gives
    params = load_parameters(PROFILE, allow_insecure=True)
    levels = dict(info["key_levels"])
    assert levels and all(lvl < params.max_level for lvl in levels.values())
    assert set(levels) <= {s % params.slots for s in info["rotation_steps"]}
    boot_levels = {s % params.slots: lvl for s, lvl in rotation_levels(params, bootstrap_config(params)).items()}
    assert any(lvl < params.max_level for lvl in boot_levels.values())
    assert all(levels[s] == lvl for s, lvl in boot_levels.items() if lvl < params.max_level)
    assert all(lvl <= boot["output_level"] for s, lvl in levels.items() if s not in boot_levels)


def test_remote_bootstrapped_run_matches_the_local_one(remote, boot_server, tiny_checkpoint, service_cache, tmp_path):
    logits, result = remote.run(PROMPTS)
    # zero round trips: none counted here, none in the server's job record, no refresh file in its store
    assert result.refresh == "bootstrap" and result.stats.refresh_round_trips == 0
    jobs = [json.loads(p.read_text()) for p in (boot_server.store / "jobs").glob("*/record.json")]
    assert jobs and all(j["refresh_index"] == 0 and j["stats"]["round_trips"] == 0 for j in jobs)
    assert not list(boot_server.store.rglob("refresh-*"))
    # the indicator was read here, as the local run reads it
    assert result.indicator["clean"] and result.indicator["stages"]
    assert result.indicator["summary"].startswith("range indicator: clean")
    assert result.galois_keys["truncated"] > 0

    local_logits, local = local_run(tiny_checkpoint, service_cache, tmp_path, PROMPTS, profile=PROFILE, layers=1,
                                    max_tokens=remote.info["max_tokens"], refresh="bootstrap")
    assert local["refresh"] == "bootstrap"
    # the same circuits made the same bootstraps at the same levels, and the indicator saw the same stages
    assert result.bootstrap["bootstraps"] == local["bootstrap"]["bootstraps"] > 0
    assert result.bootstrap["by_stage"] == local["bootstrap"]["by_stage"]
    assert result.bootstrap["levels"] == local["bootstrap"]["levels"]
    assert [s["stage"] for s in result.indicator["stages"]] == [s["stage"] for s in local["indicator"]["stages"]]
    for got, want, p, q in zip(logits, local_logits, result.prompts, local["prompts"]):
        assert int(np.argmax(got)) == int(np.argmax(want)) == q["encrypted_next"] and p.top1_agrees
        assert np.max(np.abs(got - want)) < 1e-2 * np.max(np.abs(want))  # both within bootstrapping's error
        assert p.kl < 1e-3 and q["kl"] < 1e-3


def test_the_bundle_holds_the_bootstrapping_keys_and_nothing_secret(remote, boot_server):
    stored = boot_server.store / "bundles" / remote.client.sk.key_id / "bundle.fhe"
    members = unbundle_containers(read_container(stored))
    assert {c.kind for c in members.values()} == {"public-key", "relin-key", "galois-keys"}
    galois = members["galois-keys"].meta
    levels = [lvl for lvl in galois["max_levels"] if lvl is not None]
    assert levels and len(levels) < len(galois["elements"])  # the bootstrapper's keys stay full
    assert 2 * remote.params.ring_degree - 1 in galois["elements"]  # conjugation


def test_an_out_of_domain_reading_is_a_domain_error_on_the_client(remote):
    """The server's indicator sums read above their count: DomainError with the local run's message, or the
    verdict only, with out_of_domain="report"."""
    slots = remote.params.slots
    ct = remote.client.encryptor.encrypt(np.full(slots, 5.0), level=ACCUMULATOR_LEVEL)
    got = JobResult(ct, 1.0, {}, {"softmax": (ct, 2, 0.01)}, 4, {"bootstraps": 0})
    result = RunResult(1, 2)
    with pytest.raises(DomainError, match="range indicator: OUT OF DOMAIN at softmax .*--allow-out-of-domain"):
        remote._read_indicator(got, result, "raise")
    remote._read_indicator(got, result, "report")
    assert not result.indicator["clean"] and result.indicator["flagged"] == ["softmax"]
    with pytest.raises(FormatError, match="no range indicator"):
        remote._read_indicator(JobResult(ct, 1.0, {}), result, "raise")


def test_infer_with_a_bootstrapping_server(boot_server, tiny_checkpoint, tmp_path, monkeypatch, service_cache):
    from typer.testing import CliRunner

    from fhectl.cli.main import app

    monkeypatch.setenv("XDG_CACHE_HOME", str(service_cache))
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Hello world")
    common = ["infer", str(prompt), "--model", "smollm2-135m", "--weights", str(tiny_checkpoint), "--insecure",
              "--device", "cpu", "--max-new-tokens", "1", "--server", boot_server.url]
    runner = CliRunner()
    res = runner.invoke(app, [*common, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["refresh"] == "bootstrap" and data["indicator_clean"] is True
    (step,) = data["steps"]
    assert step["stats"]["refresh_round_trips"] == 0 and step["bootstrap"]["bootstraps"] > 0
    assert data["continuation"] == data["reference_continuation"]
    res = runner.invoke(app, common)  # the report a local bootstrapped run prints
    assert res.exit_code == 0, res.output
    assert "bootstrapping refresh:" in res.stderr and "0 round trips" in res.stderr
    assert "range indicator: clean" in res.stderr and "Galois keys made for the blocks' levels only" in res.stderr
    res = runner.invoke(app, [*common, "--refresh", "client"])  # the server decides: one line, before any key
    assert res.exit_code == 2 and "--refresh client: the server at" in res.output and "bootstraps" in res.output
    assert "Traceback" not in res.output


def test_bundles_without_the_bootstrapping_keys_are_refused(boot_server, tiny_model):
    """One clear 400 line: no conjugation key, or the blocks' keys truncated below the levels they run at."""
    holder = KeyHolder(boot_server.url, tiny_model[0], steps=ServiceClient(boot_server.url).model(MODEL)[
        "rotation_steps"])  # full Galois keys for every step, but no conjugation key
    with pytest.raises(RemoteError, match="key bundle lacks the conjugation key bootstrapping needs$") as exc:
        holder.upload()
    assert exc.value.status == 400


def test_an_input_below_the_blocks_starting_level_is_refused(boot_server, tiny_model):
    from fhectl.service.wire import encode_job_input

    holder = KeyHolder(boot_server.url, tiny_model[0])
    holder.upload()
    start = holder.info["bootstrap"]["refresh_level"]
    (h,) = holder.client.encrypt_hidden(holder.layout, holder.model.embed([3, 4]), level=start - 1)
    with pytest.raises(RemoteError, match=f"start at level {start}") as exc:
        holder.service.submit(holder.token, encode_job_input(holder.ctx, h, model=MODEL, segments=[2], layers=1))
    assert exc.value.status == 400
    holder.service.delete_bundle(holder.token)


def test_truncated_keys_below_the_model_levels_are_refused(boot_server, tiny_model):
    from fhectl.ckks.context import CKKSContext
    from fhectl.circuits.refresh import Client
    from fhectl.service.remote_llama import parameters_of, public_bundle

    service = ServiceClient(boot_server.url)
    info = service.model(MODEL)
    ctx = CKKSContext(parameters_of(info, allow_insecure=True))
    (step, level), *_ = [p for p in info["key_levels"] if p[1] > 0]
    client = Client(ctx, info["rotation_steps"], conjugation=True, key_levels={step: level - 1})
    with pytest.raises(RemoteError, match="truncated below the levels it uses them at") as exc:
        service.upload_bundle(public_bundle(client))
    assert exc.value.status == 400


ENCAPSULATING = {"ring_degree": 1024, "rotation_steps": [1], "key_levels": [], "conjugation": True,
                 "encapsulation_weight": 32}  # what a server at boot-n16-128 states, on a small ring


def test_a_bundle_without_encapsulation_keys_is_refused_where_the_circuit_encapsulates():
    elements = [5, 2047]  # rotation by 1 and conjugation at N = 2^10
    with pytest.raises(FormatError, match="lacks the encapsulation keys the served model's bootstrapping needs"):
        check_bundle_covers(ENCAPSULATING, elements, {}, None)
    with pytest.raises(FormatError, match="weight 16"):
        check_bundle_covers(ENCAPSULATING, elements, {}, 16)
    check_bundle_covers(ENCAPSULATING, elements, {}, 32)
    with pytest.raises(FormatError, match="truncated below"):  # a step not listed needs a full key
        check_bundle_covers(ENCAPSULATING, elements, {5: 3}, 32)
    check_bundle_covers({**ENCAPSULATING, "encapsulation_weight": None, "conjugation": False}, [5], {}, None)


def test_serve_refuses_bootstrap_on_a_profile_that_cannot_before_the_model_loads(tmp_path):
    from typer.testing import CliRunner

    from fhectl.cli.main import app

    res = CliRunner().invoke(app, ["serve", "--model", "never-loaded", "--weights", str(tmp_path / "absent"),
                                   "--profile", "tiny-deep-insecure", "--insecure", "--refresh", "bootstrap",
                                   "--port", "0", "--store", str(tmp_path / "store")])
    assert res.exit_code == 3, res.output
    (line,) = [x for x in res.output.splitlines() if x.startswith("error:")]
    assert line.startswith("error: --refresh bootstrap: profile tiny-deep-insecure") and "Traceback" not in res.output


def test_an_encapsulating_server_end_to_end(tiny_checkpoint, tiny_model, service_cache, tmp_path):
    """At tiny-boot-encap-insecure (boot-n16-128's chain and circuit at N = 2^10) the served bootstrapping
    encapsulates: the bundle carries the encapsulation keys, the server builds the two-pass bootstrapper from
    them, and a job still makes zero round trips with a clean indicator and the float64 model's next tokens."""
    srv = ServerProcess(tiny_checkpoint, tmp_path / "store", service_cache, "--refresh", "bootstrap", "--layers",
                        "1", "--workers", "1", "--max-bundle-mib", "256", profile="tiny-boot-encap-insecure",
                        env=ONE_THREAD).start()
    try:
        service = ServiceClient(srv.url)
        assert service.model(MODEL)["encapsulation_weight"] == 32
        engine = RemoteLlama(service, MODEL, tiny_model[0], allow_insecure=True)
        try:
            stored = srv.store / "bundles" / engine.client.sk.key_id / "bundle.fhe"
            assert "encapsulation-keys" in unbundle_containers(read_container(stored))
            _, result = engine.run(PROMPTS)
        finally:
            engine.close()
            service.close()
        assert result.refresh == "bootstrap" and result.stats.refresh_round_trips == 0
        assert result.indicator["clean"] and all(p.top1_agrees for p in result.prompts)
    finally:
        assert srv.stop() == 0, srv.log.read_text()[-2000:]
