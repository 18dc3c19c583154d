"""`fhectl demo`: key generation, encryption, a few homomorphic operations and decryption,
with the precision of each result in bits and its time, on a 128-bit profile."""

from __future__ import annotations

import time

import numpy as np
from rich.table import Table

from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encryptor import Decryptor, Encryptor
from fhectl.ckks.evaluator import Evaluator
from fhectl.ckks.keys import KeyGenerator
from fhectl.ckks.params import load_parameters
from fhectl.ckks.precision import fresh_precision_bits, precision_bits
from fhectl.cli import console
from fhectl.cli.errors import guarded
from fhectl.cli.options import Device, Insecure, Json, Profile


@guarded
def demo(profile: Profile = "n14-128", insecure: Insecure = False, device: Device = "auto", json: Json = False) -> None:
    """Encrypt random data, compute on it, decrypt, and report precision (bits) and time per step."""
    params = load_parameters(profile, allow_insecure=insecure)
    rows = []

    def step(name, fn):
        t0 = time.perf_counter()
        result = fn()
        rows.append({"step": name, "seconds": time.perf_counter() - t0})
        return result

    console.err.print(f"profile {params.name} ({params.describe()['security_bits']}-bit, N={params.ring_degree}, "
                      f"{params.max_level} levels, id {params.params_id})")
    ctx = step("context (tables)", lambda: CKKSContext(params, device=device))
    kg = KeyGenerator(ctx)
    sk = step("secret key", kg.secret_key)
    pk = step("public key", lambda: kg.public_key(sk))
    rlk = step("relinearization key", lambda: kg.relin_key(sk))
    gk = step("Galois keys (rotate by 1)", lambda: kg.galois_keys(sk, [1]))
    enc, dec, ev = Encryptor(ctx, pk), Decryptor(ctx, sk), Evaluator(ctx, rlk, gk)

    rng = np.random.default_rng()  # demo data only, not key material
    x = rng.uniform(-1, 1, params.slots)
    y = rng.uniform(-1, 1, params.slots)
    cx = step("encrypt x", lambda: enc.encrypt(x))
    cy = step("encrypt y", lambda: enc.encrypt(y))
    checks = []

    def check(name, fn, want):
        ct = step(name, fn)
        got = dec.decrypt(ct).real
        rows[-1]["precision_bits"] = precision_bits(got, want)
        rows[-1]["level"] = ct.level
        checks.append(rows[-1])
        return ct

    check("x + y", lambda: ev.add(cx, cy), x + y)
    prod = check("x * y, relinearize, rescale", lambda: ev.rescale(ev.mul(cx, cy)), x * y)
    check("(x * y) * x, rescale", lambda: ev.rescale(ev.mul(prod, cx)), x * y * x)
    check("rotate x by 1", lambda: ev.rotate(cx, 1), np.roll(x, -1))
    check("0.5 * x + 1", lambda: ev.add(ev.rescale(ev.mul(cx, 0.5)), 1.0), 0.5 * x + 1)

    result = {
        "profile": params.describe(),
        "device": ctx.device,
        "fresh_precision_bound_bits": fresh_precision_bits(params),
        "steps": rows,
    }
    if json:
        console.print_json(result)
        return
    table = Table(title=f"fhectl demo: {params.name} on {ctx.device}")
    table.add_column("step")
    table.add_column("time", justify="right")
    table.add_column("level", justify="right")
    table.add_column("precision (bits)", justify="right")
    for r in rows:
        prec = f"{r['precision_bits']:.1f}" if "precision_bits" in r else ""
        table.add_row(r["step"], f"{r['seconds'] * 1e3:.1f} ms", str(r.get("level", "")), prec)
    console.out.print(table)
    console.out.print(
        f"precision = -log2(max |error|) over {params.slots} slots against float64; "
        f"a fresh encryption is predicted to reach >= {fresh_precision_bits(params):.1f} bits"
    )
