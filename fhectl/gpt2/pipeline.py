"""From a checkpoint spec to what encrypted GPT-2 inference needs: config and tokenizer first, then weights
and calibrated domains.

The cheap part (``open_model``: the config and the tokenizer) comes first so that a caller can check the
prompt against them before the expensive part (``ModelSource.load``: reading 500 MB of weights, or drawing
124M random ones, which takes half a minute) starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fhectl.circuits.packing import Layout
from fhectl.errors import InputError
from fhectl.gpt2.calibration import BlockDomains, calibrate, load_domains, save_domains, weights_digest
from fhectl.gpt2.config import GPT2Config
from fhectl.gpt2.model import GPT2
from fhectl.gpt2.tokenizer import GPT2Tokenizer, load_tokenizer
from fhectl.gpt2.weights import Checkpoint, GPT2Weights, load_config, load_weights, random_weights, resolve_checkpoint

RANDOM_WEIGHTS_LABEL = "RANDOM WEIGHTS (GPT-2-shaped, seed {seed}): not a trained model, output text is meaningless"

# Prompts for calibrating approximation domains when the model has no stored calibration.
CALIBRATION_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "In 1869, the Suez Canal opened, shortening the sea route between Europe and Asia.",
    "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "Homomorphic encryption lets a server compute on data it cannot read.",
    "Once upon a time, in a small village by the sea, there lived an old fisherman.",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16",
)
RANDOM_CALIBRATION_PROMPTS = 4  # random token sequences added to the texts above


@dataclass(frozen=True)
class ModelSource:
    """A GPT-2 whose config and tokenizer are known and whose weights are not loaded yet."""

    config: GPT2Config
    tokenizer: GPT2Tokenizer
    checkpoint: Checkpoint | None  # None: random weights drawn from `seed`
    seed: int = 0

    @property
    def label(self) -> str | None:
        """The warning every output of a random-weights run carries; None for a checkpoint."""
        return RANDOM_WEIGHTS_LABEL.format(seed=self.seed) if self.checkpoint is None else None

    def describe(self) -> str:
        if self.checkpoint is None:
            return f"random GPT-2-shaped weights (seed {self.seed})"
        return self.checkpoint.describe()

    def load(self) -> GPT2Weights:
        """The weights: read from the checkpoint, or drawn (the slow step either way)."""
        if self.checkpoint is None:
            return random_weights(self.config, seed=self.seed)
        return load_weights(self.checkpoint.path)


def open_model(weights: str | Path | None = None, random: bool = False, seed: int = 0,
               revision: str | None = None) -> ModelSource:
    """Config and tokenizer of the model to run: ``random`` GPT-2-small-shaped weights, the checkpoint
    ``weights`` (a folder or a Hugging Face repo id), or OpenAI's GPT-2 from the Hugging Face Hub."""
    if random:
        if weights is not None:
            raise InputError("give either --weights or --random-weights, not both")
        return ModelSource(GPT2Config.gpt2_small(), load_tokenizer(), None, seed)
    checkpoint = resolve_checkpoint(weights, revision=revision)
    config = load_config(checkpoint.path)
    tokenizer = load_tokenizer(checkpoint.path, published=checkpoint.is_openai_gpt2)
    return ModelSource(config, tokenizer, checkpoint, seed)


def token_capacity(params, config: GPT2Config) -> int:
    """Tokens one encrypted pass can hold: one ciphertext's token slots, and the compact softmax layout
    keeps every row of scores inside one head."""
    return min(Layout.max_tokens(params.slots, config.n_embd), config.head_size)


def check_fits(n_prompt: int, max_new_tokens: int, params, config: GPT2Config) -> int:
    """The positions the run needs (prompt + new tokens - 1); an InputError if they do not fit."""
    capacity = token_capacity(params, config)
    total = n_prompt + max_new_tokens - 1
    if total > capacity:
        raise InputError(
            f"the prompt has {n_prompt} tokens and {max_new_tokens} new ones need {total} positions; at most "
            f"{capacity} fit one ciphertext at {params.name} (N = {params.ring_degree}) and one head's "
            f"{config.head_size} features (softmax rows); shorten the prompt")
    return total


def cache_dir() -> Path:
    """Where calibrated domains are kept: $XDG_CACHE_HOME/fhectl/calibration (default ~/.cache).

    Not next to the weights: a Hugging Face snapshot folder belongs to huggingface_hub, and a user's
    checkpoint folder may be read-only or shared."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fhectl" / "calibration"


def calibrated_domains(model: GPT2, tokenizer: GPT2Tokenizer, n_layers: int, max_tokens: int,
                       seed: int = 0) -> tuple[list[BlockDomains], str]:
    """Calibrated domains and where they came from: the cache (by weights digest), else plaintext runs on
    the calibration texts and a few random token sequences, then stored in the cache."""
    digest = weights_digest(model)
    cache = cache_dir() / f"gpt2-{digest}.json"
    found = load_domains(cache, digest)
    if found is not None and len(found) >= n_layers:
        return found, str(cache)
    prompts = [tokenizer.encode(t)[:max_tokens] for t in CALIBRATION_TEXTS]
    rng = np.random.default_rng(seed)  # calibration inputs, not key material
    prompts += [list(rng.integers(0, model.config.vocab_size, max_tokens)) for _ in range(RANDOM_CALIBRATION_PROMPTS)]
    domains = calibrate(model, [p for p in prompts if p], n_layer=model.config.n_layer)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_domains(cache, domains, digest)
    except OSError:
        return domains, "computed for this run (cache not writable)"
    return domains, str(cache)
