"""CKKS parameters: an unchecked literal in, checked and frozen ``Parameters`` out.

A ``ParametersLiteral`` is what a YAML profile says. ``Parameters.from_literal``
derives the modulus chain (first prime, scaling primes, special primes for
hybrid key switching), checks it against the HomomorphicEncryption.org
128-bit table and stamps it with an id: a hash of everything that changes the
arithmetic, which every key, ciphertext and file made under it carries.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from fhe_kernels.primes import ntt_primes
from fhectl.errors import InputError, InsecureParametersError, ParameterError

# Largest log2(QP) for 128-bit classical security with a uniform ternary secret
# and error sigma = 3.2, from the HomomorphicEncryption.org security standard
# (Albrecht et al., "Homomorphic Encryption Standard", 2018, Table 1), extended
# to N = 2^16 and 2^17 as OpenFHE does (lbcrypto StdLatticeParm, HEStd_128_classic).
MAX_LOG_QP_128 = {
    10: 27,
    11: 54,
    12: 109,
    13: 218,
    14: 438,
    15: 881,
    16: 1772,
    17: 3544,
}

SECRET_DISTRIBUTIONS = ("ternary",)
# What the table above assumes; a profile outside it is not labelled 128-bit. The table's error is a
# discrete Gaussian of sigma = 8 / sqrt(2 pi) ~ 3.19; a wider error only makes the problem harder, a
# narrower one easier (sigma -> 0 is noiseless linear algebra), so sigma has a floor and no ceiling here.
SECRETS_128 = ("ternary",)
MIN_SIGMA_128 = 3.19
MAX_PRIME_BITS = 60  # kernels accept primes below 2**61; a prime "near 2**60" may have 61 bits
KS_MARGIN_BITS = 8  # log2(P / Q_j) at least; see Parameters.from_literal


@dataclass(frozen=True)
class ParametersLiteral:
    """What a profile asks for; nothing here is checked yet."""

    log_n: int  # ring degree N = 2**log_n; N/2 complex slots
    scale_bits: int  # log2 of the scale Delta; scaling primes are chosen near 2**scale_bits
    first_mod_bits: int  # q0 near 2**first_mod_bits; first_mod_bits - scale_bits bits of integer headroom
    levels: int  # number of rescalings available: the chain has levels + 1 primes
    dnum: int  # hybrid key switching: number of digits the chain is split into
    special_mod_bits: int = 60  # bits of each special prime of P
    # Primes above the ``levels`` scaling primes, bottom to top, for bootstrapping
    # (fhectl.ckks.bootstrap): SlotsToCoeffs, EvalMod and CoeffsToSlots consume them from the top down.
    # EvalMod wants primes larger than Delta: its errors count q0 / Delta times more against the message.
    bootstrap_mod_bits: tuple[int, ...] = ()
    secret: str = "ternary"  # uniform ternary secret, the distribution the security table assumes
    sigma: float = 3.19  # standard deviation of the discrete Gaussian error
    security: str = "128"  # "128" (checked against the table) or "none" (refused unless allowed)
    name: str = ""
    description: str = ""

    @staticmethod
    def from_mapping(data: dict, source: str = "profile") -> "ParametersLiteral":
        known = {f for f in ParametersLiteral.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ParameterError(f"{source}: unknown field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(known))}")
        required = ("log_n", "scale_bits", "first_mod_bits", "levels", "dnum")
        missing = [k for k in required if k not in data]
        if missing:
            raise ParameterError(f"{source}: missing field(s) {', '.join(missing)}")
        values = dict(data)
        for k in ("log_n", "scale_bits", "first_mod_bits", "levels", "dnum", "special_mod_bits"):
            if k in values and (not isinstance(values[k], int) or isinstance(values[k], bool)):
                raise ParameterError(f"{source}: {k} must be an integer, got {values[k]!r}")
        if "bootstrap_mod_bits" in values:
            bits = values["bootstrap_mod_bits"]
            if not isinstance(bits, (list, tuple)) or not all(isinstance(b, int) and not isinstance(b, bool) for b in bits):
                raise ParameterError(f"{source}: bootstrap_mod_bits must be a list of integers, got {bits!r}")
            values["bootstrap_mod_bits"] = tuple(bits)
        if "security" in values:
            values["security"] = str(values["security"])
        if "sigma" in values:
            values["sigma"] = float(values["sigma"])
        return ParametersLiteral(**values)


@dataclass(frozen=True)
class Parameters:
    """Checked, immutable CKKS parameters with the concrete modulus chain."""

    literal: ParametersLiteral
    ring_degree: int
    moduli_q: tuple[int, ...]  # q_0 (first), q_1..q_L (scaling primes)
    moduli_p: tuple[int, ...]  # special primes of hybrid key switching
    digit_size: int  # alpha: limbs of Q per key-switching digit
    log_qp: float
    security_bits: int  # 128, or 0 when insecure parameters were allowed
    params_id: str = field(compare=False)

    @property
    def slots(self) -> int:
        return self.ring_degree // 2

    @property
    def max_level(self) -> int:
        return len(self.moduli_q) - 1

    @property
    def scale(self) -> float:
        return float(2**self.literal.scale_bits)

    @property
    def bootstrap_levels(self) -> int:
        """Primes at the top of the chain set aside for bootstrapping (0: the chain is uniform)."""
        return len(self.literal.bootstrap_mod_bits)

    @property
    def message_levels(self) -> int:
        """Levels at the scaling primes (Delta): what a circuit has between bootstrappings."""
        return self.max_level - self.bootstrap_levels

    @property
    def all_moduli(self) -> tuple[int, ...]:
        """Q then P: row r of every table of the ring is moduli r of this tuple."""
        return self.moduli_q + self.moduli_p

    @property
    def name(self) -> str:
        return self.literal.name or f"logN{self.literal.log_n}-L{self.literal.levels}"

    def digits(self, level: int) -> list[range]:
        """Limb ranges of the key-switching digits at a level (the last may be short)."""
        out = []
        start = 0
        while start <= level:
            out.append(range(start, min(start + self.digit_size, level + 1)))
            start += self.digit_size
        return out

    def describe(self) -> dict:
        lit = self.literal
        return {
            "name": self.name,
            "params_id": self.params_id,
            "ring_degree": self.ring_degree,
            "slots": self.slots,
            "levels": self.max_level,
            "bootstrap_levels": self.bootstrap_levels,
            "scale_bits": lit.scale_bits,
            "first_mod_bits": lit.first_mod_bits,
            "dnum": lit.dnum,
            "digit_size": self.digit_size,
            "special_primes": len(self.moduli_p),
            "log_q": round(sum(math.log2(q) for q in self.moduli_q), 2),
            "log_qp": round(self.log_qp, 2),
            "max_log_qp_128": MAX_LOG_QP_128.get(lit.log_n),
            "security_bits": self.security_bits,
            "secret": lit.secret,
            "sigma": lit.sigma,
        }

    @staticmethod
    def from_literal(lit: ParametersLiteral, allow_insecure: bool = False) -> "Parameters":
        src = f"profile {lit.name!r}" if lit.name else "parameters"
        if not 3 <= lit.log_n <= 17:
            raise ParameterError(f"{src}: log_n = {lit.log_n} is outside 3..17")
        n = 1 << lit.log_n
        if lit.levels < 0:
            raise ParameterError(f"{src}: levels = {lit.levels} must be >= 0")
        min_bits = lit.log_n + 1  # primes = 1 mod 2N need more bits than log2(2N)
        sizes = [(key, getattr(lit, key)) for key in ("scale_bits", "first_mod_bits", "special_mod_bits")]
        sizes += [("bootstrap_mod_bits", b) for b in lit.bootstrap_mod_bits]
        for key, bits in sizes:
            if not max(min_bits + 1, 20) <= bits <= MAX_PRIME_BITS:
                raise ParameterError(
                    f"{src}: {key} = {bits} must be in {max(min_bits + 1, 20)}..{MAX_PRIME_BITS} at N = 2^{lit.log_n}"
                )
        if lit.first_mod_bits < lit.scale_bits:
            raise ParameterError(
                f"{src}: first_mod_bits = {lit.first_mod_bits} is below scale_bits = {lit.scale_bits}: "
                "decryption at level 0 would have no room for the message"
            )
        if lit.secret not in SECRET_DISTRIBUTIONS:
            raise ParameterError(f"{src}: secret = {lit.secret!r}; supported: {', '.join(SECRET_DISTRIBUTIONS)}")
        if not 0 < lit.sigma < 100:
            raise ParameterError(f"{src}: sigma = {lit.sigma} is not a sensible error width")
        n_limbs = lit.levels + 1 + len(lit.bootstrap_mod_bits)
        if not 1 <= lit.dnum <= n_limbs:
            raise ParameterError(f"{src}: dnum = {lit.dnum} must be in 1..{n_limbs} (the number of primes of Q)")
        if lit.security not in ("128", "none"):
            raise ParameterError(f"{src}: security = {lit.security!r} must be '128' or 'none'")

        try:
            first = ntt_primes(lit.first_mod_bits, 1, n)
            scaling = ntt_primes(lit.scale_bits, lit.levels, n, exclude=set(first))
            boot: list[int] = []
            for bits in lit.bootstrap_mod_bits:  # one at a time, keeping the listed order
                boot += ntt_primes(bits, 1, n, exclude=set(first + scaling + boot))
        except ValueError as exc:
            raise ParameterError(f"{src}: {exc}") from None
        moduli_q = tuple(first + scaling + boot)
        digit_size = math.ceil(n_limbs / lit.dnum)
        # P must exceed every digit's product Q_j so that the key-switching noise, about
        # 2^3 Q_j / P times a fresh encryption's (a ModUp'd digit is below (K_j + 1) Q_j, summed over
        # dnum digits) [Han, Ki, CT-RSA 2020, Sec. 3], stays well below the fresh noise:
        # P >= 2^KS_MARGIN_BITS Q_j keeps it under 1/32. With P only just above Q_j (as at N = 2^16,
        # 360-bit digits) a rotation cost 1 to 2 bits more than with the margin.
        max_digit_bits = max(
            sum(math.log2(q) for q in moduli_q[s : s + digit_size]) for s in range(0, n_limbs, digit_size)
        ) + KS_MARGIN_BITS
        count = max(1, math.ceil(max_digit_bits / lit.special_mod_bits))
        try:
            while True:
                moduli_p = tuple(ntt_primes(lit.special_mod_bits, count, n, exclude=set(moduli_q)))
                if sum(math.log2(p) for p in moduli_p) >= max_digit_bits:
                    break
                count += 1
        except ValueError as exc:
            raise ParameterError(f"{src}: {exc}") from None
        log_qp = sum(math.log2(q) for q in moduli_q + moduli_p)

        security_bits = 128
        bound = MAX_LOG_QP_128.get(lit.log_n)
        outside = []  # distributions the table does not cover
        if lit.sigma < MIN_SIGMA_128:
            outside.append(f"sigma = {lit.sigma:g} is below {MIN_SIGMA_128}, the error width the table assumes")
        if lit.secret not in SECRETS_128:
            outside.append(f"secret = {lit.secret!r} is not one the table covers ({', '.join(SECRETS_128)})")
        if lit.security == "none":
            if not allow_insecure:
                raise InsecureParametersError(
                    f"{src} declares security: none (log2 QP = {log_qp:.1f} at N = 2^{lit.log_n}); "
                    "it is for tests only: pass --insecure to use it anyway"
                )
            security_bits = 0
        elif (bound is None or log_qp > bound or outside) and allow_insecure:
            security_bits = 0
        elif outside:
            raise InsecureParametersError(
                f"{src} is not 128-bit secure: {'; '.join(outside)} "
                "(HomomorphicEncryption.org standard: ternary secret, sigma ~ 3.2); "
                "fix the profile, or pass --insecure for tests"
            )
        elif bound is None or log_qp > bound:
            detail = (
                f"log2 QP = {log_qp:.1f} exceeds {bound} bits, the 128-bit bound at N = 2^{lit.log_n}"
                if bound is not None
                else f"N = 2^{lit.log_n} has no entry in the 128-bit table"
            )
            raise InsecureParametersError(
                f"{src} is below 128-bit security: {detail} "
                "(HomomorphicEncryption.org standard, ternary secret); "
                "lower levels/scale_bits/dnum-related special primes, raise log_n, or pass --insecure for tests"
            )

        identity = {
            "scheme": "rns-ckks/v1",
            "ring_degree": n,
            "moduli_q": list(moduli_q),
            "moduli_p": list(moduli_p),
            "digit_size": digit_size,
            "secret": lit.secret,
            "sigma": lit.sigma,
            "scale_bits": lit.scale_bits,
        }
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        return Parameters(
            literal=lit,
            ring_degree=n,
            moduli_q=moduli_q,
            moduli_p=moduli_p,
            digit_size=digit_size,
            log_qp=log_qp,
            security_bits=security_bits,
            params_id=digest,
        )


def profiles_dir() -> Path:
    """The shipped profiles: package data of fhectl (``fhectl/profiles``), so a plain (non-editable) install
    finds them as well as a checkout does."""
    return Path(str(resources.files("fhectl").joinpath("profiles")))


def list_profiles() -> list[str]:
    d = profiles_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def load_literal(name_or_path: str) -> ParametersLiteral:
    """A profile by name (fhectl/profiles/NAME.yaml) or by path to a YAML file."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") or path.exists()):
        path = profiles_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        raise InputError(
            f"profile {name_or_path!r} not found (looked for {path}); known profiles: {', '.join(list_profiles()) or 'none'}"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"profile {path}: cannot read YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ParameterError(f"profile {path}: expected a mapping of fields, got {type(data).__name__}")
    data.setdefault("name", path.stem)
    return ParametersLiteral.from_mapping(data, source=f"profile {path.name}")


def load_parameters(name_or_path: str, allow_insecure: bool = False) -> Parameters:
    return Parameters.from_literal(load_literal(name_or_path), allow_insecure=allow_insecure)


def literal_as_dict(lit: ParametersLiteral) -> dict:
    return asdict(lit)
