"""NTT-friendly primes and roots of unity (plain Python integers).

A prime q with q = 1 (mod 2N) has a primitive 2N-th root of unity psi, which
the negacyclic NTT of length N needs. Primes are generated deterministically
(the modulus chain is public and part of the parameter id), walking outward
from 2**bits so that scaling primes stay close to the scale they divide out.
"""

from __future__ import annotations

# Deterministic Miller-Rabin bases for n < 3.3e24 (Sorenson and Webster 2015).
_MR_BASES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)


def is_prime(n: int) -> bool:
    """Deterministic primality test for n < 3.3e24 (covers every 64-bit word)."""
    if n < 2:
        return False
    for p in _MR_BASES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for a in _MR_BASES:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def ntt_primes(bits: int, count: int, ring_degree: int, exclude: frozenset[int] | set[int] = frozenset()) -> list[int]:
    """``count`` distinct primes q = 1 (mod 2N) nearest to 2**bits, alternately above and below.

    Alternating sides makes a chain of scaling primes multiply out close to
    2**(bits*count), so the CKKS scale drifts little across rescales. A prime
    above 2**bits has bits+1 bits; callers count the true log2 of the product.
    """
    if count <= 0:
        return []
    step = 2 * ring_degree
    if (1 << bits) % step:
        raise ValueError(f"2**{bits} is not a multiple of 2N = {step}: too few bits for this ring")
    above = (1 << bits) + 1  # = 1 mod 2N
    below = (1 << bits) - step + 1
    out: list[int] = []
    take_above = True
    while len(out) < count:
        if below < (1 << (bits - 1)):
            raise ValueError(f"not enough primes = 1 mod {step} near 2**{bits}")
        # One prime from each side in turn, whatever the gaps between them.
        while True:
            if take_above:
                cand, above = above, above + step
            else:
                cand, below = below, below - step
            if cand not in exclude and is_prime(cand):
                break
        out.append(cand)
        take_above = not take_above
    return out


def primitive_root_2n(q: int, ring_degree: int) -> int:
    """The smallest primitive 2N-th root of unity psi mod q (psi**N = -1)."""
    order = 2 * ring_degree
    if (q - 1) % order:
        raise ValueError(f"{q} is not 1 mod {order}")
    cofactor = (q - 1) // order
    for g in range(2, q):
        psi = pow(g, cofactor, q)
        if pow(psi, ring_degree, q) == q - 1:
            # psi has order exactly 2N: its N-th power is -1, and 2N is a power of two.
            return psi
    raise ValueError(f"no primitive {order}-th root mod {q}")
