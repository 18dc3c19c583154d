"""Option types shared by several commands, defined once.

One meaning per flag across every command: a short flag (-p, -n, -V, -o, -f, -b, -d, ...) is declared here or
by one command only, and `--version` is the program's version (`fhectl --version`), never a key version
(`--key-version` / `-V`). tests/cli/test_cli_flags.py checks this over the whole command tree. Choices are
Enums, so a bad choice is a usage error (exit 2) listed in --help.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

Profile = Annotated[
    str,
    typer.Option("--profile", "-p", help="Parameter profile: a shipped name (fhectl/profiles/) or a path to a YAML file."),
]
Insecure = Annotated[
    bool,
    typer.Option("--insecure", help="Allow parameters below 128-bit security (tests and toy examples only)."),
]


class Choice(str, Enum):
    """An option's choices: members are their own string values (in f-strings, JSON and comparisons)."""

    def __str__(self) -> str:
        return self.value


class DeviceChoice(Choice):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


# Every command defaults to auto: the CPU unless a usable CUDA GPU is present.
Device = Annotated[
    DeviceChoice,
    typer.Option("--device", "-d", help="Where kernels run: auto (CUDA if a GPU is usable, else CPU), cpu or cuda.",
                 case_sensitive=False),
]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout instead of tables.")]
Keyring = Annotated[
    Optional[Path],
    typer.Option(
        "--keyring",
        envvar="FHECTL_KEYRING",
        help="Keyring directory (default ~/.fhectl/keyring; env FHECTL_KEYRING).",
        show_default=False,
    ),
]
KeyName = Annotated[str, typer.Option("--name", "-n", help="Key set name in the keyring.")]
KeySet = Annotated[
    Optional[str],
    typer.Option("--name", "-n", help="Key set name (default: the one whose key id the file carries, else 'default')."),
]
KeyVersion = Annotated[
    Optional[int],
    typer.Option("--key-version", "-V", help="Key version (default: the primary one).", min=1, show_default=False),
]
Passphrase = Annotated[
    Optional[str],
    typer.Option(
        "--passphrase",
        help="Where the secret key's passphrase comes from: 'prompt', 'env:VAR' or 'file:PATH' (first line). "
        "Without it a sealed key asks on the terminal, or fails when there is none.",
        show_default=False,
    ),
]
Bundle = Annotated[
    Optional[Path],
    typer.Option(
        "--bundle",
        "-b",
        help="Exported public key bundle (fhectl keys export) to use instead of the keyring.",
        show_default=False,
    ),
]
Output = Annotated[str, typer.Option("--output", "-o", help="Output file ('-' is stdout).")]
Force = Annotated[bool, typer.Option("--force", "-f", help="Replace an existing output file (atomically).")]
