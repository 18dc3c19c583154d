"""The Ray executor: the queue stays in the front end, the workers are Ray actors on any machine of a cluster.

``fhectl serve --executor ray --ray-address HOST:PORT`` joins a running Ray cluster (without an address it
starts a private one on this machine) and creates one actor per slot (``--workers``). Each actor is a
``RayWorker``: a ``Worker`` that loads the served model once, like a worker process of the local pool. The
scheduler, the HTTP API and the store do not know which executor runs; this module keeps them unchanged by
translating between files in the job's folder (the front end's side) and bytes (the worker's side):

* **No server paths cross to a worker**, which may sit on another machine. The front end reads the job's
  input and sends its bytes; the actor's ``run`` is a streaming generator yielding ``("progress", block)``,
  ``("refresh", {"index", "stage", "request"})`` and finally ``("done", {"result", "summary"})``,
  ``("failed", message)`` or ``("cancelled", reason)``. The front end writes each refresh request into the
  job's folder (where the HTTP API serves it), waits for the key holder's reply file, and hands its bytes to
  the actor's ``reply`` (None cancels the job); it writes the result where the local pool's worker would.
  Actors run with ``max_concurrency=2`` so that ``reply`` reaches an actor whose ``run`` is waiting.
* **Key bundles are fetched by workers, not copied into every request.** The front end puts a bundle's bytes
  into Ray's object store once per key id and sends only the reference with each task, nested in a list so
  that Ray does not resolve it before the call. An actor that already holds an evaluator for the key id
  never touches the reference; one that does not fetches the object (Ray pulls it from the front end's node
  to the actor's), writes it to a local temporary file, memory-maps it as ``load_evaluator`` does for the
  local pool, and removes the file's name at once (the mapping keeps its pages), so nothing is left behind
  when an actor is killed. The front end keeps the references of the last ``BUNDLE_REFS_KEPT`` key ids and
  drops one whose bundle has left the store; Ray frees an object once nobody holds its reference.
* **A dead actor** (its machine gone, killed, out of memory) fails its job with a reason and is replaced,
  as a dead worker process is in the local pool.

Ray is imported only when this executor is built, so fhectl runs without it (``pip install 'fhectl[ray]'``).
Every machine that runs actors needs the same fhectl and the served checkpoint (the same ``--weights`` path
or repo id); an actor asks the cluster for one CPU.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import sys
import tempfile
import threading
import traceback
from collections import OrderedDict
from pathlib import Path

import numpy as np

from fhectl.errors import FhectlError
from fhectl.io.atomic import atomic_write_bytes
from fhectl.io.container import decode_container
from fhectl.service.executor import TaskChannel, WorkerStartError
from fhectl.service.models import ModelSpec
from fhectl.service.worker import JobCancelled, ServerKeys, Worker

log = logging.getLogger("fhectl.serve")

BUNDLE_REFS_KEPT = 8  # key ids whose bundle stays in Ray's object store between jobs
ACTOR_CONCURRENCY = 2  # run() and reply() at once
FINAL = ("done", "failed", "cancelled")


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, FhectlError) else f"{type(exc).__name__}: {exc}"


def _probe(address: str, timeout_s: float = 10.0) -> None:
    """Fail fast when nothing listens at a HOST:PORT address: ``ray.init`` would wait there for many minutes."""
    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not port.isdigit():
        return  # "auto" and other forms are Ray's to resolve
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise WorkerStartError(f"cannot join the Ray cluster at {address}: nothing answers there ({reason})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class RayWorker:
    """One slot's actor (made remote by ``RayExecutor``): a ``Worker`` (the served model and the evaluators of
    recent key ids) driven through Ray calls instead of a pipe.

    A model that fails to load does not raise (Ray would report a traceback): ``ready`` reports it."""

    def __init__(self, spec: ModelSpec, device: str):
        self.fatal: str | None = None
        self.worker: Worker | None = None
        try:
            self.worker = Worker(None, spec, device)
        except Exception as exc:  # noqa: BLE001 - reported by ready(); the front end refuses to start
            self.fatal = _reason(exc)
        self.replies: queue.Queue = queue.Queue()

    def ready(self) -> tuple[str, object]:
        if self.fatal is not None:
            return "fatal", self.fatal
        return "ready", {"pid": os.getpid(), "host": socket.gethostname()}

    def reply(self, index: int, data: bytes | None) -> None:
        """The key holder's reply to refresh ``index``, or None: cancel the job."""
        self.replies.put((index, data))

    def run(self, task: dict, bundle: list, data: bytes):
        """Run one job (``task``: key_id, segments, layers; ``bundle``: [ObjectRef of the bundle's bytes];
        ``data``: the input container) and yield its events, the outcome last."""
        while not self.replies.empty():  # nothing of an earlier job may answer this one
            self.replies.get_nowait()
        events: queue.Queue = queue.Queue()
        # The circuits report through callbacks, so the job runs in a thread of its own and this generator
        # relays what the callbacks put on ``events``.
        threading.Thread(target=self._job, args=(task, bundle, data, events), daemon=True).start()
        while True:
            event = events.get()
            yield event
            if event[0] in FINAL:
                return

    def _job(self, task: dict, bundle: list, data: bytes, events: queue.Queue) -> None:
        try:
            outcome = self._infer(task, bundle, data, events)
        except JobCancelled as exc:
            outcome = ("cancelled", str(exc))
        except FhectlError as exc:
            outcome = ("failed", str(exc))
        except Exception as exc:  # noqa: BLE001 - a job's failure must never take the actor down
            traceback.print_exc(file=sys.stderr)  # the worker's log (Ray forwards it to the server's)
            outcome = ("failed", f"internal error in the worker ({type(exc).__name__}); see the server log")
        events.put(outcome)

    def _infer(self, task: dict, bundle: list, data: bytes, events: queue.Queue) -> tuple[str, object]:
        keys = self.bundle_keys(task["key_id"], bundle)
        c = decode_container(data, "job input", expected_kind="ciphertext")
        counter = [0]

        def exchange(request: bytes, stage: str) -> bytes:
            counter[0] += 1
            events.put(("refresh", {"index": counter[0], "stage": stage, "request": bytes(request)}))
            index, reply = self.replies.get()
            if reply is None:
                raise JobCancelled("cancelled")
            if index != counter[0]:
                raise JobCancelled(f"a reply to refresh {index} came while refresh {counter[0]} was pending")
            return reply

        result, summary = self.worker.infer(keys, c, task, exchange, lambda i: events.put(("progress", i)))
        return "done", {"result": result, "summary": summary}

    def bundle_keys(self, key_id: str, bundle: list) -> ServerKeys:
        """The public keys of ``key_id``: cached, or from the bundle fetched from the object store."""
        cached = self.worker.evaluators
        if key_id in cached:
            cached.move_to_end(key_id)
            return cached[key_id]
        import ray

        fd, path = tempfile.mkstemp(prefix=f"fhectl-bundle-{key_id}-", suffix=".fhe")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(ray.get(bundle[0]))  # a read-only view of the object store: no copy in this process
            return self.worker.keys(key_id, path)  # memory-maps the file: its pages outlive its name
        finally:
            os.unlink(path)


class RayExecutor:
    """``slots`` RayWorker actors in a Ray cluster; see the module docstring."""

    slots: int = 1  # set per instance; declared here so the class shows it satisfies ``Executor``

    def __init__(self, spec: ModelSpec, device: str = "cpu", slots: int = 1, address: str | None = None,
                 ready_timeout: float = 900.0):
        try:
            import ray
        except ImportError:
            raise WorkerStartError("--executor ray needs Ray on this machine and on the workers' machines: "
                                   "pip install 'fhectl[ray]'") from None
        self.ray = ray
        self.spec, self.device, self.slots, self.address = spec, device, slots, address
        self.ready_timeout = ready_timeout
        self.stopping = False
        self._actors: list = [None] * slots
        self._bundles: OrderedDict[str, tuple[str, object]] = OrderedDict()  # key id -> (store path, ObjectRef)
        self._lock = threading.Lock()
        # Join (or, without an address, start) the cluster now, so a wrong address is one error at startup.
        kwargs = {} if address else {"include_dashboard": False}
        if address:
            _probe(address)
        try:
            # "local": a new instance even when RAY_ADDRESS is set or another cluster runs on this machine
            ray.init(address=address or "local", logging_level=logging.WARNING, namespace="fhectl-serve", **kwargs)
        except Exception as exc:  # noqa: BLE001 - ray raises ConnectionError, RuntimeError, ValueError, ...
            what = f"join the Ray cluster at {address}" if address else "start Ray on this machine"
            raise WorkerStartError(f"cannot {what}: {_first_line(exc)}") from None
        self._remote = ray.remote(RayWorker).options(max_concurrency=ACTOR_CONCURRENCY, num_cpus=1)

    # -- life cycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._actors = [self._remote.remote(self.spec, self.device) for _ in range(self.slots)]
        try:
            self._await_ready(self._actors)
        except WorkerStartError:
            self.stop()
            raise

    def _await_ready(self, actors: list) -> None:
        ray = self.ray
        try:
            answers = ray.get([a.ready.remote() for a in actors], timeout=self.ready_timeout)
        except ray.exceptions.GetTimeoutError:
            raise WorkerStartError(
                f"{len(actors)} Ray worker(s) did not load model {self.spec.name!r} within {self.ready_timeout:.0f} s"
                f" (each needs a free CPU in the cluster)") from None
        except ray.exceptions.RayError as exc:
            raise WorkerStartError(f"a Ray worker did not start: {_first_line(exc)}") from None
        for kind, payload in answers:
            if kind != "ready":
                raise WorkerStartError(f"a Ray worker could not load model {self.spec.name!r}: {payload}")

    def stop(self) -> None:
        self.stopping = True
        for actor in self._actors:
            if actor is not None:
                try:
                    self.ray.kill(actor)
                except Exception:  # noqa: BLE001 - already gone
                    pass
        self._actors = [None] * self.slots
        with self._lock:
            self._bundles.clear()
        self.ray.shutdown()  # leaves a joined cluster running; stops the private one

    def _replace(self, slot: int) -> None:
        """A new actor for ``slot`` after its actor died; the slot stays down if it cannot start."""
        try:
            self.ray.kill(self._actors[slot])
        except Exception:  # noqa: BLE001 - already gone
            pass
        self._actors[slot] = None
        if self.stopping:
            return
        actor = self._remote.remote(self.spec, self.device)
        try:
            self._await_ready([actor])
        except WorkerStartError as exc:
            log.error("slot %d stays down: %s", slot, exc)
            return
        self._actors[slot] = actor

    # -- bundles ---------------------------------------------------------------------------------------------
    def _bundle_ref(self, key_id: str, path: str):
        """The object-store reference of ``key_id``'s bundle, put there on first use."""
        with self._lock:
            for gone in [k for k, (p, _) in self._bundles.items() if not os.path.exists(p)]:
                del self._bundles[gone]  # the bundle was deleted: let Ray free it
            if key_id in self._bundles:
                self._bundles.move_to_end(key_id)
                return self._bundles[key_id][1]
        ref = self.ray.put(np.fromfile(path, dtype=np.uint8))  # a numpy buffer: workers read it in place
        with self._lock:
            self._bundles[key_id] = (path, ref)
            while len(self._bundles) > BUNDLE_REFS_KEPT:
                self._bundles.popitem(last=False)
        return ref

    # -- jobs ------------------------------------------------------------------------------------------------
    def run(self, slot: int, task: dict, channel: TaskChannel) -> tuple[str, object]:
        ray = self.ray
        actor = self._actors[slot]
        if actor is None:
            self._replace(slot)
            actor = self._actors[slot]
            if actor is None:
                return "failed", "no Ray worker could be started for this job; see the server log"
        try:
            bundle = self._bundle_ref(task["key_id"], task["bundle_path"])
            data = Path(task["input_path"]).read_bytes()
        except OSError as exc:
            return "failed", f"cannot read the job's input or key bundle from the store: {exc.strerror}"
        except Exception as exc:  # noqa: BLE001 - ray.put: the object store full, Ray gone, ...
            log.exception("job %s: the key bundle did not reach Ray's object store", task.get("job_id"))
            return "failed", f"the key bundle could not be handed to Ray ({type(exc).__name__}); see the server log"
        job = {"key_id": task["key_id"], "segments": task["segments"], "layers": task["layers"]}
        try:
            for ref in actor.run.options(num_returns="streaming").remote(job, [bundle], data):
                kind, payload = ray.get(ref)
                if kind == "progress":
                    channel.progress(payload)
                elif kind == "refresh":
                    self._refresh(actor, task, payload, channel)
                elif kind == "done":
                    atomic_write_bytes(task["result_path"], payload["result"], mode=0o600)
                    return "done", {"bytes": len(payload["result"]), "stats": payload["summary"]}
                elif kind in FINAL:
                    return kind, payload
            return "failed", "the Ray worker ended the job without an outcome; see the server log"
        except ray.exceptions.RayActorError:
            if self.stopping:
                return "failed", "the server shut down while this job was running; submit it again"
            self._replace(slot)
            return "failed", "the Ray worker running this job died; submit it again"
        except Exception as exc:  # noqa: BLE001 - a slot thread must always report its job's outcome
            if self.stopping:
                return "failed", "the server shut down while this job was running; submit it again"
            log.exception("job %s failed in the Ray executor", task.get("job_id"))
            self._replace(slot)  # the actor may still hold the abandoned job: start afresh
            return "failed", f"the Ray executor failed ({type(exc).__name__}); see the server log"

    def _refresh(self, actor, task: dict, event: dict, channel: TaskChannel) -> None:
        """Serve one refresh round trip through the job's folder, as the local pool's worker does."""
        index = event["index"]
        request = Path(task["job_dir"]) / f"refresh-{index}.request.fhe"
        atomic_write_bytes(request, event["request"], mode=0o600)
        reply_path = None
        try:
            reply_path = channel.await_refresh(index, event["stage"], str(request))
            actor.reply.remote(index, Path(reply_path).read_bytes() if reply_path is not None else None)
        finally:
            for p in (request, reply_path):  # each round trip's files are spent once the reply is read
                if p is not None:
                    Path(p).unlink(missing_ok=True)


__all__ = ["BUNDLE_REFS_KEPT", "RayExecutor", "RayWorker"]
