"""The one place where errors become a one-line message and an exit code.

``FHECTL_DEBUG=1`` re-raises instead, so the traceback is shown.
"""

from __future__ import annotations

import functools
import os
import sys

import typer
from typer.core import TyperGroup

try:  # Typer >= 0.2x vendors its own click; older Typer uses the click package
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - depends on the installed Typer
    from click import exceptions as click_exceptions

from fhectl.errors import FhectlError

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 error; 2 bad input or usage; 3 parameters; 4 misuse of ciphertexts or keys "
    "(levels, scales, missing keys); 5 corrupt or invalid file; 6 wrong key or keyring problem; 7 value outside "
    "an approximation's domain; 8 refused for security (a signature missing or wrong, a share-safe decryption "
    "budget spent); 9 a server unreachable or refusing the request (infer --server); 70 internal error (a bug: report it with `fhectl env`); 130 interrupted. "
    "Set FHECTL_DEBUG=1 to see tracebacks."
)
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


def debug_enabled() -> bool:
    return os.environ.get("FHECTL_DEBUG", "") not in ("", "0")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on stderr and return the Exit to raise."""
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(code)


def guarded(fn):
    """Decorator for command functions: known errors become one line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except FhectlError as exc:
            if debug_enabled():
                raise
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            if debug_enabled():
                raise
            raise fail("interrupted", EXIT_INTERRUPTED) from None
        except (OSError, MemoryError) as exc:
            if debug_enabled():
                raise
            raise fail(f"{type(exc).__name__}: {exc}", 2 if isinstance(exc, OSError) else EXIT_INTERNAL) from None
        except Exception as exc:  # noqa: BLE001 - last line of defence, shown as an internal error
            if debug_enabled():
                raise
            raise fail(
                f"internal error ({type(exc).__name__}: {exc}); rerun with FHECTL_DEBUG=1 for the traceback "
                "and include `fhectl env` in a bug report",
                EXIT_INTERNAL,
            ) from None

    return wrapper


class OneLineErrorsGroup(TyperGroup):
    """The root command group: click's usage errors (an option out of range, an unknown option or command,
    a missing argument) become one ``error:`` line and exit 2, as every other usage error does, instead of
    Typer's multi-line usage panel. Help and ``--version`` are unchanged."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except getattr(click_exceptions, "NoArgsIsHelpError", ()) as exc:  # the help is already printed
            sys.exit(exc.exit_code)
        except click_exceptions.UsageError as exc:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            sys.exit(_one_line(exc.format_message() + hint, 2))
        except click_exceptions.ClickException as exc:
            sys.exit(_one_line(exc.format_message(), 2))
        except typer.Abort:
            sys.exit(_one_line("aborted", 1))
        sys.exit(rv if isinstance(rv, int) else 0)


def _one_line(message: str, code: int) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return code
