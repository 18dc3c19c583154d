"""The one place where errors become a one-line message and an exit code.

``FHECTL_DEBUG=1`` re-raises instead, so the traceback is shown.
"""

from __future__ import annotations

import functools
import os
import sys

import typer

from fhectl.errors import FhectlError

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 error; 2 bad input or usage; 3 parameters; 4 misuse of ciphertexts or keys "
    "(levels, scales, missing keys); 5 corrupt or invalid file; 6 wrong key or keyring problem; 7 value outside "
    "an approximation's domain; 70 internal error (a bug: report it with `fhectl env`); 130 interrupted. "
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
