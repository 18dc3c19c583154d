"""Structural conformance of a class to a ``typing.Protocol``, checked on the class, without an instance.

``isinstance(obj, SomeProtocol)`` only asks whether the names exist (and needs an instance, which for the
CUDA backend needs a device); ``protocol_mismatches`` also compares every method's parameters: names,
kinds and defaults, in order. A class may add parameters after the protocol's if they have defaults, and
where the protocol ends in ``*args, **kwargs`` (an open-ended ``evaluate``) it may add any.
"""

import inspect


def protocol_members(protocol) -> list[str]:
    """The names a protocol declares: its methods, properties and annotated attributes."""
    names = set(getattr(protocol, "__annotations__", {}))
    for name, value in vars(protocol).items():
        if not name.startswith("_") and (callable(value) or isinstance(value, property)):
            names.add(name)
    return sorted(names)


def _parameters(cls, name: str) -> list[inspect.Parameter]:
    """The parameters of method ``name`` as called on an instance (self dropped)."""
    raw = inspect.getattr_static(cls, name)
    fn = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
    params = list(inspect.signature(fn).parameters.values())
    return params if isinstance(raw, staticmethod) else params[1:]


def _signature_mismatch(protocol, cls, name: str) -> str | None:
    want, got = _parameters(protocol, name), _parameters(cls, name)
    open_ended = any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in want)
    want = [p for p in want if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    shape = [(p.name, p.kind, p.default) for p in want]
    if [(p.name, p.kind, p.default) for p in got[: len(want)]] != shape:
        return f"{name}{inspect.signature(getattr(cls, name))} does not start with the protocol's {shape}"
    extra = [p for p in got[len(want):] if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if not open_ended and any(p.default is p.empty for p in extra):
        return f"{name} requires parameters the protocol does not pass: {[p.name for p in extra]}"
    return None


def protocol_mismatches(cls, protocol) -> list[str]:
    """Why ``cls`` does not satisfy ``protocol``: missing names, methods that are not methods, bad signatures."""
    out = []
    for name in protocol_members(protocol):
        declared = inspect.getattr_static(protocol, name, None)
        if declared is None:  # an annotated attribute: a class attribute, a field or a property will do
            fields = getattr(cls, "__dataclass_fields__", {})
            if not hasattr(cls, name) and name not in fields:
                out.append(f"missing attribute {name}")
            continue
        if not hasattr(cls, name):
            out.append(f"missing {name}")
        elif isinstance(declared, property):
            if not isinstance(inspect.getattr_static(cls, name), property):
                out.append(f"{name} is not a property")
        else:
            if isinstance(inspect.getattr_static(cls, name), property):
                out.append(f"{name} is a property, the protocol declares a method")
                continue
            why = _signature_mismatch(protocol, cls, name)
            if why:
                out.append(why)
    return out
