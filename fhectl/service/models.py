"""The model a server serves: weights, calibrated domains, the packed encrypted blocks, and what it publishes.

A served model is fixed when the server starts: checkpoint, parameter set, how many blocks run encrypted and
the batch capacity (tokens per ciphertext). Everything a client must agree on is in ``info()``: the parameter
literal (so the client rebuilds the same modulus chain and checks its id), the rotation steps its Galois keys
must cover, the stream scales and the weights digest (the client embeds and applies the head with its own copy
of the same checkpoint, so it checks it holds the same one).
"""

from __future__ import annotations

from dataclasses import dataclass

from fhectl.ckks.params import Parameters, literal_as_dict, load_parameters
from fhectl.circuits.packing import Layout
from fhectl.errors import InputError
from fhectl.io.objects import evaluation_key_bytes
from fhectl.llama.inference import LlamaBlocks
from fhectl.llama.pipeline import calibrated_domains, load_model
from fhectl.llama.weights import LlamaWeights


@dataclass(frozen=True)
class ModelSpec:
    """What ``fhectl serve`` was asked to serve; a worker process rebuilds the model from it."""

    name: str
    weights: str | None
    profile: str
    layers: int | None  # None: every block
    max_tokens: int | None  # None: the most one ciphertext holds
    insecure: bool = False


def token_capacity(weights: LlamaWeights, params: Parameters) -> int:
    """The most tokens one ciphertext holds: a softmax row of the compact score layout must fit one head."""
    cfg = weights.config
    return min(Layout.max_tokens(params.slots, max(cfg.n_embd, cfg.n_head * cfg.head_dim)), cfg.head_dim)


class ServedModel:
    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.params = load_parameters(spec.profile, allow_insecure=spec.insecure)
        self.weights, self.tokenizer, self.source = load_model(spec.name, spec.weights)
        cfg = self.weights.config
        layers = cfg.n_layer if spec.layers is None else spec.layers
        if not 1 <= layers <= cfg.n_layer:
            raise InputError(f"--layers must be in 1..{cfg.n_layer}, got {layers}")
        capacity = token_capacity(self.weights, self.params)
        max_tokens = capacity if spec.max_tokens is None else spec.max_tokens
        if not 1 <= max_tokens <= capacity:
            raise InputError(f"--max-tokens must be in 1..{capacity} for this model at {self.params.name}")
        domains, self.calibration = calibrated_domains(self.weights, self.tokenizer)
        self.blocks = LlamaBlocks(self.weights, self.params, domains, layers, max_tokens)
        self.digest = self.weights.weights_digest()

    @property
    def name(self) -> str:
        return self.spec.name

    def info(self) -> dict:
        """Everything public a client needs to encrypt for this model and check it holds the same weights."""
        cfg, p, b = self.weights.config, self.params, self.blocks
        return {
            "name": self.name, "source": self.source, "weights_digest": self.digest,
            "n_layer": cfg.n_layer, "encrypted_layers": b.n_layers, "n_embd": cfg.n_embd,
            "max_tokens": b.layout.tokens, "token_capacity": min(b.layout.tokens, cfg.head_dim),
            "profile": p.name, "params_id": p.params_id, "parameters": literal_as_dict(p.literal),
            "security_bits": p.security_bits, "ring_degree": p.ring_degree,
            "rotation_steps": b.rotation_steps, "stream_scales": b.stream_scales,
            "refresh": "client", "round_trips_per_block": b.plan.get("round_trips"),
            # what a client uploads once: the relinearization key and these Galois keys, seeded
            "evaluation_key_bytes": evaluation_key_bytes(p, b.rotation_steps)["total"],
        }


__all__ = ["ModelSpec", "ServedModel", "token_capacity"]
