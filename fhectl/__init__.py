"""fhectl: CKKS keys, encryption, encrypted GPT-2 inference and benchmarking.

Layers depend one way: fhe_kernels -> fhectl.ckks -> fhectl.circuits / fhectl.gpt2
-> fhectl.io / fhectl.keysets / fhectl.bench -> fhectl.service -> fhectl.cli (tests/test_layering.py).
"""

__version__ = "0.1.0"
