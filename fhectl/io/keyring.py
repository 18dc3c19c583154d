"""A keyring directory of versioned key sets.

Layout (every directory mode 0700)::

    <keyring>/                      default ~/.fhectl/keyring, or $FHECTL_KEYRING, or an argument
      <name>/                       one key set, e.g. "default"
        .lock                       flock target for writers (holds the holder's pid)
        v1/
          manifest.json             name, profile, params_id, key_id, version, created (UTC ISO 8601),
                                    status (primary|active|retired), status_changed, sealed,
                                    files {relative name: sha256 hex}
          secret/secret-key.fhe     mode 0600, created exclusively; sealed if a passphrase was given
          public/public-key.fhe     mode 0644: public-key, relin-key, galois-keys, ...
        v2/ ...

The keyring stores :class:`~fhectl.io.container.Container` objects the caller has built; it
does not know CKKS. A version directory is assembled under a temporary name and renamed into
place while the key set's lock is held, so a version either exists completely or not at all,
and an existing version is never overwritten.

Exactly one primary: promoting a version first writes its manifest as primary, then demotes
the old primary. A crash in between leaves two primaries; :meth:`Keyring.get` then takes the
one promoted last (``status_changed``, then the higher version), and the next run that can take
the key set's lock (any writer, or a read when no writer holds it) repairs the key set: that one
stays primary, the others become active (they were in use, so files may still be under them),
with a warning on the ``fhectl.io.keyring`` logger. Promoted last rather than highest version:
promoting an older version back (a roll-back) is a promotion too, and every reader in between
already used the one promoted last. The status stays in each manifest (one file describes one
version completely) rather than in a separate per-set index.

A version's public files travel as one container of kind "keyset-public" (built by
fhectl.keysets.bundle, read by :func:`read_public_export`) rather than a tar: the same loader,
checksums and size limits then protect the import side, and there is no archive path handling
(tar members with ``../`` names) to get wrong.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from fhectl.errors import FormatError, KeyMismatchError, KeyringError, OutputExistsError

from .atomic import atomic_write_bytes, fsync_directory, shred_tree
from .container import (Container, check_binding, decode_container, read_container, read_header,
                        unbundle_containers, write_container)
from .secret_box import SCRYPT_N, is_sealed, open_container, seal_container

ENV_VAR = "FHECTL_KEYRING"
DEFAULT_PATH = "~/.fhectl/keyring"
STATUSES = ("primary", "active", "retired")
MANIFEST = "manifest.json"
_MANIFEST_FORMAT = "fhectl-keyring-manifest"
_MANIFEST_FIELDS = {"format", "manifest_version", "name", "version", "profile", "params_id", "key_id", "created",
                    "status", "status_changed", "sealed", "files"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_VERSION_DIR = re.compile(r"v([1-9][0-9]{0,8})\Z")
_TMP_DIR = re.compile(r"\.v[1-9][0-9]{0,8}\.tmp-[0-9a-f]{8}\Z")  # a version being assembled (see create_key_set)
_REL_FILE = re.compile(r"(secret|public)/([A-Za-z0-9][A-Za-z0-9._-]{0,63})\.fhe\Z")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_log = logging.getLogger(__name__)


def default_keyring_path() -> Path:
    return Path(os.environ.get(ENV_VAR) or DEFAULT_PATH).expanduser()


def _now(precise: bool = False) -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ" if precise else "%Y-%m-%dT%H:%M:%SZ")


def _check_name(name: str, what: str = "key set name") -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise KeyringError(f"{what} {name!r} must be 1-64 characters [A-Za-z0-9._-], not starting with '.', '_' or '-'")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class KeyVersion:
    """One version of a key set, as its manifest describes it."""

    name: str
    version: int
    profile: str
    params_id: str
    key_id: str
    created: str
    status: str
    status_changed: str
    sealed: bool
    files: dict  # relative path ("secret/secret-key.fhe") -> sha256 hex
    path: Path  # the version directory

    @property
    def secret_files(self) -> list[str]:
        return [m.group(2) for m in map(_REL_FILE.match, self.files) if m.group(1) == "secret"]

    @property
    def has_secret(self) -> bool:
        """False once ``keys destroy`` has shredded the secret (the manifest then lists public files only)."""
        return bool(self.secret_files)

    @property
    def public_files(self) -> list[str]:
        return [m.group(2) for m in map(_REL_FILE.match, self.files) if m.group(1) == "public"]

    def manifest(self) -> dict:
        return {"format": _MANIFEST_FORMAT, "manifest_version": 1, "name": self.name, "version": self.version,
                "profile": self.profile, "params_id": self.params_id, "key_id": self.key_id,
                "created": self.created, "status": self.status, "status_changed": self.status_changed,
                "sealed": self.sealed, "files": dict(self.files)}


def _parse_manifest(path: Path, name: str, version: int) -> KeyVersion:
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise KeyringError(f"{path}: missing manifest for version {version} of key set {name!r}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise KeyringError(f"{path}: corrupt manifest: {exc}") from None

    def bad(what: str) -> KeyringError:
        return KeyringError(f"{path}: corrupt manifest: {what}")

    if not isinstance(doc, dict) or set(doc) != _MANIFEST_FIELDS:
        raise bad(f"fields must be {sorted(_MANIFEST_FIELDS)}")
    if doc["format"] != _MANIFEST_FORMAT or doc["manifest_version"] != 1:
        raise bad(f"unknown format {doc['format']!r} version {doc['manifest_version']!r}")
    if doc["name"] != name or doc["version"] != version or type(doc["version"]) is not int:
        raise bad(f"describes {doc['name']!r} version {doc['version']!r}, but lies under {name!r} v{version}")
    if doc["status"] not in STATUSES:
        raise bad(f"status {doc['status']!r} is not one of {', '.join(STATUSES)}")
    if not all(isinstance(doc[k], str) for k in ("profile", "params_id", "key_id", "created", "status_changed")) \
            or type(doc["sealed"]) is not bool:
        raise bad("profile, params_id, key_id, created, status_changed must be strings and sealed a boolean")
    files = doc["files"]
    if not isinstance(files, dict) or not files or not all(
            isinstance(k, str) and _REL_FILE.match(k) and isinstance(v, str) and _SHA256.match(v)
            for k, v in files.items()):
        raise bad("files must map 'secret/<name>.fhe' or 'public/<name>.fhe' to a sha256 hex digest")
    return KeyVersion(name, version, doc["profile"], doc["params_id"], doc["key_id"], doc["created"], doc["status"],
                      doc["status_changed"], doc["sealed"], files, path.parent)


def _current_primary(primaries: list[KeyVersion]) -> KeyVersion:
    """Of several primaries (a crash between promote and demote), the one promoted last."""
    return max(primaries, key=lambda kv: (kv.status_changed, kv.version))


def _extra_primaries(versions: list[KeyVersion]) -> list[KeyVersion]:
    """The primaries other than :func:`_current_primary`: what an interrupted promotion leaves behind."""
    primaries = [kv for kv in versions if kv.status == "primary"]
    if len(primaries) < 2:
        return []
    keep = _current_primary(primaries)
    return [kv for kv in primaries if kv.version != keep.version]


def _manifest_bytes(kv: KeyVersion) -> bytes:
    return (json.dumps(kv.manifest(), indent=2, sort_keys=True) + "\n").encode("utf-8")


def read_public_export(source: str | os.PathLike | bytes | bytearray | memoryview, *, max_bytes: int | None = None,
                       source_name: str = "bundle", mmap: bool = False) -> tuple[dict, dict[str, Container]]:
    """Read a "keyset-public" bundle (see fhectl.keysets.bundle) from a path or from its bytes: (its meta,
    {file name: container}), every member bound to the bundle's parameters and key. ``mmap``: a path's
    arrays are memory-mapped views of the file (see read_container)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        bundle = decode_container(source, source_name, expected_kind="keyset-public", max_bytes=max_bytes)
    else:
        source_name = os.fspath(source)
        bundle = read_container(source, expected_kind="keyset-public", max_bytes=max_bytes, mmap=mmap)
    members = unbundle_containers(bundle, source_name)
    for file, c in members.items():
        check_binding(c, params_id=bundle.params_id, key_id=bundle.key_id, source=f"{source_name} member {file!r}",
                      against="the bundle")
    return {k: v for k, v in bundle.meta.items() if k != "members"}, members


class Keyring:
    """A keyring directory; see the module docstring for the layout."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else default_keyring_path()
        self._held: dict[str, list[int]] = {}  # name -> [fd, depth]: lock() is re-entrant per Keyring object

    # -- paths and directories ------------------------------------------------------------------

    def _set_dir(self, name: str) -> Path:
        _check_name(name)
        return self.root / name

    def _make_dirs(self, path: Path) -> None:
        """Create ``path`` and missing parents, each new directory mode 0700."""
        missing = []
        p = path
        while not p.exists():
            missing.append(p)
            p = p.parent
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(d, 0o700)
                os.chmod(d, 0o700)

    # -- locking --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold the key set's exclusive lock (non-blocking); another holder -> KeyringError."""
        set_dir = self._set_dir(name)
        held = self._held.get(name)
        if held is not None:
            held[1] += 1
            try:
                yield
            finally:
                held[1] -= 1
            return
        self._make_dirs(set_dir)
        fd = os.open(set_dir / ".lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise KeyringError(f"another fhectl process holds the lock on key set {name!r} (pid {holder})") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self._held[name] = [fd, 1]
            self._remove_leftovers(name)
            yield
        finally:
            self._held.pop(name, None)
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _leftovers(self, name: str, versions: list[KeyVersion] | None = None) -> list[Path]:
        """What killed writers left: temporary version directories (which may hold a secret key), and the
        secret/ directory of a version whose manifest no longer lists a secret (a killed `keys destroy`)."""
        set_dir = self._set_dir(name)
        if not set_dir.is_dir():
            return []
        out = [p for p in sorted(set_dir.iterdir()) if _TMP_DIR.match(p.name) and p.is_dir() and not p.is_symlink()]
        for kv in versions or []:
            secret_dir = kv.path / "secret"
            if not kv.has_secret and kv.status == "retired" and secret_dir.is_dir() and not secret_dir.is_symlink():
                out.append(secret_dir)
        return out

    def _remove_leftovers(self, name: str) -> None:
        """Shred what :meth:`_leftovers` finds. Only with the lock held: then no writer is mid-way."""
        set_dir = self._set_dir(name)
        try:
            versions = self.versions(name) if any(_VERSION_DIR.match(p.name) for p in set_dir.iterdir()) else []
        except KeyringError:  # a corrupt manifest is verify's to report; temporary directories still go
            versions = []
        leftovers = self._leftovers(name, versions)
        for path in leftovers:
            shred_tree(path)
        if leftovers:
            fsync_directory(str(set_dir))
        self._repair_primaries(name, versions)

    def _repair_primaries(self, name: str, versions: list[KeyVersion]) -> None:
        """Demote every primary but the one promoted last (see the module docstring). Only with the lock held."""
        extra = _extra_primaries(versions)
        if not extra:
            return
        keep = _current_primary([kv for kv in versions if kv.status == "primary"])
        for kv in extra:
            self._write_status(kv, "active")
        _log.warning(f"warning: key set {name!r} had {len(extra) + 1} primary versions (an interrupted promotion); "
                     f"repaired: v{keep.version}, promoted last, stays primary; "
                     f"{', '.join(f'v{kv.version}' for kv in extra)} now active")

    def _sweep(self, name: str, versions: list[KeyVersion]) -> bool:
        """On a read, clean up after a killed writer if the lock is free (best effort: never fails the read).
        True if it took the lock to clean up (the caller then rereads the manifests)."""
        if name in self._held or not (self._leftovers(name, versions) or _extra_primaries(versions)):
            return False
        with contextlib.suppress(KeyringError, OSError):  # held by a live writer, or a read-only keyring
            with self.lock(name):
                return True
        return False

    # -- reading --------------------------------------------------------------------------------

    def list_key_sets(self) -> list[str]:
        """Names of the key sets that have at least one version."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if _NAME.match(p.name) and p.is_dir() and any(_VERSION_DIR.match(q.name) for q in p.iterdir()))

    def versions(self, name: str) -> list[KeyVersion]:
        """Every version of ``name``, oldest first."""
        set_dir = self._set_dir(name)
        numbers = sorted(int(m.group(1)) for m in (_VERSION_DIR.match(p.name) for p in set_dir.iterdir()) if m) \
            if set_dir.is_dir() else []
        if not numbers:
            known = ", ".join(self.list_key_sets()) or "none"
            raise KeyringError(f"no key set {name!r} in keyring {self.root} (key sets: {known})")
        versions = [_parse_manifest(set_dir / f"v{n}" / MANIFEST, name, n) for n in numbers]
        if self._sweep(name, versions):
            versions = [_parse_manifest(set_dir / f"v{n}" / MANIFEST, name, n) for n in numbers]
        return versions

    def next_version(self, name: str) -> int:
        try:
            return self.versions(name)[-1].version + 1
        except KeyringError:
            return 1

    def get(self, name: str, version: int | None = None) -> KeyVersion:
        """A version of ``name``; the primary one when ``version`` is None."""
        all_versions = self.versions(name)
        if version is None:
            primaries = [kv for kv in all_versions if kv.status == "primary"]
            if not primaries:
                raise KeyringError(f"key set {name!r} has no primary version "
                                   f"(versions: {', '.join(str(kv.version) for kv in all_versions)}); promote one")
            return _current_primary(primaries)
        for kv in all_versions:
            if kv.version == version:
                return kv
        raise KeyringError(f"key set {name!r} has no version {version} "
                           f"(versions: {', '.join(str(kv.version) for kv in all_versions)})")

    def _usable(self, name: str, version: int | None, allow_retired: bool, purpose: str) -> KeyVersion:
        kv = self.get(name, version)
        if kv.status == "retired" and not allow_retired:
            if purpose == "decryption":
                raise KeyringError(f"key version {kv.version} of {name!r} is retired; files under it must be "
                                   "rewrapped (fhectl rotate) before retirement")
            raise KeyringError(f"key version {kv.version} of {name!r} is retired; "
                               f"use the primary version for {purpose}")
        return kv

    def _read_file(self, kv: KeyVersion, part: str, file: str) -> Container:
        rel = f"{part}/{file}.fhe"
        if rel not in kv.files:
            names = kv.secret_files if part == "secret" else kv.public_files
            raise KeyringError(f"key set {kv.name!r} version {kv.version} has no {part} file {file!r} "
                               f"(has: {', '.join(names) or 'none'})")
        path = kv.path / rel

        def mismatch(actual: str) -> KeyringError:
            return KeyringError(f"{path}: fingerprint mismatch: manifest records sha256 {kv.files[rel][:16]}..., "
                                f"file has {actual[:16]}... (modified or corrupted)")

        if not path.is_file():
            raise KeyringError(f"{path}: missing, but listed in the manifest of {kv.name!r} v{kv.version}")
        hasher = hashlib.sha256()  # fed every byte as the container is read: one pass over the file
        try:
            c = read_container(path, _hasher=hasher)
        except FormatError as exc:  # report the keyring-level fact first when the file was changed
            actual = _file_sha256(path)
            if actual != kv.files[rel]:
                raise mismatch(actual) from exc
            raise
        if hasher.hexdigest() != kv.files[rel]:
            raise mismatch(hasher.hexdigest())
        return c

    def _check_manifest_binding(self, kv: KeyVersion, c: Container, source: str) -> None:
        check_binding(c, params_id=kv.params_id, key_id=kv.key_id, key_version=kv.version, source=source,
                      against=f"manifest of {kv.name!r}")

    def read_secret(self, name: str, version: int | None, file: str, passphrase: bytes | None = None, *,
                    allow_retired: bool = False) -> Container:
        """A secret container (opened with ``passphrase`` if sealed). Retired versions are refused."""
        kv = self._usable(name, version, allow_retired, "decryption")
        c = self._read_file(kv, "secret", file)
        source = str(kv.path / "secret" / f"{file}.fhe")
        if is_sealed(c):
            if passphrase is None:
                raise KeyringError(f"{source} is passphrase-protected; a passphrase is needed "
                                   "(prompt, env:VARNAME or file:PATH)")
            c = open_container(c, passphrase, source)
        self._check_manifest_binding(kv, c, source)
        return c

    def read_public(self, name: str, version: int | None, file: str, *, allow_retired: bool = False) -> Container:
        """A public container (public key, relinearization key, Galois keys...)."""
        kv = self._usable(name, version, allow_retired, "encryption or evaluation")
        c = self._read_file(kv, "public", file)
        self._check_manifest_binding(kv, c, str(kv.path / "public" / f"{file}.fhe"))
        return c

    def verify(self, name: str, version: int | None = None) -> KeyVersion:
        """Recompute every fingerprint and check permissions and bindings; KeyringError lists each problem."""
        kv = self.get(name, version)
        problems = []
        for rel, digest in kv.files.items():
            path = kv.path / rel
            try:
                actual = _file_sha256(path)
            except FileNotFoundError:
                problems.append(f"{rel}: missing")
                continue
            if actual != digest:
                problems.append(f"{rel}: sha256 {actual[:16]}... does not match the manifest's {digest[:16]}...")
                continue
            if rel.startswith("secret/") and os.stat(path).st_mode & 0o077:
                problems.append(f"{rel}: mode {os.stat(path).st_mode & 0o777:04o} lets others read a secret; chmod 600")
            try:
                header = read_header(path)
                check_binding(Container(header.kind, header.params_id, header.key_id, header.key_version),
                              params_id=kv.params_id, key_id=kv.key_id, key_version=kv.version, source=rel,
                              against="the manifest")
            except (FormatError, KeyMismatchError) as exc:
                problems.append(str(exc))
        for part in ("secret", "public"):
            if (kv.path / part).is_dir():
                for p in sorted((kv.path / part).iterdir()):
                    if f"{part}/{p.name}" not in kv.files:
                        problems.append(f"{part}/{p.name}: not listed in the manifest")
        if problems:
            raise KeyringError(f"key set {name!r} version {kv.version} failed verification: " + "; ".join(problems))
        return kv

    # -- writing --------------------------------------------------------------------------------

    def create_key_set(self, name: str, version: int, profile: str, params_id: str, key_id: str,
                       secret: dict[str, Container], public: dict[str, Container], *,
                       passphrase: bytes | None = None, status: str | None = None,
                       scrypt_n: int = SCRYPT_N) -> KeyVersion:
        """Store a new version. Containers must carry ``params_id`` and ``key_id``; a key_version of
        None is stamped with ``version``. Secret containers are sealed when ``passphrase`` is given.

        ``status`` defaults to "primary" for a key set's first version and "active" otherwise;
        "primary" demotes the previous primary to "active". An existing version -> OutputExistsError.
        """
        set_dir = self._set_dir(name)
        if type(version) is not int or version < 1:
            raise KeyringError(f"key version must be an integer >= 1, not {version!r}")
        if status is not None and status not in STATUSES:
            raise KeyringError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        if not secret and not public:
            raise KeyringError(f"key set {name!r} version {version}: nothing to store")
        both = sorted(set(secret) & set(public))
        if both:
            raise KeyringError(f"key file names {both} are both secret and public")
        files: dict[str, Container] = {}
        for part, group in (("secret", secret), ("public", public)):
            for file, c in group.items():
                _check_name(file, "key file name")
                check_binding(c, params_id=params_id, key_id=key_id, source=f"{part} file {file!r}",
                              against=f"key set {name!r} version {version}")
                if c.key_version is None:
                    c = replace(c, key_version=version)
                check_binding(c, key_version=version, source=f"{part} file {file!r}",
                              against=f"key set {name!r}")
                if part == "secret" and passphrase is not None:
                    c = seal_container(c, passphrase, scrypt_n=scrypt_n)
                files[f"{part}/{file}.fhe"] = c

        with self.lock(name):
            existing = self.versions(name) if any(_VERSION_DIR.match(p.name) for p in set_dir.iterdir()) else []
            version_dir = set_dir / f"v{version}"
            if any(kv.version == version for kv in existing) or os.path.lexists(version_dir):
                raise OutputExistsError(f"key set {name!r} already has version {version} ({version_dir}); "
                                        "refusing to overwrite it")
            old_primaries = [kv for kv in existing if kv.status == "primary"]
            if status is None:
                status = "active" if old_primaries else "primary"
            tmp = set_dir / f".v{version}.tmp-{secrets.token_hex(4)}"
            try:
                for d in (tmp, tmp / "secret", tmp / "public"):
                    os.mkdir(d, 0o700)
                    os.chmod(d, 0o700)
                digests = {}
                for rel, c in files.items():
                    mode = 0o600 if rel.startswith("secret/") else 0o644
                    digests[rel] = write_container(tmp / rel, c, mode=mode, exclusive=True)
                now = _now(precise=True)
                kv = KeyVersion(name, version, profile, params_id, key_id, _now(), status, now,
                                passphrase is not None and bool(secret), digests, version_dir)
                atomic_write_bytes(tmp / MANIFEST, _manifest_bytes(kv), mode=0o644, exclusive=True)
                fsync_directory(str(tmp))
                os.rename(tmp, version_dir)
                fsync_directory(str(set_dir))
            except BaseException:
                try:
                    shred_tree(tmp)  # it may already hold the secret key
                except OSError:
                    shutil.rmtree(tmp, ignore_errors=True)
                raise
            if status == "primary":
                for old in old_primaries:
                    self._write_status(old, "active")
        return self.get(name, version)

    def _write_status(self, kv: KeyVersion, status: str) -> KeyVersion:
        new = replace(kv, status=status, status_changed=_now(precise=True))
        atomic_write_bytes(kv.path / MANIFEST, _manifest_bytes(new), mode=0o644)
        return new

    def set_status(self, name: str, version: int, status: str) -> KeyVersion:
        """Change a version's status, keeping exactly one primary.

        Promoting to "primary" demotes the current primary to "active"; the primary itself cannot be
        made active or retired directly (promote another version first).
        """
        if status not in STATUSES:
            raise KeyringError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        with self.lock(name):
            all_versions = self.versions(name)
            kv = self.get(name, version)
            if status == "primary":
                if kv.status != "primary" or sum(v.status == "primary" for v in all_versions) > 1:
                    kv = self._write_status(kv, "primary")
                for other in all_versions:
                    if other.status == "primary" and other.version != version:
                        self._write_status(other, "active")
                return kv
            if kv.status == "retired" and status != "retired" and not kv.has_secret:
                raise KeyringError(f"version {version} of {name!r} has no secret key (destroyed): it cannot "
                                   "decrypt, so it stays retired")
            if kv.status == "primary":
                raise KeyringError(f"version {version} of {name!r} is the primary; promote another version to "
                                   f"primary before making it {status} (a key set keeps exactly one primary)")
            return kv if kv.status == status else self._write_status(kv, status)

    def destroy_secret(self, name: str, version: int) -> KeyVersion:
        """Shred the secret files of a retired version; its public files (and manifest) stay.

        The manifest is rewritten first, without the secret files: a crash after that leaves a secret/
        directory no manifest lists, which the next writer (or read) shreds (see :meth:`_leftovers`).
        """
        with self.lock(name):
            kv = self.get(name, version)
            if kv.status != "retired":
                raise KeyringError(f"version {version} of {name!r} is {kv.status}; only a retired version's secret "
                                   "can be destroyed: rewrap its files, then retire it "
                                   f"(fhectl rotate retire {version})")
            if not kv.has_secret:
                raise KeyringError(f"version {version} of {name!r} has no secret key (already destroyed)")
            public = {rel: digest for rel, digest in kv.files.items() if not rel.startswith("secret/")}
            if not public:
                raise KeyringError(f"version {version} of {name!r} holds nothing but its secret; nothing would remain")
            new = replace(kv, files=public, sealed=False)
            atomic_write_bytes(kv.path / MANIFEST, _manifest_bytes(new), mode=0o644)
            if (kv.path / "secret").is_dir():
                shred_tree(kv.path / "secret")
                fsync_directory(str(kv.path))
            return new
