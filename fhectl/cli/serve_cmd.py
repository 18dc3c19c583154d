"""`fhectl serve`: the encrypted-inference proxy over HTTP (the server holds the model and public keys only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fhectl.cli import console
from fhectl.cli.errors import fail, guarded
from fhectl.cli.infer_cmd import RefreshChoice
from fhectl.cli.options import Choice, Device, Insecure, Profile


class ExecutorChoice(Choice):
    local = "local"
    ray = "ray"


ServeRefresh = Annotated[RefreshChoice, typer.Option(
    "--refresh", case_sensitive=False,
    help="How the served blocks restore levels: bootstrap (on this server, zero round trips; clients upload the "
    "bootstrapping keys and read a range indicator with the outputs), client (refresh requests to the key holder "
    "mid-block) or auto (bootstrap where the profile and the blocks allow it, else client with a note). An "
    "explicit bootstrap on a profile that cannot is an error (exit 3).")]


def default_store() -> Path:
    return Path("~/.local/share/fhectl/server").expanduser()


@guarded
def serve(
    model: Annotated[str, typer.Option("--model", "-m", help="Model name (smollm2-135m), or a name for --weights.")] = "smollm2-135m",
    weights: Annotated[Optional[str], typer.Option("--weights", help="A .gguf file, a Hugging Face checkpoint folder or repo id.", show_default=False)] = None,
    profile: Profile = "gpt2-n16-128",
    insecure: Insecure = False,
    layers: Annotated[Optional[int], typer.Option("--layers", help="Blocks the server runs encrypted (default: all).", min=1, show_default=False)] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", help="Tokens per ciphertext (default: the most the layout holds).", min=1, show_default=False)] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (0: a free one, printed at start).", min=0, max=65535)] = 8765,
    store: Annotated[Optional[Path], typer.Option("--store", help="Folder for bundles and jobs (default ~/.local/share/fhectl/server).", show_default=False)] = None,
    workers: Annotated[int, typer.Option("--workers", help="Worker processes or Ray actors (each holds the model).", min=1, max=64)] = 1,
    executor: Annotated[ExecutorChoice, typer.Option("--executor", help="Where jobs run: local (worker processes here) or ray (actors in a Ray cluster; pip install 'fhectl[ray]').", case_sensitive=False)] = ExecutorChoice.local,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="With --executor ray: the cluster's HOST:PORT (default: start a Ray instance on this machine).", show_default=False)] = None,
    max_queue: Annotated[int, typer.Option("--max-queue", help="Jobs queued or running, all clients together.", min=1)] = 16,
    max_jobs_per_bundle: Annotated[int, typer.Option("--max-jobs-per-bundle", help="Unfinished jobs per key bundle.", min=1)] = 2,
    refresh_timeout: Annotated[float, typer.Option("--refresh-timeout", help="Seconds a job waits for its client's refresh.", min=1)] = 600.0,
    max_bundle_mib: Annotated[int, typer.Option("--max-bundle-mib", help="Largest key bundle accepted, MiB.", min=1)] = 16384,
    max_body_mib: Annotated[int, typer.Option("--max-body-mib", help="Largest job input or refresh reply, MiB.", min=1)] = 2048,
    shutdown_grace: Annotated[float, typer.Option("--shutdown-grace", help="Seconds running jobs get to finish on shutdown.", min=0)] = 30.0,
    refresh: ServeRefresh = RefreshChoice.auto,
    device: Device = "auto",
) -> None:
    """Serve encrypted inference: clients upload public key bundles and encrypted inputs, and answer refreshes."""
    if ray_address is not None and executor is not ExecutorChoice.ray:
        raise fail("--ray-address needs --executor ray", 2)
    from fhectl.service.app import ServerConfig
    from fhectl.service.jobs import Limits
    from fhectl.service.models import ModelSpec
    from fhectl.service.run import serve_forever

    config = ServerConfig(
        spec=ModelSpec(model, weights, profile, layers, max_tokens, insecure, str(refresh)),
        store=store or default_store(), device=str(device), workers=workers,
        executor=str(executor), ray_address=ray_address,
        limits=Limits(max_queue=max_queue, max_jobs_per_bundle=max_jobs_per_bundle, refresh_timeout_s=refresh_timeout),
        max_bundle_bytes=max_bundle_mib << 20, max_body_bytes=max_body_mib << 20, shutdown_grace_s=shutdown_grace)
    serve_forever(config, host, port, say=console.err.print)
