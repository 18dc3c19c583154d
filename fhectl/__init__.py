"""fhectl: CKKS keys, encryption, encrypted GPT-2 inference and benchmarking.

Layers depend one way: fhe_kernels -> fhectl.ckks -> fhectl.circuits / fhectl.gpt2
-> fhectl.io / fhectl.bench -> fhectl.cli.
"""

__version__ = "0.1.0"
