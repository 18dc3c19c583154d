"""`fhectl serve` as a real process on 127.0.0.1: a tiny Llama checkpoint (SmolLM2's tokenizer, random weights)
at the insecure N = 2^10 profile, a store in tmp, an ephemeral port; stopped with SIGTERM by the fixture."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from fhectl.llama.pipeline import load_model
from tiny_llama import write_tiny_llama

MODEL = "tiny"
PROFILE = "tiny-deep-insecure"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """One `fhectl serve` subprocess; ``start`` waits until /v1/health answers."""

    def __init__(self, checkpoint: Path, store: Path, cache: Path, *args: str, profile: str = PROFILE,
                 env: dict | None = None):
        """``env``: more environment for the server (and its workers), such as NUMBA_NUM_THREADS."""
        self.checkpoint, self.store, self.cache, self.args, self.profile = checkpoint, store, cache, args, profile
        self.env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = store.parent / f"server-{self.port}.log"

    def start(self, timeout: float = 300.0) -> "ServerProcess":
        env = {**os.environ, "XDG_CACHE_HOME": str(self.cache), "OPENBLAS_NUM_THREADS": "1", **self.env}
        cmd = [sys.executable, "-m", "fhectl.cli", "serve", "--model", MODEL, "--weights", str(self.checkpoint),
               "--profile", self.profile, "--insecure", "--device", "cpu", "--port", str(self.port),
               "--store", str(self.store), *self.args]
        self.proc = subprocess.Popen(cmd, env=env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/v1/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"server did not answer within {timeout} s: {self.log.read_text()[-2000:]}")

    def stop(self, timeout: float = 120.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def worker_pids(self) -> list[int]:
        """The worker processes: spawned children of the server that are not multiprocessing's resource tracker."""
        out = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (stat.parent / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
            if ppid == self.proc.pid and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
                out.append(int(stat.parent.name))
        return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    from fhectl.llama.gguf import read_gguf_header

    return write_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), read_gguf_header()[1])


@pytest.fixture(scope="session")
def service_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    """(weights, tokenizer) of the tiny checkpoint, as a client loads them."""
    w, tok, _ = load_model(MODEL, str(tiny_checkpoint))
    return w, tok


@pytest.fixture(scope="module")
def server(tiny_checkpoint, service_cache, tmp_path_factory):
    """A server shared by a module: two workers, room for the load test."""
    root = tmp_path_factory.mktemp("server")
    srv = ServerProcess(tiny_checkpoint, root / "store", service_cache, "--workers", "2", "--max-queue", "64",
                        "--max-jobs-per-bundle", "40", "--refresh-timeout", "120", "--max-bundle-mib", "64",
                        "--max-body-mib", "16").start()
    yield srv
    assert srv.stop() == 0, srv.log.read_text()[-2000:]
