"""The job result of a bootstrapped job on the wire: the output, the range indicator's public state and the
bootstrapping statistics round-trip, and every forged field is one FormatError or KeyMismatchError."""

import dataclasses

import numpy as np
import pytest

from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encryptor import Decryptor, Encryptor
from fhectl.ckks.keys import KeyGenerator
from fhectl.ckks.params import load_parameters
from fhectl.ckks.sampling import SeededRandom
from fhectl.circuits.bootstrap_refresh import BootstrapStats
from fhectl.circuits.range_indicator import read_indicators
from fhectl.errors import FormatError, KeyMismatchError
from fhectl.io.container import decode_container, encode_container
from fhectl.service.wire import decode_result, encode_result, read_result


@pytest.fixture(scope="module")
def kit():
    params = load_parameters("tiny-insecure", allow_insecure=True)
    ctx = CKKSContext(params)
    kg = KeyGenerator(ctx, SeededRandom("tests/service/result-wire"))
    sk = kg.secret_key()
    enc = Encryptor(ctx, kg.public_key(sk), SeededRandom("tests/service/result-wire/enc"))
    return ctx, sk, enc, Decryptor(ctx, sk)


def _result(kit) -> bytes:
    ctx, sk, enc, dec = kit
    slots = ctx.params.slots
    out = enc.encrypt(np.linspace(-1, 1, slots), level=3)
    state = {"block 0 softmax": (enc.encrypt(np.full(slots, 0.5), level=1), 2, 0.01),
             "block 0 silu": (enc.encrypt(np.full(slots, 0.25), level=1), 4, 2.0**-10)}
    stats = BootstrapStats()
    stats.record("softmax", [2], 5, [3], 0.5)
    stats.record("silu", [1, 2], 5, [0, 1], 0.25)  # a pair
    return encode_result(ctx, out, 4.0, {"round_trips": 0}, indicator=state, squarings=4, bootstrap=stats.as_dict())


def test_a_bootstrapped_result_round_trips(kit):
    ctx, sk, enc, dec = kit
    got = read_result(ctx, _result(kit), sk.key_id)
    assert got.stream_scale == 4.0 and got.squarings == 4 and got.bootstrap["bootstraps"] == 2
    assert got.bootstrap["paired"] == 1 and got.bootstrap["levels"]["silu"]["in"] == [1, 2]
    assert {k: (v[1], v[2]) for k, v in got.indicator.items()} == {"block 0 softmax": (2, 0.01),
                                                                   "block 0 silu": (4, 2.0**-10)}
    verdict = read_indicators(got.indicator, dec, ctx.params.slots, got.squarings)
    assert verdict.clean and [s.max_value for s in verdict.stages] == pytest.approx([0.5, 0.25], abs=1e-6)
    ct, scale, stats = decode_result(ctx, _result(kit), sk.key_id)  # the client-refresh reader still works
    assert scale == 4.0 and stats == {"round_trips": 0}


def test_a_client_refresh_result_has_no_indicator(kit):
    ctx, sk, enc, dec = kit
    got = read_result(ctx, encode_result(ctx, enc.encrypt(np.zeros(4)), 1.0, {}), sk.key_id)
    assert got.indicator is None and got.bootstrap is None and got.squarings is None


def _forged(kit, edit) -> bytes:
    c = decode_container(_result(kit))
    meta = {k: (dict(v) if isinstance(v, dict) else v) for k, v in c.meta.items()}
    meta["indicator"] = {**meta["indicator"], "stages": [dict(s) for s in meta["indicator"]["stages"]]}
    meta["bootstrap"] = dict(meta["bootstrap"])
    arrays = dict(c.arrays)
    c = dataclasses.replace(c, meta=meta, arrays=arrays)
    edit(c)  # in place
    return encode_container(c)


def _stage(field, value):
    def edit(c):
        c.meta["indicator"]["stages"][0][field] = value
    return edit


FORGERIES = {
    "count 0": (_stage("count", 0), "observation count"),
    "count huge": (_stage("count", 1 << 40), "observation count"),
    "count bool": (_stage("count", True), "observation count"),
    "tolerance inf": (_stage("tolerance", float.hex(float("inf"))), "tolerance"),
    "tolerance nan": (_stage("tolerance", "nan"), "tolerance"),
    "tolerance negative": (_stage("tolerance", float.hex(-1.0)), "tolerance"),
    "tolerance not hex": (_stage("tolerance", 0.01), "tolerance"),
    "stage empty": (_stage("stage", ""), "stage"),
    "stage twice": (_stage("stage", "block 0 silu"), "distinct"),
    "level beyond chain": (_stage("level", 99), "level"),
    "level mismatch": (_stage("level", 2), "shape"),
    "squarings 0": (lambda c: c.meta["indicator"].update(squarings=0), "squarings"),
    "stages not a list": (lambda c: c.meta["indicator"].update(stages={}), "stages"),
    "indicator array missing": (lambda c: c.arrays.pop("indicator/1"), "arrays"),
    "stray array": (lambda c: c.arrays.update({"extra": np.zeros(2, np.uint64)}), "arrays"),
    "residues unreduced": (lambda c: c.arrays.update({"indicator/0": np.full_like(c.arrays["indicator/0"], 2**63)}),
                           "not reduced"),
    "bootstrap missing": (lambda c: c.meta.pop("bootstrap"), "both"),
    "indicator missing": (lambda c: (c.meta.pop("indicator"), c.arrays.pop("indicator/0"),
                                     c.arrays.pop("indicator/1")), "both"),
    "bootstraps negative": (lambda c: c.meta["bootstrap"].update(bootstraps=-1), "bootstraps"),
    "by_stage sum": (lambda c: c.meta["bootstrap"].update(bootstraps=3), "bootstraps|by_stage"),
    "seconds negative": (lambda c: c.meta["bootstrap"].update(seconds_by_stage={"softmax": -1.0, "silu": "0.1"}),
                    "seconds"),
    "levels garbage": (lambda c: c.meta["bootstrap"].update(levels={"softmax": 1, "silu": 2}), "levels"),
    "more pairs than bootstraps": (lambda c: c.meta["bootstrap"].update(paired=3), "paired"),
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_a_forged_result_is_one_format_error(kit, name):
    ctx, sk, enc, dec = kit
    edit, match = FORGERIES[name]
    with pytest.raises(FormatError, match=match):
        read_result(ctx, _forged(kit, edit), sk.key_id)


def test_a_result_under_another_key_or_parameter_set_is_refused(kit):
    ctx, sk, enc, dec = kit
    data = _result(kit)
    with pytest.raises(KeyMismatchError, match="key"):
        read_result(ctx, data, "k-000000000000")
    other = CKKSContext(load_parameters("tiny-deep-insecure", allow_insecure=True))
    with pytest.raises(KeyMismatchError, match="parameters"):
        read_result(other, data, sk.key_id)
    c = decode_container(data)  # an indicator under another key than the output
    with pytest.raises(KeyMismatchError):
        read_result(ctx, encode_container(dataclasses.replace(c, key_id="k-000000000000")), sk.key_id)
