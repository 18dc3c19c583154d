"""The `ops` suite for fhectl's engine: one CKKS operation at a time, with its precision.

Operation names are shared with ``openfhe_baseline`` so the two columns of a
report line up. Every repeat runs on fresh random inputs (made outside the
timed region); the last result is decrypted and compared with float64.
"""

from __future__ import annotations

import numpy as np

from fhectl.bench.timing import measure
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encryptor import Decryptor, Encryptor
from fhectl.ckks.evaluator import Evaluator
from fhectl.ckks.keys import KeyGenerator
from fhectl.ckks.params import Parameters
from fhectl.ckks.precision import precision_bits

OPS = ("ntt_per_limb", "encode", "encrypt", "hmult_relin", "rescale", "rotate", "hoisted_rotations_8", "decrypt")
HOISTED_STEPS = tuple(range(1, 9))


def time_fhectl_ops(params: Parameters, repeat: int = 5, warmup: int = 1, device: str = "cpu", progress=None) -> dict:
    """Median timings and precision of each operation in ``OPS`` on fhectl's engine."""
    ctx = CKKSContext(params, device=device)
    be = ctx.backend
    kg = KeyGenerator(ctx)
    sk = kg.secret_key()
    pk = kg.public_key(sk)
    rlk = kg.relin_key(sk)
    gk = kg.galois_keys(sk, HOISTED_STEPS)
    enc, dec, ev = Encryptor(ctx, pk), Decryptor(ctx, sk), Evaluator(ctx, rlk, gk)
    rng = np.random.default_rng()  # benchmark data, not key material
    slots = params.slots
    top = params.max_level
    rows = ctx.q_rows(top)
    sync = getattr(be, "synchronize", lambda: None)

    def values():
        # real data: OpenFHE's CKKS contexts are real by default, and the comparison uses the same data kind
        return rng.uniform(-1, 1, slots)

    def pair():
        x, y = values(), values()
        return x, y, enc.encrypt(x), enc.encrypt(y)

    results: dict[str, dict] = {}

    def record(name, timing, prec=None, **extra):
        results[name] = {"timing": timing.as_dict(), "precision_bits": prec, **extra}
        if progress is not None:
            progress(name)

    # per-limb NTT: a forward transform of all L+1 limbs of one polynomial, divided by the limb count
    def ntt_input():
        host = np.stack([rng.integers(0, q, params.ring_degree, dtype=np.uint64) for q in params.moduli_q])[None]
        return be.to_device(host)

    t, _ = measure(lambda a: be.ntt(a, rows), ntt_input, repeat, warmup, sync)
    scaled = {k: (v / len(rows) if k.endswith("_s") else v) for k, v in t.as_dict().items() if k != "samples_s"}
    scaled["samples_s"] = [s / len(rows) for s in t.samples_s]
    results["ntt_per_limb"] = {
        "timing": scaled,
        "precision_bits": None,
        "note": f"one forward NTT of {len(rows)} limbs at N={params.ring_degree}, divided by {len(rows)}",
    }
    if progress is not None:
        progress("ntt_per_limb")

    t, _ = measure(lambda x: enc.encoder.encode(x), values, repeat, warmup, sync)
    record("encode", t)

    state = {}

    def fresh():
        x = values()
        state["x"] = x
        return x

    t, ct = measure(lambda x: enc.encrypt(x), fresh, repeat, warmup, sync)
    record("encrypt", t, precision_bits(dec.decrypt(ct).real, state["x"]))

    def fresh_pair():
        p = pair()
        state["pair"] = p
        return p

    t, prod = measure(lambda p: ev.mul(p[2], p[3]), fresh_pair, repeat, warmup, sync)
    x, y = state["pair"][:2]
    record("hmult_relin", t, precision_bits(dec.decrypt(prod).real, x * y))

    def product():
        p = pair()
        state["pair"] = p
        return ev.mul(p[2], p[3])

    t, res = measure(lambda c: ev.rescale(c), product, repeat, warmup, sync)
    x, y = state["pair"][:2]
    record("rescale", t, precision_bits(dec.decrypt(res).real, x * y))

    t, rot = measure(lambda p: ev.rotate(p[2], 1), fresh_pair, repeat, warmup, sync)
    record("rotate", t, precision_bits(dec.decrypt(rot).real, np.roll(state["pair"][0], -1)))

    t, rots = measure(lambda p: ev.rotate_hoisted(p[2], HOISTED_STEPS), fresh_pair, repeat, warmup, sync)
    x = state["pair"][0]
    record(
        "hoisted_rotations_8",
        t,
        min(precision_bits(dec.decrypt(rots[s]).real, np.roll(x, -s)) for s in HOISTED_STEPS),
        note="steps 1..8 sharing one decomposition",
    )

    def ciphertext():
        x = values()
        state["x"] = x
        return enc.encrypt(x)

    t, out = measure(lambda c: dec.decrypt(c).real, ciphertext, repeat, warmup, sync)
    record("decrypt", t, precision_bits(out, state["x"]))

    sizes = {
        "ciphertext_bytes_top_level": be.nbytes(ct.data),
        "relin_key_bytes": be.nbytes(rlk.data),
        "galois_key_bytes_each": be.nbytes(next(iter(gk.keys.values())).data),
    }
    memory = getattr(be, "memory_report", lambda: None)()
    return {"device": ctx.device, "results": results, "sizes": sizes, "device_memory": memory}
