"""A key holder for the service tests: keys for the served model, inputs, and answers to refresh requests."""

from __future__ import annotations

import threading

import numpy as np

from fhectl.ckks.context import CKKSContext
from fhectl.circuits.packing import Layout
from fhectl.circuits.refresh import Client, Stats
from fhectl.circuits.transformer import Segments
from fhectl.llama.model import Llama
from fhectl.service.client import ServiceClient
from fhectl.service.remote_llama import parameters_of, public_bundle
from fhectl.service.roundtrip import answer_refresh
from fhectl.service.wire import decode_result, encode_job_input

from .conftest import MODEL


class KeyHolder:
    """One secret key, its uploaded bundle, and thread-safe refresh answers (several jobs may share it)."""

    def __init__(self, url: str, weights, steps=None):
        self.service = ServiceClient(url)
        self.info = self.service.model(MODEL)
        self.params = parameters_of(self.info, allow_insecure=True)
        self.ctx = CKKSContext(self.params, device="cpu")
        self.client = Client(self.ctx, self.info["rotation_steps"] if steps is None else steps)
        self.bundle = public_bundle(self.client)
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
        with self.lock:
            (h,) = self.client.encrypt_hidden(self.layout, x)
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
