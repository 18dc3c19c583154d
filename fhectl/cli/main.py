"""The `fhectl` command: one module per subcommand, registered here and imported only when it runs.

Importing a command module pulls in NumPy, Numba and the engine (about half a second to two seconds), so
the root group imports one only when that command is invoked, or when --help lists them all:
`fhectl --version` imports none.
"""

from __future__ import annotations

import importlib
import os

# One BLAS thread unless the user says otherwise, set before NumPy loads: the circuits' least-squares fits
# (QR of tall matrices) ran about 10x slower when OpenBLAS threads fought the Numba kernels for the cores
# (measured on 2 cores); worker processes that commands spawn inherit it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import typer

from fhectl import __version__
from fhectl.cli.errors import EXIT_CODES_HELP, OneLineErrorsGroup

# name: (module, attribute), in the order --help lists them. The attribute is a command function or a
# typer.Typer (a group of subcommands).
COMMANDS = {
    "keygen": ("fhectl.cli.keygen_cmd", "keygen"),
    "encrypt": ("fhectl.cli.encrypt_cmd", "encrypt"),
    "decrypt": ("fhectl.cli.decrypt_cmd", "decrypt"),
    "inspect": ("fhectl.cli.inspect_cmd", "inspect"),
    "keys": ("fhectl.cli.keys_cmd", "app"),
    "rotate": ("fhectl.cli.rotate_cmd", "app"),
    "demo": ("fhectl.cli.demo_cmd", "demo"),
    "env": ("fhectl.cli.env_cmd", "env"),
    "infer": ("fhectl.cli.infer_cmd", "infer"),
    "serve": ("fhectl.cli.serve_cmd", "serve"),
    "bench": ("fhectl.cli.bench_cmd", "app"),
}


def load_command(name: str):
    """The click command `name`, built from its module (imported now)."""
    module, attribute = COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    holder = typer.Typer(add_completion=False)  # built as app.add_typer / app.command would build it
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
        return typer.main.get_command(holder).commands[name]
    holder.command(name)(target)
    command = typer.main.get_command(holder)  # one command and no callback: the command itself
    command.name = name
    return command


class LazyCommandsGroup(OneLineErrorsGroup):
    """The root group: the commands of COMMANDS, each imported the first time it is needed."""

    def list_commands(self, ctx) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx, cmd_name: str):
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.add_command(load_command(cmd_name), cmd_name)
        return self.commands.get(cmd_name)


app = typer.Typer(
    name="fhectl",
    cls=LazyCommandsGroup,
    help="CKKS keys, encryption, encrypted language-model inference (SmolLM2, GPT-2; local or through `fhectl serve`) "
    "and benchmarks on fhectl's Numba RNS-CKKS engine.\n\n"
    + EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"fhectl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    pass
