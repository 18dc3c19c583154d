"""One worker process: loads the served model once, then runs jobs sent over its pipe, one at a time.

Messages (tuples over a ``multiprocessing`` pipe; bulk data stays in files under the job's folder):

* front end -> worker: ``("run", task)``, ``("refresh_reply", path)``, ``("cancel", reason)``, ``("stop", None)``
* worker -> front end: ``("ready", info)`` or ``("fatal", message)`` once at start; per job ``("progress",
  block)``, ``("refresh", {"index", "stage", "path"})`` and finally ``("done", summary)``, ``("failed",
  message)`` or ``("cancelled", reason)``.

A worker holds the model and, per key id, the evaluation keys it last used (read from the store, never from
a request). It never holds a secret key. With client refresh, refreshes go to the key holder through the
front end; when the served model bootstraps, the worker builds the bootstrapper from the bundle's public keys
(``fhectl.circuits.bootstrap_refresh.server_bootstrapper``), runs every block with no round trip, and returns
the range indicator's public state and the bootstrapping statistics with the output.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from fhectl.ckks.bootstrap import Bootstrapper
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encapsulation import EncapsulationKeys
from fhectl.ckks.evaluator import Evaluator
from fhectl.circuits.bootstrap_refresh import BootstrapRefresh, BootstrapStats, server_bootstrapper
from fhectl.circuits.range_indicator import RangeIndicator
from fhectl.circuits.refresh import Stats
from fhectl.circuits.transformer import Segments, StageClock
from fhectl.errors import FhectlError, MissingKeyError
from fhectl.io.atomic import atomic_write_bytes
from fhectl.io.container import read_container
from fhectl.io.keyring import read_public_export
from fhectl.io.objects import (container_to_ciphertexts, container_to_encapsulation_keys, container_to_galois_keys,
                               container_to_switching_key)
from fhectl.service.models import ModelSpec, ServedModel
from fhectl.service.roundtrip import RemoteRefresh
from fhectl.service.wire import encode_result

EVALUATORS_KEPT = 2  # bundles are GiBs at N = 2^16: keep the last few, read the others again


class JobCancelled(Exception):
    pass


def load_evaluator(ctx: CKKSContext, bundle_path: str | os.PathLike) -> Evaluator:
    """An evaluator over a stored bundle's relinearization and Galois keys (the public key is not needed).

    The bundle is memory-mapped and each key is expanded on first use, so a worker holding several clients'
    bundles keeps on disk what their jobs have not touched yet."""
    _, members = read_public_export(bundle_path, mmap=True)
    rlk = container_to_switching_key(ctx, members["relin-key"], "relin-key", "bundle relin-key", lazy=True)
    gk = container_to_galois_keys(ctx, members["galois-keys"], "bundle galois-keys", lazy=True)
    return Evaluator(ctx, rlk, gk)


@dataclass
class ServerKeys:
    """One key holder's public material on a worker: the evaluator and, for a bootstrapping model, the
    encapsulation keys (if its circuit uses them) and the bootstrapper built from both on first use."""

    ev: Evaluator
    encapsulation: EncapsulationKeys | None = None
    bootstrapper: Bootstrapper | None = None

    def bootstrap(self, ctx: CKKSContext) -> Bootstrapper:
        if self.bootstrapper is None:
            self.bootstrapper = server_bootstrapper(ctx, self.ev, self.encapsulation)
        return self.bootstrapper


def load_server_keys(ctx: CKKSContext, bundle_path: str | os.PathLike, encapsulation: bool) -> ServerKeys:
    """``load_evaluator``, and with ``encapsulation`` the bundle's encapsulation keys (MissingKeyError if absent:
    the upload check refuses such a bundle, so this is a store changed behind the server's back)."""
    ev = load_evaluator(ctx, bundle_path)
    if not encapsulation:
        return ServerKeys(ev)
    _, members = read_public_export(bundle_path, mmap=True)
    if "encapsulation-keys" not in members:
        raise MissingKeyError("the key bundle has no encapsulation keys, which this model's bootstrapping needs")
    keys = container_to_encapsulation_keys(ctx, members["encapsulation-keys"], "bundle encapsulation-keys", lazy=True)
    return ServerKeys(ev, keys)


class Worker:
    def __init__(self, conn, spec: ModelSpec, device: str):
        self.conn = conn
        self.model = ServedModel(spec)
        self.ctx = CKKSContext(self.model.params, device=device)
        self.evaluators: OrderedDict[str, ServerKeys] = OrderedDict()

    def keys(self, key_id: str, bundle_path: str) -> ServerKeys:
        """The public keys of ``key_id`` (cached for the last EVALUATORS_KEPT key ids)."""
        if key_id in self.evaluators:
            self.evaluators.move_to_end(key_id)
            return self.evaluators[key_id]
        keys = load_server_keys(self.ctx, bundle_path, self.model.encapsulation_weight is not None)
        self.evaluators[key_id] = keys
        while len(self.evaluators) > EVALUATORS_KEPT:
            self.evaluators.popitem(last=False)
        return keys

    def exchange(self, job_dir: Path, counter: list[int]):
        def send(request: bytes, stage: str) -> bytes:
            counter[0] += 1
            path = job_dir / f"refresh-{counter[0]}.request.fhe"
            atomic_write_bytes(path, request, mode=0o600)
            self.conn.send(("refresh", {"index": counter[0], "stage": stage, "path": str(path)}))
            kind, payload = self.conn.recv()
            if kind == "cancel":
                raise JobCancelled(payload)
            if kind != "refresh_reply":
                raise JobCancelled(f"unexpected message {kind!r} while waiting for a refresh")
            data = Path(payload).read_bytes()
            for p in (path, Path(payload)):  # each round trip's files are spent once the reply is read
                p.unlink(missing_ok=True)
            return data
        return send

    def run(self, task: dict) -> tuple[str, object]:
        keys = self.keys(task["key_id"], task["bundle_path"])
        c = read_container(task["input_path"], expected_kind="ciphertext")
        data, summary = self.infer(keys, c, task, self.exchange(Path(task["job_dir"]), [0]),
                                   lambda i: self.conn.send(("progress", i)))
        atomic_write_bytes(task["result_path"], data, mode=0o600)
        return "done", {"bytes": len(data), "stats": summary}

    def infer(self, keys: ServerKeys, c, task: dict, exchange, on_block) -> tuple[bytes, dict]:
        """The served blocks over the job input container ``c``: (the encoded result, its summary).
        ``exchange(request, stage) -> reply`` is one refresh round trip (never called when the model
        bootstraps); ``on_block(i)`` reports progress."""
        (h,) = container_to_ciphertexts(self.ctx, c, "job input")
        seg = Segments(tuple(task["segments"]))
        clock = StageClock()
        blocks, ev = self.model.blocks, keys.ev
        scale = blocks.stream_scales[task["layers"] - 1]

        def progress(i, _h, _seconds):
            on_block(i)

        if not self.model.bootstraps:
            stats = Stats()
            refresh = RemoteRefresh(self.ctx, task["key_id"], exchange, stats)
            h = blocks.forward(ev, h, refresh, seg, 0, task["layers"], clock, on_block=progress)
            summary = {"refresh": "client", "round_trips": stats.refresh_round_trips,
                       "bytes_to_client": stats.refresh_bytes_to_client,
                       "bytes_to_server": stats.refresh_bytes_to_server, "stage_seconds": dict(clock.seconds)}
            return encode_result(self.ctx, h, scale, summary), summary
        # Bootstrapping: as EncryptedLlama's pass, with the bundle's public keys and no key holder at all.
        boot = keys.bootstrap(self.ctx)
        stats = BootstrapStats()
        indicator = RangeIndicator.fitting(ev, self.model.params.scale, boot.output_level - 1)
        refresh = BootstrapRefresh(ev, boot, stats, indicator)
        start = blocks.plan["refresh_level"]  # every block starts where a refresh leaves
        if h.level > start:
            h = ev.drop_level(h, start)
        h = blocks.forward(ev, h, refresh, seg, 0, task["layers"], clock, on_block=progress)
        summary = {"refresh": "bootstrap", "round_trips": 0, "bytes_to_client": 0, "bytes_to_server": 0,
                   "bootstraps": stats.bootstraps, "stage_seconds": dict(clock.seconds)}
        data = encode_result(self.ctx, h, scale, summary, indicator=indicator.public_state(),
                             squarings=indicator.squarings, bootstrap=stats.as_dict())
        return data, summary

    def serve(self) -> None:
        while True:
            try:
                kind, payload = self.conn.recv()
            except (EOFError, OSError):
                return
            if kind == "stop":
                return
            if kind != "run":
                continue
            try:
                outcome = self.run(payload)
            except JobCancelled as exc:
                outcome = ("cancelled", str(exc))
            except FhectlError as exc:
                outcome = ("failed", str(exc))
            except Exception as exc:  # noqa: BLE001 - a job's failure must never take the worker down
                traceback.print_exc(file=sys.stderr)  # the server's log, never the client's response
                outcome = ("failed", f"internal error in the worker ({type(exc).__name__}); see the server log")
            self.conn.send(outcome)


def worker_main(conn, spec: ModelSpec, device: str) -> None:
    """Entry point of a worker process (spawned, so nothing is inherited but these arguments)."""
    try:
        worker = Worker(conn, spec, device)
    except Exception as exc:  # noqa: BLE001 - reported to the front end, which refuses to start
        conn.send(("fatal", str(exc) if isinstance(exc, FhectlError) else f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", {"pid": os.getpid()}))
    worker.serve()


__all__ = ["ServerKeys", "Worker", "load_evaluator", "load_server_keys", "worker_main"]
