"""GPT-2 weights under the checkpoint's own names: load, check, save, or make random ones.

Names are those of a Hugging Face GPT2Model state dict ("wte.weight", "h.0.attn.c_attn.weight",
"ln_f.bias"), so an error can name the tensor exactly as it is spelled in the file.

Layout, and why it differs from nn.Linear: GPT-2 was written in TensorFlow, and Hugging Face
kept its layout in the `Conv1D` module, which stores weights as (in_features, out_features) and
computes y = x @ W + b. nn.Linear stores (out_features, in_features) and computes x @ W.T + b,
which is why nanoGPT transposes these matrices when it imports them. We keep the checkpoint's
layout and never transpose: c_attn.weight is (n_embd, 3 * n_embd) and is applied as x @ W.
"""

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import safetensors.numpy

from fhectl.errors import InputError
from fhectl.gpt2.config import GPT2Config
from fhectl.hub import is_not_cached, looks_like_path, snapshot

# GPT2LMHeadModel saves its body under "transformer."; GPT2Model (and the "gpt2" repo's own
# model.safetensors) saves it without. We store names without the prefix.
TRANSFORMER_PREFIX = "transformer."

# Non-parameter entries some checkpoints carry: the causal mask buffer and the constant used to
# fill masked scores (older transformers versions saved both), and the output head, which GPT-2
# ties to wte (the same matrix), so there is nothing to load for it.
_CAUSAL_BUFFER = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)")
_LM_HEAD = "lm_head.weight"

WEIGHTS_HINT = (
    "A GPT-2 checkpoint folder holds config.json and model.safetensors, as the Hugging Face repo "
    "openai-community/gpt2 does; without --weights, `fhectl infer --model gpt2` fetches that repo into the "
    "Hugging Face cache (or uses the cached copy)"
)


def expected_shapes(config: GPT2Config) -> dict[str, tuple[int, ...]]:
    """Every parameter of GPT-2 with its shape, in checkpoint order (embeddings, blocks, ln_f)."""
    C, V, P = config.n_embd, config.vocab_size, config.n_positions
    shapes = {
        "wte.weight": (V, C),  # token embedding; also the output head (tied)
        "wpe.weight": (P, C),  # position embedding
    }
    for i in range(config.n_layer):
        h = f"h.{i}."
        shapes.update({
            h + "ln_1.weight": (C,),
            h + "ln_1.bias": (C,),
            h + "attn.c_attn.weight": (C, 3 * C),  # q, k, v side by side, Conv1D (in, out)
            h + "attn.c_attn.bias": (3 * C,),
            h + "attn.c_proj.weight": (C, C),
            h + "attn.c_proj.bias": (C,),
            h + "ln_2.weight": (C,),
            h + "ln_2.bias": (C,),
            h + "mlp.c_fc.weight": (C, 4 * C),
            h + "mlp.c_fc.bias": (4 * C,),
            h + "mlp.c_proj.weight": (4 * C, C),
            h + "mlp.c_proj.bias": (C,),
        })
    shapes["ln_f.weight"] = (C,)
    shapes["ln_f.bias"] = (C,)
    return shapes


def _name_list(names, limit=8) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


class GPT2Weights:
    """All parameters of one GPT-2, checked against its config: every name present, every shape right."""

    def __init__(self, config: GPT2Config, tensors: Mapping[str, np.ndarray]):
        shapes = expected_shapes(config)
        missing = [name for name in shapes if name not in tensors]
        if missing:
            raise InputError(f"GPT-2 weights: missing tensors {_name_list(missing)}")
        unexpected = [name for name in tensors if name not in shapes]
        if unexpected:
            raise InputError(
                f"GPT-2 weights: unexpected tensors {_name_list(unexpected)} "
                f"(is this a GPT-2 checkpoint with n_layer={config.n_layer}?)")
        for name, shape in shapes.items():
            array = tensors[name]
            if tuple(array.shape) != shape:
                raise InputError(
                    f"GPT-2 weights: tensor {name!r} has shape {tuple(array.shape)}, expected {shape}")
            if not np.issubdtype(array.dtype, np.floating):
                raise InputError(f"GPT-2 weights: tensor {name!r} has dtype {array.dtype}, expected a float type")
        self.config = config
        self._tensors = {name: tensors[name] for name in shapes}

    @classmethod
    def from_state_dict(cls, config: GPT2Config, state_dict: Mapping[str, np.ndarray]) -> "GPT2Weights":
        """Take a state dict as a checkpoint holds it: with or without "transformer.", with buffers."""
        tensors = {}
        lm_head = None
        for key, array in state_dict.items():
            name = key[len(TRANSFORMER_PREFIX):] if key.startswith(TRANSFORMER_PREFIX) else key
            if name == _LM_HEAD:
                lm_head = array
                continue
            if _CAUSAL_BUFFER.fullmatch(name):
                continue
            if name in tensors:
                raise InputError(f"GPT-2 weights: tensor {name!r} appears both with and without "
                                 f"the {TRANSFORMER_PREFIX!r} prefix")
            tensors[name] = array
        # A checkpoint whose head is not wte would give other logits than our tied head computes.
        wte = tensors.get("wte.weight")
        if lm_head is not None and wte is not None and not np.array_equal(lm_head, wte):
            raise InputError("GPT-2 weights: lm_head.weight differs from wte.weight; "
                             "GPT-2 ties its output head to wte and so does this reference")
        return cls(config, tensors)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def items(self):
        return self._tensors.items()

    def block(self, layer_index: int) -> dict[str, np.ndarray]:
        """The tensors of block `layer_index`, named relative to it ("attn.c_attn.weight")."""
        if not 0 <= layer_index < self.config.n_layer:
            raise IndexError(f"layer_index {layer_index} is outside 0..{self.config.n_layer - 1}")
        prefix = f"h.{layer_index}."
        return {name[len(prefix):]: a for name, a in self._tensors.items() if name.startswith(prefix)}

    def astype(self, dtype) -> "GPT2Weights":
        return GPT2Weights(self.config, {name: a.astype(dtype, copy=False) for name, a in self.items()})


def _checkpoint_files(path) -> tuple[Path, Path]:
    directory = Path(path)
    if not directory.is_dir():
        raise InputError(f"GPT-2 weights: {directory} is not a folder. {WEIGHTS_HINT}")
    config_path = directory / "config.json"
    tensors_path = directory / "model.safetensors"
    for required in (config_path, tensors_path):
        if not required.is_file():
            raise InputError(f"GPT-2 weights: {required} is missing. {WEIGHTS_HINT}")
    return config_path, tensors_path


def load_config(path) -> GPT2Config:
    """The config of a Hugging Face GPT-2 folder, without reading its weights (checks both files exist)."""
    config_path, _ = _checkpoint_files(path)
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"GPT-2 weights: cannot read {config_path}: {err}") from err
    try:
        return GPT2Config.from_hf_json(data)
    except InputError as err:
        raise InputError(f"{config_path}: {err}") from err


def load_weights(path) -> GPT2Weights:
    """Load a Hugging Face GPT-2 folder: config.json and model.safetensors."""
    config = load_config(path)
    _, tensors_path = _checkpoint_files(path)
    try:
        state_dict = safetensors.numpy.load_file(tensors_path)
    except Exception as err:  # safetensors raises its own (Rust-side) error types
        raise InputError(f"GPT-2 weights: cannot read {tensors_path}: {err}") from err
    try:
        return GPT2Weights.from_state_dict(config, state_dict)
    except InputError as err:
        raise InputError(f"{tensors_path}: {err}") from err


def save_weights(weights: GPT2Weights, directory) -> Path:
    """Write config.json and model.safetensors as GPT2LMHeadModel saves them ("transformer." names).

    Overwrites files of those names; used to make tiny checkpoints for tests.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(weights.config.to_hf_json(), indent=2) + "\n",
                                           encoding="utf-8")
    state_dict = {TRANSFORMER_PREFIX + name: np.ascontiguousarray(a) for name, a in weights.items()}
    # "format": "pt" is what transformers writes and checks for when it loads the file.
    safetensors.numpy.save_file(state_dict, directory / "model.safetensors", metadata={"format": "pt"})
    return directory


def random_weights(config: GPT2Config, *, seed: int, std: float = 0.02, dtype=np.float32) -> GPT2Weights:
    """GPT-2's initialisation, reproducible from `seed`: for tests and timing without real weights.

    Matrices are N(0, std); the two c_proj matrices of each block, which write into the residual
    stream, get std / sqrt(2 * n_layer) so the stream's variance does not grow with depth (GPT-2
    paper, section 2.3). LayerNorm weights are 1, all biases 0. Tensors are drawn in
    `expected_shapes` order, so the same seed gives the same weights.
    """
    # A seeded numpy Generator: reproducible model weights, not randomness anything secret depends on.
    rng = np.random.default_rng(seed)
    residual_std = std / math.sqrt(2 * config.n_layer)
    tensors = {}
    for name, shape in expected_shapes(config).items():
        if re.search(r"ln_(1|2|f)\.weight$", name):
            tensors[name] = np.ones(shape, dtype=dtype)
        elif name.endswith(".bias"):
            tensors[name] = np.zeros(shape, dtype=dtype)
        elif name.endswith("c_proj.weight"):
            tensors[name] = rng.normal(0.0, residual_std, shape).astype(dtype)
        else:
            tensors[name] = rng.normal(0.0, std, shape).astype(dtype)
    return GPT2Weights(config, tensors)


# --- where the weights come from: a folder, or a Hugging Face repo ----------------------------------

# The Hub's name for OpenAI's GPT-2 (124M), then its older name, which caches made before the move still hold.
GPT2_REPOS = ("openai-community/gpt2", "gpt2")
# What a GPT-2 snapshot needs: the config, the weights and the tokenizer files whose published hashes
# fhectl.gpt2.tokenizer checks (not the PyTorch/TF/Flax/ONNX copies of the same weights).
GPT2_FILES = ["config.json", "model.safetensors", "vocab.json", "merges.txt"]


@dataclass(frozen=True)
class Checkpoint:
    """A GPT-2 checkpoint folder and, when it is a Hugging Face snapshot, the repo it came from."""

    path: Path
    repo: str | None = None

    @property
    def is_openai_gpt2(self) -> bool:
        """Whether this is OpenAI's GPT-2 from the Hub, whose tokenizer files have published hashes."""
        return self.repo in GPT2_REPOS

    def describe(self) -> str:
        return f"Hugging Face {self.repo} ({self.path})" if self.repo else str(self.path)


def resolve_checkpoint(spec: str | Path | None = None, revision: str | None = None) -> Checkpoint:
    """The GPT-2 checkpoint to load.

    ``spec`` is a local folder (used as is), a Hugging Face repo id, or None for OpenAI's GPT-2
    (openai-community/gpt2, found in the cache under either of its names, else downloaded).
    """
    if spec is not None:
        path = Path(spec).expanduser()
        if path.is_dir():
            return Checkpoint(path)
        if path.exists():
            raise InputError(f"GPT-2 weights: {path} is not a folder. {WEIGHTS_HINT}")
        if isinstance(spec, Path) or looks_like_path(str(spec)):
            raise InputError(f"GPT-2 weights: {path} does not exist. {WEIGHTS_HINT}")
        return Checkpoint(snapshot(str(spec), GPT2_FILES, revision=revision), str(spec))
    first = None
    for repo in GPT2_REPOS:
        try:
            return Checkpoint(snapshot(repo, GPT2_FILES, revision=revision), repo)
        except InputError as err:
            if not is_not_cached(err):
                raise
            first = first or err
    import huggingface_hub.constants

    raise InputError(f"{first} (Hugging Face cache {huggingface_hub.constants.HF_HUB_CACHE}; set by HF_HUB_CACHE "
                     f"or HF_HOME). Give a local checkpoint folder with --weights DIR, or allow the download") from None
