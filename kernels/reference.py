"""The specification: slow, obvious big-int versions of every kernel.

Nothing here is fast or clever; every function is written straight from the
definition with Python integers (or Python complex numbers), so that the fast
kernels have something independent to be checked against. Inputs and outputs
are Python lists (of ints, or lists of ints per limb).
"""

from __future__ import annotations

import cmath
import math


def brv(j: int, logn: int) -> int:
    """Reverse the low ``logn`` bits of j."""
    out = 0
    for _ in range(logn):
        out = (out << 1) | (j & 1)
        j >>= 1
    return out


def negacyclic_multiply(a: list[int], b: list[int], q: int) -> list[int]:
    """a*b in Z_q[X]/(X^N + 1), O(N^2) schoolbook: X^N wraps to -1."""
    n = len(a)
    out = [0] * n
    for i in range(n):
        for j in range(n):
            k = i + j
            if k < n:
                out[k] += a[i] * b[j]
            else:
                out[k - n] -= a[i] * b[j]
    return [x % q for x in out]


def ntt_forward(a: list[int], q: int, psi: int) -> list[int]:
    """A[j] = a(psi^(2 brv(j) + 1)) mod q: evaluations at odd powers of psi, bit-reversed order."""
    n = len(a)
    logn = n.bit_length() - 1
    out = []
    for j in range(n):
        point = pow(psi, 2 * brv(j, logn) + 1, q)
        out.append(sum(c * pow(point, k, q) for k, c in enumerate(a)) % q)
    return out


def ntt_inverse(A: list[int], q: int, psi: int) -> list[int]:
    """Coefficients from evaluations: interpolation through the definition above."""
    n = len(A)
    logn = n.bit_length() - 1
    n_inv = pow(n, -1, q)
    out = []
    for k in range(n):
        acc = 0
        for j in range(n):
            point = pow(psi, 2 * brv(j, logn) + 1, q)
            acc += A[j] * pow(point, -k, q)
        out.append(acc * n_inv % q)
    return out


def crt_compose(residues: list[int], moduli: list[int]) -> int:
    """The unique x in [0, Q) with x = r_i mod q_i (Chinese remainder theorem)."""
    big_q = math.prod(moduli)
    x = 0
    for r, q in zip(residues, moduli):
        qhat = big_q // q
        x += r * qhat * pow(qhat, -1, q)
    return x % big_q


def centered(x: int, m: int) -> int:
    """Representative of x mod m in [-m/2, m/2)."""
    x %= m
    return x - m if x >= (m + 1) // 2 else x


def basis_convert_exact(residues: list[int], from_moduli: list[int], to_moduli: list[int]) -> list[int]:
    """Residues in to_moduli of the centered value whose residues in from_moduli are given."""
    x = centered(crt_compose(residues, from_moduli), math.prod(from_moduli))
    return [x % p for p in to_moduli]


def basis_convert_fast(residues: list[int], from_moduli: list[int], to_moduli: list[int]) -> list[int]:
    """The approximate (HPS) fast basis conversion: sum_i [r_i * qhat_i^-1]_{q_i} * qhat_i mod p.

    It equals the exact value x + u*Q for some 0 <= u < len(from_moduli):
    a small multiple of Q that key switching tolerates [Halevi, Polyakov,
    Shoup, CT-RSA 2019].
    """
    big_q = math.prod(from_moduli)
    acc = 0
    for r, q in zip(residues, from_moduli):
        qhat = big_q // q
        acc += (r * pow(qhat, -1, q) % q) * qhat
    return [acc % p for p in to_moduli]


def rescale_round(residues: list[int], moduli: list[int]) -> list[int]:
    """round(x / q_last) for the centered value x given by its residues; result in the other moduli."""
    big_q = math.prod(moduli)
    x = centered(crt_compose(residues, moduli), big_q)
    q_last = moduli[-1]
    y = (2 * x + q_last) // (2 * q_last)  # round half up
    return [y % q for q in moduli[:-1]]


def automorphism(a: list[int], galois_element: int, q: int) -> list[int]:
    """a(X^g) in Z_q[X]/(X^N + 1) for odd g."""
    n = len(a)
    out = [0] * n
    for i, c in enumerate(a):
        e = (i * galois_element) % (2 * n)
        if e < n:
            out[e] = (out[e] + c) % q
        else:
            out[e - n] = (out[e - n] - c) % q
    return out


def slot_rotation_galois_element(step: int, ring_degree: int) -> int:
    """5^step mod 2N: rotating slots left by ``step``; negative steps rotate right."""
    m = 2 * ring_degree
    return pow(5, step % (ring_degree // 2), m)


def canonical_embedding(coeffs: list[float], ring_degree: int) -> list[complex]:
    """Slot j = m(zeta^(5^j)) for zeta = exp(i pi / N), j < N/2: the CKKS decoding map."""
    n = ring_degree
    out = []
    for j in range(n // 2):
        e = pow(5, j, 2 * n)
        root = cmath.exp(1j * math.pi * e / n)
        out.append(sum(c * root**k for k, c in enumerate(coeffs)))
    return out


def canonical_embedding_inverse(slots: list[complex], ring_degree: int) -> list[float]:
    """The real polynomial whose canonical embedding is ``slots`` (and their conjugates).

    m_k = (2/N) Re(sum_j z_j * conj(zeta_j)^k): the embedding restricted to
    the N/2 roots zeta_j = zeta^(5^j) and their conjugates is N times a unitary map.
    """
    n = ring_degree
    roots = [cmath.exp(1j * math.pi * pow(5, j, 2 * n) / n) for j in range(n // 2)]
    return [2.0 / n * sum((z * (r.conjugate() ** k)).real for z, r in zip(slots, roots)) for k in range(n)]
