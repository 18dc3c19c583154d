"""Llama weights in float64 under Hugging Face's names: check, digest, load, save, or make random ones.

Names are those of a transformers LlamaForCausalLM state dict ("model.embed_tokens.weight",
"model.layers.3.self_attn.q_proj.weight"), whatever file they came from: the GGUF loader
renames llama.cpp's tensors to these, so an error names a tensor the same way for every source.

Layout is nn.Linear's: a projection is stored (out_features, in_features) and applied as
x @ W.T. Query and key rows are in Hugging Face's order, the one its RoPE (`rotate_half`)
expects; see gguf.py for the reordering llama.cpp applies and how we undo it.

Every array is float64 and read-only: the model is a float64 reference, and the digest that
keys calibration caches stays true for the object's whole life.
"""

import hashlib
import json
import math
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import safetensors.numpy

from fhectl.errors import InputError
from fhectl.llama.config import LlamaConfig

EMBED = "model.embed_tokens.weight"
FINAL_NORM = "model.norm.weight"
LM_HEAD = "lm_head.weight"

# Relative to "model.layers.{i}.", the short names block() returns them under.
BLOCK_TENSORS = {
    "input_layernorm.weight": "input_layernorm",
    "self_attn.q_proj.weight": "q_proj",
    "self_attn.k_proj.weight": "k_proj",
    "self_attn.v_proj.weight": "v_proj",
    "self_attn.o_proj.weight": "o_proj",
    "post_attention_layernorm.weight": "post_attention_layernorm",
    "mlp.gate_proj.weight": "gate_proj",
    "mlp.up_proj.weight": "up_proj",
    "mlp.down_proj.weight": "down_proj",
}

# Buffers older transformers versions saved beside the parameters; not weights.
_BUFFER_SUFFIXES = (".rotary_emb.inv_freq",)


def expected_shapes(config: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter with its (out, in) shape, in checkpoint order."""
    C, V, F = config.n_embd, config.vocab_size, config.n_inner
    Q, KV = config.n_head * config.head_dim, config.n_kv_head * config.head_dim
    block = {
        "input_layernorm.weight": (C,),
        "self_attn.q_proj.weight": (Q, C),
        "self_attn.k_proj.weight": (KV, C),
        "self_attn.v_proj.weight": (KV, C),
        "self_attn.o_proj.weight": (C, Q),
        "post_attention_layernorm.weight": (C,),
        "mlp.gate_proj.weight": (F, C),
        "mlp.up_proj.weight": (F, C),
        "mlp.down_proj.weight": (C, F),
    }
    shapes = {EMBED: (V, C)}
    for i in range(config.n_layer):
        shapes.update({f"model.layers.{i}.{name}": shape for name, shape in block.items()})
    shapes[FINAL_NORM] = (C,)
    if not config.tie_word_embeddings:
        shapes[LM_HEAD] = (V, C)
    return shapes


def _name_list(names, limit=8) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _frozen_float64(array) -> np.ndarray:
    out = np.array(array, dtype=np.float64)  # always a copy we own, so freezing it touches nobody else's
    out.flags.writeable = False
    return out


class LlamaWeights:
    """All parameters of one Llama, checked against its config: every name present, every shape right."""

    def __init__(self, config: LlamaConfig, tensors: Mapping[str, np.ndarray]):
        shapes = expected_shapes(config)
        missing = [name for name in shapes if name not in tensors]
        if missing:
            raise InputError(f"Llama weights: missing tensors {_name_list(missing)}")
        unexpected = [name for name in tensors if name not in shapes]
        if unexpected:
            raise InputError(f"Llama weights: unexpected tensors {_name_list(unexpected)} "
                             f"(is this a Llama with n_layer={config.n_layer}, "
                             f"tie_word_embeddings={config.tie_word_embeddings}?)")
        for name, shape in shapes.items():
            array = tensors[name]
            if tuple(array.shape) != shape:
                raise InputError(f"Llama weights: tensor {name!r} has shape {tuple(array.shape)}, expected {shape}")
            if not np.issubdtype(array.dtype, np.floating):
                raise InputError(f"Llama weights: tensor {name!r} has dtype {array.dtype}, expected a float type")
        self.config = config
        self._tensors = {name: _frozen_float64(tensors[name]) for name in shapes}
        self._digest = None

    @classmethod
    def from_state_dict(cls, config: LlamaConfig, state_dict: Mapping[str, np.ndarray]) -> "LlamaWeights":
        """Take a state dict as a checkpoint holds it: buffers dropped, a tied head stored or not."""
        tensors = {name: a for name, a in state_dict.items() if not name.endswith(_BUFFER_SUFFIXES)}
        if config.tie_word_embeddings and LM_HEAD in tensors:
            # Some exporters write the tied head out as a copy; a different matrix would mean other logits.
            if EMBED in tensors and not np.array_equal(tensors[LM_HEAD], tensors[EMBED]):
                raise InputError(f"Llama weights: {LM_HEAD} differs from {EMBED} but the config "
                                 "says tie_word_embeddings=true")
            del tensors[LM_HEAD]
        return cls(config, tensors)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def items(self):
        return self._tensors.items()

    @property
    def lm_head(self) -> np.ndarray:
        """(V, C) output head: the embedding itself when tied."""
        return self._tensors[EMBED if self.config.tie_word_embeddings else LM_HEAD]

    def block(self, layer_index: int) -> dict[str, np.ndarray]:
        """The tensors of block `layer_index` under short names ("q_proj", "input_layernorm", ...)."""
        if not 0 <= layer_index < self.config.n_layer:
            raise IndexError(f"layer_index {layer_index} is outside 0..{self.config.n_layer - 1}")
        prefix = f"model.layers.{layer_index}."
        return {short: self._tensors[prefix + name] for name, short in BLOCK_TENSORS.items()}

    def weights_digest(self) -> str:
        """sha256 (hex) over the config and every tensor's name, shape and float64 bytes.

        Names a set of weights in a calibration cache: equal digests, equal model.
        """
        if self._digest is None:
            h = hashlib.sha256(json.dumps(self.config.to_hf_json(), sort_keys=True).encode())
            for name, array in self._tensors.items():
                h.update(f"{name}{array.shape}".encode())
                h.update(np.ascontiguousarray(array).tobytes())
            self._digest = h.hexdigest()
        return self._digest


def random_weights(config: LlamaConfig, *, seed: int, std: float = 0.02) -> LlamaWeights:
    """Reproducible random weights for tests, drawn in `expected_shapes` order from `seed`.

    Projections are N(0, std) as in transformers' Llama init; o_proj and down_proj, which write
    into the residual stream, get std / sqrt(2 * n_layer) (GPT-2 paper, section 2.3) so deep tiny
    models stay tame. RMSNorm gains are 1 + N(0, std) rather than exactly 1, so a test notices
    a gain applied in the wrong place.
    """
    # A seeded numpy Generator: reproducible model weights, not randomness anything secret depends on.
    rng = np.random.default_rng(seed)
    residual_std = std / math.sqrt(2 * config.n_layer)
    tensors = {}
    for name, shape in expected_shapes(config).items():
        if len(shape) == 1:
            tensors[name] = 1.0 + rng.normal(0.0, std, shape)
        elif name.endswith(("o_proj.weight", "down_proj.weight")):
            tensors[name] = rng.normal(0.0, residual_std, shape)
        else:
            tensors[name] = rng.normal(0.0, std, shape)
    return LlamaWeights(config, tensors)


def read_hf_config(path) -> LlamaConfig:
    """The config.json of a Hugging Face Llama folder, checked."""
    directory = Path(path)
    if not directory.is_dir():
        raise InputError(f"Llama weights: {directory} is not a folder")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise InputError(f"Llama weights: {config_path} is missing")
    try:
        return LlamaConfig.from_hf_json(json.loads(config_path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as err:
        raise InputError(f"Llama weights: cannot read {config_path}: {err}") from err
    except InputError as err:
        raise InputError(f"{config_path}: {err}") from err


def load_safetensors_dir(path) -> LlamaWeights:
    """Load a Hugging Face Llama folder: config.json and model.safetensors, or its shards (*.safetensors)."""
    directory = Path(path)
    config = read_hf_config(directory)
    files = sorted(directory.glob("*.safetensors"))  # model.safetensors, or model-0000k-of-0000n.safetensors
    if not files:
        raise InputError(f"Llama weights: no *.safetensors file in {directory}")
    state_dict = {}
    for file in files:
        try:
            part = safetensors.numpy.load_file(file)
        except Exception as err:  # safetensors raises its own (Rust-side) error types
            raise InputError(f"Llama weights: cannot read {file}: {err}") from err
        clash = state_dict.keys() & part.keys()
        if clash:
            raise InputError(f"Llama weights: tensors {_name_list(sorted(clash))} appear in more than one file "
                             f"of {directory}")
        state_dict.update(part)
    try:
        return LlamaWeights.from_state_dict(config, state_dict)
    except InputError as err:
        raise InputError(f"{directory}: {err}") from err


def save_safetensors_dir(weights: LlamaWeights, directory, dtype=np.float32) -> Path:
    """Write config.json and model.safetensors as LlamaForCausalLM saves them; for test checkpoints.

    float32 by default, as checkpoints ship; loading gives back exactly these float32 values in float64.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(weights.config.to_hf_json(), indent=2) + "\n",
                                           encoding="utf-8")
    state_dict = {name: np.ascontiguousarray(a, dtype=dtype) for name, a in weights.items()}
    # "format": "pt" is what transformers writes and checks for when it loads the file.
    safetensors.numpy.save_file(state_dict, directory / "model.safetensors", metadata={"format": "pt"})
    return directory
