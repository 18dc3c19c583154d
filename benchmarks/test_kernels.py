"""Micro-benchmarks of the CPU kernels through the backend, at the top level of the profile (see conftest.py)."""

from kernel_inputs import label, random_poly


def test_ntt_forward_all_limbs(benchmark, ctx, params, rng):
    """Forward negacyclic NTT of one polynomial over every limb of Q (in place: the input is re-randomised
    per round by pytest-benchmark's setup, outside the timed region)."""
    rows = ctx.q_rows(params.max_level)
    benchmark.name = f"ntt_forward[{label(params)}]"
    benchmark.extra_info["limbs"] = len(rows)
    benchmark.pedantic(lambda a: ctx.backend.ntt(a, rows),
                       setup=lambda: ((random_poly(rng, params.moduli_q, params.ring_degree),), {}),
                       rounds=5, warmup_rounds=1)


def test_basis_conversion_one_digit(benchmark, ctx, params, rng):
    """ModUp's fast basis conversion of the first key-switching digit to every other limb of Q and P."""
    digit = params.digits(params.max_level)[0]
    rows = ctx.qp_rows(params.max_level)
    source = tuple(digit)
    target = tuple(r for r in rows if r not in source)
    x = random_poly(rng, [params.all_moduli[r] for r in source], params.ring_degree)
    out = ctx.backend.empty((1, len(target), params.ring_degree))
    benchmark.name = f"basis_convert[{label(params)},{len(source)}->{len(target)}]"
    benchmark(ctx.backend.basis_convert, x, out, source, target)


def test_key_switch_top_level(benchmark, ctx, params, relin_key, rng):
    """Hybrid key switching of one polynomial at the top level: ModUp, the inner product with the key, ModDown."""
    from fhectl.ckks.keyswitch import key_switch

    level = params.max_level
    d = random_poly(rng, params.moduli_q, params.ring_degree)
    benchmark.name = f"key_switch[{label(params)}]"
    out = benchmark(key_switch, ctx, d, relin_key, level)
    assert out.shape == (2, len(params.moduli_q), params.ring_degree)
