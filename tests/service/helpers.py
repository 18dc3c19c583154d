"""A key holder for the service tests: keys for the served model, inputs, and answers to refresh requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from fhectl.ckks.context import CKKSContext
from fhectl.circuits.packing import Layout
from fhectl.circuits.refresh import Client, Stats
from fhectl.circuits.transformer import Segments
from fhectl.llama.model import Llama
from fhectl.service.client import ServiceClient
from fhectl.service.remote_llama import key_holder, parameters_of, public_bundle
from fhectl.service.roundtrip import answer_refresh
from fhectl.service.wire import decode_result, encode_job_input

from .conftest import MODEL


class KeyHolder:
    """One secret key, its uploaded bundle, and thread-safe refresh answers (several jobs may share it)."""

    def __init__(self, url: str, weights, steps=None):
        """``steps``: make Galois keys for these rotation steps only (full keys, no bootstrapping keys) instead of
        the keys the served model asks for."""
        self.service = ServiceClient(url)
        self.info = self.service.model(MODEL)
        self.params = parameters_of(self.info, allow_insecure=True)
        self.ctx = CKKSContext(self.params, device="cpu")
        if steps is None:
            self.client, encapsulation = key_holder(self.ctx, self.info)
        else:
            self.client, encapsulation = Client(self.ctx, steps), None
        self.bundle = public_bundle(self.client, encapsulation=encapsulation)
        self.model = Llama(weights)
        cfg = weights.config
        self.layout = Layout.for_model(self.params.slots, self.info["max_tokens"],
                                       max(cfg.n_embd, cfg.n_head * cfg.head_dim))
        self.lock = threading.Lock()
        self.token: str | None = None

    def upload(self) -> str:
        self.token = self.service.upload_bundle(self.bundle)
        return self.token

    def job_input(self, prompt: list[int], layers: int = 1) -> bytes:
        x = self.model.embed(prompt) / self.info["stream_scales"][0]
        level = self.info["bootstrap"]["refresh_level"] if self.info["refresh"] == "bootstrap" else None
        with self.lock:
            (h,) = self.client.encrypt_hidden(self.layout, x, level=level)
        return encode_job_input(self.ctx, h, model=MODEL, segments=[len(prompt)], layers=layers)

    def answer(self, request: bytes) -> bytes:
        with self.lock:
            return answer_refresh(self.client, request, Stats())

    def hidden(self, result: bytes, n_tokens: int) -> np.ndarray:
        """The decrypted hidden state of a job's result, in model units."""
        ct, scale, _ = decode_result(self.ctx, result, self.client.sk.key_id)
        with self.lock:
            return scale * self.client.decrypt_hidden(self.layout, [ct], n_tokens, self.model.config.n_embd)

    def reference(self, prompt: list[int], layers: int = 1) -> np.ndarray:
        h = self.model.embed(prompt)
        for i in range(layers):
            h = self.model.block(h, i)
        return h


def segments(prompt) -> Segments:
    return Segments((len(prompt),))


# One thread for BLAS and for the engine, as the servers of these tests run: at N = 2^10 a 2-thread team on a
# shared 2-core machine mostly waits (the planning's QR factorisations took minutes under load, seconds alone).
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}

_LOCAL_RUN = """
import json, sys
import numpy as np
from fhectl.ckks.params import load_parameters
from fhectl.llama.inference import EncryptedLlama
from fhectl.llama.pipeline import calibrated_domains, load_model
checkpoint, profile, layers, max_tokens, refresh, prompts, out = sys.argv[1:]
weights, tok, _ = load_model("tiny", checkpoint)
engine = EncryptedLlama(weights, load_parameters(profile, allow_insecure=True), calibrated_domains(weights, tok)[0],
                        int(layers), max_tokens=int(max_tokens), refresh=refresh)
logits, result = engine.run(json.loads(prompts))
np.save(out + "/logits.npy", np.stack(logits))
with open(out + "/result.json", "w") as f:
    json.dump(result.as_dict(), f)
"""


def local_run(checkpoint: Path, cache: Path, out: Path, prompts, *, profile: str, layers: int, max_tokens: int,
              refresh: str) -> tuple[np.ndarray, dict]:
    """The local run (``EncryptedLlama``) on ``prompts`` in a fresh process with one thread, as a reference for
    a remote one: (logits (prompts, vocab), ``RunResult.as_dict()``)."""
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), **ONE_THREAD)
    subprocess.run([sys.executable, "-c", _LOCAL_RUN, str(checkpoint), profile, str(layers), str(max_tokens), refresh,
                    json.dumps(prompts), str(out)], env=env, check=True, timeout=600)
    return np.load(out / "logits.npy"), json.loads((out / "result.json").read_text())