"""The HTTP API of ``fhectl serve`` (FastAPI; OpenAPI at /docs and /openapi.json).

Versioned under /v1. Bodies that carry CKKS objects are fhectl containers sent as application/octet-stream
and streamed to disk under a size limit; everything else is JSON. Errors are JSON ``{"error": message}`` with
4xx codes: 400 malformed or wrong for this server, 401 no or malformed credentials, 404 unknown or not yours
(the two are not told apart), 409 conflicting state, 413 too large, 429 full (with Retry-After).

Access: uploading a key bundle returns a bearer token (``<key id>.<secret>``); the server keeps its SHA-256
only. Every job is owned by the bundle it was submitted with; another bundle's token sees 404.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from fhectl.errors import FhectlError
from fhectl.io.container import read_container, read_header
from fhectl.service.executor import Executor, LocalProcessPool
from fhectl.service.jobs import Limits, QueueFull, Scheduler, StaleRefresh
from fhectl.service.models import ModelSpec, ServedModel, check_bundle_covers
from fhectl.service.store import Conflict, NotFound, Store, check_public_bundle, valid_id
from fhectl.service.wire import API_VERSION, check_refresh_reply, job_input_meta

log = logging.getLogger("fhectl.serve")

MiB = 1 << 20
LONG_POLL_INTERVAL_S = 0.1


@dataclass(frozen=True)
class ServerConfig:
    spec: ModelSpec
    store: Path
    device: str = "cpu"
    workers: int = 1
    executor: str = "local"  # "local": worker processes here; "ray": actors in a Ray cluster
    ray_address: str | None = None  # with executor "ray": the cluster to join (None: start one here)
    limits: Limits = field(default_factory=Limits)
    max_bundle_bytes: int = 16 << 30  # an N = 2^16 bundle is GiBs
    max_body_bytes: int = 2 << 30  # job inputs and refresh replies
    max_wait_s: float = 30.0  # longest long-poll
    shutdown_grace_s: float = 30.0


class PayloadTooLarge(FhectlError):
    pass


class Unauthorized(FhectlError):
    pass


def _status(exc: Exception) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, (Conflict, StaleRefresh)):
        return 409
    if isinstance(exc, QueueFull):
        return 429
    if isinstance(exc, PayloadTooLarge):
        return 413
    if isinstance(exc, Unauthorized):
        return 401
    return 400


def _error(exc: Exception) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, QueueFull) else None
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return JSONResponse({"error": message}, status_code=_status(exc), headers=headers)


async def _receive(request: Request, path: Path, limit: int) -> Path:
    """Stream the body to ``path``; PayloadTooLarge past ``limit`` bytes (declared or actual)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise PayloadTooLarge(f"body larger than the limit of {limit} bytes")
    n = 0
    with open(path, "wb") as f:
        async for chunk in request.stream():
            n += len(chunk)
            if n > limit:
                raise PayloadTooLarge(f"body larger than the limit of {limit} bytes")
            f.write(chunk)
    if n == 0:
        raise FhectlError("empty body")
    return path


def _bearer(request: Request) -> tuple[str, str]:
    """(key id, token) from ``Authorization: Bearer <key id>.<secret>``."""
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    key_id, dot, secret = token.strip().partition(".")
    if scheme.lower() != "bearer" or not dot or not valid_id(key_id) or not 16 <= len(secret) <= 128:
        raise Unauthorized("missing or malformed bearer token")
    return key_id, token.strip()


def build_executor(config: ServerConfig) -> Executor:
    """The executor ``config`` names: the local process pool, or Ray (imported only when chosen)."""
    if config.executor == "ray":
        from fhectl.service.executor_ray import RayExecutor

        return RayExecutor(config.spec, config.device, config.workers, config.ray_address)
    return LocalProcessPool(config.spec, config.device, config.workers)


def create_app(config: ServerConfig, executor: Executor | None = None) -> FastAPI:
    """The ASGI app. The model is loaded here (seconds to minutes); workers start with the app's lifespan."""
    store = Store(config.store)  # first the cheap checks: an unusable store folder, or a Ray cluster that
    executor = executor or build_executor(config)  # cannot be joined, fails before the model loads
    served = ServedModel(config.spec)
    info = served.info()
    scheduler = Scheduler(store, executor, config.limits, served.params.params_id)
    # Parsing and checking uploads (GiBs at N = 2^16) runs off the event loop, in a pool of its own (long
    # polls wait on the loop itself and hold no thread).
    checks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fhectl-check")

    async def off_loop(fn, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(checks, lambda: fn(*args, **kwargs))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(scheduler.start)
        try:
            yield
        finally:
            await asyncio.to_thread(scheduler.shutdown, config.shutdown_grace_s)
            checks.shutdown(wait=False)

    app = FastAPI(title="fhectl encrypted-inference proxy", version=API_VERSION, lifespan=lifespan,
                  description="The server holds the model and public keys only; the client holds the secret key.")
    app.state.scheduler, app.state.store, app.state.model = scheduler, store, served
    @app.exception_handler(FhectlError)
    async def fhectl_error(request: Request, exc: FhectlError):
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error; see the server log"}, status_code=500)

    def owner(request: Request) -> str:
        key_id, token = _bearer(request)
        store.authorize(key_id, token)
        return key_id

    def job_view(job, version: int | None = None) -> dict:
        out = job.public()
        if version is not None:
            out["version"] = version
        return out

    prefix = f"/{API_VERSION}"

    @app.get(prefix + "/health")
    async def health():
        return {"status": "ok" if scheduler.accepting else "stopping", "api": API_VERSION,
                "workers": scheduler.executor.slots, **scheduler.counts()}

    @app.get(prefix + "/models")
    async def models():
        return {"models": [info]}

    @app.get(prefix + "/models/{name}")
    async def model(name: str):
        if name != info["name"]:
            raise NotFound(f"no model {name!r}")
        return info

    @app.post(prefix + "/bundles", status_code=201)
    async def upload_bundle(request: Request):
        tmp = store.incoming()
        try:
            await _receive(request, tmp, config.max_bundle_bytes)
            facts = await off_loop(check_public_bundle, tmp, info["params_id"], config.max_bundle_bytes,
                                   served.params.max_level)
            # every key the served model uses: its rotations (at their levels), and with bootstrapping the
            # conjugation and encapsulation keys
            check_bundle_covers(info, facts.elements, facts.max_levels, facts.encapsulation_weight)
            token = store.add_bundle(tmp, facts.key_id, info["params_id"], facts.elements)
            return JSONResponse({"key_id": facts.key_id, "token": token, "bytes": store.bundle(facts.key_id).bytes},
                                status_code=201)
        finally:
            tmp.unlink(missing_ok=True)

    @app.delete(prefix + "/bundles/{key_id}", status_code=204)
    async def delete_bundle(key_id: str, request: Request):
        mine = owner(request)
        if key_id != mine:
            raise NotFound("no such bundle")
        await off_loop(scheduler.remove_bundle_jobs, mine)
        store.remove_bundle(mine)
        return Response(status_code=204)

    @app.post(prefix + "/jobs", status_code=202)
    async def submit(request: Request):
        key_id = owner(request)
        tmp = store.incoming()
        try:
            await _receive(request, tmp, config.max_body_bytes)
            c = await off_loop(read_container, tmp, expected_kind="ciphertext", max_bytes=config.max_body_bytes)
            meta = job_input_meta(c, info["token_capacity"], info["encrypted_layers"])
            if meta["model"] != info["name"]:
                raise NotFound(f"no model {meta['model']!r}")
            if c.key_id != key_id or c.params_id != info["params_id"]:
                raise FhectlError("the input is not encrypted under this bundle's key and parameters")
            start = info["bootstrap"]["refresh_level"] if info["bootstrap"] else None
            if start is not None and not (isinstance(c.meta.get("level"), int) and c.meta["level"] >= start):
                raise FhectlError(f"the input is at level {c.meta.get('level')!r}; this server's bootstrapped blocks "
                                  f"start at level {start} (encrypt at that level)")
            job = scheduler.submit(key_id, meta, tmp)
            return JSONResponse({"job": job_view(job, 0)}, status_code=202)
        finally:
            tmp.unlink(missing_ok=True)

    @app.get(prefix + "/jobs/{job_id}")
    async def job_state(job_id: str, request: Request, wait: float = 0.0, version: int | None = None):
        """The job; with ``wait`` and ``version``, a long poll that answers once the job's version differs
        (or ``wait`` seconds pass). It polls on the event loop: a waiting client holds no thread."""
        key_id = owner(request)
        wait = min(max(wait, 0.0), config.max_wait_s) if math.isfinite(wait) else 0.0
        deadline = time.monotonic() + wait
        while True:
            job, v = scheduler.snapshot(job_id, key_id)
            if version is None or v != version or job.finished or not scheduler.accepting \
                    or time.monotonic() >= deadline:
                return {"job": job_view(job, v)}
            await asyncio.sleep(LONG_POLL_INTERVAL_S)

    @app.delete(prefix + "/jobs/{job_id}", status_code=204)
    async def cancel(job_id: str, request: Request):
        """204: cancelled (or already finished); 202: running, it stops at its next refresh."""
        done = scheduler.cancel(job_id, owner(request))
        return Response(status_code=204 if done else 202)

    @app.get(prefix + "/jobs/{job_id}/refresh")
    async def refresh_request(job_id: str, request: Request):
        index, stage, path = scheduler.pending_refresh(job_id, owner(request))
        headers = {"X-Refresh-Index": str(index), "X-Refresh-Stage": stage.encode("ascii", "replace").decode()}
        return FileResponse(path, media_type="application/octet-stream", headers=headers)

    @app.put(prefix + "/jobs/{job_id}/refresh/{index}", status_code=204)
    async def refresh_reply(job_id: str, index: int, request: Request):
        key_id = owner(request)
        scheduler.pending_refresh(job_id, key_id)  # 409 before reading a body nobody waits for
        tmp = store.incoming()
        try:
            await _receive(request, tmp, config.max_body_bytes)
            c = await off_loop(read_container, tmp, expected_kind="refresh-reply", max_bytes=config.max_body_bytes)
            want = _pending_count(scheduler, job_id)
            check_refresh_reply(c, info["params_id"], key_id, want)
            scheduler.post_refresh(job_id, key_id, index, tmp)
            return Response(status_code=204)
        finally:
            tmp.unlink(missing_ok=True)

    @app.get(prefix + "/jobs/{job_id}/result")
    async def result(job_id: str, request: Request):
        job = scheduler.get(job_id, owner(request))
        path = store.job_file(job_id, "result.fhe")
        if job.state != "done" or not os.path.exists(path):
            raise StaleRefresh(f"the job is {job.state}, it has no result")
        return FileResponse(path, media_type="application/octet-stream")

    return app


def _pending_count(scheduler: Scheduler, job_id: str) -> int:
    """How many ciphertexts the pending request of ``job_id`` holds (read from its header only)."""
    _, _, path = scheduler.pending_refresh(job_id, scheduler.jobs[job_id].key_id)
    return int(read_header(path).meta.get("count", -1))


__all__ = ["ServerConfig", "build_executor", "create_app"]
