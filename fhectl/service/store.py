"""The server's disk: uploaded key bundles and jobs, each record written atomically.

Layout under the store root (0700)::

    bundles/<key id>/bundle.fhe      the uploaded keyset-public container, as received
    bundles/<key id>/record.json     sha256 of the bearer token (never the token), size, time
    jobs/<job id>/record.json        state, owner key id, public job parameters, error, progress
    jobs/<job id>/input.fhe          the encrypted input
    jobs/<job id>/result.fhe         the encrypted output, once done
    jobs/<job id>/refresh-<n>.{request,reply}.fhe   one client refresh round trip

Bundles are content-addressed by key id: a second upload under a known key id is refused rather than given a
second token. A bundle holding any member that is not public evaluation material (a secret key above all) is
refused before it is stored. Key material stays on disk; workers read it from there.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fhectl.errors import FormatError, InputError
from fhectl.io.atomic import atomic_write_bytes
from fhectl.io.keyring import read_public_export
from fhectl.io.objects import galois_max_levels

# member name -> the kind it must have: the evaluation keys a server uses and the public key (checked, unused).
# Rewrap keys of a keyring export are public switching keys; a server has no use for them but they are harmless.
PUBLIC_MEMBERS = {"public-key": "public-key", "relin-key": "relin-key", "galois-keys": "galois-keys"}
# optional: bootstrapping's sparse-secret encapsulation keys (public switching keys; a bootstrapping server whose
# circuit encapsulates requires them, ``fhectl.service.models.check_bundle_covers``)
OPTIONAL_MEMBERS = {"encapsulation-keys": "encapsulation-keys"}
REWRAP_MEMBER = re.compile(r"rewrap-from-v[0-9]{1,9}\Z")
_ID = re.compile(r"[A-Za-z0-9_-]{8,128}\Z")


class Conflict(InputError):
    """The thing exists already (a bundle under the same key id)."""


class NotFound(InputError):
    """No such bundle or job, or not the caller's."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def valid_id(value: str) -> bool:
    return isinstance(value, str) and bool(_ID.match(value))


@dataclass
class BundleRecord:
    key_id: str
    params_id: str
    token_sha256: str
    bytes: int
    created: float
    galois_elements: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class BundleFacts:
    """What the server's checks read from an uploaded bundle's headers (no key is loaded)."""

    key_id: str
    elements: list[int]  # Galois elements
    max_levels: dict[int, int]  # element -> level, for the Galois keys truncated to it
    encapsulation_weight: int | None  # the encapsulation keys' sparse weight, None without them


@dataclass
class JobRecord:
    job_id: str
    key_id: str
    model: str
    segments: list[int]
    layers: int
    state: str = "queued"  # queued | running | awaiting_refresh | done | failed | cancelled
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    error: str | None = None
    block: int | None = None  # the block running now
    stage: str | None = None  # the refresh stage awaited, when awaiting_refresh
    refresh_index: int = 0  # how many refresh requests this job has made
    result_bytes: int = 0
    stats: dict = field(default_factory=dict)

    TERMINAL = ("done", "failed", "cancelled")

    @property
    def finished(self) -> bool:
        return self.state in self.TERMINAL

    def public(self) -> dict:
        """What the job's owner sees (the key id and everything about its own job; nothing of others)."""
        return {k: v for k, v in asdict(self).items()}


def check_public_bundle(path: Path, params_id: str, max_bytes: int, top_level: int) -> BundleFacts:
    """What an uploaded bundle holds (``BundleFacts``), after every check a stored bundle gets (checksums,
    every member bound to the bundle's key and parameters: ``read_public_export``), and those of a server:
    public evaluation material only, for the parameters it runs (``top_level``: their highest level, which a
    truncated key stays below). FormatError or KeyMismatchError otherwise."""
    _, members = read_public_export(path, max_bytes=max_bytes, mmap=True)  # GiBs: mapped, not read into RAM
    for name, c in members.items():
        if c.kind == "secret-key" or "secret" in name:
            raise FormatError(f"key bundle member {name!r} is secret material: a server never takes a secret key")
        want = {**PUBLIC_MEMBERS, **OPTIONAL_MEMBERS}.get(name, "switching-key" if REWRAP_MEMBER.match(name) else None)
        if want is None or c.kind != want:
            raise FormatError(f"key bundle member {name!r} ({c.kind}) is not public evaluation material")
    missing = sorted(set(PUBLIC_MEMBERS) - set(members))
    if missing:
        raise FormatError(f"key bundle lacks {', '.join(missing)}")
    public = members["public-key"]  # bound to the bundle's key id and parameters, like every member
    if public.params_id != params_id:
        raise FormatError(f"key bundle is for parameter set {public.params_id!r}; this server runs {params_id!r}")
    if not valid_id(public.key_id):
        raise FormatError("key bundle's key id is not 8-128 characters [A-Za-z0-9_-]")
    galois = members["galois-keys"].meta
    elements = galois.get("elements")
    elements = list(elements) if isinstance(elements, list) else []
    max_levels = galois_max_levels(galois, top_level, "key bundle galois-keys")
    weight = None
    if "encapsulation-keys" in members:
        weight = members["encapsulation-keys"].meta.get("weight")
        if not (isinstance(weight, int) and not isinstance(weight, bool) and weight > 0):
            raise FormatError("key bundle encapsulation-keys: meta 'weight' is not a positive integer")
    return BundleFacts(public.key_id, elements, max_levels, weight)


class Store:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()
        try:
            for sub in ("", "bundles", "jobs", "incoming"):
                (self.root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.root, 0o700)
        except OSError as exc:
            raise InputError(f"--store {self.root}: cannot use it as the server's store folder "
                             f"({exc.strerror or exc})") from None

    # -- paths ---------------------------------------------------------------------------------------------
    def incoming(self) -> Path:
        """A fresh path for a body being received (removed by the caller on every exit)."""
        return self.root / "incoming" / f"{secrets.token_hex(16)}.part"

    def bundle_dir(self, key_id: str) -> Path:
        return self.root / "bundles" / key_id

    def bundle_path(self, key_id: str) -> Path:
        return self.bundle_dir(key_id) / "bundle.fhe"

    def job_dir(self, job_id: str) -> Path:
        return self.root / "jobs" / job_id

    def job_file(self, job_id: str, name: str) -> Path:
        return self.job_dir(job_id) / name

    # -- bundles -------------------------------------------------------------------------------------------
    def add_bundle(self, received: Path, key_id: str, params_id: str, elements: list[int]) -> str:
        """Move a checked upload into place; returns the new bearer token (shown once, stored hashed)."""
        d = self.bundle_dir(key_id)
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            raise Conflict(f"a bundle for key id {key_id!r} is already registered; delete it first") from None
        token = f"{key_id}.{secrets.token_urlsafe(32)}"  # the key id says which record to check it against
        os.replace(received, d / "bundle.fhe")
        rec = BundleRecord(key_id, params_id, token_digest(token), (d / "bundle.fhe").stat().st_size, time.time(),
                           elements)
        atomic_write_bytes(d / "record.json", json.dumps(asdict(rec)).encode(), mode=0o600)
        return token

    def bundle(self, key_id: str) -> BundleRecord:
        try:
            data = json.loads((self.bundle_dir(key_id) / "record.json").read_text())
            return BundleRecord(**data)
        except (OSError, ValueError, TypeError):
            raise NotFound(f"no bundle {key_id!r}") from None

    def authorize(self, key_id: str, token: str) -> BundleRecord:
        """The bundle record if ``token`` is its bearer token; NotFound otherwise (no hint which part failed)."""
        if not valid_id(key_id):
            raise NotFound("no such bundle")
        rec = self.bundle(key_id)
        if not hmac.compare_digest(rec.token_sha256, token_digest(token)):
            raise NotFound("no such bundle")
        return rec

    def remove_bundle(self, key_id: str) -> None:
        shutil.rmtree(self.bundle_dir(key_id), ignore_errors=True)

    # -- jobs ----------------------------------------------------------------------------------------------
    def save_job(self, job: JobRecord) -> None:
        job.updated = time.time()
        self.job_dir(job.job_id).mkdir(mode=0o700, exist_ok=True)
        atomic_write_bytes(self.job_file(job.job_id, "record.json"), json.dumps(asdict(job)).encode(), mode=0o600)

    def load_jobs(self) -> list[JobRecord]:
        out = []
        for d in sorted((self.root / "jobs").iterdir()):
            try:
                out.append(JobRecord(**json.loads((d / "record.json").read_text())))
            except (OSError, ValueError, TypeError):
                shutil.rmtree(d, ignore_errors=True)  # a job whose record never got written was never accepted
        return out

    def remove_job(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def clear_incoming(self) -> None:
        for p in (self.root / "incoming").iterdir():
            p.unlink(missing_ok=True)


__all__ = ["BundleFacts", "BundleRecord", "Conflict", "JobRecord", "NotFound", "Store", "check_public_bundle",
           "token_digest"]
