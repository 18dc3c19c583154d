"""Bearer tokens bound to bundles: no client can use, read or delete another's bundle or jobs; bundles with
secret material, for other parameters, or registered already are refused."""

import time

import httpx
import pytest

from fhectl.io.container import Container, bundle_containers, decode_container, encode_container, unbundle_containers
from fhectl.io.objects import secret_key_to_container
from fhectl.service.client import RemoteError

from .helpers import KeyHolder


@pytest.fixture(scope="module")
def alice(server, tiny_model):
    holder = KeyHolder(server.url, tiny_model[0])
    holder.upload()
    return holder


@pytest.fixture(scope="module")
def bob(server, tiny_model):
    holder = KeyHolder(server.url, tiny_model[0])
    holder.upload()
    return holder


def _status(exc_info) -> int:
    return exc_info.value.status


def test_the_token_is_bound_to_its_bundle_and_stored_hashed(alice, server):
    key_id = alice.client.sk.key_id
    assert alice.token.startswith(key_id + ".")
    record = (server.store / "bundles" / key_id / "record.json").read_text()
    assert alice.token.split(".", 1)[1] not in record and "token_sha256" in record


def test_another_bundles_token_cannot_see_use_or_delete_a_job(alice, bob):
    job = alice.service.submit(alice.token, alice.job_input([3, 17, 5]))
    job_id = job["job_id"]
    for call in (lambda: bob.service.job(bob.token, job_id),
                 lambda: bob.service.refresh_request(bob.token, job_id),
                 lambda: bob.service.refresh_reply(bob.token, job_id, 1, b"x" * 100),
                 lambda: bob.service.result(bob.token, job_id),
                 lambda: bob.service.cancel(bob.token, job_id)):
        with pytest.raises(RemoteError) as info:
            call()
        assert _status(info) == 404  # not told apart from a job that does not exist
    # a job encrypted under Alice's key cannot be submitted with Bob's token either
    with pytest.raises(RemoteError) as info:
        bob.service.submit(bob.token, alice.job_input([3, 17, 5]))
    assert _status(info) == 400
    # nor can Bob delete Alice's bundle
    r = httpx.delete(f"{bob.service.base}/bundles/{alice.client.sk.key_id}",
                     headers={"Authorization": f"Bearer {bob.token}"})
    assert r.status_code == 404
    alice.service.cancel(alice.token, job_id)  # a running job stops at its next refresh request
    deadline = time.monotonic() + 300
    while alice.service.job(alice.token, job_id)["state"] != "cancelled" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alice.service.job(alice.token, job_id)["state"] == "cancelled"


def test_missing_malformed_or_wrong_tokens_are_refused(alice):
    base = alice.service.base
    key_id = alice.client.sk.key_id
    for header in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"},
                   {"Authorization": f"Bearer {key_id}"}, {"Authorization": "Bearer ../../etc.passwd0123456789abcdef"}):
        assert httpx.get(f"{base}/jobs/0123456789abcdef", headers=header).status_code == 401
    wrong = f"{key_id}.{'A' * 43}"
    assert httpx.get(f"{base}/jobs/0123456789abcdef", headers={"Authorization": f"Bearer {wrong}"}).status_code == 404


def test_a_bundle_with_secret_material_is_refused(alice, server):
    members = unbundle_containers(decode_container(alice.bundle))
    members["secret-key"] = secret_key_to_container(alice.client.sk, None)
    leaky = bundle_containers("keyset-public", members, params_id=alice.ctx.params_id,
                              key_id=alice.client.sk.key_id, meta={})
    r = httpx.post(f"{alice.service.base}/bundles", content=encode_container(leaky))
    assert r.status_code == 400 and "secret" in r.json()["error"]
    # the refused upload left nothing behind
    assert not any("secret" in p.name for p in server.store.rglob("*"))
    assert not list((server.store / "incoming").iterdir())


def test_bundles_are_content_addressed_and_checked(alice):
    with pytest.raises(RemoteError) as info:
        alice.service.upload_bundle(alice.bundle)  # the same key id again
    assert _status(info) == 409
    c = decode_container(alice.bundle)
    foreign = Container(c.kind, "0" * 16, "k" * 16, None, c.meta, c.arrays)
    with pytest.raises(RemoteError) as info:
        alice.service.upload_bundle(encode_container(foreign))
    assert _status(info) == 400


def test_a_bundle_without_the_models_galois_keys_is_refused(server, tiny_model):
    thin = KeyHolder(server.url, tiny_model[0], steps=[1])
    with pytest.raises(RemoteError, match="Galois keys") as info:
        thin.upload()
    assert _status(info) == 400
