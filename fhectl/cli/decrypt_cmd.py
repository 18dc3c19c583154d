"""`fhectl decrypt`: a ciphertext file back to numbers, with its shape and dtype; optionally share-safe.

The command parses, calls fhectl.io.ciphertext_files.decrypt_container and prints. What is checked
and what is not (signatures, unkeyed checksums, the plausibility checks) is stated there and in the
command's help; the noise model and the share-safe argument live in fhectl.ckks.noise, the ledger of
shared decryptions in fhectl.io.decryption_ledger, the number formats in fhectl.io.arrays.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from fhectl.ckks.noise import MAX_STATISTICAL_SECURITY, MIN_STATISTICAL_SECURITY
from fhectl import keysets
from fhectl.cli import console
from fhectl.cli.errors import guarded
from fhectl.cli.messages import say
from fhectl.cli.options import Choice, Device, Force, Insecure, Json, Keyring, KeySet, Output, Passphrase
from fhectl.cli.passphrases import passphrase_when_sealed
from fhectl.errors import InputError, KeyringError
from fhectl.io.arrays import encode_output, output_format
from fhectl.io.atomic import atomic_write_bytes
from fhectl.io.ciphertext_files import DecryptRequest, decrypt_container, read_ciphertext_file
from fhectl.io.decryption_ledger import BUDGET_ENV, DEFAULT_BUDGET, DecryptionLedger, budget_from_environment
from fhectl.io.signatures import load_verify_key

ShareSafe = Annotated[
    bool,
    typer.Option(
        "--share-safe",
        help="Noise-flooding decryption for results handed to other parties (defence against the key-recovery "
             "attack of Li and Micciancio on CKKS decryptions; see above). Counted in the key's share-safe "
             "ledger; costs about s/2 + 4.4 + log2(sqrt(budget)) bits of precision, reported on stderr.",
    ),
]
StatisticalSecurity = Annotated[
    int, typer.Option("--statistical-security", "-s", min=MIN_STATISTICAL_SECURITY, max=MAX_STATISTICAL_SECURITY,
                      help="s, in bits (at least 30, OpenFHE's default): the flooding width is sqrt(12 budget) "
                           "2^(s/2) times the error bound.")]
ShareBudget = Annotated[
    Optional[int],
    typer.Option("--share-budget", min=1, show_default=False,
                 help=f"Share-safe decryptions this key may give out in all (default ${BUDGET_ENV}, else "
                      f"{DEFAULT_BUDGET}); the flooding is sized for an adversary who sees that many "
                      "(OpenFHE's numAdversarialQueries).")]
ExceedBudget = Annotated[
    bool, typer.Option("--exceed-budget", help="Decrypt share-safe even past the key's budget (recorded; the "
                                               "statistical guarantee then no longer holds).")]
ErrorBoundBits = Annotated[
    Optional[float],
    typer.Option("--error-bound-bits", help="log2 of your own bound on the ciphertext's coefficient error (integer "
                                            "units at its scale), from your noise analysis of the computation; "
                                            "it can raise the bound the parameters give, never lower it.",
                 show_default=False)]
VerifyKey = Annotated[
    Optional[str],
    typer.Option("--verify-key", help="The encrypting party's Ed25519 public key (PEM): a signed file must verify "
                                      "against it.", show_default=False)]
RequireSignature = Annotated[
    bool, typer.Option("--require-signature", help="Refuse files not signed by --verify-key (exit 8).")]
class FormatChoice(Choice):
    auto = "auto"
    npy = "npy"
    csv = "csv"
    text = "text"


Format = Annotated[FormatChoice, typer.Option("--format", help="Output format: auto (by extension; text on stdout), "
                                                               "npy, csv or text.", case_sensitive=False)]
Decimals = Annotated[
    Optional[int],
    typer.Option("--decimals", min=0, max=17, help="Decimals in text/CSV output (default: what the predicted "
                                                   "precision supports).", show_default=False)]


@guarded
def decrypt(
    input: Annotated[str, typer.Argument(help="Ciphertext file ('-' reads stdin).")],
    output: Output = "-",
    name: KeySet = None,
    share_safe: ShareSafe = False,
    statistical_security: StatisticalSecurity = MIN_STATISTICAL_SECURITY,
    share_budget: ShareBudget = None,
    exceed_budget: ExceedBudget = False,
    error_bound_bits: ErrorBoundBits = None,
    verify_key: VerifyKey = None,
    require_signature: RequireSignature = False,
    fmt: Format = "auto",
    decimals: Decimals = None,
    force: Force = False,
    passphrase: Passphrase = None,
    insecure: Insecure = False,
    keyring: Keyring = None,
    device: Device = "auto",
    json: Json = False,
) -> None:
    """Decrypt a ciphertext file to numbers with the original shape and dtype.

    Output: .npy, CSV or text by the extension of -o (text on stdout by default); files are written
    atomically with mode 0600 and never overwritten without --force. The key comes from the header
    (key id and version); a wrong key, parameter set or retired version is reported as such.
    Reports the predicted precision in bits on stderr.

    Authenticity: the file's checksums are unkeyed SHA-256, so they catch corruption but not a
    deliberate edit (whoever edits recomputes them), and CKKS ciphertexts are malleable: the checks
    made here (padding, imaginary parts, integers) catch garbage and crude edits, not a consistent
    alteration. Only a signature shows that a file is what its signer encrypted: `fhectl encrypt
    --sign-key KEY` signs it, and --verify-key PUB with --require-signature refuses files that are
    unsigned, signed by another key, or changed after signing (exit 8).

    Share-safe mode (--share-safe), for results that leave your hands: a plain CKKS decryption
    returns m + e, and anyone holding the ciphertext and this output can use e to recover the
    secret key (Li and Micciancio, EUROCRYPT 2021). Fresh discrete Gaussian noise of width
    sqrt(12 Q) 2^(s/2) B is added to every coefficient first (OpenFHE's NOISE_FLOODING_DECRYPT
    width), s >= 30 bits and Q the key's share-safe budget. B bounds the error, and is never read
    from the file: it is the parameters' bound for a fresh encryption plus the key switches the
    header admits to (a claim that can only raise it), or your --error-bound-bits when larger; a
    computed file needs --error-bound-bits. Where the decryption shows its own error (padding slots,
    imaginary parts of real data) it must be within B, else the real error is larger than the
    flooding hides and decryption is refused (exit 8); that is evidence, not proof, so share-safe
    holds for files whose history you know (your own computation, or a verified signature). Each
    share-safe decryption is counted in the key's ledger (KEYRING/.share-safe-ledger/KEY_ID.json);
    past the budget it is refused (exit 8) unless --exceed-budget. Precision drops by about
    s/2 + 4.4 + log2(sqrt(Q)) bits (printed).
    """
    kind = output_format(output, str(fmt))
    if json and output == "-":
        raise InputError("--json prints the report on stdout, which the values already use; add -o FILE")
    if kind == "npy" and output == "-" and sys.stdout.isatty():
        raise InputError("refusing to write .npy bytes to a terminal; use -o FILE or redirect stdout")
    if output != "-" and not force and Path(output).exists():
        raise InputError(f"{output}: already exists; refusing to overwrite it (--force replaces it)")
    request = DecryptRequest(share_safe=share_safe, statistical_security=statistical_security,
                             budget=budget_from_environment(share_budget), own_error_bits=error_bound_bits,
                             exceed_budget=exceed_budget, require_signature=require_signature,
                             verify_key=load_verify_key(verify_key) if verify_key is not None else None)
    c, source = read_ciphertext_file(input)
    ring = keysets.open_keyring(keyring)
    kv = keysets.locate_version(ring, c.key_id, c.key_version, c.params_id, name, source)
    if kv.status == "retired":
        raise KeyringError(f"{source} is under key version {kv.version} of {kv.name!r}, which is retired: files under "
                           f"it can no longer be decrypted (rewrap files before retiring; `fhectl rotate retire "
                           f"--undo {kv.version} --name {kv.name}` reactivates it)")
    keys = keysets.KeySource.from_keyring(ring, kv.name, kv.version, allow_insecure=insecure, device=device)
    ledger = DecryptionLedger(ring.root, kv.key_id) if share_safe else None
    with console.progress() as bar:
        task = bar.add_task("decrypting", total=c.meta.get("count") if isinstance(c.meta.get("count"), int) else None)
        result = decrypt_container(keys.ctx, lambda: keys.secret_key(passphrase_when_sealed(passphrase)), c, source,
                                   request, ledger, tick=lambda: bar.update(task, advance=1))
    report = {"input": input, "output": output, "key_set": kv.name, "key_version": kv.version, "key_id": kv.key_id,
              **result.report}
    bits = result.precision_bits
    places = decimals if decimals is not None else (
        min(17, max(1, math.ceil(bits * math.log10(2)) + 1)) if bits is not None else 10)
    data = encode_output(result.array, kind, places)
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        atomic_write_bytes(output, data, mode=0o600, exclusive=not force)
    for line in result.warnings:
        say(line)
    if json:
        console.print_json(report)
        return
    say(f"decrypted {report['values']} {report['dtype']} values (shape {tuple(report['shape'])}) from "
        f"{report['ciphertexts']} ciphertext(s) under key set {kv.name!r} v{kv.version} ({kv.key_id})")
    if report["signature"] == "verified":
        say(f"signature: verified, by {report['signer']}")
    elif report["signature"] == "not verified":
        say(f"signature: claims {report['signer']}, not verified (give --verify-key)")
    if bits is None:
        say("precision: unknown (the file went through computation; --error-bound-bits gives a bound)")
    elif share_safe:
        ledger_state = report["ledger"]
        say(
            f"share-safe: added discrete Gaussian noise of width 2^{report['flooding_sigma_log2']:.1f} per "
            f"coefficient (s = {statistical_security}, budget {request.budget}, error bound "
            f"2^{report['error_bound_log2']:.1f} from {report['error_bound_from']}); predicted precision "
            f"{bits:.1f} bits instead of {report['predicted_precision_bits']:.1f} (cost "
            f"{report['precision_cost_bits']:.1f} bits); ledger: {ledger_state['decryptions']} share-safe "
            f"decryption(s) under this key, {ledger_state['remaining_at_this_budget']} left")
    else:
        say(f"precision: predicted >= {bits:.1f} bits (error bound from {report['error_bound_from']}); "
            "use --share-safe before handing results to others")
