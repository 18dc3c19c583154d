"""Rewrap ciphertext files to a new key version by key switching, never decrypting them.

Resumable, and loses no file when killed at any moment:

* each file is rewritten through fhectl.io.atomic (temporary file, fsync, rename over the original),
  so it is always either the complete old file or the complete new one;
* a file already under the target version is recognised from its header alone and skipped, so a
  rerun after an interruption continues where the last one stopped, and running twice is harmless;
* temporary files an interrupted run left next to the files it was rewriting are removed.

One lock for every rewrap of the same files, from the keyring or from a bundle: an exclusive flock on
each directory holding them (the directories, not the key set or the bundle, are what two runs would
share; flock is released when the process ends, even by SIGKILL). A keyring rewrap also holds the key
set's lock, so that no rotation or retirement changes the versions under it.

Where the key holder runs it (the keyring, with the secrets readable), every rewrapped file is checked
before it replaces the original: its phase under the new secret must equal the original's under the
old one up to key-switching error, on every limb (fhectl.keysets.checks). A wrong or damaged switching
key then stops the run and leaves the file as it was. A server with a bundle has no secret to check with.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fhectl.ckks.ciphertext import Ciphertext
from fhectl.ckks.evaluator import Evaluator
from fhectl.ckks.keys import SecretKey
from fhectl.errors import FhectlError, InputError, KeyMismatchError, KeyringError
from fhectl.io.container import read_container, read_header, write_container
from fhectl.io.keyring import Keyring
from fhectl.io.objects import ciphertexts_to_container, container_to_ciphertexts

from .bundle import load_public_bundle
from .checks import check_rewrapped
from .source import KeySource, Passphrase, resolve_passphrase

_TEMP = re.compile(r"\.(.+)\.[0-9a-f]{12}\.tmp\Z")  # fhectl.io.atomic's temporary names


class RewrapCheckError(KeyMismatchError):
    """A rewrapped file failed the key holder's check: the switching key is wrong; the run stops."""


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files as given, and every *.fhe file under given directories (hidden names skipped)."""
    out, seen = [], set()
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.fhe")
                           if q.is_file() and not any(part.startswith(".") for part in q.relative_to(p).parts))
        elif p.is_file():
            found = [p]
        else:
            raise InputError(f"{p}: no such file or directory")
        for q in found:
            key = os.path.realpath(q)
            if key not in seen:
                seen.add(key)
                out.append(q)
    return out


@contextlib.contextmanager
def files_lock(files: list[Path]) -> Iterator[None]:
    """Hold the rewrap lock of every directory holding ``files`` (non-blocking; held -> KeyringError)."""
    directories = sorted({os.path.realpath(f.parent) for f in files})
    fds = []
    try:
        for directory in directories:
            try:
                fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
            except OSError as exc:
                raise InputError(f"{directory}: cannot open the directory: {exc.strerror}") from None
            fds.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise KeyringError(f"another fhectl process is rewrapping files in {directory}") from None
        yield
    finally:
        for fd in fds:
            os.close(fd)


def remove_stale_temporaries(files: list[Path]) -> int:
    """Delete temporary files an interrupted rewrite of one of ``files`` left behind (hold files_lock)."""
    wanted: dict[Path, set[str]] = {}
    for f in files:
        wanted.setdefault(f.parent, set()).add(f.name)
    removed = 0
    for directory, names in wanted.items():
        for entry in os.scandir(directory):
            m = _TEMP.match(entry.name)
            if m and m.group(1) in names and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


class SecretCheck:
    """The key holder's check of rewrapped ciphertexts: the target's secret, and each old version's on first use."""

    def __init__(self, target: KeySource, new: SecretKey, passphrase: bytes | None, allow_insecure: bool):
        self.target, self.new = target, new
        self._passphrase, self._allow_insecure = passphrase, allow_insecure
        self._old: dict[int, SecretKey] = {}

    @staticmethod
    def for_target(target: KeySource, passphrase: Passphrase, allow_insecure: bool) -> "SecretCheck | None":
        """The check, or None when the target's secret is not at hand (a bundle, or sealed with no passphrase)."""
        if target.kv is None or target.keyring is None or not target.kv.has_secret:
            return None
        passphrase = resolve_passphrase(passphrase, target.kv.sealed)
        if target.kv.sealed and passphrase is None:
            return None
        return SecretCheck(target, target.secret_key(passphrase), passphrase, allow_insecure)

    def old_secret(self, version: int) -> SecretKey:
        if version not in self._old:
            source = KeySource.from_keyring(self.target.keyring, self.target.name, version,
                                            allow_insecure=self._allow_insecure, device=self.target.ctx.device)
            self._old[version] = source.secret_key(self._passphrase)
        return self._old[version]

    def __call__(self, before: list[Ciphertext], version: int, after: list[Ciphertext], path: Path) -> None:
        try:
            check_rewrapped(self.target.ctx, before, self.old_secret(version), after, self.new, str(path))
        except KeyMismatchError as exc:
            raise RewrapCheckError(f"{exc}; stopped, and {path} was left as it was under v{version} "
                                   f"(switching key {self.target.origin} rewrap-from-v{version})") from None


class Rewrapper:
    """Key-switches ciphertext files to the target version, one atomic replacement per file."""

    def __init__(self, target: KeySource, ring: Keyring | None = None, name: str | None = None,
                 check: SecretCheck | None = None):
        self.target, self.ring, self.name, self.check = target, ring, name, check
        self.evaluator = Evaluator(target.ctx)
        self._keys: dict[tuple[int, str], object] = {}

    def _switching_key(self, version: int, key_id: str):
        if (version, key_id) not in self._keys:
            self._keys[(version, key_id)] = self.target.switching_key_from(version, key_id)
        return self._keys[(version, key_id)]

    def status(self, path: Path) -> str:
        """"done" if the header says the file is under the target already, else "todo"; errors for foreign files."""
        if path.is_symlink():
            raise InputError(f"{path} is a symbolic link; rewrap the file it points to (replacing the link "
                             "would leave the target under the old key)")
        h = read_header(path, expected_kind="ciphertext")
        t = self.target
        if h.params_id != t.params.params_id:
            raise KeyMismatchError(f"{path} was encrypted under parameter set {h.params_id!r}, {t.origin} uses "
                                   f"{t.params.params_id!r}")
        if h.key_id == t.key_id:
            if h.key_version != t.version:
                raise KeyMismatchError(f"{path} is under key {h.key_id!r} but claims version {h.key_version}, "
                                       f"{t.origin} has it as version {t.version}")
            return "done"
        if not isinstance(h.key_version, int):
            raise KeyMismatchError(f"{path} carries no key version; rewrap needs one")
        if self.ring is not None:
            kv = self.ring.get(self.name, h.key_version)
            if kv.key_id != h.key_id:
                raise KeyMismatchError(f"{path} was encrypted under key {h.key_id!r} version {h.key_version}, key set "
                                       f"{self.name!r} v{kv.version} has key {kv.key_id!r}")
            if kv.status == "retired":
                raise KeyringError(f"{path} is under key version {kv.version} of {self.name!r}, which is retired; "
                                   "it can no longer be rewrapped or decrypted")
            if kv.version > t.version:
                raise KeyMismatchError(f"{path} is under version {kv.version}, newer than the target v{t.version}")
        return "todo"

    def rewrap(self, path: Path) -> None:
        c = read_container(path, expected_kind="ciphertext")
        source = str(path)
        swk = self._switching_key(c.key_version, c.key_id)
        cts = container_to_ciphertexts(self.target.ctx, c, source)
        new = [self.evaluator.key_switch(ct, swk, self.target.key_id) for ct in cts]
        if self.check is not None:
            self.check(cts, c.key_version, new, path)
        meta = dict(c.meta)
        switches = meta.get("key_switches", 0)
        meta["key_switches"] = switches + 1 if isinstance(switches, int) and not isinstance(switches, bool) else None
        history = meta.get("rewrapped_from")
        meta["rewrapped_from"] = (history if isinstance(history, list) else []) + [
            {"key_id": c.key_id, "key_version": c.key_version}]
        if self.target.name is not None:
            meta["key_set"] = self.target.name
        out = ciphertexts_to_container(self.target.ctx, new, self.target.version, meta)
        mode = os.stat(path).st_mode & 0o777
        write_container(path, out, mode=mode)


@dataclass
class RewrapReport:
    target: str
    key_id: str
    version: int
    checked: bool  # every rewrapped file was checked against the secrets before it replaced the original
    rewrapped: list[str] = field(default_factory=list)
    already_current: list[str] = field(default_factory=list)
    failures: list[tuple[str, FhectlError]] = field(default_factory=list)
    stale_temporaries_removed: int = 0


def rewrap_files(paths: list[Path], *, keyring: Keyring | None = None, name: str = "default",
                 to_version: int | None = None, bundle: Path | None = None, passphrase: Passphrase = None,
                 allow_insecure: bool = False, device: str = "cpu", fail_fast: bool = False,
                 progress: Callable[[int, int], None] = lambda done, total: None) -> RewrapReport:
    """Rewrap ``paths`` (files, or every *.fhe below directories) to a keyring version (default: the primary)
    or to the version of ``bundle``. ``passphrase`` opens sealed secrets for the check (never needed to rewrap).

    A file that fails is recorded and the others go on (unless ``fail_fast``); a failed check stops the run
    (RewrapCheckError). ``progress(done, total)`` is called after each file.
    """
    if bundle is None and keyring is None:
        raise InputError("rewrap needs a keyring or a bundle")
    files = expand_paths(paths)
    with contextlib.ExitStack() as held:
        if bundle is None:
            held.enter_context(keyring.lock(name))
        held.enter_context(files_lock(files))
        if bundle is not None:
            target = load_public_bundle(bundle, allow_insecure=allow_insecure, device=device)
            worker = Rewrapper(target)
        else:
            target = KeySource.from_keyring(keyring, name, to_version, allow_insecure=allow_insecure, device=device)
            worker = Rewrapper(target, keyring, name, SecretCheck.for_target(target, passphrase, allow_insecure))
        report = RewrapReport(target.origin, target.key_id, target.version, worker.check is not None)
        report.stale_temporaries_removed = remove_stale_temporaries(files)
        for done, path in enumerate(files, start=1):
            try:
                if worker.status(path) == "done":
                    report.already_current.append(str(path))
                else:
                    worker.rewrap(path)
                    report.rewrapped.append(str(path))
            except RewrapCheckError:
                raise
            except FhectlError as exc:
                if fail_fast:
                    raise
                report.failures.append((str(path), exc))
            progress(done, len(files))
    return report
