"""Malformed and mutated bodies on every endpoint: at least 500 cases, no 5xx, no traceback in any response,
and the server still serves a real job afterwards.

Mutations are seeded (named generator, reproducible): byte flips concentrated on the header (where the
parsing is), truncations, extensions, splices and random bodies, applied to valid bundles, job inputs and
refresh replies; plus bad paths, ids, query values and headers.
"""

import random
import time

import h11
import httpx
import pytest

from .helpers import KeyHolder

CASES = {"bundle": 140, "job": 140, "reply": 110, "misc": 130}


def mutate(rng: random.Random, data: bytes) -> bytes:
    kind = rng.randrange(6)
    b = bytearray(data)
    if kind == 0:  # flip bytes, mostly in the header
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(min(len(b), 4096)) if rng.random() < 0.8 else rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == 1:  # truncate
        return bytes(b[: rng.randrange(len(b))])
    if kind == 2:  # extend
        return bytes(b) + rng.randbytes(rng.randint(1, 4096))
    if kind == 3:  # splice a random run into the header
        i = rng.randrange(min(len(b), 2048))
        return bytes(b[:i]) + rng.randbytes(rng.randint(1, 64)) + bytes(b[i:])
    if kind == 4:  # random body
        return rng.randbytes(rng.randint(1, 8192))
    return bytes(b[:88]) + b"{" * rng.randint(1, 600)  # a prefix, then junk where the JSON header goes


def check(r: httpx.Response, where: str) -> None:
    assert r.status_code < 500, f"{where}: {r.status_code} {r.text[:300]}"
    assert "Traceback" not in r.text and "File \"" not in r.text, where


@pytest.fixture(scope="module")
def holder(server, tiny_model):
    h = KeyHolder(server.url, tiny_model[0])
    h.upload()
    return h


def _wait_for(holder, job_id, state, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = holder.service.job(holder.token, job_id, wait=5, version=None)
        if job["state"] == state:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job never reached {state}")


def test_mutated_bodies_never_cause_a_server_error(server, holder, tiny_model):
    rng = random.Random("fhectl-service-fuzz")
    base = holder.service.base
    auth = {"Authorization": f"Bearer {holder.token}"}
    http = httpx.Client(timeout=120)
    counted = 0

    thin = KeyHolder(server.url, tiny_model[0], steps=[1])  # a valid, small bundle to mutate
    for _ in range(CASES["bundle"]):
        r = http.post(f"{base}/bundles", content=mutate(rng, thin.bundle))
        check(r, "POST /bundles")
        assert r.status_code in (400, 409, 413), r.text
        counted += 1

    job_input = holder.job_input([3, 17, 5])
    for _ in range(CASES["job"]):
        r = http.post(f"{base}/jobs", content=mutate(rng, job_input), headers=auth)
        check(r, "POST /jobs")
        if r.status_code == 202:  # a mutation that kept a valid job: do not leave it running
            http.delete(f"{base}/jobs/{r.json()['job']['job_id']}", headers=auth)
        counted += 1

    # a real job, held at its first refresh while its reply endpoint is fuzzed
    job = holder.service.submit(holder.token, job_input)
    _wait_for(holder, job["job_id"], "awaiting_refresh")
    index, request = holder.service.refresh_request(holder.token, job["job_id"])
    reply = holder.answer(request)
    for _ in range(CASES["reply"]):
        r = http.put(f"{base}/jobs/{job['job_id']}/refresh/{index}", content=mutate(rng, reply), headers=auth)
        check(r, "PUT refresh")
        assert r.status_code in (400, 404, 409, 413, 422), r.text
        counted += 1
    holder.service.refresh_reply(holder.token, job["job_id"], index, reply)  # the real reply is still taken

    paths = ["/bundles", "/jobs", f"/jobs/{job['job_id']}", f"/jobs/{job['job_id']}/refresh",
             f"/jobs/{job['job_id']}/refresh/{index}", f"/jobs/{job['job_id']}/result", "/models/none", "/health"]
    odd_ids = ["..", "%2e%2e", "a" * 300, "0", "-1", "\u00e9", "x;rm", "%00", "0" * 32]
    for _ in range(CASES["misc"]):
        method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH"])
        path = rng.choice(paths)
        if rng.random() < 0.4:
            path = path.replace(job["job_id"], rng.choice(odd_ids))
        params = rng.choice([{}, {"wait": "-5"}, {"wait": "abc"}, {"wait": "1e308"}, {"version": "x"},
                             {"wait": "0.1", "version": "-3"}, {"wait": "nan"}])
        headers = rng.choice([{}, auth, {"Authorization": "Bearer " + "x" * 5000},
                              {"Authorization": auth["Authorization"], "Content-Length": "99999999999"},
                              {"Content-Type": "application/json"}])
        body = rng.choice([None, b"", b"{}", rng.randbytes(rng.randint(1, 512))])
        try:
            r = http.request(method, base + path, params=params, headers=headers, content=body)
        except (httpx.HTTPError, h11.LocalProtocolError):  # the client refused to send it (inconsistent
            # Content-Length): not a server error
            counted += 1
            continue
        check(r, f"{method} {path}")
        counted += 1

    assert counted >= 500
    final = holder.service.follow(holder.token, job["job_id"], holder.answer)
    assert final  # the fuzzed job still completed
