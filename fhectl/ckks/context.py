"""A CKKS context: parameters, the ring's tables, the backend and the encoder's tables.

Everything made under a context carries its ``params_id``; the context is
what checks that operands belong to it.

A context is bound to one backend for its lifetime: named by ``device``, or
built by ``backend_factory(tables)`` (a CUDA backend with its own launch
sizes, an instrumented one). Keys and ciphertexts made under it live in that
backend's memory, so the backend cannot be swapped afterwards.
"""

from __future__ import annotations

from functools import cached_property
from typing import Callable

from fhe_kernels.encoding import EmbeddingTable
from fhectl.ckks.backend import Backend, CpuBackend, RingTables
from fhectl.ckks.params import Parameters
from fhectl.errors import FhectlError, ParameterMismatchError

BACKENDS = ("auto", "cpu", "cuda")


def make_backend(name: str, tables: RingTables) -> Backend:
    """The backend called ``name``; 'auto' picks CUDA when a GPU is usable, else the CPU."""
    if name not in BACKENDS:
        raise FhectlError(f"unknown device {name!r}; choose one of {', '.join(BACKENDS)}")
    if name in ("auto", "cuda"):
        try:
            from fhectl.ckks.backend_cuda import CudaBackend, cuda_available
        except ImportError as exc:
            if name == "cuda":
                raise FhectlError(f"--device cuda: the CUDA backend cannot be imported ({exc})") from None
            return CpuBackend(tables)
        ok, why = cuda_available(allow_simulator=(name == "cuda"))  # 'auto' wants real hardware
        if ok:
            return CudaBackend(tables)
        if name == "cuda":
            raise FhectlError(f"--device cuda: no usable CUDA GPU ({why})")
    return CpuBackend(tables)


class CKKSContext:
    """Parameters plus everything precomputed from them, bound to one backend."""

    def __init__(self, params: Parameters, device: str | None = None,
                 backend_factory: Callable[[RingTables], Backend] | None = None):
        """device: 'cpu' (the default), 'cuda' or 'auto' (see ``make_backend``); or, instead,
        backend_factory: called once with the ring's tables, returns the ``Backend`` to use."""
        if device is not None and backend_factory is not None:
            raise FhectlError(f"give a device ({device!r}) or a backend_factory, not both")
        self.params = params
        self.tables = RingTables(params.all_moduli, params.ring_degree, n_q=len(params.moduli_q))
        if backend_factory is None:
            backend = make_backend("cpu" if device is None else device, self.tables)
        else:
            backend = backend_factory(self.tables)
            if not isinstance(backend, Backend):
                raise FhectlError(f"backend_factory returned a {type(backend).__name__}, which lacks the Backend "
                                  "methods (see fhectl.ckks.backend.Backend)")
        self._backend = backend
        self.embedding = EmbeddingTable(params.ring_degree)
        self._p_inv_cache: dict[int, list[int]] = {}

    @property
    def backend(self) -> Backend:
        """The backend every array of this context lives on (fixed at construction)."""
        return self._backend

    @property
    def params_id(self) -> str:
        return self.params.params_id

    @property
    def device(self) -> str:
        return self.backend.name

    def q_rows(self, level: int) -> tuple[int, ...]:
        return tuple(range(level + 1))

    @cached_property
    def p_rows(self) -> tuple[int, ...]:
        nq = len(self.params.moduli_q)
        return tuple(range(nq, nq + len(self.params.moduli_p)))

    def qp_rows(self, level: int) -> tuple[int, ...]:
        return self.q_rows(level) + self.p_rows

    @cached_property
    def p_product(self) -> int:
        out = 1
        for p in self.params.moduli_p:
            out *= p
        return out

    def p_inverse_mod_q(self, level: int) -> list[int]:
        """P^{-1} mod q_i for i <= level (the ModDown scaling)."""
        vals = self._p_inv_cache.get(level)
        if vals is None:
            vals = [pow(self.p_product % q, -1, q) for q in self.params.moduli_q[: level + 1]]
            self._p_inv_cache[level] = vals
        return vals

    @cached_property
    def _mod_down_offset(self) -> int:
        """The integer t that ``mod_down`` adds before dividing by P, so that its error has mean zero.

        ModDown computes (x - Conv_P->Q([x]_P)) / P, and the fast conversion returns [x]_P + u P with
        u = floor(sum_j f_j), f_j in [0, 1) about uniform over the K primes of P [Halevi, Polyakov, Shoup,
        CT-RSA 2019]: the result is x / P - frac(x / P) - u, off by -K/2 on average in every coefficient.
        A bias common to all coefficients is the polynomial -K/2 (1 + X + ... + X^(N-1)), whose canonical
        embedding is about N / pi at the slots next to 1: multiplied by the secret key in decryption it cost
        0.3 to 2.3 bits of precision per key switch at N = 2^14 (depending on the key's embedding there) and
        about 1 bit at N = 2^16. For K even, t = (K/2) P restores the
        mean; for K odd, t = h + ((K-1)/2) P with h = floor(P/2) also added to [x]_P, which rounds x / P
        instead of flooring it.
        """
        k = len(self.params.moduli_p)
        h = self.p_product // 2 if k % 2 else 0
        return h + (k // 2) * self.p_product

    def mod_down_half_p(self) -> list[int]:
        """floor(P/2) mod p_j: added to [x]_P when K is odd (see ``_mod_down_offset``)."""
        return [(self.p_product // 2) % p for p in self.params.moduli_p]

    def mod_down_offsets(self, level: int) -> list[int]:
        """-t mod q_i for i <= level: added to the converted limbs (see ``_mod_down_offset``)."""
        return [(-self._mod_down_offset) % q for q in self.params.moduli_q[: level + 1]]

    def check(self, *objs) -> None:
        """Raise ParameterMismatchError unless every object was made under this context's parameters."""
        for obj in objs:
            pid = getattr(obj, "params_id", None)
            if pid is not None and pid != self.params_id:
                raise ParameterMismatchError(
                    f"{type(obj).__name__} was made under parameters {pid}, this context is {self.params_id} "
                    f"({self.params.name})"
                )
