"""The `fhectl` command: one module per subcommand, registered here."""

from __future__ import annotations

import typer

from fhectl import __version__
from fhectl.cli import (bench_cmd, decrypt_cmd, demo_cmd, encrypt_cmd, env_cmd, infer_cmd, inspect_cmd, keygen_cmd,
                        keys_cmd, rotate_cmd)
from fhectl.cli.errors import EXIT_CODES_HELP, OneLineErrorsGroup

app = typer.Typer(
    name="fhectl",
    cls=OneLineErrorsGroup,
    help="CKKS keys, encryption, encrypted GPT-2 inference and benchmarks on fhectl's Numba RNS-CKKS engine.\n\n"
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


app.command("keygen")(keygen_cmd.keygen)
app.command("encrypt")(encrypt_cmd.encrypt)
app.command("decrypt")(decrypt_cmd.decrypt)
app.command("inspect")(inspect_cmd.inspect)
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(rotate_cmd.app, name="rotate")
app.command("demo")(demo_cmd.demo)
app.command("env")(env_cmd.env)
app.command("infer")(infer_cmd.infer)
app.add_typer(bench_cmd.app, name="bench")
