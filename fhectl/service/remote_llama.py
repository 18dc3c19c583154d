"""``EncryptedLlama`` with the server across HTTP: the key holder's half of a remote run.

The client embeds the prompts (with its own copy of the checkpoint, checked against the server's weights
digest), encrypts, uploads its public key bundle once, submits one job per pass and answers the server's
refresh requests; the server runs the encrypted blocks. The secret key never leaves this object. Blocks past
the server's encrypted ones, the final norm and the head run here in the clear, as in the local run
(``fhectl.llama.inference.finish_on_client``), so both runs report the same things.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from fhectl.ckks.context import CKKSContext
from fhectl.ckks.params import Parameters, ParametersLiteral
from fhectl.circuits.packing import Layout
from fhectl.circuits.refresh import Client, Stats
from fhectl.circuits.transformer import Segments
from fhectl.errors import InputError, KeyMismatchError
from fhectl.io.container import Container, bundle_containers, encode_container, write_container
from fhectl.io.objects import galois_keys_to_container, public_key_to_container, switching_key_to_container
from fhectl.llama.inference import RunResult, finish_on_client, greedy_decode
from fhectl.llama.model import Llama
from fhectl.llama.weights import LlamaWeights
from fhectl.service.client import ServiceClient
from fhectl.service.roundtrip import answer_refresh
from fhectl.service.wire import decode_result, encode_job_input


def bundle_container(client: Client, name: str = "ephemeral") -> Container:
    """The client's public key, relinearization key and Galois keys as one keyset-public container (the
    format of ``fhectl keys export``): public material only, by construction."""
    ctx, sk = client.ctx, client.sk
    members = {"public-key": public_key_to_container(ctx, client.pk, None),
               "relin-key": switching_key_to_container(ctx, client.relin_key, "relin-key", None),
               "galois-keys": galois_keys_to_container(ctx, client.galois_keys, None)}
    return bundle_containers("keyset-public", members, params_id=ctx.params_id, key_id=sk.key_id,
                             meta={"name": name, "profile": ctx.params.name})


def public_bundle(client: Client, name: str = "ephemeral") -> bytes:
    """``bundle_container`` as bytes (small parameter sets; use ``upload_public_bundle`` for real ones)."""
    return encode_container(bundle_container(client, name))


def upload_public_bundle(service: ServiceClient, client: Client) -> tuple[str, int]:
    """(token, bytes): the bundle written to a temporary file and streamed from it, so a 4 GiB bundle is
    never held in memory twice; the file is removed after the upload."""
    with tempfile.TemporaryDirectory(prefix="fhectl-bundle-") as tmp:
        path = Path(tmp) / "bundle.fhe"
        write_container(path, bundle_container(client))
        return service.upload_bundle_file(path), path.stat().st_size


def parameters_of(info: dict, allow_insecure: bool) -> Parameters:
    """The served parameter set, rebuilt from its literal and checked against the id the server states."""
    params = Parameters.from_literal(ParametersLiteral.from_mapping(info["parameters"], source="server parameters"),
                                     allow_insecure=allow_insecure)
    if params.params_id != info["params_id"]:
        raise KeyMismatchError(f"the server's parameters hash to {params.params_id!r}, not the {info['params_id']!r} "
                               "it states")
    return params


class RemoteLlama:
    def __init__(self, service: ServiceClient, model: str | None, weights: LlamaWeights, *, device: str = "cpu",
                 allow_insecure: bool = False, random=None, on_state=None):
        """``model``: the served model's name, or None for the server's only model."""
        self.service, self.on_state = service, on_state
        if model is None:
            served = service.models()
            if len(served) != 1:
                raise InputError(f"the server serves {len(served)} models; name one")
            model = served[0]["name"]
        self.info = info = service.model(model)
        if weights.weights_digest() != info["weights_digest"]:
            raise KeyMismatchError(f"the local weights differ from the ones the server runs as {model!r} (digest "
                                   f"{info['weights_digest'][:12]}...): the client embeds with its own copy")
        self.model, self.cfg = Llama(weights), weights.config
        self.params = parameters_of(info, allow_insecure)
        self.n_layers = info["encrypted_layers"]
        self.capacity = info["token_capacity"]
        self.layout = Layout.for_model(self.params.slots, info["max_tokens"],
                                       max(self.cfg.n_embd, self.cfg.n_head * self.cfg.head_dim))
        self.ctx = CKKSContext(self.params, device=device)
        self.client = Client(self.ctx, info["rotation_steps"], random)
        self.token, self.bundle_bytes = upload_public_bundle(service, self.client)
        # The evaluation keys live on the server now; the key holder needs only its secret and public keys.
        self.client.relin_key = self.client.galois_keys = None

    def close(self) -> None:
        """Delete the bundle and its jobs on the server."""
        self.service.delete_bundle(self.token)

    def run(self, prompts: list[list[int]]) -> tuple[list[np.ndarray], RunResult]:
        t_start = time.perf_counter()
        seg = Segments(tuple(len(p) for p in prompts))
        if seg.total > self.capacity:
            raise InputError(f"{seg.total} tokens exceed the {self.capacity} the server's layout holds; fewer prompts")
        result = RunResult(self.n_layers, self.cfg.n_layer, key_bytes=self.bundle_bytes,
                           layout={"slots": self.layout.slots, "tokens": self.layout.tokens,
                                   "features_per_chunk": self.layout.chunk, "prompts": len(prompts),
                                   "tokens_used": seg.total})
        refs = [self.model.embed(p) for p in prompts]  # (T_i, C) each
        x = np.concatenate(refs)
        (h,) = self.client.encrypt_hidden(self.layout, x / self.info["stream_scales"][0])
        job = self.service.submit(self.token, encode_job_input(self.ctx, h, model=self.info["name"],
                                                               segments=list(seg.lengths), layers=self.n_layers))
        stats: Stats = result.stats

        def answer(request: bytes) -> bytes:
            return answer_refresh(self.client, request, stats)

        data = self.service.follow(self.token, job["job_id"], answer, on_state=self.on_state)
        out, scale, server_stats = decode_result(self.ctx, data, self.client.sk.key_id)
        x = scale * self.client.decrypt_hidden(self.layout, [out], seg.total, self.cfg.n_embd)
        for i in range(self.n_layers):
            refs = [self.model.block(r, i) for r in refs]
        logits, result.prompts = finish_on_client(self.model, x, refs, seg, self.n_layers)
        result.stage_seconds = server_stats.get("stage_seconds", {})
        result.seconds_total = time.perf_counter() - t_start
        return logits, result

    def generate(self, prompt_ids: list[int], max_new_tokens: int, stop_ids=(), on_token=None):
        return greedy_decode(self.run, self.capacity, prompt_ids, max_new_tokens, stop_ids, on_token)


__all__ = ["RemoteLlama", "bundle_container", "parameters_of", "public_bundle", "upload_public_bundle"]
