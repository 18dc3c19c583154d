"""`fhectl rotate`: a new key version; `rotate rewrap`: move ciphertext files to it without decrypting;
`rotate retire`: make old versions undecryptable (Vault's minimum decryption version).

Rewrap is resumable and loses no file when killed at any moment:

* each file is rewritten through fhectl.io.atomic (temporary file, fsync, rename over the original),
  so it is always either the complete old file or the complete new one;
* a file already under the target version is recognised from its header alone and skipped, so a
  rerun after an interruption continues where the last one stopped, and running twice is harmless;
* temporary files an interrupted run left next to the files it was rewriting are removed;
* one run at a time: the key set's lock (keyring) or a lock on the bundle file (bundle mode).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from pathlib import Path
from typing import Annotated, Optional

import typer

from fhectl.ckks.evaluator import Evaluator
from fhectl.cli import console, keysets
from fhectl.cli.errors import guarded
from fhectl.cli.options import Bundle, Device, Insecure, Json, Keyring, KeyName, Passphrase
from fhectl.errors import FhectlError, InputError, KeyMismatchError, KeyringError
from fhectl.io.container import read_container, read_header, write_container
from fhectl.io.objects import ciphertexts_to_container, container_to_ciphertexts

app = typer.Typer()

_TEMP = re.compile(r"\.(.+)\.[0-9a-f]{12}\.tmp\Z")  # fhectl.io.atomic's temporary names


@app.callback(invoke_without_command=True)
@guarded
def rotate(
    ctx: typer.Context,
    name: KeyName = "default",
    passphrase: Passphrase = None,
    insecure: Insecure = False,
    keyring: Keyring = None,
    device: Device = "cpu",
    json: Json = False,
) -> None:
    """Rotate keys: alone, make a new key version; `rewrap` moves files to it; `retire` ends old ones.

    `fhectl rotate` creates a new key version (the new primary: encryption uses it from now on)
    with the same parameters, rotations and conjugation, and a switching key from every
    non-retired version to it, stored with its public part. Old files still decrypt until their
    version is retired. Next: `fhectl rotate rewrap FILES...` (no secret needed), then
    `fhectl rotate retire OLD_VERSION`. A sealed key set stays sealed with the same passphrase;
    --passphrase on an unsealed one seals the new version.
    """
    if ctx.invoked_subcommand is not None:
        return
    ring = keysets.open_keyring(keyring)
    with ring.lock(name):
        versions = ring.versions(name)
        current = ring.get(name)
        sources = [kv for kv in versions if kv.status != "retired"]
        pw = keysets.get_passphrase(passphrase, any(kv.sealed for kv in sources),
                                    confirm=not any(kv.sealed for kv in sources))
        keys = keysets.KeySource.from_keyring(ring, name, current.version, allow_insecure=insecure, device=device)
        params, kctx = keys.params, keys.ctx
        steps, conjugation = [], False
        if keysets.GALOIS_KEYS in current.public_files:
            meta = keys.public(keysets.GALOIS_KEYS).meta
            steps, conjugation = list(meta.get("steps", [])), bool(meta.get("conjugation", False))
        with console.progress() as bar:
            task = bar.add_task("rotating", total=len(sources) + 3 + len(steps) + int(conjugation) + len(sources))
            old_secrets = {}
            for kv in sources:
                if kv.params_id != params.params_id:
                    raise KeyMismatchError(f"version {kv.version} of {name!r} uses parameter set {kv.params_id!r}, the "
                                           f"primary {params.params_id!r}: no switching key can join them")
                src = keys if kv.version == current.version else keysets.KeySource.from_keyring(
                    ring, name, kv.version, allow_insecure=insecure, device=device)
                old_secrets[kv.version] = src.secret_key(None, passphrase=pw)
                bar.update(task, advance=1, description=f"read secret v{kv.version}")
            sk, secret, public = keysets.generate_key_material(
                kctx, steps, conjugation, lambda what: bar.update(task, advance=1, description=what))
            for v, old_sk in old_secrets.items():
                public[keysets.rewrap_file(v)] = keysets.rewrap_key_container(kctx, old_sk, v, sk)
                bar.update(task, advance=1, description=f"switching key v{v} -> new")
            new_version = versions[-1].version + 1
            kv_new = ring.create_key_set(name, new_version, current.profile, params.params_id, sk.key_id, secret,
                                         public, passphrase=pw, status="primary")
    data = keysets.describe_version(kv_new, params)
    data["previous_primary"] = current.version
    if json:
        console.print_json(data)
        return
    keysets.print_version(data, console.out)
    olds = " ".join(str(v) for v in sorted(old_secrets))
    keysets.say(f"new primary: v{new_version}. Next: `fhectl rotate rewrap --name {name} FILES...`, then "
                f"`fhectl rotate retire --name {name} {olds}`")


# -- rewrap -----------------------------------------------------------------------------------

def expand_paths(paths: list[Path]) -> list[Path]:
    """Files as given, and every *.fhe file under given directories (hidden names skipped)."""
    out, seen = [], set()
    for p in paths:
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


def remove_stale_temporaries(files: list[Path]) -> int:
    """Delete temporary files an interrupted rewrite of one of ``files`` left behind (we hold the lock)."""
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


@contextlib.contextmanager
def bundle_lock(path: Path):
    """One rewrap at a time per bundle file (flock; released when the process ends, even by SIGKILL)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KeyringError(f"another fhectl process is rewrapping with bundle {path}") from None
        yield
    finally:
        os.close(fd)


class Rewrapper:
    """Key-switches ciphertext files to the target version, one atomic replacement per file."""

    def __init__(self, target: keysets.KeySource, ring=None, name: str | None = None):
        self.target, self.ring, self.name = target, ring, name
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


@app.command("rewrap")
@guarded
def rewrap(
    paths: Annotated[list[Path], typer.Argument(help="Ciphertext files, or directories (every *.fhe below them).")],
    name: KeyName = "default",
    to_version: Annotated[Optional[int], typer.Option("--to-version", min=1,
                                                      help="Target version (default: the primary).")] = None,
    bundle: Bundle = None,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first file that fails.")] = False,
    insecure: Insecure = False,
    keyring: Keyring = None,
    device: Device = "cpu",
    json: Json = False,
) -> None:
    """Re-key ciphertext files to the new version by key switching, never decrypting.

    No secret key is needed.
    Works from the keyring, or on a server from an exported bundle holding the switching key(s)
    (`fhectl keys export --files rewrap-from-v1` on the key holder's side). Shows progress; each file
    is replaced atomically, files already at the target version are skipped from their header, so
    an interrupted run loses nothing and a rerun resumes. Failed files are listed and leave the exit
    code of the first failure; the others are still processed (unless --fail-fast).
    """
    if bundle is not None:
        lock = bundle_lock(bundle)
        ring = None
    else:
        ring = keysets.open_keyring(keyring)
        lock = ring.lock(name)
    with lock:
        if bundle is not None:
            target = keysets.KeySource.from_bundle(bundle, allow_insecure=insecure, device=device)
        else:
            target = keysets.KeySource.from_keyring(ring, name, to_version, allow_insecure=insecure, device=device)
        files = expand_paths(paths)
        removed = remove_stale_temporaries(files)
        worker = Rewrapper(target, ring, name if bundle is None else None)
        done, skipped, failures = [], [], []
        with console.progress() as bar:
            task = bar.add_task(f"rewrapping to v{target.version}", total=len(files))
            for path in files:
                try:
                    if worker.status(path) == "done":
                        skipped.append(str(path))
                    else:
                        worker.rewrap(path)
                        done.append(str(path))
                except FhectlError as exc:
                    if fail_fast:
                        raise
                    failures.append((str(path), exc))
                    keysets.say(f"error: {exc}")
                bar.update(task, advance=1)
    report = {"target": target.origin, "key_id": target.key_id, "version": target.version,
              "rewrapped": len(done), "already_current": len(skipped), "failed": len(failures),
              "failures": [{"file": f, "error": str(e)} for f, e in failures],
              "stale_temporaries_removed": removed}
    if json:
        console.print_json(report)
    else:
        keysets.say(f"rewrapped {len(done)} file(s) to {target.origin} ({target.key_id}); "
                    f"{len(skipped)} already current; {len(failures)} failed"
                    + (f"; removed {removed} stale temporary file(s)" if removed else ""))
    if failures:
        raise typer.Exit(failures[0][1].exit_code)


# -- retire -----------------------------------------------------------------------------------

@app.command("retire")
@guarded
def retire(
    versions: Annotated[list[int], typer.Argument(help="Versions to retire.")],
    name: KeyName = "default",
    undo: Annotated[bool, typer.Option("--undo", help="Make the versions active again.")] = False,
    keyring: Keyring = None,
    json: Json = False,
) -> None:
    """Retire versions: files still under them then fail with an error naming the version.

    Rewrap files first. The primary cannot be retired; --undo reactivates versions."""
    ring = keysets.open_keyring(keyring)
    status = "active" if undo else "retired"
    changed = [ring.set_status(name, v, status) for v in versions]
    rows = [{"key_set": name, "version": kv.version, "status": kv.status, "key_id": kv.key_id} for kv in changed]
    if json:
        console.print_json(rows)
    else:
        for r in rows:
            keysets.say(f"key set {name!r} v{r['version']} ({r['key_id']}): {r['status']}")
