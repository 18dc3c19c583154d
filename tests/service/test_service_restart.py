"""Shutdown, restart and a dying worker: an accepted job completes or is reported failed, never lost."""

import os
import signal
import time

import numpy as np
import pytest

from fhectl.service.client import JobFailed

from .conftest import ServerProcess
from .helpers import KeyHolder


def _wait_state(holder, job_id, states, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = holder.service.job(holder.token, job_id)
        if job["state"] in states:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reached {states}")


def test_jobs_survive_shutdown_restart_and_a_killed_worker(tiny_checkpoint, service_cache, tmp_path, tiny_model):
    store = tmp_path / "store"
    args = ("--workers", "1", "--shutdown-grace", "1", "--refresh-timeout", "300")
    first = ServerProcess(tiny_checkpoint, store, service_cache, *args).start()
    holder = KeyHolder(first.url, tiny_model[0])
    holder.upload()
    running = holder.service.submit(holder.token, holder.job_input([3, 17, 5]))["job_id"]
    _wait_state(holder, running, {"awaiting_refresh"})  # the key holder does not answer
    queued = holder.service.submit(holder.token, holder.job_input([9, 8]))["job_id"]
    assert holder.service.job(holder.token, queued)["state"] == "queued"

    assert first.stop() == 0  # SIGTERM: a graceful stop, exit 0
    assert "server stopped by SIGTERM" in first.log.read_text()

    second = ServerProcess(tiny_checkpoint, store, service_cache, *args).start()
    try:
        holder.service = type(holder.service)(second.url)
        job = holder.service.job(holder.token, running)  # the token and the record survived the restart
        assert job["state"] == "failed" and "shut down" in job["error"]
        # the queued job runs after the restart and completes
        result = holder.service.follow(holder.token, queued, holder.answer)
        got = holder.hidden(result, 2)
        assert float(np.corrcoef(got.ravel(), holder.reference([9, 8]).ravel())[0, 1]) > 0.999

        # a worker killed in the middle of a job: that job fails with a reason, the next one runs
        doomed = holder.service.submit(holder.token, holder.job_input([4, 4, 4]))["job_id"]
        _wait_state(holder, doomed, {"awaiting_refresh"})
        (pid,) = second.worker_pids()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(JobFailed, match="worker process"):
            holder.service.follow(holder.token, doomed, holder.answer)
        after = holder.service.submit(holder.token, holder.job_input([5, 6]))["job_id"]
        assert holder.service.follow(holder.token, after, holder.answer)
    finally:
        assert second.stop() == 0

