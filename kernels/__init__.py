"""fhe_kernels: the kernel layer of fhectl.

Free functions over numpy arrays and precomputed tables: modular arithmetic,
negacyclic NTT, RNS basis conversion, rescaling, Galois automorphisms and the
CKKS canonical-embedding transform. CPU kernels are Numba ``@njit``; the CUDA
twins live in ``fhe_kernels.cuda``. ``fhe_kernels.reference`` is the slow,
obvious big-int specification every fast kernel is tested against.

This package imports only numpy and numba (and llvmlite, numba's code
generator), never fhectl.
"""
