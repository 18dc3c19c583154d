"""The client side of the HTTP API: one method per endpoint, errors as one-line ``RemoteError``.

It never sends anything secret: a public key bundle, encrypted inputs and refresh replies (fresh encryptions).
"""

from __future__ import annotations

import os
import time

import httpx

from fhectl.errors import FhectlError
from fhectl.service.wire import API_VERSION


class RemoteError(FhectlError):
    """The server refused a request, or could not be reached."""

    exit_code = 9

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


class JobFailed(RemoteError):
    """The server ran the job and reports it failed or cancelled."""


def _message(r: httpx.Response) -> str:
    """The server's one-line error, or the start of whatever else it sent."""
    try:
        body = r.json()
        return str(body.get("error", body)) if isinstance(body, dict) else str(body)[:200]
    except ValueError:
        return r.text[:200]


class ServiceClient:
    def __init__(self, base_url: str, *, timeout: float = 120.0, transport=None):
        if not base_url.startswith(("http://", "https://")):
            raise RemoteError(f"server URL {base_url!r} must start with http:// or https://")
        self.base = base_url.rstrip("/") + f"/{API_VERSION}"
        self.http = httpx.Client(timeout=timeout, transport=transport)

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, *, token: str | None = None, content: bytes | None = None,
              params: dict | None = None, expect=(200,), retries: int = 3) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if content is not None:
            headers["Content-Type"] = "application/octet-stream"
        for attempt in range(retries + 1):
            try:
                r = self.http.request(method, self.base + path, headers=headers, content=content, params=params)
            except httpx.HTTPError as exc:
                raise RemoteError(f"cannot reach the server at {self.base}: {type(exc).__name__}: {exc}") from None
            if r.status_code == 429 and attempt < retries:  # full: wait as told, then try again
                time.sleep(min(float(r.headers.get("retry-after", "1") or 1), 30.0))
                continue
            break
        if r.status_code not in expect:
            message = _message(r)
            retry = r.headers.get("retry-after")
            raise RemoteError(f"server answered {r.status_code} to {method} {path}: {message}", r.status_code,
                              float(retry) if retry and retry.isdigit() else None)
        return r

    def health(self) -> dict:
        return self._call("GET", "/health").json()

    def model(self, name: str) -> dict:
        return self._call("GET", f"/models/{name}").json()

    def models(self) -> list[dict]:
        return self._call("GET", "/models").json()["models"]

    def upload_bundle(self, bundle: bytes) -> str:
        """The bearer token of the uploaded bundle."""
        return self._call("POST", "/bundles", content=bundle, expect=(201,)).json()["token"]

    def upload_bundle_file(self, path, chunk_bytes: int = 1 << 20) -> str:
        """Like ``upload_bundle``, streamed from a file (the server takes it chunk by chunk too)."""
        size = os.path.getsize(path)

        def chunks():
            with open(path, "rb") as f:
                while block := f.read(chunk_bytes):
                    yield block

        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        try:
            r = self.http.post(self.base + "/bundles", content=chunks(), headers=headers)
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach the server at {self.base}: {type(exc).__name__}: {exc}") from None
        if r.status_code != 201:
            raise RemoteError(f"server answered {r.status_code} to POST /bundles: {_message(r)}", r.status_code)
        return r.json()["token"]

    def delete_bundle(self, token: str) -> None:
        self._call("DELETE", f"/bundles/{token.partition('.')[0]}", token=token, expect=(204,))

    def submit(self, token: str, job_input: bytes) -> dict:
        return self._call("POST", "/jobs", token=token, content=job_input, expect=(202,)).json()["job"]

    def job(self, token: str, job_id: str, *, wait: float = 0.0, version: int | None = None) -> dict:
        params = {"wait": wait} if wait else {}
        if version is not None:
            params["version"] = version
        return self._call("GET", f"/jobs/{job_id}", token=token, params=params).json()["job"]

    def cancel(self, token: str, job_id: str) -> None:
        self._call("DELETE", f"/jobs/{job_id}", token=token, expect=(202, 204))

    def refresh_request(self, token: str, job_id: str) -> tuple[int, bytes]:
        r = self._call("GET", f"/jobs/{job_id}/refresh", token=token)
        return int(r.headers["x-refresh-index"]), r.content

    def refresh_reply(self, token: str, job_id: str, index: int, reply: bytes) -> None:
        self._call("PUT", f"/jobs/{job_id}/refresh/{index}", token=token, content=reply, expect=(204,))

    def result(self, token: str, job_id: str) -> bytes:
        return self._call("GET", f"/jobs/{job_id}/result", token=token).content

    def follow(self, token: str, job_id: str, answer, on_state=None, poll_s: float = 20.0) -> bytes:
        """Wait for the job, answering each refresh request with ``answer(request) -> reply``; the result."""
        version = None
        while True:
            job = self.job(token, job_id, wait=poll_s if version is not None else 0.0, version=version)
            version = job.get("version")
            if on_state is not None:
                on_state(job)
            if job["state"] == "awaiting_refresh":
                try:
                    index, request = self.refresh_request(token, job_id)
                except RemoteError as exc:
                    if exc.status == 409:  # answered meanwhile (a retry of ours); read the state again
                        continue
                    raise
                self.refresh_reply(token, job_id, index, answer(request))
            elif job["state"] == "done":
                return self.result(token, job_id)
            elif job["state"] in ("failed", "cancelled"):
                raise JobFailed(f"job {job_id} {job['state']}: {job.get('error')}")


__all__ = ["JobFailed", "RemoteError", "ServiceClient"]
