"""CKKS bootstrapping on the engine's own backend: ModRaise, CoeffsToSlots, EvalMod, SlotsToCoeffs.

A level-0 ciphertext decrypts to t(X) = Delta m(X) + e(X) modulo q_0. Bootstrapping [Cheon, Han, Kim, Kim,
Song, "Bootstrapping for approximate homomorphic encryption", EUROCRYPT 2018] recovers an encryption of
the same message at a high level in four stages:

1. ModRaise: read the two polynomials' centred residues modulo q_0 as integers modulo the whole chain Q.
   The ciphertext then decrypts to t + q_0 I(X), with I(X) an integer polynomial whose coefficients are
   bounded by about K (see ``k_bound``). With sparse-secret encapsulation (``fhectl.ckks.encapsulation``,
   the 128-bit profiles) the raise happens under a secret of weight 32, so K = 17 instead of ~400.
2. CoeffsToSlots: the homomorphic *decoding*: move the N coefficients of t + q_0 I into slots, as two
   ciphertexts holding the real numbers u = (t + q_0 I) / (K q_0) in [-1, 1], one for the coefficients
   k < N/2 and one for k >= N/2, then a conjugation to split real and imaginary parts.
3. EvalMod: y = K u; compute sin(2 pi y) ~ 2 pi (y - I) = 2 pi t / q_0 slot by slot, as a Chebyshev
   interpolant of cos(2 pi (y - 1/4) / 2^r) on [-K, K] followed by r double-angle steps
   cos 2a = 2 cos^2 a - 1 [Han, Ki, "Better bootstrapping for approximate homomorphic encryption",
   CT-RSA 2020; Bossuat, Mouchet, Troncoso-Pastoriza, Hubaux, EUROCRYPT 2021, Sec. 4]. The interpolant is
   evaluated baby-step giant-step (``fhectl.ckks.chebyshev``): 11 products and ceil(log2(d + 1)) = 5
   levels for d = 27, where computing every T_i took 26 products and 6 levels.
4. SlotsToCoeffs: the homomorphic *encoding*: the two real vectors back into coefficients, which gives an
   encryption of m at the input's scale.

The transforms. The slot order is the encoder's: slot j of m(X) is m(zeta^(5^j)), zeta = exp(i pi / N)
(``fhe_kernels.encoding``). With n = N/2 and U[j, k] = zeta^(5^j k) (j, k < n), the slots are
z = U (t_lo + i t_hi) / Delta, because zeta^(5^j n) = i for every j (5^j = 1 mod 4); and U^H U = n I. So
both transforms are one complex n x n matrix, no conjugate slots needed. U has the radix-2 structure of
an FFT [Cheon, Han, Kim, Kim, Song, "Improved bootstrapping for approximate HE", EUROCRYPT 2018, Sec. 3;
Chen, Chillotti, Song, EUROCRYPT 2019]: splitting k into even and odd, and using 5^(j + n/2) = N + 1
(mod 2N), so that zeta^(5^(j + n/2)) = -zeta^(5^j),

    U_n = B_n (U_{n/2} (+) U_{n/2}) P_n,    B_n = [[I, D], [I, -D]],  D = diag(zeta^(5^j)), j < n/2,

with P_n the even/odd split and U_{n/2} the same matrix for the ring of degree N/2. Unrolled,
U = F_0 F_1 ... F_{log n - 1} R: R the bit-reversal permutation and F_s = I_{2^s} (x) B_{n / 2^s}, each
with three non-zero diagonals (offsets 0 and +-n / 2^(s+1)). CoeffsToSlots applies (1/n) F^H stage by
stage and SlotsToCoeffs applies F: the coefficients sit in bit-reversed order between the two, which
EvalMod, slot by slot, does not see. The stages are grouped into a *level budget* (as OpenFHE's): each
group is one plaintext-matrix product with at most 2^(a+1) - 1 diagonals for a stages, evaluated
baby-step giant-step with hoisted baby rotations [Halevi, Shoup, CRYPTO 2014], double-hoisted (one ModDown
per giant step, not per baby step [Bossuat et al., EUROCRYPT 2021, Sec. 6]; ``DiagonalTransform``), one level
per group. A budget of 1 is the dense n-diagonal product.

Precision: the message is Delta / q_0 (2^-8 with the tiny-bootstrap profile, 2^-15 with boot-n16-128) of
one unit of y, so every error in CoeffsToSlots and EvalMod counts about q_0 / Delta times more against the
message than against y; and a slot sums N coefficients, so a coefficient's error counts about sqrt(N)
times in a slot. Hence EvalMod and CoeffsToSlots run on 60-bit primes in boot-n16-128 (measured at
N = 2^16: 35 bits in y after CoeffsToSlots, 32 after EvalMod), and the refinement (``bootstrap``) adds a
second pass on the first one's error. boot-n16-128 takes a wide q0 / Delta = 2^15, so that values up to 32
pass the sine (a refresh at level 0 cannot scale them down first), and pays for it in the first pass
(13.9 bits worst, 16.4 mean on real slots in [-1, 1]), which the second wins back: 23.6 bits worst, 26.9 mean
against the input's own decryption; 19.7 against the plaintext, which is what a fresh encryption at
Delta = 2^40 itself holds (``fhectl bench --suite bootstrap``, report 2026-12-01_8b4172f5).
CoeffsToSlots maps integers of ~2^66 (t + q_0 I) to ~2^52 (Delta u); if its first group rescaled by one
prime, its plaintext would carry that shrink in integers of about 2^28, a relative precision coarser than
the message itself. So the first group rescales by two primes (plaintext integers ~2^80 to 2^100, whose
relative precision is then float64's 2^-52 in the encoder), each group is scaled to be unitary (so the
values, and the integers that carry them, keep their size from group to group) and the later groups carry
unit-size entries at scale q_l. And every addition here is between operands whose scales are equal
exactly, by construction (``mul_const`` with a target scale, as in ``fhectl.ckks.chebyshev``): the evaluator's
tolerance of 2^-16 between scales would otherwise add errors of that relative size, far above the message.

The ``Bootstrapper`` uses only the evaluator and the backend seam, so it runs unchanged on every backend.
The groups' diagonals are computed directly from the stages' (``coeffs_to_slots_diagonals``), never as
n x n matrices; the dense ``*_matrices`` are the slow reference they are tested against at small N.
The real circuit (``BootstrapConfig.real``, what inference refreshes with: its values are real): before ModRaise,
T = ct + conj(ct) at level 0 (one key switch of one prime) decrypts to t(X) + t(X^-1) = 2 Delta Re(m), an
antisymmetric polynomial (T_(N-k) = -T_k, T_(N/2) = 0) whose slots are real; its coefficients k < n hold it all.
So CoeffsToSlots keeps its first output only, one EvalMod runs instead of two, and SlotsToCoeffs rebuilds T from
its lower half as y + conj(y) (``real_slots_to_coeffs``), halved into Delta Re(m). ModRaise sees T's own
ciphertext, so K is unchanged; the sine sees 2 |m|. At N = 2^14 (boot-n14-insecure, refined) it measured
25.9-26.1 bits worst against the input's decryption, as the complex circuit, with the imaginary parts at 2^-24.
Sparse packing (n' < N/2 slots, repeated with period n') is refreshed correctly by this full-slot circuit,
since it removes q_0 I from every coefficient, and more cheaply by the sparse-slot circuit
(``BootstrapConfig.slots`` = n' <= N/4): the trace to the subring of X^(N/2n'), the transforms of the ring of
degree 2n', and the real and imaginary parts side by side in 2n' slots, so one EvalMod instead of two
[Chen, Chillotti, Song 2019, Sec. 4; Bossuat et al. 2021, Sec. 5]. It takes the levels of the full circuit
(the packing is folded into plaintexts the transforms have anyway: ``linear_transforms``). At N = 2^10
(tests/ckks/test_bootstrap.py) it measured 18.2-19.8 bits at n' = 64 (OpenFHE's EvalBootstrap with numSlots 64:
13.6) and 14.6-17.8 at n' = 4 (OpenFHE: 16.5): the fewer the slots, the larger the subring's coefficients for
the same values (by sqrt(N / 2n')), and the sine's departure from y - I grows with y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fhectl.ckks import chebyshev, encapsulation, keyswitch
from fhectl.ckks.ciphertext import Ciphertext, Plaintext
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encapsulation import EncapsulationKeys
from fhectl.ckks.evaluator import Evaluator
from fhectl.ckks.params import Parameters
from fhectl.errors import FhectlError, LevelError, MissingKeyError, ParameterError

# ---------------------------------------------------------------------------------------------------------
# Configuration and the plaintext model

MAX_APPROXIMATION_ERROR = 2.0**-30  # EvalMod's interpolant, before the double angles (tiny profile: 2^-40)
# A dense-secret profile runs CoeffsToSlots and EvalMod on its scaling primes: at Delta = 2^40
# (tiny-deep-insecure, q0 / Delta = 2^15) one bootstrapping kept 1.4 bits, at 2^52 (tiny-bootstrap-insecure,
# q0 / Delta = 2^8) 18 bits. Below this the default circuit is refused rather than run to garbage.
MIN_DENSE_SCALE_BITS = 50


def k_bound(params: Parameters, failure_log2: float = -20.0, hamming_weight: int | None = None) -> int:
    """The bound K on |I_k| that EvalMod's interpolant must cover, for a dense uniform ternary secret.

    After ModRaise the ciphertext (c0, c1), c0 and c1 about uniform modulo q_0 and centred, decrypts over
    the integers to c0 + c1 s = t + q_0 I. Each coefficient of (c0 + c1 s) / q_0 is a sum of h + 1 terms
    about uniform on [-1/2, 1/2) (h = the secret's Hamming weight, 2N/3 on average for a uniform ternary
    secret), so I_k is close to a centred Gaussian of variance (h + 1) / 12. K is x standard deviations,
    x such that the N coefficients all stay inside with probability at least 1 - 2^failure_log2
    (N erfc(x / sqrt 2) <= 2^failure_log2), plus one unit for t / q_0 and the rounding.
    """
    n = params.ring_degree
    h = 2 * n / 3 if hamming_weight is None else hamming_weight
    sigma = math.sqrt((h + 1) / 12.0)
    target = 2.0**failure_log2 / n
    x = 1.0
    while math.erfc(x / math.sqrt(2.0)) > target:
        x += 0.01
    return int(math.ceil(x * sigma)) + 1


@dataclass(frozen=True)
class BootstrapConfig:
    """What shapes the bootstrapping circuit.

    k: the interval [-K, K] EvalMod covers (``k_bound``); double_angle: r, the number of double-angle steps;
    degree: the Chebyshev degree of cos(2 pi (y - 1/4) / 2^r) on [-K, K] (Han, Ki 2020);
    cts_levels, stc_levels: the level budgets, groups of FFT stages in CoeffsToSlots and SlotsToCoeffs
    (CoeffsToSlots takes one level more than its budget: its first group rescales by two primes).
    """

    k: int
    double_angle: int = 6
    degree: int = 30
    cts_levels: int = 2
    stc_levels: int = 2
    sparse_weight: int | None = None  # Hamming weight of the encapsulation secret (None: ModRaise under s)
    refine_bits: int = 0  # > 0: a second bootstrapping of the first one's error times 2^refine_bits (Meta-BTS)
    slots: int | None = None  # n' <= N/4: the sparse-slot circuit, for slots repeated with period n'; None: N/2
    rotation_keys: str = "fast"  # the transforms' baby-step split (``ROTATION_KEY_CHOICES``, ``DiagonalTransform``)
    real: bool = False  # full slots: the real parts only, one EvalMod (module docstring; the sparse circuit has one)
    passes: int = 2  # with refine_bits: 1 runs the first pass alone, at the same output level (``bootstrap``)

    def __post_init__(self):
        _check_rotation_keys(self.rotation_keys)
        if self.passes not in (1, 2):
            raise ParameterError(f"bootstrapping passes must be 1 or 2, got {self.passes!r}")

    @staticmethod
    def default(params: Parameters, failure_log2: float = -20.0, **kw) -> "BootstrapConfig":
        """The dense-secret circuit (K from ``k_bound``): what the small test rings use."""
        return BootstrapConfig(k=k_bound(params, failure_log2), **kw)

    @staticmethod
    def encapsulated(weight: int = 32, **kw) -> "BootstrapConfig":
        """With sparse-secret encapsulation (``fhectl.ckks.encapsulation``): K = (h + 1) / 2 + 1 = 17 for
        h = 32 with no failure probability; cos(2 pi (y - 1/4) / 16) on [-17, 17] by a degree-27 Chebyshev
        interpolant is accurate to 2^-46 (float model), evaluated in 5 levels, then 4 double angles: EvalMod takes
        9 levels.
        Budgets of 3 and 3: groups of 5 FFT stages at N = 2^16, at most 63 diagonals each. refine_bits = 12:
        two passes (``Bootstrapper.bootstrap``), the second on the first one's error (~2^-16 at N = 2^16)
        times 2^12."""
        args = dict(double_angle=4, degree=27, cts_levels=3, stc_levels=3, refine_bits=12)
        args.update(kw)
        return BootstrapConfig(k=encapsulation.sparse_bound(weight), sparse_weight=weight, **args)

    @staticmethod
    def for_params(params: Parameters) -> "BootstrapConfig":
        """The circuit a profile was made for: encapsulated when it declares bootstrapping primes
        (``bootstrap_mod_bits``), else the dense default, which only small rings with wide scaling primes can
        use: ParameterError when the primes are narrower than MIN_DENSE_SCALE_BITS or its EvalMod interpolant
        cannot cover the dense secret's K (K ~ 400 at N = 2^16)."""
        if params.bootstrap_levels:
            return BootstrapConfig.encapsulated()
        if params.literal.scale_bits < MIN_DENSE_SCALE_BITS:
            raise ParameterError(
                f"profile {params.name} cannot bootstrap: its circuits would run on its {params.literal.scale_bits}-bit "
                f"scaling primes, and below {MIN_DENSE_SCALE_BITS} bits the default circuit keeps no precision "
                "(measured: 1.4 bits at 40); bootstrappable profiles set primes aside for it "
                "(bootstrap_mod_bits: boot-n16-128) or scale at 2^52 (tiny-bootstrap-insecure)")
        config = BootstrapConfig.default(params)
        error = config.approximation_error()
        if error > MAX_APPROXIMATION_ERROR:
            raise ParameterError(
                f"profile {params.name} cannot bootstrap: its dense secret needs K = {config.k}, and the default "
                f"EvalMod (degree {config.degree}, {config.double_angle} double angles) is off by "
                f"2^{math.log2(error):.1f}; bootstrappable profiles set primes aside for the encapsulated circuit "
                "(bootstrap_mod_bits: boot-n16-128)")
        return config

    def approximation_error(self, points: int = 20001) -> float:
        """max |interpolant - cos(2 pi (K u - 1/4) / 2^r)| on [-1, 1] (the float model, before double angles)."""
        u = np.linspace(-1.0, 1.0, points)
        want = np.cos(2 * np.pi * (self.k * u - 0.25) / 2**self.double_angle)
        return float(np.max(np.abs(np.polynomial.chebyshev.chebval(u, chebyshev_coefficients(self)) - want)))

    def cts_depth(self) -> int:
        return self.cts_levels + 1

    def eval_mod_depth(self) -> int:
        # The series by baby-step giant-step takes ceil(log2(degree + 1)) levels (``fhectl.ckks.chebyshev``),
        # then one level per double angle.
        return chebyshev.series_depth(chebyshev_coefficients(self)) + self.double_angle

    def single_depth(self) -> int:
        """Levels one pass consumes: CoeffsToSlots + EvalMod + SlotsToCoeffs."""
        return self.cts_depth() + self.eval_mod_depth() + self.stc_levels

    def pass_count(self) -> int:
        """Passes a bootstrapping runs: 2 with the refinement, 1 without or with ``passes`` = 1."""
        return 2 if self.refine_bits and self.passes == 2 else 1

    def depth(self) -> int:
        """Levels a bootstrapping consumes: one pass, and one more for the refinement's 2^-refine_bits (also
        with ``passes`` = 1, which leaves that prime unused)."""
        return self.single_depth() + (1 if self.refine_bits else 0)


def decoding_matrix(ring_degree: int) -> np.ndarray:
    """U (n x n complex, n = N/2): U[j, k] = zeta^(5^j k). Slots of m are U (m_lo + i m_hi), m_lo = m_0..m_{n-1}."""
    n = ring_degree // 2
    powers = _rotation_group(n, 2 * ring_degree)
    k = np.arange(n)
    # exponent modulo 2N keeps the angles exact before the exp
    return np.exp(1j * np.pi * ((powers[:, None] * k[None, :]) % (2 * ring_degree)) / ring_degree)


def _rotation_group(count: int, modulus: int) -> np.ndarray:
    out = np.empty(count, dtype=np.int64)
    x = 1
    for j in range(count):
        out[j] = x
        x = x * 5 % modulus
    return out


def bit_reverse(n: int) -> np.ndarray:
    """The permutation i -> bit-reversal of i over log2 n bits."""
    bits = n.bit_length() - 1
    return np.array([int(format(i, f"0{bits}b")[::-1], 2) if bits else 0 for i in range(n)], dtype=np.int64)


def fft_stages(ring_degree: int) -> list[np.ndarray]:
    """[F_0, ..., F_{log n - 1}] (dense n x n) with U = F_0 F_1 ... F_{log n - 1} R, R w = w[bit_reverse(n)].

    F_s = I_{2^s} (x) B_m, m = n / 2^s: B_m = [[I, D], [I, -D]], D = diag(zeta_m^(5^j)), j < m/2, with
    zeta_m = exp(i pi / 2m) the root of the ring of degree 2m (see the module docstring).
    """
    n = ring_degree // 2
    stages = []
    m = n
    while m >= 2:
        half = m // 2
        powers = _rotation_group(half, 4 * m)
        d = np.exp(1j * np.pi * powers / (2 * m))
        block = np.zeros((m, m), dtype=np.complex128)
        idx = np.arange(half)
        block[idx, idx] = 1
        block[idx, idx + half] = d
        block[idx + half, idx] = 1
        block[idx + half, idx + half] = -d
        stages.append(np.kron(np.eye(n // m), block))
        m //= 2
    return stages


def _split(count: int, groups: int) -> list[range]:
    """count stages into ``groups`` contiguous groups, sizes differing by at most one (larger first)."""
    groups = max(1, min(groups, count))
    sizes = [count // groups + (1 if i < count % groups else 0) for i in range(groups)]
    out, start = [], 0
    for size in sizes:
        out.append(range(start, start + size))
        start += size
    return out


def coeffs_to_slots_matrices(ring_degree: int, levels: int) -> list[np.ndarray]:
    """The groups of F^H, in the order applied: their product (last first) is n R U^H = F^H stage-reversed.
    Dense n x n: the reference ``coeffs_to_slots_diagonals`` is tested against (small N only)."""
    stages = fft_stages(ring_degree)
    out = []
    for group in _split(len(stages), levels):
        m = np.eye(ring_degree // 2, dtype=np.complex128)
        for s in group:  # F_0^H first
            m = stages[s].conj().T @ m
        out.append(m)
    return out


def slots_to_coeffs_matrices(ring_degree: int, levels: int) -> list[np.ndarray]:
    """The groups of F, in the order applied: their product (last first) is F = U R^T. Dense reference."""
    stages = fft_stages(ring_degree)
    out = []
    for group in reversed(_split(len(stages), levels)):
        m = np.eye(ring_degree // 2, dtype=np.complex128)
        for s in reversed(group):  # F_{log n - 1} first
            m = stages[s] @ m
        out.append(m)
    return out


# ---------------------------------------------------------------------------------------------------------
# The same groups as diagonals, without n x n matrices (N = 2^16: n = 2^15, a dense group would be 16 GiB)
#
# A matrix is {signed offset k: diag_k}, diag_k[j] = M[j, (j + k) mod n], holding only its non-zero
# diagonals. A product of two such matrices has diag_k(AB)[j] = sum_{a + b = k} diag_a(A)[j] diag_b(B)[j + a],
# so a group of a stages (3 diagonals each) has at most 2^(a+1) - 1 diagonals and costs O(4^a n) to build.

Diagonals = dict[int, np.ndarray]


def _signed(k: int, n: int) -> int:
    k %= n
    return k if k <= n // 2 else k - n


def stage_diagonals(ring_degree: int, s: int) -> Diagonals:
    """The diagonals of F_s = I_{2^s} (x) B_m, m = n / 2^s (``fft_stages``), computed directly."""
    n = ring_degree // 2
    m = n >> s
    half = m // 2
    powers = _rotation_group(half, 4 * m)
    d = np.exp(1j * np.pi * powers / (2 * m))
    pos = np.arange(n) % m
    top = pos < half  # rows in the upper half of their block: [I, D]
    main = np.where(top, 1.0 + 0j, -d[np.where(top, 0, pos - half)])
    up = np.where(top, d[np.where(top, pos, 0)], 0)  # M[j, j + m/2] = D[j mod m]
    down = np.where(top, 0, 1.0 + 0j)  # M[j, j - m/2] = 1
    out: Diagonals = {0: main}
    for k, v in ((_signed(half, n), up), (_signed(-half, n), down)):
        out[k] = out[k] + v if k in out else v  # m = n: +n/2 and -n/2 are the same diagonal
    return out


def adjoint_diagonals(a: Diagonals, n: int) -> Diagonals:
    """M^H: diag_k(M^H)[j] = conj(M[j + k, j]) = conj(diag_{-k}(M)[j + k])."""
    return {_signed(-k, n): np.conj(np.roll(v, k)) for k, v in a.items()}


def multiply_diagonals(a: Diagonals, b: Diagonals, n: int, tol: float = 1e-13) -> Diagonals:
    """AB from the diagonals of A and B (see above); diagonals below ``tol`` times the largest are dropped."""
    out: Diagonals = {}
    for ka, va in a.items():
        for kb, vb in b.items():
            k = _signed(ka + kb, n)
            term = va * np.roll(vb, -ka)
            out[k] = out[k] + term if k in out else term
    big = max(float(np.max(np.abs(v))) for v in out.values())
    return {k: v for k, v in out.items() if np.max(np.abs(v)) > tol * big}


def coeffs_to_slots_diagonals(ring_degree: int, levels: int) -> list[Diagonals]:
    """``coeffs_to_slots_matrices`` as diagonals, for any N."""
    n = ring_degree // 2
    count = n.bit_length() - 1
    out = []
    for group in _split(count, levels):
        m: Diagonals | None = None
        for s in group:  # F_0^H first: M <- F_s^H M
            f = adjoint_diagonals(stage_diagonals(ring_degree, s), n)
            m = f if m is None else multiply_diagonals(f, m, n)
        out.append(m)
    return out


def slots_to_coeffs_diagonals(ring_degree: int, levels: int) -> list[Diagonals]:
    """``slots_to_coeffs_matrices`` as diagonals, for any N."""
    n = ring_degree // 2
    count = n.bit_length() - 1
    out = []
    for group in reversed(_split(count, levels)):
        m: Diagonals | None = None
        for s in reversed(group):  # F_{log n - 1} first: M <- F_s M
            f = stage_diagonals(ring_degree, s)
            m = f if m is None else multiply_diagonals(f, m, n)
        out.append(m)
    return out


def chebyshev_coefficients(config: BootstrapConfig) -> np.ndarray:
    """Chebyshev coefficients, in u = y / K on [-1, 1], of cos(2 pi (K u - 1/4) / 2^r)."""
    k, r = config.k, config.double_angle

    def g(u):
        return np.cos(2 * np.pi * (k * u - 0.25) / 2**r)

    return np.polynomial.chebyshev.chebinterpolate(g, config.degree)


def eval_mod_plain(u: np.ndarray, config: BootstrapConfig) -> np.ndarray:
    """The float model of EvalMod: sin(2 pi K u) through the same interpolant and double angles."""
    c = np.polynomial.chebyshev.chebval(u, chebyshev_coefficients(config))
    for _ in range(config.double_angle):
        c = 2 * c * c - 1
    return c


# ---------------------------------------------------------------------------------------------------------
# Linear transforms by diagonals


# What one rotation costs in a transform with double hoisting, in units of the key switch's inner product
# (measured in one pass of boot-n16-128, N = 2^16, cProfile: inner product 21 ms, ModDown of two polynomials
# 25 ms, ModUp 43 ms, about the same ratios at every level): a baby step is an inner product, a giant step a
# ModDown of its inner sum and, unless it is step 0, a whole key switch. "fast" also charges each rotation
# key one inner product, so that a key is added only where it saves at least that in the transform: at
# boot-n16-128 it takes 47 keys where "fewest" takes 39 (each ~104 MB stored, 207 MB in memory).
_BABY_COST = 1.0
_GIANT_MODDOWN_COST = 1.2
_KEYSWITCH_COST = 4.2
_KEY_COST = 1.0
ROTATION_KEY_CHOICES = ("fast", "fewest")


def _check_rotation_keys(rotation_keys: str) -> None:
    if rotation_keys not in ROTATION_KEY_CHOICES:
        raise ParameterError(f"rotation_keys must be one of {', '.join(ROTATION_KEY_CHOICES)}, got {rotation_keys!r}")


class DiagonalTransform:
    """y = M z for a complex n x n matrix M, homomorphically, by baby-step giant-step over its diagonals.

    diag_k[j] = M[j, (j + k) mod n], so (M z)_j = sum_k diag_k[j] z[j + k] over the non-zero diagonals k
    (signed offsets). Writing k = g + c with c = k mod b (b a power of two, the baby step) and g the rest,
    sum_k diag_k * rot_k(z) = sum_g rot_g( sum_c rot_{-g}(diag_{g + c}) * rot_c(z) ): the baby rotations of
    the input share one ModUp (hoisted), the giant ones act on the inner sums [Halevi, Shoup 2014].

    Double hoisting [Bossuat, Mouchet, Troncoso-Pastoriza, Hubaux, EUROCRYPT 2021, Sec. 6]: the baby rotations
    stay over Q_l P, before their ModDown (``Evaluator.rotate_hoisted_extended``); each inner sum multiplies
    them by the diagonals encoded over Q_l P too and divides by P once. A baby step then costs one inner
    product with its key, and the ModDowns are one per giant step instead of one per baby step. The
    key-switching noise is divided by P after the products, so the rounding of the ModDown is added once per
    inner sum rather than once per baby step times a diagonal. b minimises the cost of the rotations with
    these weights (``_BABY_COST`` ...): at N = 2^16 it takes 15 baby and 3 giant rotations for a group of 63
    diagonals where equal weights took 7 and 7.

    The giant rotations act before the rescale, and the sum is rescaled once: a rescale per giant step (two at
    CoeffsToSlots' first group) would cost about 0.4 key switch each, and the key-switching noise, added at the
    larger scale, is then divided by the dropped primes too (measured: 0.9 bits more in one pass at N = 2^14,
    the same inputs and keys, ABAB in one process; 1.0 bit at N = 2^16, report 2026-12-01_8b4172f5, where the
    time stayed the same within the machine's noise).
    """

    def __init__(self, diagonals: Diagonals, n: int, cache_size: int = 1, rotation_keys: str = "fast"):
        """``n``: the period of the diagonals; below N/2 slots they (and the slots they act on) repeat.
        ``rotation_keys``: "fast", the split of least cost (``_KEY_COST`` per key included), or "fewest", the
        fewest rotations (and keys), the least cost among those."""
        if not diagonals or any(v.shape != (n,) for v in diagonals.values()):
            raise FhectlError(f"a linear transform needs non-empty diagonals of length {n}")
        self.n = n
        self.diagonals = {_signed(k, n): v for k, v in diagonals.items()}
        self.baby, self.babies, self.giants = _baby_step_split(self.diagonals, n, rotation_keys)
        self.cache_size = cache_size
        self._cache: dict = {}

    @staticmethod
    def from_matrix(matrix: np.ndarray, cache_size: int = 1, rotation_keys: str = "fast") -> "DiagonalTransform":
        """The non-zero diagonals of a dense square matrix (the reference path, small n)."""
        n = matrix.shape[0]
        if matrix.shape != (n, n):
            raise FhectlError(f"a linear transform needs a square matrix, got {matrix.shape}")
        rows = np.arange(n)
        tol = 1e-12 * float(np.max(np.abs(matrix)))
        diagonals = {}
        for k in range(n):
            d = matrix[rows, (rows + k) % n]
            if np.max(np.abs(d)) > tol:
                diagonals[k] = d
        return DiagonalTransform(diagonals, n, cache_size, rotation_keys)

    def rotation_steps(self) -> list[int]:
        return sorted((set(self.babies) | set(self.giants)) - {0})

    def eval_plain(self, z: np.ndarray) -> np.ndarray:
        """sum_k diag_k * z[j + k]: the matrix product, in floats."""
        return sum(v * np.roll(z, -k) for k, v in self.diagonals.items())

    def _plaintexts(self, ev: Evaluator, level: int, scale: float) -> dict:
        """The encoded, pre-rotated diagonals at (level, scale) over Q_l P, kept for the next call with the same
        pair (encoding them was a third of a bootstrapping's time at N = 2^10)."""
        key = (level, scale)
        if key not in self._cache:
            if len(self._cache) >= self.cache_size:
                self._cache.pop(next(iter(self._cache)))
            pts = {}
            copies = ev.ctx.params.slots // self.n  # a sparse transform acts on every period of the slots
            for k, diag in self.diagonals.items():
                g = k - k % self.baby
                pts[k] = ev.encoder.encode_extended(np.tile(np.roll(diag, g), copies), level, scale)
            self._cache[key] = pts
        return self._cache[key]

    def evaluate(self, ev: Evaluator, ct: Ciphertext, out_scale: float, primes: int = 1) -> Ciphertext:
        """M applied to ct's slots; the result, ``primes`` levels lower, has scale ``out_scale`` exactly."""
        if ct.level < primes:
            raise LevelError(f"linear transform needs {primes} level(s), ciphertext is at level {ct.level}")
        be = ev.be
        ctx = ev.ctx
        q = ctx.params.moduli_q
        dropped = math.prod(q[ct.level - i] for i in range(primes))
        pt_scale = out_scale * dropped / ct.scale  # lands exactly on out_scale after ``primes`` rescales
        pts = self._plaintexts(ev, ct.level, pt_scale)
        nq = ct.level + 1
        q_rows, qp_rows = ctx.q_rows(ct.level), ctx.qp_rows(ct.level)
        babies = ev.rotate_hoisted_extended(ct, self.babies)
        total = None
        for g in self.giants:
            acc = be.zeros(ct.data.shape)  # over Q_l: the products with c0 (and with ct itself, baby step 0)
            acc_qp = None  # over Q_l P: the products with the baby steps' key switches, divided by P below
            for c in self.babies:
                pt = pts.get(g + c)
                if pt is None:
                    continue
                c0, ks = babies[c]  # rot_c(ct) = (c0, 0) + ModDown(ks), times rot_{-g}(diag_{g + c})
                pt_q = be.limbs(pt, 0, nq)
                if ks is None:  # baby step 0: the ciphertext itself, both polynomials over Q_l
                    for i in range(ct.size):
                        be.mul_accumulate(be.polys(acc, i, i + 1), be.polys(c0, i, i + 1), pt_q, q_rows)
                    continue
                be.mul_accumulate(be.polys(acc, 0, 1), c0, pt_q, q_rows)
                if acc_qp is None:
                    acc_qp = be.zeros(tuple(ks.shape))
                for i in range(2):
                    be.mul_accumulate(be.polys(acc_qp, i, i + 1), be.polys(ks, i, i + 1), pt, qp_rows)
            if acc_qp is not None:
                be.add(acc, keyswitch.mod_down(ctx, acc_qp, ct.level), acc, q_rows)
            inner = Ciphertext(data=acc, level=ct.level, scale=ct.scale * pt_scale, params_id=ct.params_id,
                               key_id=ct.key_id, slots=ct.slots)
            inner = ev.rotate(inner, g) if g else inner  # level l, before the rescale: see the docstring
            total = inner if total is None else ev.add(total, inner)
        for _ in range(primes):
            total = ev.rescale(total)  # level l - primes, scale ~ out_scale
        total.scale = out_scale  # equal to it up to float rounding of the product above
        return total


def _baby_step_split(diagonals: Diagonals, n: int, rotation_keys: str) -> tuple[int, list[int], list[int]]:
    """(b, the baby steps k mod b, the giant steps k - k mod b) for a power of two b: of least rotation cost
    with double hoisting (``DiagonalTransform``), "fast", or of the fewest rotations, "fewest"; 0 is no step."""
    _check_rotation_keys(rotation_keys)
    best = None
    b = 1
    while b <= n:
        babies = sorted({k % b for k in diagonals})
        giants = sorted({k - k % b for k in diagonals})
        keys = sum(1 for c in babies if c) + sum(1 for g in giants if g)
        cost = (_BABY_COST * sum(1 for c in babies if c) + _GIANT_MODDOWN_COST * len(giants)
                + _KEYSWITCH_COST * sum(1 for g in giants if g))
        rank = (cost + _KEY_COST * keys,) if rotation_keys == "fast" else (keys, cost)
        if best is None or rank < best[0]:
            best = (rank, b, babies, giants)
        b *= 2
    return best[1], best[2], best[3]


# ---------------------------------------------------------------------------------------------------------
# The bootstrapper


def _signed_to_residues(values: np.ndarray, moduli) -> np.ndarray:
    """Residues (L, N) uint64 of signed integers |v| < 2^63 modulo primes that may be smaller than |v|
    (``fhe_kernels.rns.signed_to_rns`` is for |v| below every prime: a centred residue modulo q0 ~ 2^60
    exceeds the 52-bit scaling primes of the tiny-bootstrap profile)."""
    v = np.asarray(values, dtype=np.int64)
    neg = v < 0
    mag = np.abs(v).astype(np.uint64)
    out = np.empty((len(moduli), v.shape[0]), dtype=np.uint64)
    for i, q in enumerate(moduli):
        q = np.uint64(q)
        r = mag % q
        out[i] = np.where(neg & (r != 0), q - r, r)
    return out


def mod_raise(ctx: CKKSContext, ct: Ciphertext) -> Ciphertext:
    """A level-0 ciphertext as one at the top level: its centred residues mod q0 in every prime of Q.

    The data are in the NTT domain: limb 0 goes back to coefficients (on the backend), is centred and
    reduced modulo each prime on the host, and the result returns to the backend in the NTT domain.
    """
    if ct.level != 0:
        raise LevelError(f"mod_raise takes a level-0 ciphertext (drop_level first), got level {ct.level}")
    be = ctx.backend
    p = ctx.params
    data = be.copy(ct.data)
    be.intt(data, (0,))
    host = np.asarray(be.to_host(data))[:, 0, :]  # (size, N) in [0, q0)
    q0 = np.uint64(p.moduli_q[0])
    centred = np.where(host > q0 // np.uint64(2), -((q0 - host).astype(np.int64)), host.astype(np.int64))
    top = p.max_level
    raised = np.stack([_signed_to_residues(centred[i], list(p.moduli_q)) for i in range(ct.size)])
    out = be.to_device(raised)
    be.ntt(out, ctx.q_rows(top))
    return Ciphertext(data=out, level=top, scale=ct.scale, params_id=ct.params_id, key_id=ct.key_id,
                      slots=ct.slots)


def sparse_slots(params: Parameters, config: BootstrapConfig) -> int | None:
    """n' of the sparse-slot circuit, None for the full-slot one; ParameterError for an n' it cannot take."""
    n = config.slots
    if n is None or n == params.slots:
        return None
    stages = n.bit_length() - 1
    if n & (n - 1) or not 2 * n <= params.slots or stages < max(config.cts_levels, config.stc_levels):
        least = max(config.cts_levels, config.stc_levels)
        raise ParameterError(f"sparse-slot bootstrapping takes a power of two n' with 2^{least} <= n' <= N/4 = "
                             f"{params.slots // 2} (its level budgets need that many FFT stages), got {n}")
    return n


def _lift(d: Diagonals) -> Diagonals:
    """Diagonals of period n as diagonals of period 2n: the same product on slots that repeat with period n."""
    return {k: np.tile(v, 2) for k, v in d.items()}


def linear_transforms(params: Parameters, config: BootstrapConfig) -> tuple[list, list]:
    """CoeffsToSlots' groups, each of a FFT stages scaled by 2^(-a/2): every stage (rows of two unit entries)
    is then unitary, so the values keep their size from group to group, and so do the integers that carry
    them (unscaled, CoeffsToSlots' first group would put out values 2^(-1/2) per later stage smaller, that
    much closer to the rounding of each rescale: 5 bits at N = 2^16 with budget 3). SlotsToCoeffs' groups
    as they are.

    Sparse slots (n' <= N/4): the groups of the ring of degree 2n', on period 2n' (see ``Bootstrapper``):
    CoeffsToSlots' last group has its rows scaled by A = (1 on the first n' slots of a period, -i on the
    second), so that A y + conj(A y) holds 2 Re y then 2 Im y, one real vector of 2n' (one EvalMod);
    SlotsToCoeffs' first group is composed with J, (J s)_j = s_(j mod n') + i s_(j mod n' + n'), which packs
    the 2n' sines back into n' complex values. Both are folded into plaintexts the circuit has anyway: no
    level, the first SlotsToCoeffs group has up to twice the diagonals."""
    sparse = sparse_slots(params, config)
    n = params.slots if sparse is None else sparse
    ring = 2 * n
    sizes = [len(g) for g in _split(n.bit_length() - 1, config.cts_levels)]
    groups = [{k: v * 2.0 ** (-a / 2) for k, v in d.items()}
              for a, d in zip(sizes, coeffs_to_slots_diagonals(ring, config.cts_levels))]
    back = slots_to_coeffs_diagonals(ring, config.stc_levels)
    if sparse is None:
        period = n
        if config.real:  # V diag(1/2, 1, ..., 1): coefficient 0 (slot 0, bit-reversed) counts once in y + conj(y)
            half = np.ones(n, dtype=np.complex128)
            half[0] = 0.5
            back[0] = multiply_diagonals(back[0], {0: half}, n)
    else:
        period = 2 * n
        lo = np.arange(period) < n
        a = np.where(lo, 1.0 + 0j, -1j)
        groups = [_lift(d) for d in groups]
        groups[-1] = {k: a * v for k, v in groups[-1].items()}  # diag(A) M: rows scaled
        j = {0: np.where(lo, 1.0 + 0j, 1j), n: np.where(lo, 1j, 1.0 + 0j)}  # offset n = -n modulo 2n
        back = [_lift(d) for d in back]
        back[0] = multiply_diagonals(back[0], j, period)
    keys = config.rotation_keys
    return ([DiagonalTransform(d, period, rotation_keys=keys) for d in groups],
            [DiagonalTransform(d, period, rotation_keys=keys) for d in back])


def trace_steps(params: Parameters, config: BootstrapConfig) -> list[int]:
    """The rotations of the sparse circuit's trace: n', 2n', ..., N/4 (none for full slots)."""
    sparse = sparse_slots(params, config)
    steps, step = [], sparse
    while step is not None and step < params.slots:
        steps.append(step)
        step *= 2
    return steps


def required_steps(params: Parameters, config: BootstrapConfig) -> list[int]:
    """Rotation steps whose Galois keys bootstrapping needs (and conjugation)."""
    cts, stc = linear_transforms(params, config)
    return sorted({s for t in cts + stc for s in t.rotation_steps()} | set(trace_steps(params, config)))


def transform_levels(params: Parameters, config: BootstrapConfig) -> tuple[list[int], list[int]]:
    """The level each group of CoeffsToSlots and of SlotsToCoeffs (``linear_transforms``) takes its input at, and
    so rotates at: CoeffsToSlots from the top (ModRaise's level), its first group rescaling by two primes and the
    others by one; SlotsToCoeffs from EvalMod's output level, one level a group. The same in both passes."""
    top = params.max_level
    cts = [top] + [top - 1 - g for g in range(1, config.cts_levels)]
    start = top - config.cts_depth() - config.eval_mod_depth()
    return cts, [start - g for g in range(config.stc_levels)]


def rotation_levels(params: Parameters, config: BootstrapConfig) -> dict[int, int]:
    """Step -> the highest level bootstrapping rotates by it at, for every step of ``required_steps``.

    A Galois key made for levels up to that (``KeyGenerator.galois_keys(max_levels=...)``, ``SwitchingKey``)
    has only the digits and limbs of that level. At boot-n16-128 with the default split, 11 of the 47 steps rotate
    at the top (CoeffsToSlots' first group) and the other 36 at levels 24 and 23 (its later groups; SlotsToCoeffs
    rotates by the same steps at levels 13 to 11), so their keys are 5 digits of 31 or 30 limbs instead of 6 of
    33: the stored keys take 17% less (``evaluation_key_bytes``). A key used above its level is a LevelError, never
    a wrong result.
    The sparse circuit's trace rotates at the top (and again after SlotsToCoeffs)."""
    cts, stc = linear_transforms(params, config)
    cts_at, stc_at = transform_levels(params, config)
    levels = {s: params.max_level for s in trace_steps(params, config)}
    for transforms, at in ((cts, cts_at), (stc, stc_at)):
        for transform, level in zip(transforms, at, strict=True):
            for s in transform.rotation_steps():
                levels[s] = max(levels.get(s, level), level)
    return levels


class Bootstrapper:
    """Refreshes a ciphertext (dropped to level 0) to level ``max_level - config.depth()`` at the same scale.

    ``ev`` must hold the relinearization key and Galois keys for ``rotation_steps()`` and conjugation.
    Slots between CoeffsToSlots and SlotsToCoeffs are in bit-reversed coefficient order (``slot_order``).
    """

    def __init__(self, ctx: CKKSContext, ev: Evaluator, config: BootstrapConfig | None = None,
                 encapsulation: EncapsulationKeys | None = None):
        self.ctx = ctx
        self.ev = ev
        p = ctx.params
        self.config = BootstrapConfig.for_params(p) if config is None else config
        if self.config.depth() > p.max_level:
            raise LevelError(f"bootstrapping needs {self.config.depth()} levels, the chain has {p.max_level}")
        if p.bootstrap_levels and self.config.depth() != p.bootstrap_levels:
            raise LevelError(f"bootstrapping takes {self.config.depth()} levels, profile {p.name} sets aside "
                             f"{p.bootstrap_levels} primes for it: the stages would not land on their primes")
        if (self.config.sparse_weight is None) != (encapsulation is None):
            raise MissingKeyError("sparse-secret encapsulation needs its keys (fhectl.ckks.encapsulation.generate)"
                                  if encapsulation is None else
                                  "encapsulation keys given to a circuit configured without encapsulation")
        if encapsulation is not None and encapsulation.weight != self.config.sparse_weight:
            raise LevelError(f"encapsulation keys of weight {encapsulation.weight}, circuit for {self.config.sparse_weight}")
        self.encapsulation = encapsulation
        self.q0 = p.moduli_q[0]
        self.sparse = sparse_slots(p, self.config)  # n' of the sparse-slot circuit, or None
        self.n = p.slots if self.sparse is None else self.sparse
        self.real = self.config.real and self.sparse is None  # the sparse circuit has one EvalMod already
        self._cts, self._stc = linear_transforms(p, self.config)
        self._stc_complex: list | None = None  # the complex circuit's SlotsToCoeffs on a real configuration
        self._trace = trace_steps(p, self.config)
        self.slot_order = bit_reverse(self.n)  # slot i holds coefficient pair slot_order[i]
        self._minus_i: dict[int, Plaintext] = {}
        self._i: dict[int, Plaintext] = {}
        self.coeffs = chebyshev_coefficients(self.config)

    # -- what the keys must cover
    def rotation_steps(self) -> list[int]:
        return sorted({s for t in self._cts + self._stc for s in t.rotation_steps()} | set(self._trace))

    @property
    def output_level(self) -> int:
        return self.ctx.params.max_level - self.config.depth()

    # -- stages
    def mod_raise(self, ct: Ciphertext) -> Ciphertext:
        """``mod_raise(ctx, ct)``: level 0 -> the top level, decrypting to t + q0 I."""
        return mod_raise(self.ctx, ct)

    def _unit_plain(self, value: complex, level: int, cache: dict) -> Plaintext:
        # +-i is the monomial +-X^(N/2) (zeta^(5^j N/2) = i): encoded at scale 1 it is exact and costs no level.
        pt = cache.get(level)
        if pt is None:
            pt = self.ev.encoder.encode(np.full(self.n, value), level=level, scale=1.0)
            cache[level] = pt
        return pt

    def coeffs_to_slots(self, ct: Ciphertext, eval_scale: float | None = None) -> tuple[Ciphertext, Ciphertext]:
        """(re, im): real slots u = (t + q0 I) / (K q0) of the coefficients k < n and k >= n, in bit-reversed
        order (slot i: coefficient slot_order[i], resp. n + slot_order[i]), at scale ``eval_scale``.

        Levels: ct.level -> ct.level - cts_depth().
        """
        ev = self.ev
        w = self._coeffs_to_slots_complex(ct, eval_scale)
        conj = ev.conjugate(w)
        re = ev.add(w, conj)  # 2 Re(w)
        diff = ev.sub(w, conj)  # 2 i Im(w)
        im = ev.mul(diff, self._unit_plain(-1j, diff.level, self._minus_i))
        return re, im

    def real_coeffs_to_slots(self, ct: Ciphertext, eval_scale: float | None = None) -> Ciphertext:
        """The real circuit's CoeffsToSlots: ``coeffs_to_slots``' first output alone, u of the coefficients k < n."""
        w = self._coeffs_to_slots_complex(ct, eval_scale)
        return self.ev.add(w, self.ev.conjugate(w))

    def _coeffs_to_slots_complex(self, ct: Ciphertext, eval_scale: float | None) -> Ciphertext:
        """w = (u_lo + i u_hi) / 2 at scale ``eval_scale``: the transforms, before the split into real parts."""
        ev = self.ev
        if eval_scale is None:  # EvalMod's scale: about its primes, so that each rescale keeps it
            eval_scale = float(self.ctx.params.moduli_q[ct.level - self.config.cts_depth()])
        # Slots at scale s are z = U w / s (w = t_lo + i t_hi); wanted: R w / (2 K q0) = c F^H z / sqrt(n)
        # (the groups are unitary, ``linear_transforms``) with c = s / (2 sqrt(n) K q0) (halved: the real part comes
        # as ct + conj(ct)). c stays out of the plaintexts: the groups compute F^H z / sqrt(n) at the label
        # eval_scale * c, whose integer polynomial is eval_scale * (c F^H z / sqrt(n)); relabelling it
        # eval_scale is then exact. The first group rescales by two primes, so its plaintext holds the shrink
        # q^2 c in integers of ~2^80 (module docstring).
        c = ct.scale / (2 * math.sqrt(self.n) * self.config.k * self.q0)
        w = self._cts[0].evaluate(ev, ct, eval_scale * c, primes=2)  # level l -> l - 2
        for transform in self._cts[1:]:
            w = transform.evaluate(ev, w, w.scale, primes=1)  # one level per group
        w.scale = eval_scale
        return w

    def sparse_coeffs_to_slots(self, ct: Ciphertext, eval_scale: float | None = None) -> Ciphertext:
        """The sparse-slot circuit's CoeffsToSlots (n' = ``self.n`` <= N/4 slots, repeated with period n'):
        one real vector u of period 2n', slot i: coefficient slot_order[i] of the subring, slot n' + i: coefficient
        n' + slot_order[i], at scale ``eval_scale``. Levels: cts_depth(), as the full circuit.

        A message repeated with period n' is a polynomial in Y = X^(N/2n') [Chen, Chillotti, Song 2019, Sec. 4;
        Cheon et al. 2018]; after ModRaise, q0 I is not. The trace sum_k rot(ct, k n'), k < N/2n' (log2(N/2n')
        rotations: n', 2n', ..., N/4), keeps N/2n' times the coefficients of the powers of Y and cancels the
        others, and the slots of a polynomial of degree 2n' in Y are U' of its coefficients, U' the decoding
        matrix of the ring of degree 2n': the transforms are that ring's, on 2n' slots (``linear_transforms``)."""
        ev = self.ev
        for step in self._trace:  # the trace to the subring: times N / 2n'
            ct = ev.add(ct, ev.rotate(ct, step))
        if eval_scale is None:
            eval_scale = float(self.ctx.params.moduli_q[ct.level - self.config.cts_depth()])
        # as in ``coeffs_to_slots``, with the trace's factor N / 2n' taken out too
        c = ct.scale / (2 * math.sqrt(self.n) * self.config.k * self.q0 * (self.ctx.params.slots // self.n))
        w = self._cts[0].evaluate(ev, ct, eval_scale * c, primes=2)
        for transform in self._cts[1:]:
            w = transform.evaluate(ev, w, w.scale, primes=1)
        w.scale = eval_scale
        return ev.add(w, ev.conjugate(w))  # A y + conj(A y): 2 Re y, then 2 Im y

    def sparse_slots_to_coeffs(self, s: Ciphertext, out_scale: float) -> Ciphertext:
        """The sparse-slot circuit's SlotsToCoeffs: from the sines of period 2n' (as ``sparse_coeffs_to_slots``
        lays them out) to the subring polynomial q0 sin / (2 pi) ~ t, whose slots repeat with period n'."""
        ev = self.ev
        copies = self.ctx.params.slots // self.n
        # J folded in: the pairs packed. The label carries 1 / copies, which the trace below gives back.
        w = self._stc[0].evaluate(ev, s, self.q0 / (2 * np.pi) / copies, primes=1)
        for transform in self._stc[1:]:
            w = transform.evaluate(ev, w, w.scale, primes=1)
        # The trace again, on the result: the key switches above left noise on every coefficient, and the part
        # off the subring, which no later sparse bootstrapping sees (its trace removes it), would otherwise bound
        # the refinement (measured at N = 2^10, n' = 64: 23.9 bits refined without it).
        for step in self._trace:
            w = ev.add(w, ev.rotate(w, step))
        w.scale = out_scale
        return w

    def eval_mod(self, u: Ciphertext) -> Ciphertext:
        """sin(2 pi K u) slot by slot (u real in [-1, 1]); scale about the input's. Levels: eval_mod_depth()."""
        ev = self.ev
        c = chebyshev.evaluate(ev, u, self.coeffs, u.scale)
        for _ in range(self.config.double_angle):  # cos 2a = 2 cos^2 a - 1
            c = ev.add(ev.mul_int(ev.rescale(ev.square(c)), 2), -1.0)
        return c

    def _complex_slots_to_coeffs_groups(self) -> list:
        """SlotsToCoeffs' groups for the complex circuit. A real configuration folds diag(1/2, 1, ..., 1) into
        its first group (``linear_transforms``); the complex circuit on it (``bootstrap_complex``) takes that group
        unfolded, built on first use: the same diagonals' offsets, so the same rotation keys, and the later groups
        shared."""
        if not self.real:
            return self._stc
        if self._stc_complex is None:
            first = slots_to_coeffs_diagonals(2 * self.n, self.config.stc_levels)[0]
            self._stc_complex = [DiagonalTransform(first, self.n, rotation_keys=self.config.rotation_keys)]
            self._stc_complex += self._stc[1:]
        return self._stc_complex

    def slots_to_coeffs(self, re: Ciphertext, im: Ciphertext, out_scale: float) -> Ciphertext:
        """From sin(2 pi y) of the coefficients k < n (re) and k >= n (im), in bit-reversed order, the
        ciphertext whose coefficients are q0 sin(2 pi y) / (2 pi) ~ t, labelled ``out_scale``.
        Levels: stc_levels."""
        ev = self.ev
        groups = self._complex_slots_to_coeffs_groups()
        w = ev.add(re, ev.mul(im, self._unit_plain(1j, im.level, self._i)))  # sin_lo + i sin_hi, no level
        # The integer polynomial wanted is t = q0 sin / (2 pi); its slots are U (q0 sin / 2 pi) = (q0 / 2 pi) F w,
        # w the bit-reversed sin values. So the groups compute F w at the label q0 / (2 pi), and the result is
        # relabelled with the input's scale: the integer polynomial is Delta m = t whatever the label.
        w = groups[0].evaluate(ev, w, self.q0 / (2 * np.pi), primes=1)  # plaintext integers ~2^57
        for transform in groups[1:]:
            w = transform.evaluate(ev, w, w.scale, primes=1)  # unit entries at scale q_l
        w.scale = out_scale
        return w

    def real_slots_to_coeffs(self, s: Ciphertext, out_scale: float) -> Ciphertext:
        """The real circuit's SlotsToCoeffs: from sin(2 pi y) of the coefficients k < n of an antisymmetric T
        (T_(N-k) = -T_k, ``bootstrap_once``), in bit-reversed order, the ciphertext whose coefficients are
        q0 sin(2 pi y) / (4 pi) ~ T / 2, labelled ``out_scale``. Levels: stc_levels.

        The slots of such a T are real: T(zeta_j) = T_0 + 2 sum_(0<k<n) T_k cos(k theta_j) = y + conj(y) with
        y = U diag(1/2, 1, ..., 1) T_lo, U as in ``slots_to_coeffs`` (the 1/2 is folded into the first group's
        plaintexts, ``linear_transforms``): the transforms on the real vector T_lo, then one conjugation."""
        ev = self.ev
        y = self._stc[0].evaluate(ev, s, self.q0 / (4 * np.pi), primes=1)
        for transform in self._stc[1:]:
            y = transform.evaluate(ev, y, y.scale, primes=1)
        out = ev.add(y, ev.conjugate(y))
        out.scale = out_scale
        return out

    def bootstrap_once(self, ct: Ciphertext, complex_slots: bool = False) -> Ciphertext:
        """One pass: ct (any level; dropped to 0 first) at level max_level - single_depth(), same scale.
        ``complex_slots``: the complex circuit even on a real configuration (``bootstrap_complex``)."""
        self.ctx.check(ct)
        real = self.real and not complex_slots
        ct0 = self.ev.drop_level(ct, 0)
        if real:  # T = t + t(X^-1) mod q0: 2 Delta Re(m), antisymmetric; one key switch at level 0
            ct0 = self.ev.add(ct0, self.ev.conjugate(ct0))
        if self.encapsulation is not None:
            ct0 = encapsulation.to_sparse(self.ctx, ct0, self.encapsulation)  # under s'
        raised = self.mod_raise(ct0)  # level 0 -> L; decrypts to t + q0 I, |I| <= K
        if self.encapsulation is not None:
            raised = encapsulation.to_dense(self.ctx, raised, self.encapsulation)  # back under s
        if self.sparse is not None:  # one EvalMod on the 2n' real coefficients
            u = self.sparse_coeffs_to_slots(raised)
            return self.sparse_slots_to_coeffs(self.eval_mod(u), ct.scale)
        if real:  # one EvalMod on the n coefficients k < n; T / 2 = Delta Re(m) back
            return self.real_slots_to_coeffs(self.eval_mod(self.real_coeffs_to_slots(raised)), ct.scale)
        re, im = self.coeffs_to_slots(raised)  # -> L - cts_depth
        re, im = self.eval_mod(re), self.eval_mod(im)  # -> L - cts_depth - eval_mod_depth
        return self.slots_to_coeffs(re, im, ct.scale)  # -> L - single_depth, scale of the input

    def bootstrap_complex(self, ct: Ciphertext) -> Ciphertext:
        """``bootstrap`` by the complex circuit whatever the configuration: real and imaginary parts both
        refreshed, two EvalMods (a real configuration's circuit refreshes the real parts with one). What refreshes
        two real vectors a, b at once as a + i b (``fhectl.circuits.bootstrap_refresh``): CoeffsToSlots and
        SlotsToCoeffs, most of the time, are shared. Same levels, keys and output level as ``bootstrap``."""
        return self.bootstrap(ct, complex_slots=True)

    def bootstrap(self, ct: Ciphertext, complex_slots: bool = False) -> Ciphertext:
        """ct (any level; dropped to 0 first) refreshed to ``output_level`` at the same scale.

        With ``refine_bits`` = k > 0 [Bae, Cheon, Cho, Kim, Kim, "META-BTS: bootstrapping precision beyond
        the limit", CCS 2022]: ct1 = pass(ct) = m + e1; the level-0 difference ct - ct1 = -e1, times the
        integer 2^k (no level), is small enough for a second pass: ct2 = -2^k e1 + e2; and ct1 + 2^-k ct2 =
        m + 2^-k e2. A pass's error is mostly noise, about the same for any small input, so the result is
        about k bits more precise, at twice the time and one level (the product by 2^-k).

        ``passes`` = 1 on a refining configuration: the first pass alone, dropped to the same ``output_level``
        (the refinement's prime is left unused, so the levels a refresh gives and the keys do not change): half
        the time, the first pass's precision.
        """
        first = self.bootstrap_once(ct, complex_slots)
        k = self.config.refine_bits
        if not k:
            return first
        ev = self.ev
        if self.config.passes == 1:
            return ev.drop_level(first, self.output_level)
        ct0 = ev.drop_level(ct, 0)
        diff = ev.sub(ct0, ev.drop_level(first, 0))  # -e1, exactly the same scale
        second = self.bootstrap_once(ev.mul_int(diff, 1 << k), complex_slots)  # -2^k e1 + e2
        # 2^-k ct2 lands on the first pass's scale exactly (``mul_const`` with a target scale), one level down
        correction = ev.rescale(ev.mul_const(second, 2.0**-k, target_scale=first.scale))
        correction.scale = first.scale  # equal up to float rounding of the constant's scale
        return ev.add(ev.drop_level(first, correction.level), correction)
