"""Where jobs run: the ``Executor`` interface and its local implementation, a pool of worker processes.

The scheduler (``fhectl.service.jobs``) owns the queue and the job records; an executor only runs one task
at a time per slot and relays the task's events to a ``TaskChannel``: progress, and each refresh request,
which blocks until the key holder's reply arrives (or the job is cancelled). Workers are separate processes
(spawned, so a crash or a runaway job cannot take the front end with it); a worker that dies is replaced and
its job is reported failed, never lost.
"""

from __future__ import annotations

import multiprocessing
import threading
from typing import Protocol

from fhectl.errors import FhectlError
from fhectl.service.models import ModelSpec
from fhectl.service.worker import worker_main


class TaskChannel(Protocol):
    def progress(self, block: int) -> None: ...

    def await_refresh(self, index: int, stage: str, request_path: str) -> str | None:
        """The path of the key holder's reply, or None when the job was cancelled or timed out."""
        ...


class Executor(Protocol):
    slots: int

    def start(self) -> None: ...

    def run(self, slot: int, task: dict, channel: TaskChannel) -> tuple[str, object]:
        """Run ``task`` on ``slot`` (blocking); ("done", summary), ("failed", message) or ("cancelled", why)."""
        ...

    def stop(self) -> None: ...


class WorkerStartError(FhectlError):
    exit_code = 1


class _Slot:
    def __init__(self, ctx, spec: ModelSpec, device: str, ready_timeout: float):
        self.ctx, self.spec, self.device, self.ready_timeout = ctx, spec, device, ready_timeout
        self.conn = None
        self.process = None

    def start(self) -> None:
        parent, child = self.ctx.Pipe(duplex=True)
        self.process = self.ctx.Process(target=worker_main, args=(child, self.spec, self.device), daemon=True)
        self.process.start()
        child.close()
        self.conn = parent
        if not parent.poll(self.ready_timeout):
            self.kill()
            raise WorkerStartError(f"a worker did not load model {self.spec.name!r} within {self.ready_timeout:.0f} s")
        try:
            kind, payload = parent.recv()
        except (EOFError, OSError):
            kind, payload = "fatal", "the worker process exited while loading the model"
        if kind != "ready":
            self.kill()
            raise WorkerStartError(f"a worker could not load model {self.spec.name!r}: {payload}")

    def kill(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        if self.conn is not None:
            self.conn.close()
        self.conn = self.process = None

    def stop(self) -> None:
        if self.conn is not None:
            try:
                self.conn.send(("stop", None))
            except (OSError, ValueError):
                pass
        if self.process is not None:
            self.process.join(10)
        self.kill()


class LocalProcessPool:
    """``slots`` worker processes on this machine, each holding the served model."""

    def __init__(self, spec: ModelSpec, device: str = "cpu", slots: int = 1, ready_timeout: float = 900.0):
        ctx = multiprocessing.get_context("spawn")  # no forked copies of the front end's threads and locks
        self.slots = slots
        self.stopping = False
        self._slots = [_Slot(ctx, spec, device, ready_timeout) for _ in range(slots)]

    def start(self) -> None:
        # Load the model in all workers at once: at 2 cores the loads overlap with nothing else anyway.
        errors: list[Exception] = []

        def start_one(s: _Slot):
            try:
                s.start()
            except Exception as exc:  # noqa: BLE001 - collected and raised once below
                errors.append(exc)
        threads = [threading.Thread(target=start_one, args=(s,)) for s in self._slots]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.stop()
            raise errors[0]

    def run(self, slot: int, task: dict, channel: TaskChannel) -> tuple[str, object]:
        s = self._slots[slot]
        try:
            s.conn.send(("run", task))
            while True:
                kind, payload = s.conn.recv()
                if kind == "progress":
                    channel.progress(payload)
                elif kind == "refresh":
                    reply = channel.await_refresh(payload["index"], payload["stage"], payload["path"])
                    s.conn.send(("refresh_reply", reply) if reply is not None else ("cancel", "cancelled"))
                elif kind in ("done", "failed", "cancelled"):
                    return kind, payload
        except (EOFError, OSError, ValueError, AttributeError):
            # The worker died (killed, out of memory) or was stopped: replace it, report the job failed.
            s.kill()
            if self.stopping:
                return "failed", "the server shut down while this job was running; submit it again"
            try:
                s.start()
            except Exception:  # noqa: BLE001 - the slot stays down; the next run reports it again
                pass
            return "failed", "the worker process running this job died; submit it again"

    def stop(self) -> None:
        self.stopping = True
        for s in self._slots:
            s.stop()


__all__ = ["Executor", "LocalProcessPool", "TaskChannel", "WorkerStartError"]
