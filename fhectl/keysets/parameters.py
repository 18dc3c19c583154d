"""Parameters that travel with a key set.

The profile's literal is stored in the public key's meta (and copied into an exported bundle's meta),
checked against the params id on load, so a key set describes its own parameters even when the profile
was a local YAML file that the evaluating server never saw.
"""

from __future__ import annotations

from fhectl.ckks.params import Parameters, ParametersLiteral, literal_as_dict, load_parameters
from fhectl.errors import FormatError, KeyMismatchError


def parameters_meta(params: Parameters) -> dict:
    """The profile's literal, as stored in the public key's meta."""
    return literal_as_dict(params.literal)


def parameters_from(meta_literal, params_id: str, profile: str | None, source: str, allow_insecure: bool) -> Parameters:
    """Rebuild the parameters from a stored literal (else the named profile) and check they hash to params_id."""
    if meta_literal is None:
        if profile is None:
            raise FormatError(f"{source}: no parameters stored and no profile named")
        params = load_parameters(profile, allow_insecure=allow_insecure)
    else:
        if not isinstance(meta_literal, dict):
            raise FormatError(f"{source}: meta 'parameters' is not an object")
        try:
            literal = ParametersLiteral.from_mapping(meta_literal, source=source)
        except (TypeError, ValueError) as exc:
            raise FormatError(f"{source}: meta 'parameters' is malformed: {exc}") from None
        params = Parameters.from_literal(literal, allow_insecure=allow_insecure)
    if params.params_id != params_id:
        raise KeyMismatchError(f"{source}: its parameters hash to {params.params_id!r}, but the key set is bound "
                               f"to parameter set {params_id!r}")
    return params
