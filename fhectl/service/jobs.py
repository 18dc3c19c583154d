"""The job queue: admission limits, dispatch to an executor's slots, refresh rendezvous, restart recovery.

Every accepted job has a record on disk before the client hears "accepted", and every state change is
written before it is announced, so a restart finds each job where it was: queued jobs run again (their input
is on disk), jobs that were running are reported failed ("the server restarted"), because a client-refresh
job cannot resume halfway without its key holder's cooperation. No accepted job disappears silently.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

from fhectl.errors import InputError
from fhectl.service.executor import Executor
from fhectl.service.store import JobRecord, NotFound, Store


class QueueFull(InputError):
    """Admission refused for now: the queue or the bundle's job allowance is full (HTTP 429)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class StaleRefresh(InputError):
    """A reply for a refresh the job is not waiting for (HTTP 409)."""


@dataclass(frozen=True)
class Limits:
    max_queue: int = 16  # jobs queued or running, all clients together
    max_jobs_per_bundle: int = 2  # unfinished jobs per key bundle
    refresh_timeout_s: float = 600.0  # how long a job waits for its key holder's refresh before it fails
    retry_after_s: int = 5


@dataclass
class _RefreshWait:
    index: int
    stage: str
    request_path: str
    event: threading.Event
    reply_path: str | None = None


class Scheduler:
    def __init__(self, store: Store, executor: Executor, limits: Limits, params_id: str):
        self.store, self.executor, self.limits, self.params_id = store, executor, limits, params_id
        self.jobs: dict[str, JobRecord] = {}
        self.queue: deque[str] = deque()
        self.waits: dict[str, _RefreshWait] = {}
        self.versions: dict[str, int] = {}
        self.cond = threading.Condition()
        self.accepting = False
        self.stopping = False
        self.threads: list[threading.Thread] = []
        self.running: dict[str, int] = {}  # job id -> slot
        self.stop_reasons: dict[str, tuple[str, str]] = {}  # job id -> (final state, message) once stopped early

    # -- life cycle ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Recover the store's jobs, start the executor and one dispatch thread per slot."""
        self.store.clear_incoming()
        for job in self.store.load_jobs():
            if job.state in ("running", "awaiting_refresh"):
                job.state, job.error = "failed", "the server restarted while this job was running; submit it again"
                self.store.save_job(job)
            self.jobs[job.job_id] = job
            self.versions[job.job_id] = 0
        for job in sorted((j for j in self.jobs.values() if j.state == "queued"), key=lambda j: j.created):
            self.queue.append(job.job_id)
        self.executor.start()
        self.accepting = True
        for slot in range(self.executor.slots):
            t = threading.Thread(target=self._dispatch, args=(slot,), name=f"fhectl-slot-{slot}", daemon=True)
            t.start()
            self.threads.append(t)

    def shutdown(self, grace_s: float) -> None:
        """Stop taking jobs, give running ones ``grace_s`` to finish, then fail them; queued ones stay queued
        on disk and run after the next start."""
        with self.cond:
            self.accepting = False
            self.stopping = True
            self.cond.notify_all()
        deadline = time.monotonic() + grace_s
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with self.cond:
            for job_id in list(self.running):
                self.stop_reasons[job_id] = ("failed", "the server shut down while this job was running; submit it again")
                self._finish(job_id, *self.stop_reasons[job_id])
                wait = self.waits.pop(job_id, None)
                if wait is not None:
                    wait.event.set()
        self.executor.stop()

    # -- admission -----------------------------------------------------------------------------------------
    def submit(self, key_id: str, meta: dict, input_path) -> JobRecord:
        """Accept a job whose input (already checked) sits at ``input_path``; QueueFull when over a limit."""
        with self.cond:
            if not self.accepting:
                raise QueueFull("the server is shutting down", self.limits.retry_after_s)
            active = [j for j in self.jobs.values() if not j.finished]
            if len(active) >= self.limits.max_queue:
                raise QueueFull(f"the queue is full ({self.limits.max_queue} jobs)", self.limits.retry_after_s)
            if sum(j.key_id == key_id for j in active) >= self.limits.max_jobs_per_bundle:
                raise QueueFull(f"this key bundle has {self.limits.max_jobs_per_bundle} unfinished jobs already",
                                self.limits.retry_after_s)
            job = JobRecord(secrets.token_hex(16), key_id, meta["model"], meta["segments"], meta["layers"])
            self.store.job_dir(job.job_id).mkdir(mode=0o700)
            input_path.replace(self.store.job_file(job.job_id, "input.fhe"))
            self.store.save_job(job)  # on disk before the client hears it was accepted
            self.jobs[job.job_id] = job
            self.versions[job.job_id] = 0
            self.queue.append(job.job_id)
            self.cond.notify_all()
            return job

    def get(self, job_id: str, key_id: str) -> JobRecord:
        job = self.jobs.get(job_id)
        if job is None or job.key_id != key_id:
            raise NotFound("no such job")
        return job

    def snapshot(self, job_id: str, key_id: str) -> tuple[JobRecord, int]:
        """The job and its version (a counter bumped on every change), NotFound unless ``key_id`` owns it."""
        with self.cond:
            return self.get(job_id, key_id), self.versions.get(job_id, 0)

    def counts(self) -> dict:
        with self.cond:
            states = [j.state for j in self.jobs.values()]
        return {s: states.count(s) for s in ("queued", "running", "awaiting_refresh")}

    # -- refresh rendezvous ----------------------------------------------------------------------------------
    def pending_refresh(self, job_id: str, key_id: str) -> tuple[int, str, str]:
        with self.cond:
            self.get(job_id, key_id)
            wait = self.waits.get(job_id)
            if wait is None or wait.reply_path is not None:
                raise StaleRefresh("the job is not waiting for a refresh")
            return wait.index, wait.stage, wait.request_path

    def post_refresh(self, job_id: str, key_id: str, index: int, reply_path) -> None:
        with self.cond:
            self.get(job_id, key_id)
            wait = self.waits.get(job_id)
            if wait is None or wait.index != index or wait.reply_path is not None:
                raise StaleRefresh(f"the job is not waiting for refresh {index}")
            final = self.store.job_file(job_id, f"refresh-{index}.reply.fhe")
            reply_path.replace(final)
            wait.reply_path = str(final)
            wait.event.set()

    # -- cancellation and removal ----------------------------------------------------------------------------
    def cancel(self, job_id: str, key_id: str) -> bool:
        """Cancel a job: True if it is finished now, False if a running job stops at its next refresh."""
        with self.cond:
            job = self.get(job_id, key_id)
            if job.finished:
                return True
            if job_id in self.queue:
                self.queue.remove(job_id)
            if job_id not in self.running:
                self._finish(job_id, "cancelled", "cancelled by the client")
                return True
            self.stop_reasons[job_id] = ("cancelled", "cancelled by the client")
            wait = self.waits.get(job_id)
            if wait is not None:
                wait.event.set()  # the slot sees no reply and cancels the worker's job
            return False

    def remove_bundle_jobs(self, key_id: str) -> None:
        with self.cond:
            ids = [j.job_id for j in self.jobs.values() if j.key_id == key_id]
        for job_id in ids:
            self.cancel(job_id, key_id)
        with self.cond:
            for job_id in ids:
                if job_id not in self.running:
                    self.jobs.pop(job_id, None)
                    self.versions.pop(job_id, None)
                    self.store.remove_job(job_id)

    # -- dispatch --------------------------------------------------------------------------------------------
    def _bump(self, job: JobRecord) -> None:
        self.store.save_job(job)
        self.versions[job.job_id] = self.versions.get(job.job_id, 0) + 1
        self.cond.notify_all()

    def _finish(self, job_id: str, state: str, message: str | None, summary: dict | None = None) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.finished:
            return
        job.state, job.error, job.stage = state, message, None
        if summary:
            job.result_bytes = int(summary.get("bytes", 0))
            job.stats = summary.get("stats", {})
        self.running.pop(job_id, None)
        self._bump(job)

    def _next(self) -> str | None:
        with self.cond:
            while not self.queue and not self.stopping:
                self.cond.wait(1.0)
            if self.stopping:
                return None
            job_id = self.queue.popleft()
            job = self.jobs[job_id]
            job.state = "running"
            self.running[job_id] = -1
            self._bump(job)
            return job_id

    def _dispatch(self, slot: int) -> None:
        while True:
            job_id = self._next()
            if job_id is None:
                return
            job = self.jobs[job_id]
            with self.cond:
                self.running[job_id] = slot
            task = {"job_id": job_id, "key_id": job.key_id, "bundle_path": str(self.store.bundle_path(job.key_id)),
                    "input_path": str(self.store.job_file(job_id, "input.fhe")),
                    "result_path": str(self.store.job_file(job_id, "result.fhe")),
                    "job_dir": str(self.store.job_dir(job_id)), "segments": job.segments, "layers": job.layers}
            outcome, payload = self.executor.run(slot, task, _Channel(self, job_id))
            with self.cond:
                if outcome == "done":
                    self._finish(job_id, "done", None, payload)
                elif outcome == "cancelled":
                    self._finish(job_id, *self.stop_reasons.get(job_id, ("cancelled", str(payload))))
                else:
                    self._finish(job_id, outcome, str(payload))
                self.stop_reasons.pop(job_id, None)
                self.waits.pop(job_id, None)


class _Channel:
    """The scheduler's side of one running task."""

    def __init__(self, scheduler: Scheduler, job_id: str):
        self.s, self.job_id = scheduler, job_id

    def progress(self, block: int) -> None:
        with self.s.cond:
            job = self.s.jobs[self.job_id]
            job.block = block
            self.s._bump(job)

    def await_refresh(self, index: int, stage: str, request_path: str) -> str | None:
        s = self.s
        wait = _RefreshWait(index, stage, request_path, threading.Event())
        with s.cond:
            job = s.jobs[self.job_id]
            if self.job_id in s.stop_reasons or s.stopping:
                return None
            s.waits[self.job_id] = wait
            job.state, job.stage, job.refresh_index = "awaiting_refresh", stage, index
            s._bump(job)
        got = wait.event.wait(s.limits.refresh_timeout_s)
        with s.cond:
            s.waits.pop(self.job_id, None)
            if not got or wait.reply_path is None:
                if not got:
                    s.stop_reasons[self.job_id] = (
                        "failed", f"no refresh from the key holder within {s.limits.refresh_timeout_s:.0f} s")
                return None
            job.state, job.stage = "running", None
            s._bump(job)
            return wait.reply_path


__all__ = ["Limits", "QueueFull", "Scheduler", "StaleRefresh"]
