"""Issue 12, item 13: one meaning per flag across commands, choices as enums, one default device, and a
`fhectl --version` that imports no command module."""

import subprocess
import sys

import pytest

from clitools import cli
from fhectl.cli.main import COMMANDS, load_command


def _options(command, path=("fhectl",)):
    """(command path, option) for every option of `command` and its subcommands."""
    for param in command.params:  # Typer may vendor its own click: compare by kind, not class
        if param.param_type_name == "option":
            yield " ".join(path), param
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _options(sub, path + (name,))


@pytest.fixture(scope="module")
def all_options():
    return [opt for name in COMMANDS for opt in _options(load_command(name), ("fhectl", name))]


def test_each_short_flag_has_one_meaning(all_options):
    meaning = {}  # short flag -> {first long name: commands}
    for where, opt in all_options:
        longs = [o for o in opt.opts if o.startswith("--")]
        for short in (o for o in opt.opts + opt.secondary_opts if len(o) == 2 and o.startswith("-")):
            meaning.setdefault(short, {}).setdefault(longs[0], []).append(where)
    clashes = {s: m for s, m in meaning.items() if len(m) > 1}
    assert not clashes, clashes


def test_version_is_only_the_programs_version(all_options):
    assert not [where for where, opt in all_options if "--version" in opt.opts]  # key versions: --key-version
    assert {tuple(opt.opts) for _, opt in all_options if opt.name in ("version", "to_version") and "-V" in opt.opts}


def test_every_device_option_is_an_enum_defaulting_to_auto(all_options):
    devices = [(where, opt) for where, opt in all_options if "--device" in opt.opts]
    assert len(devices) >= 8
    for where, opt in devices:
        choices = opt.type_descriptor.annotation  # the Enum the option is declared with
        assert [c.value for c in choices] == ["auto", "cpu", "cuda"], where
        assert str(opt.default) == "auto", (where, opt.default)


@pytest.mark.parametrize("args", [["demo", "--device", "gpu"], ["keys", "verify", "--device", "gpu"],
                                  ["infer", "p.txt", "--device", "gpu"], ["infer", "p.txt", "--model", "gpt3"],
                                  ["bench", "--baseline", "seal"], ["decrypt", "x.fhe", "--format", "xlsx"],
                                  ["serve", "--executor", "spark"]])
def test_a_bad_choice_is_a_usage_error(tmp_path, args):
    res = cli(tmp_path / "keyring", *args)
    assert res.exit_code == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and args[-1] in lines[0], res.stderr


def test_version_imports_no_command_module():
    code = ("import sys\nfrom fhectl.cli.main import app\ntry:\n    app(['--version'], prog_name='fhectl')\n"
            "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "heavy = sorted(m for m in sys.modules if m.endswith('_cmd') or m.split('.')[0] in ('numpy', 'numba'))\n"
            "print(heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["fhectl 0.1.0", "[]"], proc.stdout
