"""Issue 12, item 12: output to a pipe or a file is never cut to a width, and long stages announce themselves."""

import re

from rich.table import Table

from fhectl.cli import console


def test_piped_tables_and_messages_are_not_cut_at_80_columns(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    value = "0123456789" * 30
    table = Table(title="a table wider than 80 columns")
    table.add_column("name")
    table.add_column("value")
    table.add_row("key id", value)
    console.err.print(table)
    console.message("a message " + value)
    console.out.print(table)
    captured = capsys.readouterr()
    assert value in captured.out
    assert value in captured.err and ("a message " + value) in captured.err.splitlines()
    assert "\x1b[" not in captured.err + captured.out


def test_user_text_is_not_read_as_markup(capsys):
    console.message("token '[/b]' and :smile: and [red]x")
    console.data("[/b] :smile:")
    captured = capsys.readouterr()
    assert captured.err == "token '[/b]' and :smile: and [red]x\n"
    assert captured.out == "[/b] :smile:\n"


def test_stages_are_plain_lines_on_a_pipe(capsys):
    with console.stage("generating keys"):
        pass
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "generating keys ..."
    assert re.fullmatch(r"generating keys: \d+\.\d s", lines[1])
