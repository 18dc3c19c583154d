"""Messages on stderr and human-readable key-set reports: the CLI's side of fhectl.keysets."""

from __future__ import annotations

import logging
import os

from fhectl.cli import console

# The keyring reports a repair it made on its own (fhectl.io.keyring: two primaries after an interrupted
# promotion) on its logger; a command shows it as one plain line, like its other messages.
KEYRING_LOGGER = "fhectl.io.keyring"


def say(message: str) -> None:
    """A one-line message on stderr, unwrapped (so it can be grepped) and without markup."""
    console.err.print(message, markup=False, highlight=False, soft_wrap=True)


class _SayHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        say(record.getMessage())


def _show_keyring_warnings() -> None:
    log = logging.getLogger(KEYRING_LOGGER)
    if not any(isinstance(h, _SayHandler) for h in log.handlers):
        log.addHandler(_SayHandler(logging.WARNING))  # with a handler here, logging's last resort stays silent


_show_keyring_warnings()


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


def print_version(data: dict, out) -> None:
    """Human-readable lines for fhectl.keysets.describe_version's dict (on ``out``, a Rich console)."""
    def line(key: str, value: str) -> None:
        out.print(f"{key:<12} {value}", markup=False, highlight=False)

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
        part, file = f["file"].split("/", 1)
        line("  " + part, f"{file:<22} {human_bytes(f['bytes']):>10}  mode {f.get('mode', '?')}{extra}")
    line("directory", data["path"])
