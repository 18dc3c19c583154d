"""GPT-2 hyperparameters: a frozen, checked config read from Hugging Face's config.json.

Field names are the checkpoint's own (n_layer, n_head, n_embd, ...), so a config.json
maps onto this class key for key; only the context length has two spellings there
(n_positions, and the older n_ctx).
"""

from dataclasses import dataclass
from numbers import Real

from fhectl.errors import InputError

# Hugging Face names for the activation our reference computes: the tanh approximation
# of GELU that OpenAI's GPT-2 used ("gelu_new" in transformers).
_TANH_GELU_NAMES = ("gelu_new", "gelu_pytorch_tanh")


def _positive_int(key: str, value) -> int:
    # bool is an int subclass in Python; `n_layer: true` in a JSON file is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"GPT-2 config: {key} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class GPT2Config:
    n_layer: int  # number of transformer blocks
    n_head: int  # attention heads per block
    n_embd: int  # width of the residual stream (C)
    n_positions: int  # longest sequence the position table covers
    vocab_size: int  # rows of wte, columns of the logits
    layer_norm_epsilon: float = 1e-5

    def __post_init__(self):
        for key in ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size"):
            _positive_int(key, getattr(self, key))
        eps = self.layer_norm_epsilon
        if isinstance(eps, bool) or not isinstance(eps, Real) or not eps > 0:
            raise InputError(f"GPT-2 config: layer_norm_epsilon must be a positive number, got {eps!r}")
        if self.n_embd % self.n_head:
            raise InputError(
                f"GPT-2 config: n_embd={self.n_embd} is not divisible by n_head={self.n_head}")

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def n_inner(self) -> int:
        """Hidden width of the MLP; GPT-2 always uses 4 * n_embd."""
        return 4 * self.n_embd

    @classmethod
    def gpt2_small(cls) -> "GPT2Config":
        """The 124M-parameter GPT-2 released by OpenAI (Hugging Face name "gpt2")."""
        return cls(n_layer=12, n_head=12, n_embd=768, n_positions=1024, vocab_size=50257,
                   layer_norm_epsilon=1e-5)

    @classmethod
    def from_hf_json(cls, data: dict) -> "GPT2Config":
        """Read the keys of a Hugging Face GPT-2 config.json (already parsed into a dict).

        Keys we do not model (dropout rates, task heads) are ignored; keys that would change
        the computation to something this reference does not compute are refused.
        """
        if not isinstance(data, dict):
            raise InputError(f"GPT-2 config: expected a JSON object, got {type(data).__name__}")
        model_type = data.get("model_type", "gpt2")
        if model_type != "gpt2":
            raise InputError(f"GPT-2 config: model_type is {model_type!r}, expected 'gpt2'")
        activation = data.get("activation_function", "gelu_new")
        if activation not in _TANH_GELU_NAMES:
            raise InputError(
                f"GPT-2 config: activation_function={activation!r} is not supported; "
                f"the reference computes tanh-GELU ({' or '.join(_TANH_GELU_NAMES)})")

        def need(key):
            if key not in data:
                raise InputError(f"GPT-2 config: key {key!r} is missing")
            return data[key]

        # n_positions sizes wpe; n_ctx is the older name for the same thing in early configs.
        n_positions = data["n_positions"] if "n_positions" in data else need("n_ctx")
        config = cls(
            n_layer=_positive_int("n_layer", need("n_layer")),
            n_head=_positive_int("n_head", need("n_head")),
            n_embd=_positive_int("n_embd", need("n_embd")),
            n_positions=_positive_int("n_positions", n_positions),
            vocab_size=_positive_int("vocab_size", need("vocab_size")),
            layer_norm_epsilon=data.get("layer_norm_epsilon", 1e-5),
        )
        n_inner = data.get("n_inner")
        if n_inner is not None and n_inner != config.n_inner:
            raise InputError(
                f"GPT-2 config: n_inner={n_inner!r} is not supported, only 4 * n_embd = {config.n_inner}")
        return config

    def to_hf_json(self) -> dict:
        """The config.json a Hugging Face GPT2LMHeadModel checkpoint carries for these sizes."""
        return {
            "model_type": "gpt2",
            "architectures": ["GPT2LMHeadModel"],
            "activation_function": "gelu_new",
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_embd": self.n_embd,
            "n_positions": self.n_positions,
            "n_ctx": self.n_positions,
            "vocab_size": self.vocab_size,
            "layer_norm_epsilon": self.layer_norm_epsilon,
        }
