"""CUDA twins of the kernel layer (numba.cuda), module for module:

    modarith     device functions: Shoup and Barrett multiplication, 128-bit reduction
    ntt          forward / inverse negacyclic NTT, shared-memory passes over (B, L, N)
    elementwise  add, sub, neg, mul, mul-by-scalar, add-scalar, tensor, multiply-accumulate
    rns          fast basis conversion, rescale_round_prepare, sub_and_scale
    automorphism NTT-domain gather and coefficient-domain automorphism
    keyswitch    the key-switching inner product fused over all digits
    launch       lazily compiled kernels with explicit signatures, grid sizes

Each kernel has the mathematical contract and argument tables of its CPU
twin and returns bit-identical results. This package imports nothing on its
own: ``import fhe_kernels.cuda`` works without numba-cuda, CUDA libraries or a
GPU; the submodules need numba-cuda and compile on first launch.
"""
