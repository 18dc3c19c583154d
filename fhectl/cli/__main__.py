"""`python -m fhectl.cli`: the same as the `fhectl` command."""

from fhectl.cli.main import app

app(prog_name="fhectl")
