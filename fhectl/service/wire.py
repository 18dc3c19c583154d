"""What travels between the client and the server: fhectl containers, never pickles.

Four messages cross the wire, each one container (``fhectl.io.container``: a checked header and checksummed
arrays), so every body a server reads passes the same checks as a file read from disk:

* the key bundle (kind ``keyset-public``, the file ``fhectl keys export`` writes);
* a job's input: the encrypted hidden state (kind ``ciphertext``) with the job's public parameters in
  ``meta["job"]``;
* a refresh request from the server and the client's reply (kinds ``refresh-request`` and
  ``refresh-reply``): bundles with one member per ciphertext, since ciphertexts refreshed together may sit at
  different levels. The request also carries the slot masks, fill value, domains and target level of
  ``fhectl.circuits.refresh.ClientRefresh.refresh``;
* the job's result: the encrypted output (kind ``ciphertext``) with its public stream scale; from a job that
  bootstrapped, also the range indicator's public state (one ciphertext per accumulator, its observation
  count and tolerance, and the squarings: arrays ``indicator/<i>`` and meta ``indicator``) and the
  bootstrapping statistics (meta ``bootstrap``, ``BootstrapStats.as_dict()``), both optional members that a
  client-refresh result does not have.

The decoders check what they may trust (bindings, counts, types, sizes) and raise ``FormatError`` or
``KeyMismatchError`` with one line, so neither side acts on a malformed message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fhectl.ckks.ciphertext import Ciphertext
from fhectl.ckks.context import CKKSContext
from fhectl.errors import FormatError, KeyMismatchError
from fhectl.io.container import Container, bundle_containers, decode_container, encode_container, unbundle_containers
from fhectl.io.objects import ciphertexts_to_container, container_to_ciphertexts

API_VERSION = "v1"
JOB_INPUT = "ciphertext"
REFRESH_REQUEST = "refresh-request"
REFRESH_REPLY = "refresh-reply"
MAX_REFRESH_CIPHERTEXTS = 64  # a block refreshes at most a handful at once (q, k, v; gate and up chunks)
MAX_INDICATORS = 1024  # accumulators in one result: a stage name each (or one per block and stage)
MAX_OBSERVATIONS = 1 << 24  # refreshed ciphertexts one accumulator sums: far above 30 blocks' worth
MAX_SQUARINGS = 16  # the indicator's k (at most 6 today)
MAX_TOLERANCE = 2.0**20  # a tolerance is 4 2^k err / half + 2^-16: far below this for any usable refresh
MAX_BOOTSTRAPS = 1 << 24
MAX_STAGE_NAME = 200


def _finite_pair(value, what: str) -> tuple[float, float] | None:
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
            and value[0] < value[1]):
        raise FormatError(f"{what} is not an interval [lo, hi] of finite numbers with lo < hi")
    return float(value[0]), float(value[1])


def _ciphertext_members(ctx: CKKSContext, cts: list[Ciphertext]) -> dict[str, Container]:
    return {f"ct{i}": ciphertexts_to_container(ctx, [ct], None, {}) for i, ct in enumerate(cts)}


def _members_to_ciphertexts(ctx: CKKSContext, members: dict[str, Container], count: int, key_id: str,
                            source: str) -> list[Ciphertext]:
    names = [f"ct{i}" for i in range(count)]
    if sorted(m for m in members if m.startswith("ct")) != sorted(names):
        raise FormatError(f"{source}: expected members {names[0]}..{names[-1]}")
    out = []
    for name in names:
        c = members[name]
        if c.key_id != key_id:
            raise KeyMismatchError(f"{source}: member {name} is under key {c.key_id!r}, expected {key_id!r}")
        cts = container_to_ciphertexts(ctx, c, f"{source} member {name}")
        if len(cts) != 1:
            raise FormatError(f"{source}: member {name} holds {len(cts)} ciphertexts, expected 1")
        out.append(cts[0])
    return out


# -- job input and result ----------------------------------------------------------------------------------

def encode_job_input(ctx: CKKSContext, h: Ciphertext, *, model: str, segments: list[int], layers: int) -> bytes:
    """The encrypted hidden state of a packed batch, divided by the model's first stream scale."""
    meta = {"job": {"model": model, "segments": list(segments), "layers": int(layers)}}
    return encode_container(ciphertexts_to_container(ctx, [h], None, meta))


def job_input_meta(c: Container, max_tokens: int, max_layers: int, source: str = "job input") -> dict:
    """The job's public parameters from an input container's header, checked (no ciphertext decoded)."""
    if c.kind != JOB_INPUT:
        raise FormatError(f"{source} holds a {c.kind}, not a ciphertext")
    job = c.meta.get("job")
    if not isinstance(job, dict) or set(job) != {"model", "segments", "layers"}:
        raise FormatError(f"{source}: meta 'job' must be an object with model, segments and layers")
    seg, layers, model = job["segments"], job["layers"], job["model"]
    if not isinstance(model, str) or not 0 < len(model) <= 128:
        raise FormatError(f"{source}: job model must be a name")
    if not (isinstance(seg, list) and 0 < len(seg) <= max_tokens and all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in seg) and sum(seg) <= max_tokens):
        raise FormatError(f"{source}: job segments must be 1..{max_tokens} positive token counts summing to at "
                          f"most {max_tokens}")
    if not (isinstance(layers, int) and not isinstance(layers, bool) and 1 <= layers <= max_layers):
        raise FormatError(f"{source}: job layers must be in 1..{max_layers}")
    if c.meta.get("count") != 1:
        raise FormatError(f"{source}: a job input holds exactly one ciphertext")
    return {"model": model, "segments": seg, "layers": layers}


@dataclass
class JobResult:
    """A decoded job result. ``indicator``: ``RangeIndicator.public_state()`` (name -> (ciphertext, count,
    tolerance)) and ``squarings`` from a bootstrapped job, else None; ``bootstrap``: its ``BootstrapStats``
    as a dict, else None."""

    output: Ciphertext
    stream_scale: float
    stats: dict
    indicator: dict | None = None
    squarings: int | None = None
    bootstrap: dict | None = field(default=None)


def encode_result(ctx: CKKSContext, h: Ciphertext, stream_scale: float, stats: dict, *,
                  indicator: dict | None = None, squarings: int | None = None, bootstrap: dict | None = None) -> bytes:
    """The output ciphertext and its stream scale; with bootstrapping also ``indicator`` (the range
    indicator's ``public_state()``: name -> (ciphertext, count, tolerance)), its ``squarings`` and
    ``bootstrap`` (``BootstrapStats.as_dict()``)."""
    meta = {"stream_scale": float.hex(stream_scale), "stats": stats}
    arrays = {}
    if indicator is not None:
        stages = []
        for i, (name, (ct, count, tol)) in enumerate(indicator.items()):
            if ct.key_id != h.key_id:
                raise FormatError(f"indicator {name!r} is under another key than the output")
            stages.append({"stage": str(name), "count": int(count), "tolerance": float.hex(float(tol)),
                           "level": ct.level, "scale": float.hex(ct.scale), "size": ct.size, "slots": ct.slots})
            arrays[f"indicator/{i}"] = np.asarray(ctx.backend.to_host(ct.data))
        meta["indicator"] = {"squarings": int(squarings), "stages": stages}
    if bootstrap is not None:
        meta["bootstrap"] = bootstrap
    c = ciphertexts_to_container(ctx, [h], None, meta)
    c.arrays.update(arrays)
    return encode_container(c)


def _count(value, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _stage_name(value) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_STAGE_NAME


def _indicator_state(ctx: CKKSContext, c: Container, source: str) -> tuple[dict, int]:
    """(public state, squarings) from a result's meta ``indicator`` and arrays ``indicator/<i>``, checked:
    every ciphertext as a ciphertext file is (parameters, level, shape, residues), under the result's key."""
    raw = c.meta["indicator"]
    if not (isinstance(raw, dict) and set(raw) == {"squarings", "stages"}):
        raise FormatError(f"{source}: meta 'indicator' must hold squarings and stages")
    squarings, stages = raw["squarings"], raw["stages"]
    if not _count(squarings, 1, MAX_SQUARINGS):
        raise FormatError(f"{source}: indicator squarings must be in 1..{MAX_SQUARINGS}")
    if not (isinstance(stages, list) and len(stages) <= MAX_INDICATORS):
        raise FormatError(f"{source}: indicator stages must list at most {MAX_INDICATORS} accumulators")
    if set(c.arrays) != {"data"} | {f"indicator/{i}" for i in range(len(stages))}:
        raise FormatError(f"{source}: arrays must be data and one indicator/<i> per indicator stage")
    state: dict = {}
    for i, st in enumerate(stages):
        where = f"{source}: indicator {i}"
        if not (isinstance(st, dict) and set(st) == {"stage", "count", "tolerance", "level", "scale", "size", "slots"}):
            raise FormatError(f"{where} must hold stage, count, tolerance, level, scale, size and slots")
        if not _stage_name(st["stage"]) or st["stage"] in state:
            raise FormatError(f"{where}: the stage must be a distinct name of 1..{MAX_STAGE_NAME} characters")
        if not _count(st["count"], 1, MAX_OBSERVATIONS):
            raise FormatError(f"{where}: the observation count must be in 1..{MAX_OBSERVATIONS}")
        try:
            tol = float.fromhex(st["tolerance"])
        except (TypeError, ValueError, OverflowError):
            tol = float("nan")
        if not (math.isfinite(tol) and 0 < tol <= MAX_TOLERANCE):
            raise FormatError(f"{where}: the tolerance must be a finite number in (0, {MAX_TOLERANCE:g}]")
        one = Container("ciphertext", c.params_id, c.key_id, None,
                        {"level": st["level"], "scale": st["scale"], "size": st["size"], "count": 1,
                         "slots_used": [st["slots"]]}, {"data": c.arrays[f"indicator/{i}"][None]})
        (ct,) = container_to_ciphertexts(ctx, one, where)
        state[st["stage"]] = (ct, st["count"], tol)
    return state, squarings


def _bootstrap_stats(raw, source: str) -> dict:
    """``BootstrapStats.as_dict()`` from a result's meta, checked: bounded counts, finite seconds, stage names."""
    where = f"{source}: meta 'bootstrap'"
    keys = {"bootstraps", "by_stage", "seconds_by_stage", "levels", "unshrunk", "paired"}
    if not (isinstance(raw, dict) and set(raw) == keys):
        raise FormatError(f"{where} must hold {', '.join(sorted(keys))}")
    if not (_count(raw["bootstraps"], 0, MAX_BOOTSTRAPS) and _count(raw["unshrunk"], 0, raw["bootstraps"])
            and _count(raw["paired"], 0, raw["bootstraps"])):
        raise FormatError(f"{where}: bootstraps must be in 0..{MAX_BOOTSTRAPS}, unshrunk and paired at most that")
    by_stage, seconds, levels = raw["by_stage"], raw["seconds_by_stage"], raw["levels"]
    if not (isinstance(by_stage, dict) and len(by_stage) <= MAX_INDICATORS
            and all(_stage_name(k) and _count(v, 1, MAX_BOOTSTRAPS) for k, v in by_stage.items())
            and sum(by_stage.values()) == raw["bootstraps"]):
        raise FormatError(f"{where}: by_stage must count each stage's bootstraps, summing to bootstraps")
    if not (isinstance(seconds, dict) and set(seconds) == set(by_stage) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
            for v in seconds.values())):
        raise FormatError(f"{where}: seconds_by_stage must give finite seconds for each stage of by_stage")

    def small_ints(v) -> bool:
        return isinstance(v, list) and 0 < len(v) <= 64 and all(_count(x, 0, 1 << 16) for x in v)

    if not (isinstance(levels, dict) and set(levels) == set(by_stage) and all(
            isinstance(e, dict) and set(e) == {"in", "out", "shift"} and small_ints(e["in"])
            and _count(e["out"], 0, 1 << 16) and small_ints(e["shift"]) for e in levels.values())):
        raise FormatError(f"{where}: levels must give, for each stage, the levels in, the level out and the shifts")
    return raw


def read_result(ctx: CKKSContext, data: bytes, key_id: str, max_bytes: int | None = None) -> JobResult:
    """A job result, checked: the parameters and key (KeyMismatchError), one output ciphertext and a positive
    stream scale, and the optional indicator and bootstrap members (FormatError)."""
    source = "job result"
    c = decode_container(data, source, expected_kind="ciphertext", max_bytes=max_bytes)
    if c.params_id != ctx.params_id or c.key_id != key_id:
        raise KeyMismatchError(f"{source} is bound to parameters {c.params_id!r} and key {c.key_id!r}, this client "
                               f"has {ctx.params_id!r} and {key_id!r}")
    indicator = squarings = None
    if "indicator" in c.meta:
        indicator, squarings = _indicator_state(ctx, c, source)
    elif set(c.arrays) != {"data"}:
        raise FormatError(f"{source}: arrays {sorted(c.arrays)}, expected ['data']")
    bootstrap = _bootstrap_stats(c.meta["bootstrap"], source) if "bootstrap" in c.meta else None
    if (indicator is None) != (bootstrap is None):
        raise FormatError(f"{source}: a bootstrapped result holds both the indicator and the bootstrap statistics")
    main = Container(c.kind, c.params_id, c.key_id, c.key_version, c.meta, {"data": c.arrays["data"]})
    cts = container_to_ciphertexts(ctx, main, source)
    try:
        scale = float.fromhex(c.meta.get("stream_scale"))
    except (TypeError, ValueError, OverflowError):
        raise FormatError(f"{source}: meta 'stream_scale' is not a float") from None
    if len(cts) != 1 or not (math.isfinite(scale) and scale > 0):
        raise FormatError(f"{source}: expected one ciphertext and a positive stream scale")
    stats = c.meta.get("stats") if isinstance(c.meta.get("stats"), dict) else {}
    return JobResult(cts[0], scale, stats, indicator, squarings, bootstrap)


def decode_result(ctx: CKKSContext, data: bytes, key_id: str, max_bytes: int | None = None) -> tuple[Ciphertext, float, dict]:
    """(output, stream scale, stats) of ``read_result``."""
    r = read_result(ctx, data, key_id, max_bytes)
    return r.output, r.stream_scale, r.stats


# -- refresh round trips ---------------------------------------------------------------------------------

def encode_refresh_request(ctx: CKKSContext, cts: list[Ciphertext], stage: str, *, domain=None, valid=None,
                           fill=None, level=None, domains=None) -> bytes:
    """The arguments of ``ClientRefresh.refresh`` as one container; masks travel as uint8 arrays."""
    members = _ciphertext_members(ctx, cts)
    masks = {} if valid is None else {f"v{i}": np.asarray(m, dtype=np.uint8)
                                      for i, m in enumerate(valid) if m is not None}
    members["masks"] = Container("slot-masks", ctx.params_id, cts[0].key_id, None, {}, masks)
    meta = {"stage": stage, "count": len(cts), "domain": None if domain is None else [float(v) for v in domain],
            "fill": None if fill is None else float(fill), "level": level, "has_valid": valid is not None,
            "domains": None if domains is None else [None if d is None else [float(v) for v in d] for d in domains]}
    return encode_container(bundle_containers(REFRESH_REQUEST, members, params_id=ctx.params_id,
                                              key_id=cts[0].key_id, meta=meta))


def decode_refresh_request(ctx: CKKSContext, data: bytes, key_id: str, max_bytes: int | None = None
                           ) -> tuple[list[Ciphertext], dict]:
    """(ciphertexts, keyword arguments of ``ClientRefresh.refresh`` besides them), checked."""
    source = "refresh request"
    c = decode_container(data, source, expected_kind=REFRESH_REQUEST, max_bytes=max_bytes)
    if c.params_id != ctx.params_id or c.key_id != key_id:
        raise KeyMismatchError(f"{source} is bound to parameters {c.params_id!r} and key {c.key_id!r}, "
                               f"this client has {ctx.params_id!r} and {key_id!r}")
    m = c.meta
    count = m.get("count")
    if not (isinstance(count, int) and not isinstance(count, bool) and 1 <= count <= MAX_REFRESH_CIPHERTEXTS):
        raise FormatError(f"{source}: count must be in 1..{MAX_REFRESH_CIPHERTEXTS}")
    stage = m.get("stage")
    if not isinstance(stage, str) or len(stage) > 200:
        raise FormatError(f"{source}: stage must be a short string")
    level = m.get("level")
    if level is not None and not (isinstance(level, int) and not isinstance(level, bool)
                                  and 0 <= level <= ctx.params.max_level):
        raise FormatError(f"{source}: level must be in 0..{ctx.params.max_level} or null")
    fill = m.get("fill")
    if fill is not None and not (isinstance(fill, (int, float)) and not isinstance(fill, bool) and math.isfinite(fill)):
        raise FormatError(f"{source}: fill must be a finite number or null")
    domains = m.get("domains")
    if domains is not None:
        if not (isinstance(domains, list) and len(domains) == count):
            raise FormatError(f"{source}: domains must list one interval (or null) per ciphertext")
        domains = [_finite_pair(d, f"{source}: domains[{i}]") for i, d in enumerate(domains)]
    members = unbundle_containers(c, source)
    if set(members) != {f"ct{i}" for i in range(count)} | {"masks"}:
        raise FormatError(f"{source}: members must be ct0..ct{count - 1} and masks")
    cts = _members_to_ciphertexts(ctx, members, count, key_id, source)
    valid = None
    if m.get("has_valid") is True:
        valid = []
        for i in range(count):
            mask = members["masks"].arrays.get(f"v{i}")
            if mask is not None and (mask.dtype != np.uint8 or mask.shape != (ctx.params.slots,)):
                raise FormatError(f"{source}: mask v{i} must be {ctx.params.slots} uint8 values")
            valid.append(None if mask is None else mask.astype(bool))
    elif members["masks"].arrays or m.get("has_valid") is not False:
        raise FormatError(f"{source}: masks present without has_valid")
    return cts, {"stage": stage, "domain": _finite_pair(m.get("domain"), f"{source}: domain"), "valid": valid,
                 "fill": None if fill is None else float(fill), "level": level, "domains": domains}


def encode_refresh_reply(ctx: CKKSContext, cts: list[Ciphertext]) -> bytes:
    return encode_container(bundle_containers(REFRESH_REPLY, _ciphertext_members(ctx, cts), params_id=ctx.params_id,
                                              key_id=cts[0].key_id, meta={"count": len(cts)}))


def check_refresh_reply(c: Container, params_id: str, key_id: str, count: int, source: str = "refresh reply") -> None:
    """What the server's front end checks before a reply reaches a worker: kind, bindings and count."""
    if c.kind != REFRESH_REPLY:
        raise FormatError(f"{source} holds a {c.kind}, not a {REFRESH_REPLY}")
    if c.params_id != params_id or c.key_id != key_id:
        raise KeyMismatchError(f"{source} is bound to parameters {c.params_id!r} and key {c.key_id!r}, "
                               f"the job has {params_id!r} and {key_id!r}")
    if c.meta.get("count") != count:
        raise FormatError(f"{source}: expected {count} ciphertexts")
    members = unbundle_containers(c, source)
    if set(members) != {f"ct{i}" for i in range(count)}:
        raise FormatError(f"{source}: members must be ct0..ct{count - 1}")
    for name, m in members.items():
        if m.kind != "ciphertext" or m.key_id != key_id or m.params_id != params_id or m.meta.get("count") != 1:
            raise FormatError(f"{source}: member {name} is not one ciphertext under the job's key")


def decode_refresh_reply(ctx: CKKSContext, data: bytes, key_id: str, count: int, min_level: int,
                         max_bytes: int | None = None) -> list[Ciphertext]:
    source = "refresh reply"
    c = decode_container(data, source, expected_kind=REFRESH_REPLY, max_bytes=max_bytes)
    check_refresh_reply(c, ctx.params_id, key_id, count, source)
    cts = _members_to_ciphertexts(ctx, unbundle_containers(c, source), count, key_id, source)
    low = min(ct.level for ct in cts)
    if low < min_level:
        raise FormatError(f"{source}: ciphertexts at level {low}, the request asked for level {min_level}")
    return cts


__all__ = ["API_VERSION", "JobResult", "check_refresh_reply", "decode_refresh_reply", "decode_refresh_request",
           "decode_result", "encode_job_input", "encode_refresh_reply", "encode_refresh_request", "encode_result",
           "job_input_meta", "read_result"]
