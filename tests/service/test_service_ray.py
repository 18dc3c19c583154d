"""`fhectl serve --executor ray`: a Ray head started by the test on this machine (its own ports and temp
folder, stopped by SIGTERM to its `ray start --block` process), a server joined to it with --ray-address, and
jobs followed by a key holder to results that decrypt to the plaintext reference."""

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from fhectl.cli.main import app

from fhectl.llama.inference import cosine
from fhectl.service.client import JobFailed

from .conftest import ServerProcess, free_port
from .helpers import KeyHolder


def needs_ray() -> None:
    # Ray is in the dev extra (and the ray extra), so CI runs these; skipped only where Ray is not installed.
    pytest.importorskip("ray")


@pytest.fixture
def ray_head(service_cache, tmp_path, monkeypatch):
    """HOST:PORT of a one-node Ray cluster (2 CPUs) on 127.0.0.1, running the test's environment.

    Token authentication on, with a token of the test's own in the environment (the head's, its workers' and,
    through ``monkeypatch``, the server's): nothing is read from or written to ~/.ray."""
    needs_ray()
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's Unix sockets live under it
    port = free_port()
    env = dict(os.environ, XDG_CACHE_HOME=str(service_cache), OPENBLAS_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0")
    log = tmp_path / "ray-head.log"
    cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
           "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats",
           "--dashboard-port", str(free_port()), "--ray-client-server-port", str(free_port()),
           "--dashboard-agent-listen-port", str(free_port()), "--temp-dir", temp]
    proc = subprocess.Popen(cmd, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)  # its own process group, ended by id below
    try:
        deadline = time.monotonic() + 90
        while b"Ray runtime started" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start failed: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything of that group left behind
        except ProcessLookupError:
            pass
        proc.wait()
        shutil.rmtree(temp, ignore_errors=True)


def _actor_pids() -> list[int]:
    """The RayWorker actors' processes (Ray titles them ``ray::RayWorker`` or ``ray::RayWorker.<method>``)."""
    out = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes().startswith(b"ray::RayWorker"):
                out.append(int(cmdline.parent.name))
        except (OSError, ValueError):
            continue
    return out


def test_jobs_run_in_ray_actors(tiny_checkpoint, service_cache, tmp_path, tiny_model, ray_head):
    store = tmp_path / "store"
    srv = ServerProcess(tiny_checkpoint, store, service_cache, "--executor", "ray", "--ray-address", ray_head,
                        "--workers", "1", "--refresh-timeout", "120", "--max-bundle-mib", "64",
                        "--max-body-mib", "16").start(timeout=180)
    try:
        assert httpx.get(srv.url + "/v1/health").json()["workers"] == 1
        assert srv.worker_pids() == []  # no local worker processes: jobs go to the Ray actor
        holder = KeyHolder(srv.url, tiny_model[0])
        holder.upload()
        # two jobs: the second finds the bundle's evaluator already in the actor
        for prompt in ([3, 17, 5], [9, 8]):
            job = holder.service.submit(holder.token, holder.job_input(prompt))
            result = holder.service.follow(holder.token, job["job_id"], holder.answer)
            assert cosine(holder.hidden(result, len(prompt)), holder.reference(prompt)) > 0.999
            assert holder.service.job(holder.token, job["job_id"])["stats"]["round_trips"] > 0
        assert not list(store.rglob("refresh-*.fhe"))  # each round trip's files were spent

        # an actor killed in the middle of a job: that job fails with a reason, a new actor runs the next one
        doomed = holder.service.submit(holder.token, holder.job_input([4, 4, 4]))["job_id"]
        deadline = time.monotonic() + 120
        while holder.service.job(holder.token, doomed)["state"] != "awaiting_refresh":
            assert time.monotonic() < deadline, "the job never asked for a refresh"
            time.sleep(0.2)
        (pid,) = _actor_pids()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(JobFailed, match="Ray worker"):
            holder.service.follow(holder.token, doomed, holder.answer)
        after = holder.service.submit(holder.token, holder.job_input([5, 6]))["job_id"]
        result = holder.service.follow(holder.token, after, holder.answer)
        assert cosine(holder.hidden(result, 2), holder.reference([5, 6])) > 0.999
    finally:
        assert srv.stop() == 0, srv.log.read_text()[-3000:]
    assert "server stopped by SIGTERM" in srv.log.read_text()


def test_ray_executor_satisfies_the_executor_protocol():
    from protocol_check import protocol_mismatches

    from fhectl.service.executor import Executor
    from fhectl.service.executor_ray import RayExecutor

    assert protocol_mismatches(RayExecutor, Executor) == []


def test_ray_address_needs_the_ray_executor():
    out = CliRunner().invoke(app, ["serve", "--ray-address", "127.0.0.1:1"])
    assert out.exit_code == 2 and "--ray-address needs --executor ray" in out.output


def test_an_address_where_nothing_listens_is_one_error_line(tmp_path):
    needs_ray()
    address = f"127.0.0.1:{free_port()}"
    out = CliRunner().invoke(app, ["serve", "--executor", "ray", "--ray-address", address, "--store", str(tmp_path)])
    assert out.exit_code == 1, out.output
    assert f"error: cannot join the Ray cluster at {address}: nothing answers there" in out.output
    assert "Traceback" not in out.output


def test_without_ray_installed_the_ray_executor_is_one_error_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    out = CliRunner().invoke(app, ["serve", "--executor", "ray", "--store", str(tmp_path)])
    assert out.exit_code == 1, out.output
    assert "error: --executor ray needs Ray" in out.output and "Traceback" not in out.output
