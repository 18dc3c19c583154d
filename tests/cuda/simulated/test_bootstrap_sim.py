"""The backend-facing steps of bootstrapping (fhectl.ckks.bootstrap) on the CUDA simulator, against the CPU.

ModRaise reads residues back from the backend and writes raised ones to it, and the BSGS linear transform
accumulates plaintext products with ``mul_accumulate`` on limb views (double-hoisted: over Q_l P, then one
ModDown per giant step); everything else in bootstrapping is
evaluator calls that tests/cuda/simulated/test_backend_sim.py already runs on the simulator. A whole
bootstrapping (about two thousand kernel launches over 16 levels) is too slow to simulate; these two
steps at N = 32, with the same keys and randomness on both backends, must give bit-identical ciphertexts; so
must sparse-secret encapsulation's two key switches (fhectl.ckks.encapsulation), whose level-0 switch uses
one special prime through its own ModUp and ModDown.
"""

import numpy as np

from fhectl.ckks.backend_cuda import CudaBackend, LaunchConfig
from fhectl.ckks import encapsulation
from fhectl.ckks.bootstrap import DiagonalTransform, mod_raise, slots_to_coeffs_diagonals
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encryptor import Decryptor, Encryptor
from fhectl.ckks.evaluator import Evaluator
from fhectl.ckks.keys import KeyGenerator
from fhectl.ckks.params import Parameters, ParametersLiteral
from fhectl.ckks.precision import precision_bits
from fhectl.ckks.sampling import SeededRandom

TINY = LaunchConfig(threads=8, max_blocks_x=2, max_blocks_y=3, ntt_threads=4, ntt_pass_bits=3, ntt_columns=2)


def _run(device: str):
    lit = ParametersLiteral(log_n=5, scale_bits=30, first_mod_bits=40, levels=2, dnum=1, special_mod_bits=40,
                            security="none")
    params = Parameters.from_literal(lit, allow_insecure=True)
    if device == "cuda":
        ctx = CKKSContext(params, backend_factory=lambda tables: CudaBackend(tables, TINY))
    else:
        ctx = CKKSContext(params, device="cpu")
    kg = KeyGenerator(ctx, SeededRandom("tests/cuda/bootstrap/keys"))
    sk = kg.secret_key()
    # a transform of one FFT group (the last of SlotsToCoeffs at budget 2): few rotations
    transform = DiagonalTransform(slots_to_coeffs_diagonals(params.ring_degree, 2)[1], params.slots)
    # the sparse-slot circuit's kind: diagonals of period 8 on slots that repeat with period 8 (tiled plaintexts)
    sparse = DiagonalTransform(slots_to_coeffs_diagonals(params.ring_degree // 2, 2)[1], params.slots // 2)
    steps = sorted(set(transform.rotation_steps()) | set(sparse.rotation_steps()))
    ev = Evaluator(ctx, kg.relin_key(sk), kg.galois_keys(sk, steps, conjugation=True))
    enc = Encryptor(ctx, kg.public_key(sk), SeededRandom("tests/cuda/bootstrap/enc"))
    dec = Decryptor(ctx, sk)
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, params.slots) + 1j * rng.uniform(-1, 1, params.slots)
    raised = mod_raise(ctx, ev.drop_level(enc.encrypt(x), 0))
    keys = encapsulation.generate(kg, sk, weight=4)
    switched = encapsulation.to_dense(ctx, mod_raise(ctx, encapsulation.to_sparse(ctx, ev.drop_level(enc.encrypt(x), 0),
                                                                                   keys)), keys)
    mapped = transform.evaluate(ev, enc.encrypt(x), params.scale, primes=1)
    half = np.tile(x[:params.slots // 2], 2)
    sparse_mapped = sparse.evaluate(ev, enc.encrypt(half), params.scale, primes=1)
    host = ctx.backend.to_host
    return (host(raised.data), dec.decrypt_coefficients(raised), host(mapped.data), dec.decrypt(mapped),
            transform.eval_plain(x), dec.decrypt_coefficients(ev.drop_level(enc.encrypt(x), 0)), params,
            host(switched.data), dec.decrypt_coefficients(switched), host(sparse_mapped.data),
            dec.decrypt(sparse_mapped), np.tile(sparse.eval_plain(x[:params.slots // 2]), 2))


def test_mod_raise_and_linear_transform_match_the_cpu():
    cpu, gpu = _run("cpu"), _run("cuda")
    for i in (0, 1, 2, 3, 7, 8, 9, 10):
        assert np.array_equal(cpu[i], gpu[i])
    assert precision_bits(gpu[10], gpu[11]) > 12  # the sparse transform, on every period
    big, small, params = gpu[1], gpu[5], gpu[6]
    lift = (big - small) / params.moduli_q[0]
    assert np.max(np.abs(lift - np.round(lift))) < 1e-6 and np.max(np.abs(lift)) < 16
    assert precision_bits(gpu[3], gpu[4]) > 12
