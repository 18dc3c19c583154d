"""One CKKS context per (parameters, device) per process: building the NTT and basis tables is the slow part."""

from __future__ import annotations

from fhectl.ckks.context import CKKSContext
from fhectl.ckks.params import Parameters

_CONTEXTS: dict[tuple[str, str], CKKSContext] = {}


def context_for(params: Parameters, device: str) -> CKKSContext:
    """The process's context for ``params`` on ``device``, built on first use."""
    key = (params.params_id, device)
    if key not in _CONTEXTS:
        _CONTEXTS[key] = CKKSContext(params, device=device)
    return _CONTEXTS[key]
