"""One worker process: loads the served model once, then runs jobs sent over its pipe, one at a time.

Messages (tuples over a ``multiprocessing`` pipe; bulk data stays in files under the job's folder):

* front end -> worker: ``("run", task)``, ``("refresh_reply", path)``, ``("cancel", reason)``, ``("stop", None)``
* worker -> front end: ``("ready", info)`` or ``("fatal", message)`` once at start; per job ``("progress",
  block)``, ``("refresh", {"index", "stage", "path"})`` and finally ``("done", summary)``, ``("failed",
  message)`` or ``("cancelled", reason)``.

A worker holds the model and, per key id, the evaluation keys it last used (read from the store, never from
a request). It never holds a secret key: refreshes go to the key holder through the front end.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections import OrderedDict
from pathlib import Path

from fhectl.ckks.context import CKKSContext
from fhectl.ckks.evaluator import Evaluator
from fhectl.circuits.refresh import Stats
from fhectl.circuits.transformer import Segments, StageClock
from fhectl.errors import FhectlError
from fhectl.io.atomic import atomic_write_bytes
from fhectl.io.container import read_container
from fhectl.io.keyring import read_public_export
from fhectl.io.objects import container_to_ciphertexts, container_to_galois_keys, container_to_switching_key
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


class Worker:
    def __init__(self, conn, spec: ModelSpec, device: str):
        self.conn = conn
        self.model = ServedModel(spec)
        self.ctx = CKKSContext(self.model.params, device=device)
        self.evaluators: OrderedDict[str, Evaluator] = OrderedDict()

    def evaluator(self, key_id: str, bundle_path: str) -> Evaluator:
        if key_id in self.evaluators:
            self.evaluators.move_to_end(key_id)
            return self.evaluators[key_id]
        ev = load_evaluator(self.ctx, bundle_path)
        self.evaluators[key_id] = ev
        while len(self.evaluators) > EVALUATORS_KEPT:
            self.evaluators.popitem(last=False)
        return ev

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
        ev = self.evaluator(task["key_id"], task["bundle_path"])
        c = read_container(task["input_path"], expected_kind="ciphertext")
        data, summary = self.infer(ev, c, task, self.exchange(Path(task["job_dir"]), [0]),
                                   lambda i: self.conn.send(("progress", i)))
        atomic_write_bytes(task["result_path"], data, mode=0o600)
        return "done", {"bytes": len(data), "stats": summary}

    def infer(self, ev: Evaluator, c, task: dict, exchange, on_block) -> tuple[bytes, dict]:
        """The served blocks over the job input container ``c``: (the encoded result, its summary).
        ``exchange(request, stage) -> reply`` is one refresh round trip; ``on_block(i)`` reports progress."""
        (h,) = container_to_ciphertexts(self.ctx, c, "job input")
        stats = Stats()
        refresh = RemoteRefresh(self.ctx, task["key_id"], exchange, stats)
        seg = Segments(tuple(task["segments"]))
        clock = StageClock()
        blocks = self.model.blocks
        h = blocks.forward(ev, h, refresh, seg, 0, task["layers"], clock, on_block=lambda i, _h, _s: on_block(i))
        summary = {"round_trips": stats.refresh_round_trips, "bytes_to_client": stats.refresh_bytes_to_client,
                   "bytes_to_server": stats.refresh_bytes_to_server, "stage_seconds": dict(clock.seconds)}
        return encode_result(self.ctx, h, blocks.stream_scales[task["layers"] - 1], summary), summary

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


__all__ = ["Worker", "load_evaluator", "worker_main"]
