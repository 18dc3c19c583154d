"""Issue 12, item 12 for the Llama family: a run whose stderr goes to a log says what it is doing, stage by
stage and block by block, in plain lines (the tiny checkpoint of test_llama_infer_cli)."""

import re

from typer.testing import CliRunner

from fhectl.cli.main import app
from test_llama_infer_cli import ARGS, checkpoint  # noqa: F401 - the module's fixture, shared

runner = CliRunner()


def test_a_piped_run_reports_every_stage_and_block(checkpoint, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Hello world")
    res = runner.invoke(app, ["infer", str(prompt), "--weights", str(checkpoint), "--layers", "1",
                              "--max-new-tokens", "1", *ARGS])
    assert res.exit_code == 0, res.output
    lines = res.stderr.splitlines()
    for stage in ("reading the smollm2-135m config and tokenizer", "loading the smollm2-135m weights",
                  "calibrating approximation domains", "generating keys"):
        assert any(ln.startswith(stage) and ln.endswith(" ...") for ln in lines), (stage, res.stderr)
        assert any(re.fullmatch(re.escape(stage) + r".*: \d+\.\d s", ln) for ln in lines), (stage, res.stderr)
    assert any(ln.startswith("  block 0: ") for ln in lines), res.stderr
    assert any(ln.startswith("  token ") for ln in lines), res.stderr
    assert "\x1b[" not in res.stderr
