"""Run the app under uvicorn until SIGINT or SIGTERM, then shut down gracefully.

On a signal uvicorn stops accepting connections and lets open requests finish (long polls end within
``max_wait_s``); then the app's lifespan gives running jobs ``shutdown_grace_s`` to finish and fails the rest,
writing their state, so a restarted server reports them instead of losing them. Queued jobs stay queued.
"""

from __future__ import annotations

import signal
import socket

import uvicorn

from fhectl.errors import InputError
from fhectl.service.app import ServerConfig, create_app


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), before anything slow runs: a port in use is one InputError at once,
    not an error from uvicorn after the model has loaded (and port 0 picks a free one)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def serve_forever(config: ServerConfig, host: str, port: int, say=print) -> None:
    sock = listening_socket(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    say(f"loading model {config.spec.name!r} at profile {config.spec.profile} ...")
    app = create_app(config)
    info = app.state.model.info()
    if info["refresh_note"]:
        say(info["refresh_note"])
    refresh = (f"bootstrapping here, {info['bootstrap']['bootstraps_per_block']} bootstraps and 0 round trips per "
               "block" if info["refresh"] == "bootstrap" else "client refresh")
    say(f"serving {info['name']} ({info['encrypted_layers']} of {info['n_layer']} blocks encrypted, {refresh}, "
        f"{info['security_bits']}-bit {info['profile']}, up to {info['token_capacity']} tokens per job; each client "
        f"uploads {info['evaluation_key_bytes'] / 2**30:.2f} GiB of evaluation keys once) "
        f"on http://{bound_host}:{bound_port}/v1 with {config.workers} worker(s); store {config.store}; "
        "API docs at /docs")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=int(config.max_wait_s) + 5,
                                           lifespan="on"))
    # uvicorn re-raises the signal that stopped it once it has shut down gracefully; with these handlers in
    # place that re-raise is a no-op and a requested stop exits 0, as a service manager expects.
    stopped_by: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stopped_by.append(signum))
    server.run(sockets=[sock])
    say("server stopped" + (f" by {signal.Signals(stopped_by[0]).name}" if stopped_by else ""))


__all__ = ["serve_forever"]
