"""The Llama family (SmolLM2-135M-Instruct first) as a float64 numpy reference.

config (hyperparameters) <- weights (HF-named float64 tensors) <- gguf / hub (loaders);
tokenizer (byte-level BPE, ChatML); model (the forward pass, pluggable nonlinearities, trace).
"""
