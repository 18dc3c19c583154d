"""Llama hyperparameters: a frozen, checked config read from HF config.json or GGUF metadata.

Both sources describe the same numbers under different names (num_hidden_layers here,
llama.block_count there); this class is the one place they meet, so the model code never
looks at either file format. Field names follow our GPT-2 config where the meaning is the
same (n_layer, n_embd, n_head), so code that walks both models reads alike.
"""

from dataclasses import dataclass
from numbers import Real
from typing import Mapping

from fhectl.errors import InputError


def _positive_int(key: str, value) -> int:
    # bool is an int subclass in Python; `num_hidden_layers: true` in a JSON file is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"Llama config: {key} must be a positive integer, got {value!r}")
    return value


def _positive_number(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not value > 0:
        raise InputError(f"Llama config: {key} must be a positive number, got {value!r}")
    return float(value)


def _default(value, default):
    # transformers writes absent optional keys as null; `x or default` would also turn a bad 0 into default.
    return default if value is None else value


@dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int  # rows of the embedding, columns of the logits (V)
    n_layer: int  # number of decoder blocks
    n_embd: int  # width of the residual stream (C)
    n_head: int  # query heads per block (H)
    n_kv_head: int  # key/value heads per block; n_head / n_kv_head query heads share one (GQA)
    head_dim: int  # width of one head (hd); need not be n_embd / n_head
    n_inner: int  # hidden width of the SwiGLU MLP (F)
    rope_theta: float = 10000.0  # RoPE base: pair i of a head turns by position * theta^(-2i/hd)
    rms_norm_eps: float = 1e-5  # added to the mean square before 1/sqrt
    max_position: int = 2048  # longest sequence the model was trained on
    tie_word_embeddings: bool = True  # output head is the embedding matrix (no lm_head.weight)
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    def __post_init__(self):
        for key in ("vocab_size", "n_layer", "n_embd", "n_head", "n_kv_head", "head_dim", "n_inner",
                    "max_position"):
            _positive_int(key, getattr(self, key))
        _positive_number("rope_theta", self.rope_theta)
        _positive_number("rms_norm_eps", self.rms_norm_eps)
        if self.n_head % self.n_kv_head:
            raise InputError(f"Llama config: n_head={self.n_head} is not a multiple of n_kv_head={self.n_kv_head}")
        if self.head_dim % 2:
            raise InputError(f"Llama config: head_dim={self.head_dim} must be even (RoPE rotates pairs)")
        if not isinstance(self.tie_word_embeddings, bool):
            raise InputError(f"Llama config: tie_word_embeddings must be true or false, "
                             f"got {self.tie_word_embeddings!r}")
        for key in ("bos_token_id", "eos_token_id"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 <= value < self.vocab_size):
                raise InputError(f"Llama config: {key}={value!r} is not an id in 0..{self.vocab_size - 1}")

    @property
    def n_rep(self) -> int:
        """Query heads per key/value head."""
        return self.n_head // self.n_kv_head

    @classmethod
    def from_hf_json(cls, data: dict) -> "LlamaConfig":
        """Read a Hugging Face LlamaForCausalLM config.json (already parsed into a dict).

        Defaults are transformers' LlamaConfig defaults. Keys that would make the model compute
        something this reference does not (RoPE scaling, biases, another activation) are refused.
        """
        if not isinstance(data, dict):
            raise InputError(f"Llama config: expected a JSON object, got {type(data).__name__}")
        if data.get("model_type", "llama") != "llama":
            raise InputError(f"Llama config: model_type is {data['model_type']!r}, expected 'llama'")
        refused = {"hidden_act": ("silu", None), "rope_scaling": (None,), "attention_bias": (False, None),
                   "mlp_bias": (False, None), "pretraining_tp": (1, None)}
        for key, allowed in refused.items():
            if data.get(key) not in allowed:
                raise InputError(f"Llama config: {key}={data[key]!r} is not supported "
                                 f"(the reference computes {key}={allowed[0]!r})")

        def need(key):
            if key not in data:
                raise InputError(f"Llama config: key {key!r} is missing")
            return data[key]

        n_embd = _positive_int("hidden_size", need("hidden_size"))
        n_head = _positive_int("num_attention_heads", need("num_attention_heads"))
        return cls(
            vocab_size=need("vocab_size"),
            n_layer=need("num_hidden_layers"),
            n_embd=n_embd,
            n_head=n_head,
            n_kv_head=_default(data.get("num_key_value_heads"), n_head),  # absent: no grouping
            head_dim=_default(data.get("head_dim"), n_embd // n_head),
            n_inner=need("intermediate_size"),
            rope_theta=data.get("rope_theta", 10000.0),
            rms_norm_eps=data.get("rms_norm_eps", 1e-6),
            max_position=data.get("max_position_embeddings", 2048),
            tie_word_embeddings=data.get("tie_word_embeddings", False),
            bos_token_id=data.get("bos_token_id"),
            eos_token_id=data.get("eos_token_id"),
        )

    def to_hf_json(self) -> dict:
        """The config.json a Hugging Face LlamaForCausalLM checkpoint of these sizes carries."""
        return {
            "model_type": "llama",
            "architectures": ["LlamaForCausalLM"],
            "hidden_act": "silu",
            "vocab_size": self.vocab_size,
            "num_hidden_layers": self.n_layer,
            "hidden_size": self.n_embd,
            "num_attention_heads": self.n_head,
            "num_key_value_heads": self.n_kv_head,
            "head_dim": self.head_dim,
            "intermediate_size": self.n_inner,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_norm_eps,
            "max_position_embeddings": self.max_position,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
        }

    @classmethod
    def from_gguf_metadata(cls, metadata: Mapping[str, object], *, tie_word_embeddings: bool) -> "LlamaConfig":
        """Read the llama.* keys of a GGUF file (metadata as plain Python values, see gguf.py).

        GGUF does not record whether the head is tied: the file simply has no output.weight,
        so the caller, who sees the tensor list, says so. llama.vocab_size is optional in GGUF
        (older converters left it out); the length of the token list is the vocabulary then.
        """
        arch = metadata.get("general.architecture")
        if arch != "llama":
            raise InputError(f"GGUF: general.architecture is {arch!r}, expected 'llama'")
        scaling = metadata.get("llama.rope.scaling.type", "none")
        if scaling != "none":
            raise InputError(f"GGUF: llama.rope.scaling.type={scaling!r} is not supported")

        def need(key):
            if key not in metadata:
                raise InputError(f"GGUF: metadata key {key!r} is missing")
            return metadata[key]

        n_embd = _positive_int("llama.embedding_length", need("llama.embedding_length"))
        n_head = _positive_int("llama.attention.head_count", need("llama.attention.head_count"))
        head_dim = metadata.get("llama.attention.key_length", n_embd // n_head)
        rotated = metadata.get("llama.rope.dimension_count", head_dim)
        if rotated != head_dim:
            raise InputError(f"GGUF: llama.rope.dimension_count={rotated!r} differs from head_dim={head_dim}; "
                             "partial rotary embeddings are not supported")
        vocab_size = metadata.get("llama.vocab_size")
        if vocab_size is None:
            vocab_size = len(need("tokenizer.ggml.tokens"))
        return cls(
            vocab_size=vocab_size,
            n_layer=need("llama.block_count"),
            n_embd=n_embd,
            n_head=n_head,
            n_kv_head=metadata.get("llama.attention.head_count_kv", n_head),
            head_dim=head_dim,
            n_inner=need("llama.feed_forward_length"),
            rope_theta=metadata.get("llama.rope.freq_base", 10000.0),
            rms_norm_eps=need("llama.attention.layer_norm_rms_epsilon"),
            max_position=need("llama.context_length"),
            tie_word_embeddings=tie_word_embeddings,
            bos_token_id=metadata.get("tokenizer.ggml.bos_token_id"),
            eos_token_id=metadata.get("tokenizer.ggml.eos_token_id"),
        )
