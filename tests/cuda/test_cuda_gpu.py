"""Checks that need a real GPU (skipped cleanly without one): the CUDA backend at a realistic size
gives the CPU backend's ciphertexts bit for bit."""

import numpy as np
import pytest

from fhectl.ckks.backend_cuda import cuda_available

pytestmark = pytest.mark.gpu
HAVE_GPU, WHY = cuda_available(allow_simulator=False)


@pytest.mark.skipif(not HAVE_GPU, reason=f"no GPU: {WHY}")
def test_cuda_backend_matches_cpu_at_n_2_14():
    from fhectl.ckks.context import CKKSContext
    from fhectl.ckks.encryptor import Encryptor
    from fhectl.ckks.evaluator import Evaluator
    from fhectl.ckks.keys import KeyGenerator
    from fhectl.ckks.params import load_parameters
    from fhectl.ckks.sampling import SeededRandom

    p = load_parameters("n14-128")
    out = {}
    for dev in ("cpu", "cuda"):
        ctx = CKKSContext(p, device=dev)
        kg = KeyGenerator(ctx, SeededRandom("gpu/keys"))
        sk = kg.secret_key()
        enc = Encryptor(ctx, kg.public_key(sk), SeededRandom("gpu/enc"))
        ev = Evaluator(ctx, kg.relin_key(sk), kg.galois_keys(sk, [1]))
        c = enc.encrypt(np.linspace(-1, 1, p.slots))
        out[dev] = [ctx.backend.to_host(r.data) for r in (ev.rescale(ev.mul(c, c)), ev.rotate(c, 1))]
    for a, b in zip(out["cpu"], out["cuda"]):
        assert np.array_equal(a, b)
