"""The model a server serves: weights, calibrated domains, the packed encrypted blocks, and what it publishes.

A served model is fixed when the server starts: checkpoint, parameter set, how many blocks run encrypted and
the batch capacity (tokens per ciphertext) and how levels are restored (``refresh``: the key holder's round
trips, or bootstrapping on the server). Everything a client must agree on is in ``info()``: the parameter
literal (so the client rebuilds the same modulus chain and checks its id), the rotation steps its Galois keys
must cover, the stream scales and the weights digest (the client embeds and applies the head with its own copy
of the same checkpoint, so it checks it holds the same one); with bootstrapping also the conjugation key, the
levels the blocks' own rotation keys may be truncated to (``key_levels``), the encapsulation keys' weight and
the level a job's input is encrypted at. ``check_bundle_covers`` holds an uploaded bundle to that.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhectl.ckks.keys import conjugation_galois_element, rotation_galois_elements
from fhectl.ckks.params import Parameters, literal_as_dict, load_parameters
from fhectl.circuits.bootstrap_refresh import REFRESH_MODES, bootstrap_config, bootstrap_fits
from fhectl.circuits.packing import Layout
from fhectl.errors import FormatError, InputError, ParameterError
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
    refresh: str = "client"  # "client", "bootstrap" or "auto", as `fhectl infer --refresh`


def token_capacity(weights: LlamaWeights, params: Parameters) -> int:
    """The most tokens one ciphertext holds: a softmax row of the compact score layout must fit one head."""
    cfg = weights.config
    return min(Layout.max_tokens(params.slots, max(cfg.n_embd, cfg.n_head * cfg.head_dim)), cfg.head_dim)


class ServedModel:
    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.params = load_parameters(spec.profile, allow_insecure=spec.insecure)
        if spec.refresh not in REFRESH_MODES:
            raise InputError(f"--refresh must be one of {', '.join(REFRESH_MODES)}, got {spec.refresh!r}")
        if spec.refresh == "bootstrap":  # what the profile alone decides, before the weights load
            fits, why = bootstrap_fits(self.params, 1)
            if not fits:
                raise ParameterError(f"--refresh bootstrap: {why}")
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
        self.blocks = LlamaBlocks(self.weights, self.params, domains, layers, max_tokens, refresh=spec.refresh)
        self.digest = self.weights.weights_digest()

    @property
    def bootstraps(self) -> bool:
        return self.blocks.refresh_mode == "bootstrap"

    @property
    def encapsulation_weight(self) -> int | None:
        """The sparse secret's weight when the bootstrapping circuit encapsulates (its keys are then in every
        bundle), else None."""
        return bootstrap_config(self.params).sparse_weight if self.bootstraps else None

    @property
    def name(self) -> str:
        return self.spec.name

    def info(self) -> dict:
        """Everything public a client needs to encrypt for this model and check it holds the same weights."""
        cfg, p, b = self.weights.config, self.params, self.blocks
        boot = self.bootstraps
        key_levels = sorted((b.key_levels or {}).items()) if boot else []
        return {
            "name": self.name, "source": self.source, "weights_digest": self.digest,
            "n_layer": cfg.n_layer, "encrypted_layers": b.n_layers, "n_embd": cfg.n_embd,
            "max_tokens": b.layout.tokens, "token_capacity": min(b.layout.tokens, cfg.head_dim),
            "profile": p.name, "params_id": p.params_id, "parameters": literal_as_dict(p.literal),
            "security_bits": p.security_bits, "ring_degree": p.ring_degree,
            # with bootstrapping the steps include the bootstrapper's, which also needs the conjugation key
            "rotation_steps": b.rotation_steps, "stream_scales": b.stream_scales,
            "refresh": b.refresh_mode, "refresh_note": b.refresh_note,
            "round_trips_per_block": b.plan.get("round_trips"),
            "conjugation": boot,
            # [step, level]: the blocks' own rotations happen at most at that level, so their keys may be
            # made truncated to it (``Client(key_levels=...)``); the other steps need full keys
            "key_levels": [[int(s), int(lvl)] for s, lvl in key_levels],
            "encapsulation_weight": self.encapsulation_weight,
            "bootstrap": {"bootstraps_per_block": b.plan["bootstraps_per_block"],
                          "refresh_level": b.plan["refresh_level"],  # a job's input is encrypted at this level
                          "output_level": b.plan["bootstrap_output_level"],
                          "depth": b.plan["bootstrap_depth"]} if boot else None,
            # what a client uploads once: the relinearization key, these Galois keys (seeded) and, with
            # bootstrapping, the conjugation and encapsulation keys
            "evaluation_key_bytes": evaluation_key_bytes(p, b.rotation_steps, conjugation=boot,
                                                         max_levels=dict(key_levels),
                                                         encapsulation=self.encapsulation_weight is not None)["total"],
        }


def needed_galois_levels(info: dict) -> dict[int, int | None]:
    """{Galois element: the highest level the served model uses it at, None for every level}: what an uploaded
    bundle's Galois keys must cover (a truncated key covers its ``max_level`` and below)."""
    n = info["ring_degree"]
    levels: dict[int, int | None] = {g: None for g in rotation_galois_elements(info["rotation_steps"], n)}
    for s, lvl in info.get("key_levels") or []:
        for g in rotation_galois_elements([s], n):
            if g in levels and levels[g] is None:
                levels[g] = lvl  # only listed steps may be truncated (the top level's are not listed)
    if info.get("conjugation"):
        levels[conjugation_galois_element(n)] = None
    return levels


def check_bundle_covers(info: dict, elements: list[int], max_levels: dict[int, int], encapsulation_weight: int | None
                        ) -> None:
    """FormatError, one line, unless a bundle with these Galois ``elements`` (truncated to ``max_levels``,
    element -> level) and encapsulation keys of ``encapsulation_weight`` (None: none) has every key the served
    model (``info``) uses."""
    needed = needed_galois_levels(info)
    missing = set(needed) - set(elements)
    if missing:
        conjugation = conjugation_galois_element(info["ring_degree"])
        parts = [f"the Galois keys for {len(missing - {conjugation})} of the model's rotations"] * bool(
            missing - {conjugation}) + ["the conjugation key bootstrapping needs"] * (conjugation in missing)
        raise FormatError(f"key bundle lacks {' and '.join(parts)}")
    short = sorted(g for g, lvl in max_levels.items()
                   if g in needed and (needed[g] is None or lvl < needed[g]))
    if short:
        g = short[0]
        want = "every level" if needed[g] is None else f"levels up to {needed[g]}"
        raise FormatError(f"key bundle's Galois keys for {len(short)} of the model's rotations are truncated below "
                          f"the levels it uses them at (element {g}: up to {max_levels[g]}, the model needs {want})")
    want_weight = info.get("encapsulation_weight")
    if want_weight is not None and encapsulation_weight is None:
        raise FormatError("key bundle lacks the encapsulation keys the served model's bootstrapping needs (made "
                          "with the client's keys: fhectl.circuits.bootstrap_refresh.bootstrap_keys)")
    if want_weight is not None and encapsulation_weight != want_weight:
        raise FormatError(f"key bundle's encapsulation keys are for a sparse secret of weight {encapsulation_weight}, "
                          f"the served model's bootstrapping uses {want_weight}")


__all__ = ["ModelSpec", "ServedModel", "check_bundle_covers", "needed_galois_levels", "token_capacity"]
