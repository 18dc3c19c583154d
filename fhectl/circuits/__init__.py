"""Homomorphic circuits over fhectl.ckks: the layer between the scheme and the GPT-2 model.

    polynomial      Chebyshev series on [a, b]: interpolation, baby-step giant-step evaluation
                    (ceil(log2(d + 1)) levels, + 1 for the affine map), domain checks
    approximations  GELU, exp, 1/x, 1/sqrt(x) on calibrated domains, plaintext and homomorphic
    packing         feature-major layout of a (tokens x features) matrix in CKKS slots
    linear          packed token batches times plaintext matrices: diagonals, hoisted BSGS
    levels          a level/scale simulator with the evaluator's interface, and a stage planner

Every circuit takes an evaluator and uses only its public methods, so the same code runs on
``fhectl.ckks.evaluator.Evaluator`` and on ``levels.SimEvaluator``. Nothing here imports fhectl.gpt2,
fhectl.io, fhectl.bench or fhectl.cli.
"""
