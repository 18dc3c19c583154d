"""The `ops` suite: one CKKS operation at a time, with its precision, on fhectl's engine and on OpenFHE.

Both implementations describe each operation the same way (``Op``): a setup
that makes fresh random inputs (untimed), the operation (timed), and a check
that decrypts the last result and compares it with float64. Operation names
are shared with ``openfhe_baseline.openfhe_ops`` so the two columns of a
report line up, and ``time_interleaved`` times the two implementations of
each operation in alternating pairs (see ``fhectl.bench.timing.interleave``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from fhectl.bench.timing import Bench, interleave, measure_with_input, ratio_stats
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encryptor import Decryptor, Encryptor
from fhectl.ckks.evaluator import Evaluator
from fhectl.ckks.keys import KeyGenerator
from fhectl.ckks.params import Parameters
from fhectl.ckks.precision import precision_bits

OPS = ("ntt_per_limb", "encode", "encrypt", "hmult_relin", "rescale", "rotate", "hoisted_rotations_8", "decrypt")
HOISTED_STEPS = tuple(range(1, 9))


def _no_check(arg: Any, result: Any) -> None:
    return None


@dataclass
class Op:
    """One operation to time: ``bench`` (setup untimed, run timed), ``check`` -> precision bits of the last run."""

    bench: Bench
    check: Callable[[Any, Any], float | None] = _no_check
    note: str | None = None
    divisor: int = 1  # the timing is reported per 1/divisor of the work (per limb of an NTT)


@dataclass
class OpSet:
    """Every operation of one implementation, with what the report records beside the timings."""

    impl: str
    device: str
    ops: dict[str, Op]
    sizes: dict = field(default_factory=dict)
    memory: Callable[[], Any] = lambda: None  # device memory report, where there is a device
    describe: Callable[[], dict] = dict  # the implementation's own account of its context


def fhectl_ops(params: Parameters, device: str = "cpu") -> OpSet:
    """The operations of ``OPS`` on fhectl's engine; keys are made here, outside anything timed."""
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
    rows = ctx.q_rows(params.max_level)
    sync = be.synchronize

    def values():
        # real data: OpenFHE's CKKS contexts are real by default, and the comparison uses the same data kind
        return rng.uniform(-1, 1, slots)

    def pair():
        x, y = values(), values()
        return x, y, enc.encrypt(x), enc.encrypt(y)

    def ntt_input():
        host = np.stack([rng.integers(0, q, params.ring_degree, dtype=np.uint64) for q in params.moduli_q])[None]
        return be.to_device(host)

    def encrypted():
        x = values()
        return x, enc.encrypt(x)

    def product():
        x, y, cx, cy = pair()
        return x, y, ev.mul(cx, cy)

    def prec(got, want):
        return precision_bits(dec.decrypt(got).real, want)

    ops = {
        "ntt_per_limb": Op(Bench(lambda a: be.ntt(a, rows), ntt_input, sync),
                           note=f"one forward NTT of {len(rows)} limbs at N={params.ring_degree}, divided by "
                                f"{len(rows)}", divisor=len(rows)),
        "encode": Op(Bench(lambda x: enc.encoder.encode(x), values, sync)),
        "encrypt": Op(Bench(lambda x: enc.encrypt(x), values, sync), lambda x, ct: prec(ct, x)),
        "hmult_relin": Op(Bench(lambda p: ev.mul(p[2], p[3]), pair, sync), lambda p, r: prec(r, p[0] * p[1])),
        "rescale": Op(Bench(lambda p: ev.rescale(p[2]), product, sync), lambda p, r: prec(r, p[0] * p[1])),
        "rotate": Op(Bench(lambda p: ev.rotate(p[2], 1), pair, sync), lambda p, r: prec(r, np.roll(p[0], -1))),
        "hoisted_rotations_8": Op(
            Bench(lambda p: ev.rotate_hoisted(p[2], HOISTED_STEPS), pair, sync),
            lambda p, r: min(prec(r[s], np.roll(p[0], -s)) for s in HOISTED_STEPS),
            note="steps 1..8 sharing one decomposition"),
        "decrypt": Op(Bench(lambda p: dec.decrypt(p[1]).real, encrypted, sync),
                      lambda p, out: precision_bits(out, p[0])),
    }
    probe = enc.encrypt(values())
    sizes = {
        "ciphertext_bytes_top_level": be.nbytes(probe.data),
        "relin_key_bytes": be.nbytes(rlk.data),
        "galois_key_bytes_each": be.nbytes(next(iter(gk.keys.values())).data),
    }
    return OpSet("fhectl", ctx.device, ops, sizes, be.memory_report)


def _entry(op: Op, timing, arg, result) -> dict:
    t = timing.scaled(op.divisor) if op.divisor != 1 else timing
    return {"timing": t.as_dict(), "precision_bits": op.check(arg, result), "note": op.note}


def time_ops(opset: OpSet, repeat: int = 5, warmup: int = 1, progress=None) -> dict[str, dict]:
    """Each operation of ``opset`` timed on its own: {name: {"timing", "precision_bits", "note"}}."""
    results = {}
    for name, op in opset.ops.items():
        timing, arg, result = measure_with_input(op.bench.run, op.bench.setup, repeat, warmup, op.bench.sync)
        results[name] = _entry(op, timing, arg, result)
        if progress is not None:
            progress(name)
    return results


def time_interleaved(ours: OpSet, base: OpSet, repeat: int = 5, warmup: int = 1, progress=None) -> dict[str, dict]:
    """Operations present in both sets, timed in alternating pairs.

    Returns {name: {"ours": entry, "base": entry, "ratio": RatioStats dict}};
    the ratio is ours / base per pair (the divisors cancel when both sides
    divide by the same limb count, and are applied per side otherwise).
    """
    results = {}
    for name, op in ours.ops.items():
        other = base.ops.get(name)
        if other is None:
            continue
        (ta, arg_a, res_a), (tb, arg_b, res_b) = interleave(op.bench, other.bench, repeat, warmup)
        a, b = _entry(op, ta, arg_a, res_a), _entry(other, tb, arg_b, res_b)
        ratio = ratio_stats(a["timing"]["samples_s"], b["timing"]["samples_s"])
        results[name] = {"ours": a, "base": b, "ratio": ratio.as_dict()}
        if progress is not None:
            progress(name)
    return results

