"""``EncryptedLlama`` with the server across HTTP: the key holder's half of a remote run.

The client embeds the prompts (with its own copy of the checkpoint, checked against the server's weights
digest), encrypts, uploads its public key bundle once, submits one job per pass and answers the server's
refresh requests; the server runs the encrypted blocks. The secret key never leaves this object. Blocks past
the server's encrypted ones, the final norm and the head run here in the clear, as in the local run
(``fhectl.llama.inference.finish_on_client``), so both runs report the same things.

When the server bootstraps (its ``info()["refresh"]`` is "bootstrap"), the bundle also holds the conjugation
key, the blocks' rotation keys truncated to the levels the server names, and the encapsulation keys; the job
makes no round trip (a refresh request would show the server intermediate values, so this client refuses to
answer one), and the range indicator that comes back with the output is read here as the local run reads it.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from fhectl.ckks.context import CKKSContext
from fhectl.ckks.params import Parameters, ParametersLiteral
from fhectl.circuits.bootstrap_refresh import bootstrap_config, bootstrap_keys
from fhectl.circuits.packing import Layout
from fhectl.circuits.range_indicator import read_indicators
from fhectl.circuits.refresh import Client, Stats
from fhectl.circuits.transformer import Segments
from fhectl.ckks.encapsulation import EncapsulationKeys
from fhectl.errors import DomainError, FormatError, InputError, KeyMismatchError, RefusedError
from fhectl.io.container import Container, bundle_containers, encode_container, write_container
from fhectl.io.objects import (encapsulation_keys_to_container, galois_keys_to_container, public_key_to_container,
                               switching_key_to_container)
from fhectl.llama.inference import RunResult, finish_on_client, greedy_decode
from fhectl.llama.model import Llama
from fhectl.llama.weights import LlamaWeights
from fhectl.service.client import ServiceClient
from fhectl.service.roundtrip import answer_refresh
from fhectl.service.wire import encode_job_input, read_result


def bundle_container(client: Client, name: str = "ephemeral", encapsulation: EncapsulationKeys | None = None
                     ) -> Container:
    """The client's public key, relinearization key and Galois keys (truncated ones with their levels) and,
    for a bootstrapping server, the ``encapsulation`` keys, as one keyset-public container (the format of
    ``fhectl keys export``, whose members these extend): public material only, by construction."""
    ctx, sk = client.ctx, client.sk
    members = {"public-key": public_key_to_container(ctx, client.pk, None),
               "relin-key": switching_key_to_container(ctx, client.relin_key, "relin-key", None),
               "galois-keys": galois_keys_to_container(ctx, client.galois_keys, None)}
    if encapsulation is not None:
        members["encapsulation-keys"] = encapsulation_keys_to_container(ctx, encapsulation, None)
    return bundle_containers("keyset-public", members, params_id=ctx.params_id, key_id=sk.key_id,
                             meta={"name": name, "profile": ctx.params.name})


def public_bundle(client: Client, name: str = "ephemeral", encapsulation: EncapsulationKeys | None = None) -> bytes:
    """``bundle_container`` as bytes (small parameter sets; use ``upload_public_bundle`` for real ones)."""
    return encode_container(bundle_container(client, name, encapsulation))


def upload_public_bundle(service: ServiceClient, client: Client, encapsulation: EncapsulationKeys | None = None
                         ) -> tuple[str, int]:
    """(token, bytes): the bundle written to a temporary file and streamed from it, so a 4 GiB bundle is
    never held in memory twice; the file is removed after the upload."""
    with tempfile.TemporaryDirectory(prefix="fhectl-bundle-") as tmp:
        path = Path(tmp) / "bundle.fhe"
        write_container(path, bundle_container(client, encapsulation=encapsulation))
        return service.upload_bundle_file(path), path.stat().st_size


def served_key_levels(info: dict, top_level: int) -> dict[int, int] | None:
    """The server's ``key_levels`` ([step, level] pairs) as ``Client(key_levels=...)`` takes them, checked
    against the chain's ``top_level``."""
    pairs = info.get("key_levels") or []
    if not (isinstance(pairs, list) and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in p)
            and 0 <= p[1] <= top_level for p in pairs)):
        raise FormatError("the server's key_levels are not [step, level] pairs of integers within the chain")
    return {s: lvl for s, lvl in pairs} or None


def key_holder(ctx: CKKSContext, info: dict, random=None) -> tuple[Client, EncapsulationKeys | None]:
    """The key holder for a served model: its keys as the server's ``info`` asks (with bootstrapping: the
    conjugation key, the blocks' keys truncated to ``key_levels``, and the encapsulation keys if the
    profile's circuit uses them)."""
    if info.get("refresh") != "bootstrap":
        return Client(ctx, info["rotation_steps"], random), None
    client = Client(ctx, info["rotation_steps"], random, conjugation=True,
                    key_levels=served_key_levels(info, ctx.params.max_level))
    return client, bootstrap_keys(client, bootstrap_config(ctx.params), random)


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
        self.refresh_mode = "bootstrap" if info.get("refresh") == "bootstrap" else "client"
        self.client, encapsulation = key_holder(self.ctx, info, random)
        self.galois_keys = self.client.galois_key_counts()
        self.token, self.bundle_bytes = upload_public_bundle(service, self.client, encapsulation)
        # The evaluation keys live on the server now; the key holder needs only its secret and public keys.
        self.client.relin_key = self.client.galois_keys = None
        del encapsulation

    def close(self) -> None:
        """Delete the bundle and its jobs on the server."""
        self.service.delete_bundle(self.token)

    def run(self, prompts: list[list[int]], out_of_domain: str = "raise") -> tuple[list[np.ndarray], RunResult]:
        """One job over a batch of prompts; as ``EncryptedLlama.run``: with bootstrapping, a range indicator
        that may have left its domain is a DomainError (``out_of_domain="raise"``) or only reported in
        ``result.indicator`` (``"report"``)."""
        if out_of_domain not in ("raise", "report"):
            raise InputError(f"out_of_domain must be 'raise' or 'report', got {out_of_domain!r}")
        t_start = time.perf_counter()
        seg = Segments(tuple(len(p) for p in prompts))
        if seg.total > self.capacity:
            raise InputError(f"{seg.total} tokens exceed the {self.capacity} the server's layout holds; fewer prompts")
        bootstrapping = self.refresh_mode == "bootstrap"
        result = RunResult(self.n_layers, self.cfg.n_layer, key_bytes=self.bundle_bytes, galois_keys=self.galois_keys,
                           layout={"slots": self.layout.slots, "tokens": self.layout.tokens,
                                   "features_per_chunk": self.layout.chunk, "prompts": len(prompts),
                                   "tokens_used": seg.total}, refresh=self.refresh_mode)
        refs = [self.model.embed(p) for p in prompts]  # (T_i, C) each
        x = np.concatenate(refs)
        # with bootstrapping, encrypted at the level a refresh returns, where every block starts
        level = self.info["bootstrap"]["refresh_level"] if bootstrapping else None
        (h,) = self.client.encrypt_hidden(self.layout, x / self.info["stream_scales"][0], level=level)
        job = self.service.submit(self.token, encode_job_input(self.ctx, h, model=self.info["name"],
                                                               segments=list(seg.lengths), layers=self.n_layers))
        stats: Stats = result.stats

        def answer(request: bytes) -> bytes:
            if bootstrapping:  # the key holder decrypts nothing but the outputs of a bootstrapped job
                raise RefusedError("the server asked for a refresh in a bootstrapped job; refusing to decrypt "
                                   "intermediate values (it said it bootstraps)")
            return answer_refresh(self.client, request, stats)

        data = self.service.follow(self.token, job["job_id"], answer, on_state=self.on_state)
        got = read_result(self.ctx, data, self.client.sk.key_id)
        x = got.stream_scale * self.client.decrypt_hidden(self.layout, [got.output], seg.total, self.cfg.n_embd)
        if bootstrapping:
            self._read_indicator(got, result, out_of_domain)
        elif got.indicator is not None:
            raise FormatError("the job result holds a range indicator, but the server said it uses client refresh")
        for i in range(self.n_layers):
            refs = [self.model.block(r, i) for r in refs]
        logits, result.prompts = finish_on_client(self.model, x, refs, seg, self.n_layers)
        result.stage_seconds = got.stats.get("stage_seconds", {})
        result.seconds_total = time.perf_counter() - t_start
        return logits, result

    def _read_indicator(self, got, result: RunResult, out_of_domain: str) -> None:
        """The key holder reads the range indicator with the outputs, as ``EncryptedLlama.run`` does."""
        if got.indicator is None:
            raise FormatError("the server said it bootstraps, but the job result holds no range indicator")
        result.bootstrap = got.bootstrap
        verdict = read_indicators(got.indicator, self.client.decryptor, self.params.slots, got.squarings)
        result.indicator = verdict.as_dict()
        result.indicator["summary"] = verdict.summary()
        if not verdict.clean and out_of_domain == "raise":
            raise DomainError(f"{verdict.summary()}; the outputs may be wrong (client refresh shows the "
                              "values; --allow-out-of-domain reports this instead of failing)")

    def generate(self, prompt_ids: list[int], max_new_tokens: int, stop_ids=(), on_token=None):
        return greedy_decode(self.run, self.capacity, prompt_ids, max_new_tokens, stop_ids, on_token)


__all__ = ["RemoteLlama", "bundle_container", "key_holder", "parameters_of", "public_bundle", "served_key_levels",
           "upload_public_bundle"]
