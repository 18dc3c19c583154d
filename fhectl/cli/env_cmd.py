"""`fhectl env`: versions, CPU, GPU and Numba targets, for bug reports."""

from __future__ import annotations

from fhectl.bench.environment import environment
from fhectl.cli import console
from fhectl.cli.errors import guarded
from fhectl.cli.options import Json


@guarded
def env(json: Json = False) -> None:
    """Print versions, CPU, GPU and Numba targets (paste this into bug reports)."""
    data = environment()
    if json:
        console.print_json(data)
        return
    for key, value in data.items():  # printed as they are: values (paths, env variables) are not markup
        if isinstance(value, dict):
            console.data(f"{key}:")
            for k, v in value.items():
                console.data(f"  {k}: {v}")
        else:
            console.data(f"{key}: {value}")
