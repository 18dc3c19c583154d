"""Helpers for the CLI tests: run `fhectl` in-process (typer's CliRunner) or as a subprocess.

The keyring location is passed through FHECTL_KEYRING, as a user would.
"""

import os
import subprocess
import sys

from typer.testing import CliRunner

from fhectl.cli.main import app

INSECURE = ["--insecure"]
KEYGEN = ["keygen", "--profile", "tiny-insecure", "--rotations", "1,-1", *INSECURE]
SLOTS = 512  # tiny-insecure: N = 2^10
runner = CliRunner()


def cli(keyring, *args, input=None, env=None):
    """Run `fhectl ARGS` in-process with FHECTL_KEYRING=keyring; returns click's Result (stdout/stderr apart)."""
    full_env = {"FHECTL_KEYRING": str(keyring), "FHECTL_DEBUG": "", "COLUMNS": "200", **(env or {})}
    return runner.invoke(app, [str(a) for a in args], input=input, env=full_env)


def cli_ok(keyring, *args, input=None, env=None):
    res = cli(keyring, *args, input=input, env=env)
    assert res.exit_code == 0, f"fhectl {' '.join(map(str, args))} -> {res.exit_code}\n{res.stderr}"
    return res


def cli_fails(keyring, code, *args, match=None, input=None, env=None):
    """The command must fail with ``code`` and one clear `error:` line, never a traceback."""
    res = cli(keyring, *args, input=input, env=env)
    assert res.exit_code == code, f"expected exit {code}, got {res.exit_code}: {res.stderr}"
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert errors, f"no 'error:' line in stderr: {res.stderr!r}"
    assert "Traceback" not in res.stderr
    if match is not None:
        assert match in res.stderr, f"{match!r} not in {res.stderr!r}"
    return res


def subprocess_env(keyring, env=None) -> dict:
    """The environment of a subprocess `fhectl`: this one, minus FHECTL_DEBUG, single-threaded engine
    (see conftest.single_numba_thread), keyring from FHECTL_KEYRING."""
    full_env = {k: v for k, v in os.environ.items() if k != "FHECTL_DEBUG"}
    full_env.update({"FHECTL_KEYRING": str(keyring), "NUMBA_NUM_THREADS": "1", **(env or {})})
    return full_env


def subprocess_fhectl(keyring, *args, input=None, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "fhectl.cli", *map(str, args)], input=input, capture_output=True,
                          env=subprocess_env(keyring, env), timeout=timeout)
