"""Client refresh across the wire: the server's ``Refresher`` and the key holder's answer.

``RemoteRefresh`` is what the server's circuits call when they run out of levels. It implements the
circuits' ``Refresher`` protocol exactly like ``fhectl.circuits.refresh.ClientRefresh`` (same arguments, same
counts), but each call is a message handed to ``exchange``, which returns the key holder's reply: a pipe to the
front end in a worker process, a direct call in tests. ``answer_refresh`` is the key holder's side: it decodes
a request, runs ``ClientRefresh.refresh`` (decrypt, check the domains, re-encrypt) and encodes the reply. So
the local run and the remote run compute the same thing through the same code.
"""

from __future__ import annotations

from typing import Callable

from fhectl.ckks.ciphertext import Ciphertext
from fhectl.ckks.context import CKKSContext
from fhectl.circuits.refresh import Client, ClientRefresh, Stats
from fhectl.service.wire import (decode_refresh_reply, decode_refresh_request, encode_refresh_reply,
                                 encode_refresh_request)


class RemoteRefresh:
    """A ``Refresher`` whose key holder is reached through ``exchange(request bytes) -> reply bytes``."""

    def __init__(self, ctx: CKKSContext, key_id: str, exchange: Callable[[bytes, str], bytes], stats: Stats,
                 max_reply_bytes: int | None = None):
        self.ctx, self.key_id, self.exchange, self.stats = ctx, key_id, exchange, stats
        self.max_reply_bytes = max_reply_bytes

    def begin_block(self, index: int) -> None:
        """Nothing to keep apart: the key holder checks every refreshed value as it comes."""

    def refresh(self, cts: list[Ciphertext], stage: str, domain=None, valid=None, fill=None, level=None,
                domains=None) -> list[Ciphertext]:
        request = encode_refresh_request(self.ctx, cts, stage, domain=domain, valid=valid, fill=fill, level=level,
                                         domains=domains)
        self.stats.refresh_round_trips += 1
        self.stats.refreshes_by_stage[stage] = self.stats.refreshes_by_stage.get(stage, 0) + 1
        self.stats.refresh_bytes_to_client += len(request)
        reply = self.exchange(request, stage)
        self.stats.refresh_bytes_to_server += len(reply)
        want = self.ctx.params.max_level if level is None else level
        return decode_refresh_reply(self.ctx, reply, self.key_id, len(cts), want, self.max_reply_bytes)

    def ensure_levels_all(self, cts: list[Ciphertext], levels: int, stage: str) -> list[Ciphertext]:
        if all(c.level >= levels for c in cts):
            return cts
        return self.refresh(cts, stage)


def answer_refresh(client: Client, request: bytes, stats: Stats, max_bytes: int | None = None) -> bytes:
    """The key holder's reply to one request: ``ClientRefresh.refresh`` on what the request names."""
    cts, kwargs = decode_refresh_request(client.ctx, request, client.sk.key_id, max_bytes)
    stage = kwargs.pop("stage")
    return encode_refresh_reply(client.ctx, ClientRefresh(client, stats).refresh(cts, stage, **kwargs))


__all__ = ["RemoteRefresh", "answer_refresh"]
