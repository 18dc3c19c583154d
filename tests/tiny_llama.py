"""The tiny Llama checkpoint of the end-to-end tests: SmolLM2's real tokenizer (so text encodes) over random
weights small enough for the insecure N = 2^10 profile, written as a Hugging Face folder."""

from pathlib import Path

from fhectl.llama.config import LlamaConfig
from fhectl.llama.weights import random_weights, save_safetensors_dir


def write_tiny_llama(directory: Path, tokenizer) -> Path:
    # 4 query heads over 2 key/value heads of width 8 (so GQA and RoPE both matter); 8 tokens per ciphertext
    cfg = LlamaConfig(vocab_size=tokenizer.vocab_size, n_layer=2, n_embd=24, n_head=4, n_kv_head=2, head_dim=8,
                      n_inner=40, rope_theta=100.0, max_position=16, bos_token_id=1, eos_token_id=2)
    save_safetensors_dir(random_weights(cfg, seed=5, std=0.5), directory)
    tokenizer.save_hf_dir(directory)
    return directory
