"""Key sets as CKKS objects: one version from the keyring, or an exported public bundle.

The file names inside a version (``public/<name>.fhe``, ``secret/<name>.fhe``) are fixed here,
so every command agrees on them. The parameters travel with the public key (the profile's
literal in its meta, checked against the params id on load), so a bundle handed to an
evaluating server is self-describing even when the profile was a local YAML file.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fhe_kernels.automorphism import galois_element_for_conjugation, galois_element_for_rotation
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.keys import GaloisKeys, KeyGenerator, PublicKey, SecretKey, SwitchingKey, public_key_error
from fhectl.ckks.params import Parameters, ParametersLiteral, literal_as_dict, load_parameters
from fhectl.cli import console
from fhectl.errors import FhectlError, FormatError, InputError, KeyMismatchError, KeyringError
from fhectl.io.container import Container, check_binding, read_header
from fhectl.io.keyring import Keyring, KeyVersion, read_public_export
from fhectl.io.objects import (container_to_public_key, container_to_secret_key, container_to_switching_key,
                               galois_keys_to_container, public_key_to_container, secret_key_to_container,
                               switching_key_to_container)
from fhectl.io.secret_box import read_passphrase

SECRET_KEY = "secret-key"
PUBLIC_KEY = "public-key"
RELIN_KEY = "relin-key"
GALOIS_KEYS = "galois-keys"
REWRAP_PREFIX = "rewrap-from-v"


def rewrap_file(from_version: int) -> str:
    """Name of the public file holding the switching key from ``from_version`` to the version it lives in."""
    return f"{REWRAP_PREFIX}{from_version}"


def open_keyring(path: Path | None) -> Keyring:
    return Keyring(path)


def parameters_meta(params: Parameters) -> dict:
    """The profile's literal, stored in the public key's meta so the key set describes its own parameters."""
    return literal_as_dict(params.literal)


def parameters_from(meta_literal, params_id: str, profile: str | None, source: str, allow_insecure: bool) -> Parameters:
    """Rebuild the parameters from a stored literal (else the named profile) and check they hash to params_id."""
    if meta_literal is None:
        if profile is None:
            raise FormatError(f"{source}: no parameters stored and no profile named")
        params = load_parameters(profile, allow_insecure=allow_insecure)
    else:
        if not isinstance(meta_literal, dict):
            raise FormatError(f"{source}: meta 'parameters' is not an object")
        try:
            literal = ParametersLiteral.from_mapping(meta_literal, source=source)
        except (TypeError, ValueError) as exc:
            raise FormatError(f"{source}: meta 'parameters' is malformed: {exc}") from None
        params = Parameters.from_literal(literal, allow_insecure=allow_insecure)
    if params.params_id != params_id:
        raise KeyMismatchError(f"{source}: its parameters hash to {params.params_id!r}, but the key set is bound "
                               f"to parameter set {params_id!r}")
    return params


_CONTEXTS: dict[tuple[str, str], CKKSContext] = {}


def context_for(params: Parameters, device: str) -> CKKSContext:
    """One context per (parameters, device) per process: building the tables is the slow part."""
    key = (params.params_id, device)
    if key not in _CONTEXTS:
        _CONTEXTS[key] = CKKSContext(params, device=device)
    return _CONTEXTS[key]


def check_secret_matches_public(ctx: CKKSContext, sk: SecretKey, pk: PublicKey, source: str) -> None:
    """b + a*s must be the public key's small error e on every limb: a wrong or damaged secret (or a public
    key altered on any prime) gives uniform garbage there."""
    e = public_key_error(ctx, sk, pk)  # (L+1, N), centred
    bound = math.ceil(12 * ctx.params.literal.sigma) + 1  # the sampler cuts its tails at 12 sigma
    worst_per_limb = np.max(np.abs(e), axis=1)
    bad = np.flatnonzero(worst_per_limb > bound)
    if bad.size:
        limb = int(bad[0])
        worst = float(worst_per_limb[limb])
        raise KeyMismatchError(f"{source} does not belong to the key set's public key (b + a*s has coefficients "
                               f"up to 2^{math.log2(worst):.1f} on limb {limb} of {e.shape[0]}, a matching secret "
                               f"gives at most {bound}): wrong or damaged secret or public key")


def get_passphrase(source: str | None, sealed: bool, *, confirm: bool = False) -> bytes | None:
    """The passphrase from ``source``; if none is named and the key is sealed, ask on the terminal if there is one."""
    if source is not None:
        return read_passphrase(source, confirm=confirm)
    if sealed and sys.stdin is not None and sys.stdin.isatty():
        return read_passphrase("prompt", confirm=confirm)
    return None


@dataclass
class KeySource:
    """Public material of one key version (keyring or bundle), with its context; secret access when in a keyring."""

    ctx: CKKSContext
    key_id: str
    version: int
    origin: str  # for messages: "key set 'default' v2" or "bundle x.fhe"
    name: str | None = None
    kv: KeyVersion | None = None
    keyring: Keyring | None = None
    members: dict[str, Container] = field(default_factory=dict)  # bundle members, or keyring files read so far

    @property
    def params(self) -> Parameters:
        return self.ctx.params

    # -- construction -------------------------------------------------------------------------

    @staticmethod
    def from_keyring(keyring: Keyring, name: str, version: int | None, *, allow_insecure: bool, device: str,
                     allow_retired: bool = False) -> "KeySource":
        kv = keyring.get(name, version)
        if kv.status == "retired" and not allow_retired:
            raise KeyringError(f"key version {kv.version} of {name!r} is retired")
        pk = keyring.read_public(name, kv.version, PUBLIC_KEY, allow_retired=True)
        params = parameters_from(pk.meta.get("parameters"), kv.params_id, kv.profile,
                                 f"key set {name!r} v{kv.version}", allow_insecure)
        src = KeySource(context_for(params, device), kv.key_id, kv.version, f"key set {name!r} v{kv.version}",
                        name=name, kv=kv, keyring=keyring, members={PUBLIC_KEY: pk})
        return src

    @staticmethod
    def from_bundle(path: Path, *, allow_insecure: bool, device: str) -> "KeySource":
        meta, members = read_public_export(path)
        source = f"bundle {path}"
        if not members:
            raise FormatError(f"{source} holds no keys")
        first = next(iter(members.values()))
        version = first.key_version
        if not isinstance(version, int):
            raise FormatError(f"{source}: members carry no key version")
        for file, c in members.items():
            check_binding(c, key_version=version, source=f"{source} member {file!r}", against="the bundle")
        literal = meta.get("parameters")
        if literal is None and PUBLIC_KEY in members:
            literal = members[PUBLIC_KEY].meta.get("parameters")
        profile = meta.get("profile") if isinstance(meta.get("profile"), str) else None
        params = parameters_from(literal, first.params_id, profile, source, allow_insecure)
        name = meta.get("name") if isinstance(meta.get("name"), str) else None
        return KeySource(context_for(params, device), first.key_id, version, source, name=name, members=members)

    # -- public material ---------------------------------------------------------------------

    def public_files(self) -> list[str]:
        if self.kv is not None:
            return list(self.kv.public_files)
        return list(self.members)

    def public(self, file: str) -> Container:
        if file not in self.members:
            if self.keyring is None:
                raise KeyringError(f"{self.origin} has no {file!r} (has: {', '.join(self.members) or 'nothing'})")
            self.members[file] = self.keyring.read_public(self.name, self.version, file, allow_retired=True)
        return self.members[file]

    def public_key(self) -> PublicKey:
        return container_to_public_key(self.ctx, self.public(PUBLIC_KEY), f"{self.origin} public key")

    def rewrap_sources(self) -> list[int]:
        """The old versions this version holds a switching key from."""
        return sorted(int(f[len(REWRAP_PREFIX):]) for f in self.public_files()
                      if f.startswith(REWRAP_PREFIX) and f[len(REWRAP_PREFIX):].isdigit())

    def switching_key_from(self, from_version: int, from_key_id: str) -> SwitchingKey:
        file = rewrap_file(from_version)
        if file not in self.public_files():
            have = ", ".join(f"v{v}" for v in self.rewrap_sources()) or "none"
            raise KeyringError(f"{self.origin} has no switching key from version {from_version} "
                               f"(it can rewrap files from: {have})")
        c = self.public(file)
        source = f"{self.origin} {file}"
        if c.meta.get("from_key_id") != from_key_id or c.meta.get("from_version") != from_version:
            raise KeyMismatchError(f"{source} converts from key {c.meta.get('from_key_id')!r} version "
                                   f"{c.meta.get('from_version')!r}, the file is under key {from_key_id!r} "
                                   f"version {from_version}")
        key = container_to_switching_key(self.ctx, c, "switching-key", source)
        if key.source != f"key:{from_key_id}" or key.key_id != self.key_id:
            raise FormatError(f"{source}: switches {key.source} -> {key.key_id}, expected key:{from_key_id} -> "
                              f"{self.key_id}")
        return key

    # -- secret material ---------------------------------------------------------------------

    def secret_key(self, passphrase_source: str | None, *, allow_retired: bool = False,
                   passphrase: bytes | None = None) -> SecretKey:
        """The secret key, checked against the public key (so a wrong or damaged secret is caught)."""
        if self.keyring is None or self.kv is None:
            raise KeyringError(f"{self.origin} holds public material only; the secret key is in the keyring")
        if passphrase is None:
            passphrase = get_passphrase(passphrase_source, self.kv.sealed)
        c = self.keyring.read_secret(self.name, self.version, SECRET_KEY, passphrase, allow_retired=allow_retired)
        source = str(self.kv.path / "secret" / f"{SECRET_KEY}.fhe")
        sk = container_to_secret_key(self.ctx, c, KeyGenerator(self.ctx), source)
        check_secret_matches_public(self.ctx, sk, self.public_key(), source)
        return sk


def key_sets_summary(keyring: Keyring) -> str:
    parts = []
    for name in keyring.list_key_sets():
        try:
            parts.append(f"{name}: " + ", ".join(f"v{kv.version} {kv.key_id}" for kv in keyring.versions(name)))
        except FhectlError:
            parts.append(f"{name}: (unreadable)")
    return "; ".join(parts) or "none"


def locate_version(keyring: Keyring, key_id: str, key_version: int | None, params_id: str, name: str | None,
                   source: str) -> KeyVersion:
    """The keyring version a file was made under, from its header: Tink-style routing by key id.

    With ``name`` the file must belong to that key set; without, every key set is searched.
    Wrong parameters, key or version are reported as such, naming both sides.
    """
    verb = "was encrypted under"
    if name is not None:
        versions = keyring.versions(name)
        if key_version is not None:
            kv = next((v for v in versions if v.version == key_version), None)
            if kv is None:
                raise KeyMismatchError(f"{source} {verb} key {key_id!r} version {key_version}; key set {name!r} "
                                       f"has versions {', '.join(str(v.version) for v in versions)}")
        else:
            kv = next((v for v in versions if v.key_id == key_id), versions[-1])
        check_binding(Container("ciphertext", params_id, key_id, key_version), params_id=kv.params_id,
                      source=source, against=f"key set {name!r} v{kv.version} ({kv.profile})")
        check_binding(Container("ciphertext", params_id, key_id, key_version), key_id=kv.key_id,
                      source=source, against=f"key set {name!r} v{kv.version}")
        return kv
    if not keyring.root.is_dir():
        raise KeyringError(f"no keyring at {keyring.root} (set --keyring or FHECTL_KEYRING)")
    unreadable = []
    for set_name in keyring.list_key_sets():
        try:
            versions = keyring.versions(set_name)
        except KeyringError as exc:
            unreadable.append(str(exc))
            continue
        for kv in versions:
            if kv.key_id == key_id:
                if key_version is not None and kv.version != key_version:
                    raise KeyMismatchError(f"{source} {verb} key {key_id!r} version {key_version}, but key set "
                                           f"{set_name!r} holds that key as version {kv.version}")
                check_binding(Container("ciphertext", params_id, key_id, key_version), params_id=kv.params_id,
                              source=source, against=f"key set {set_name!r} v{kv.version} ({kv.profile})")
                return kv
    found = "no key version" if key_version is None else f"version {key_version}"
    if unreadable:
        raise KeyringError(f"{source} {verb} key {key_id!r} {found}, which is in no readable key set of keyring "
                           f"{keyring.root}; unreadable: {'; '.join(unreadable)}")
    raise KeyMismatchError(f"{source} {verb} key {key_id!r} {found}, which is in no key set of keyring "
                           f"{keyring.root} (key sets: {key_sets_summary(keyring)})")


def say(message: str) -> None:
    """A one-line message on stderr, unwrapped (so it can be grepped) and without markup."""
    console.err.print(message, markup=False, highlight=False, soft_wrap=True)


def file_size(path: str | os.PathLike) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def fingerprint(kv: KeyVersion) -> str:
    """The key's fingerprint: SHA-256 of its public key file, as the manifest records it."""
    return "sha256:" + kv.files.get(f"public/{PUBLIC_KEY}.fhe", "?")


def describe_version(kv: KeyVersion, params: Parameters | None = None) -> dict:
    """Everything `keygen`, `rotate` and `keys show` report about one version (never secret values)."""
    files = []
    steps, conjugation, rewrap_from = [], False, []
    for rel in sorted(kv.files):
        path = kv.path / rel
        entry = {"file": rel, "path": str(path), "bytes": file_size(path), "sha256": kv.files[rel]}
        try:
            entry["mode"] = f"{os.stat(path).st_mode & 0o777:04o}"
            header = read_header(path)
            entry["kind"] = header.kind
            if header.kind == "galois-keys":
                steps = header.meta.get("steps", [])
                conjugation = bool(header.meta.get("conjugation", False))
            if rel.startswith(f"public/{REWRAP_PREFIX}"):
                rewrap_from.append(header.meta.get("from_version"))
        except (OSError, FhectlError) as exc:
            entry["problem"] = str(exc)
        files.append(entry)
    data = {
        "key_set": kv.name,
        "version": kv.version,
        "status": kv.status,
        "key_id": kv.key_id,
        "fingerprint": fingerprint(kv),
        "profile": kv.profile,
        "params_id": kv.params_id,
        "created": kv.created,
        "sealed": kv.sealed,
        "has_secret": kv.has_secret,
        "rotations": steps,
        "conjugation": conjugation,
        "rewraps_from_versions": rewrap_from,
        "files": files,
        "path": str(kv.path),
    }
    if params is not None:
        data["parameters"] = params.describe()
    return data


def print_version(data: dict, out) -> None:
    """Human-readable lines for :func:`describe_version`'s dict (on ``out``, a Rich console)."""
    line = lambda k, v: out.print(f"{k:<12} {v}", markup=False, highlight=False)  # noqa: E731
    line("key set", f"{data['key_set']} v{data['version']} ({data['status']})")
    line("key id", data["key_id"])
    line("fingerprint", data["fingerprint"])
    p = data.get("parameters")
    if p:
        security = f"{p['security_bits']}-bit" if p["security_bits"] else "INSECURE (tests only)"
        line("parameters", f"{data['profile']}: N={p['ring_degree']}, {p['slots']} slots, {p['levels']} levels, "
                           f"scale 2^{p['scale_bits']}, log2 QP {p['log_qp']}, {security}, id {p['params_id']}")
    else:
        line("parameters", f"{data['profile']} (id {data['params_id']})")
    rot = ", ".join(str(s) for s in data["rotations"]) or "none"
    line("rotations", rot + (" + conjugation" if data["conjugation"] else ""))
    if data["rewraps_from_versions"]:
        line("rewraps", "files from " + ", ".join(f"v{v}" for v in data["rewraps_from_versions"]))
    if not data.get("has_secret", True):
        line("secret", "destroyed (keys destroy): nothing under this version can be decrypted")
    else:
        line("secret", "passphrase-protected" if data["sealed"] else "NOT passphrase-protected (file mode 0600)")
    for f in data["files"]:
        extra = f"  PROBLEM: {f['problem']}" if "problem" in f else ""
        line("  " + f["file"].split("/")[0], f"{f['file'].split('/')[1]:<22} {human_bytes(f['bytes']):>10}  "
                                            f"mode {f.get('mode', '?')}{extra}")
    line("directory", data["path"])


def parse_steps(text: str | None, slots: int) -> list[int]:
    """Rotation steps from "1,2,-1": distinct, non-zero modulo the slot count."""
    if not text:
        return []
    try:
        steps = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise InputError(f"--rotations must be comma-separated integers, got {text!r}") from None
    bad = [s for s in steps if s % slots == 0 or abs(s) >= slots]
    if bad:
        raise InputError(f"rotation steps {bad} are zero or not in -{slots - 1}..{slots - 1} ({slots} slots)")
    return sorted(set(steps), key=lambda s: (abs(s), s))


def generate_key_material(ctx: CKKSContext, steps: list[int], conjugation: bool, tick=lambda what: None):
    """A fresh secret key and the containers of a version: ({"secret-key"}, {public-key, relin-key, galois-keys}).

    ``tick(description)`` is called after each key (3 + len(steps) + conjugation times), for a progress
    bar. Randomness: the OS CSPRNG.
    """
    kg = KeyGenerator(ctx)
    n = ctx.params.ring_degree
    sk = kg.secret_key()
    tick("secret key")
    pk = kg.public_key(sk)
    tick("public key")
    rlk = kg.relin_key(sk)
    tick("relinearization key")
    elements = sorted({galois_element_for_rotation(s, n) for s in steps}
                      | ({galois_element_for_conjugation(n)} if conjugation else set()))
    gks = {}
    for g in elements:
        gks[g] = kg.galois_key(sk, g)
        tick(f"Galois key {len(gks)}/{len(elements)}")
    public = {PUBLIC_KEY: public_key_to_container(ctx, pk, None),
              RELIN_KEY: switching_key_to_container(ctx, rlk, "relin-key", None)}
    public[PUBLIC_KEY].meta["parameters"] = parameters_meta(ctx.params)
    if gks:
        gc = galois_keys_to_container(ctx, GaloisKeys(keys=gks, params_id=ctx.params_id, key_id=sk.key_id), None)
        gc.meta.update({"steps": list(steps), "conjugation": bool(conjugation)})
        public[GALOIS_KEYS] = gc
    return sk, {SECRET_KEY: secret_key_to_container(sk, None)}, public


def rewrap_key_container(ctx: CKKSContext, old: SecretKey, old_version: int, new: SecretKey) -> Container:
    """The switching key old -> new as a public file of the new version (no secret can be derived from it)."""
    swk = KeyGenerator(ctx).rekey(old, new)
    return switching_key_to_container(ctx, swk, "switching-key", None,
                                      {"from_version": old_version, "from_key_id": old.key_id,
                                       "parameters": parameters_meta(ctx.params)})
