"""`fhectl encrypt`, `decrypt` and `inspect`: formats, shapes and dtypes, precision reports, wrong keys,
share-safe decryption (flooding bound, floor on s, the per-key budget) and signatures."""

import io
import json
import math
import os
import stat

import numpy as np
import pytest

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clitools import INSECURE, SLOTS, cli_fails, cli_ok, subprocess_fhectl
from fhectl.keysets import KeySource
from fhectl.io.container import Container, read_container, write_container
from fhectl.io.keyring import Keyring

# Values of magnitude <= 4 come back within 2^-20 (a fresh tiny-insecure encryption gives ~25 bits).
TOL = 2.0**-20


def encrypt(keyring, data_path, out, *extra):
    return cli_ok(keyring, "encrypt", data_path, "-o", out, *INSECURE, *extra)


def decrypt_npy(keyring, ct_path, out, *extra):
    cli_ok(keyring, "decrypt", ct_path, "-o", out, *INSECURE, *extra)
    return np.load(out)


@pytest.mark.parametrize("shape,dtype", [
    ((3, 400), np.float64),        # 1200 values: three ciphertexts, the last partly filled
    ((SLOTS,), np.float32),        # exactly one full ciphertext
    ((2, 3, 5), np.complex128),
    ((7,), np.complex64),
    ((4, 5), np.int32),
    ((6,), np.bool_),
    ((), np.float64),              # a 0-d array
])
def test_npy_round_trip_keeps_shape_and_dtype(keyring, tmp_path, data_rng, shape, dtype):
    if np.dtype(dtype).kind == "c":
        x = data_rng.uniform(-4, 4, shape) + 1j * data_rng.uniform(-4, 4, shape)
    elif np.dtype(dtype).kind == "i":
        x = data_rng.integers(-1000, 1000, shape)
    elif np.dtype(dtype).kind == "b":
        x = data_rng.integers(0, 2, shape)
    else:
        x = data_rng.uniform(-4, 4, shape)
    x = np.asarray(x).astype(dtype)
    np.save(tmp_path / "x.npy", x)
    encrypt(keyring, tmp_path / "x.npy", tmp_path / "x.fhe")
    y = decrypt_npy(keyring, tmp_path / "x.fhe", tmp_path / "y.npy")
    assert y.shape == x.shape and y.dtype == x.dtype
    if x.dtype.kind in "biu":
        assert np.array_equal(x, y)
    else:
        tol = TOL if x.dtype.itemsize >= 8 else 2.0**-18  # float32 / complex64 keep ~24 bits themselves
        assert np.max(np.abs(x.astype(np.complex128) - y)) < tol
    assert oct(stat.S_IMODE(os.stat(tmp_path / "y.npy").st_mode)) == "0o600"  # plaintext is not world-readable


def test_text_and_csv_through_stdin_and_stdout(keyring):
    text = "# a comment\n1.5, 2.25, -3\n4, 5e-3, 6\n\n"
    ct = cli_ok(keyring, "encrypt", "-", *INSECURE, input=text).stdout_bytes
    assert ct.startswith(b"\x89FHECTL\n")
    res = cli_ok(keyring, "decrypt", "-", *INSECURE, input=ct)
    rows = [[float(v) for v in line.split()] for line in res.stdout.splitlines()]
    assert np.allclose(rows, [[1.5, 2.25, -3], [4, 5e-3, 6]], atol=TOL, rtol=0)
    assert "predicted >= 25" in res.stderr  # the precision report goes to stderr, never into the data


def test_csv_file_output_and_complex_text(keyring, tmp_path):
    (tmp_path / "z.txt").write_text("1+2j 3-4.5j\n-0.5j 7\n")
    encrypt(keyring, tmp_path / "z.txt", tmp_path / "z.fhe")
    cli_ok(keyring, "decrypt", tmp_path / "z.fhe", "-o", tmp_path / "z.csv", *INSECURE)
    got = [[complex(v) for v in line.split(",")] for line in (tmp_path / "z.csv").read_text().splitlines()]
    assert np.allclose(got, [[1 + 2j, 3 - 4.5j], [-0.5j, 7]], atol=TOL, rtol=0)


def test_reports_sizes_and_precision(keyring, tmp_path, data_rng):
    np.save(tmp_path / "x.npy", data_rng.uniform(-1, 1, 1000))
    rep = json.loads(encrypt(keyring, tmp_path / "x.npy", tmp_path / "x.fhe", "--json",
                             "--measure-precision").stdout)
    assert rep["ciphertexts"] == 2 and rep["values"] == 1000 and rep["key_version"] == 1
    assert rep["bytes"] == os.path.getsize(tmp_path / "x.fhe") and rep["expansion"] > 1
    assert rep["measured_precision_bits"] >= rep["predicted_precision_bits"] > 20
    dec = json.loads(cli_ok(keyring, "decrypt", tmp_path / "x.fhe", "-o", tmp_path / "y.npy", "--json",
                            *INSECURE).stdout)
    assert dec["predicted_precision_bits"] == rep["predicted_precision_bits"]
    assert dec["error_bound_from"] == "fresh encryption + 0 key switch(es)"


def test_encrypt_with_an_exported_bundle_needs_no_keyring(keyring, tmp_path, data_rng):
    cli_ok(keyring, "keys", "export", "--files", "public-key", "-o", tmp_path / "pub.fhe")
    x = data_rng.uniform(-1, 1, 20)
    np.save(tmp_path / "x.npy", x)
    empty = tmp_path / "no-keyring"
    cli_ok(empty, "encrypt", tmp_path / "x.npy", "--bundle", tmp_path / "pub.fhe", "-o", tmp_path / "x.fhe",
           *INSECURE)
    cli_fails(empty, 2, "encrypt", tmp_path / "x.npy", "--bundle", tmp_path / "pub.fhe", "-o", tmp_path / "y.fhe",
              "--measure-precision", *INSECURE, match="secret key")
    assert np.max(np.abs(decrypt_npy(keyring, tmp_path / "x.fhe", tmp_path / "y.npy") - x)) < TOL


def test_outputs_are_never_overwritten_silently(keyring, tmp_path):
    (tmp_path / "x.txt").write_text("1 2 3\n")
    encrypt(keyring, tmp_path / "x.txt", tmp_path / "x.fhe")
    before = (tmp_path / "x.fhe").read_bytes()
    cli_fails(keyring, 2, "encrypt", tmp_path / "x.txt", "-o", tmp_path / "x.fhe", *INSECURE, match="already exists")
    assert (tmp_path / "x.fhe").read_bytes() == before
    encrypt(keyring, tmp_path / "x.txt", tmp_path / "x.fhe", "--force")
    cli_ok(keyring, "decrypt", tmp_path / "x.fhe", "-o", tmp_path / "y.txt", *INSECURE)
    cli_fails(keyring, 2, "decrypt", tmp_path / "x.fhe", "-o", tmp_path / "y.txt", *INSECURE, match="already exists")


@pytest.mark.parametrize("content,match", [
    ("1, nan, 3\n", "NaN"),
    ("1 2 3\n4 5\n", "line 2: 2 values"),
    ("1 two 3\n", "'two' is not a number"),
    ("# nothing\n\n", "no numbers"),
    ("1e12\n", "2^38"),
])
def test_bad_input_is_one_line_and_exit_2(keyring, tmp_path, content, match):
    (tmp_path / "bad.txt").write_text(content)
    cli_fails(keyring, 2, "encrypt", tmp_path / "bad.txt", "-o", tmp_path / "bad.fhe", *INSECURE, match=match)
    assert not (tmp_path / "bad.fhe").exists()


def test_missing_input_and_insecure_profile_without_opt_out(keyring, tmp_path):
    cli_fails(keyring, 2, "encrypt", tmp_path / "nope.npy", "-o", tmp_path / "x.fhe", *INSECURE, match="cannot read")
    (tmp_path / "x.txt").write_text("1\n")
    cli_fails(keyring, 3, "encrypt", tmp_path / "x.txt", "-o", tmp_path / "x.fhe", match="--insecure")


def test_wrong_key_and_wrong_parameters_are_named_from_the_header(keyring, tmp_path):
    (tmp_path / "x.txt").write_text("1 2 3\n")
    encrypt(keyring, tmp_path / "x.txt", tmp_path / "x.fhe")
    cli_ok(keyring, "keygen", "--name", "other", "--profile", "tiny-insecure", *INSECURE)
    cli_ok(keyring, "keygen", "--name", "deep", "--profile", "tiny-deep-insecure", *INSECURE)
    res = cli_fails(keyring, 6, "decrypt", tmp_path / "x.fhe", "--name", "other", *INSECURE)
    assert "was encrypted under key 'k-" in res.stderr and "key set 'other' v1 has key" in res.stderr
    res = cli_fails(keyring, 6, "decrypt", tmp_path / "x.fhe", "--name", "deep", *INSECURE)
    assert "was encrypted under parameter set" in res.stderr and "tiny-deep-insecure" in res.stderr
    cli_fails(tmp_path / "elsewhere", 6, "decrypt", tmp_path / "x.fhe", *INSECURE, match="keyring")
    # Without --name the key id routes the file to its key set, among several.
    cli_ok(keyring, "decrypt", tmp_path / "x.fhe", *INSECURE)


def test_share_safe_decryption_floods_and_reports_the_cost(keyring, tmp_path, data_rng):
    x = data_rng.uniform(-100, 100, 300)
    np.save(tmp_path / "x.npy", x)
    encrypt(keyring, tmp_path / "x.npy", tmp_path / "x.fhe")
    plain = json.loads(cli_ok(keyring, "decrypt", tmp_path / "x.fhe", "-o", tmp_path / "p.npy", "--json",
                              *INSECURE).stdout)
    outs, reps = [], []
    for i in range(2):
        reps.append(json.loads(cli_ok(keyring, "decrypt", tmp_path / "x.fhe", "--share-safe", "--share-budget", "16",
                                      "-o", tmp_path / f"s{i}.npy", "--json", *INSECURE).stdout))
        outs.append(np.load(tmp_path / f"s{i}.npy"))
    rep = reps[0]
    # sigma = sqrt(12 Q) 2^(s/2) B, Q the budget: the width exceeds the error bound by 2^15 times sqrt(12 * 16).
    assert rep["flooding_sigma_log2"] == pytest.approx(rep["error_bound_log2"] + 15 + math.log2(math.sqrt(12 * 16)),
                                                       abs=0.02)
    assert rep["precision_cost_bits"] == pytest.approx(15 + math.log2(1 + 6 * math.sqrt(12 * 16)), abs=0.2)
    assert rep["share_safe_precision_bits"] < plain["predicted_precision_bits"] - 15
    assert rep["error_bound_log2"] == plain["error_bound_log2"]  # the parameters' bound for a fresh file
    for out in outs:
        err = np.max(np.abs(out - x))
        assert err < 2.0 ** -rep["share_safe_precision_bits"]  # within the predicted (flooded) bound
        assert err > 2.0 ** -plain["predicted_precision_bits"] * 16  # and the noise really is there
    assert not np.array_equal(outs[0], outs[1])  # fresh noise every time
    assert [r["ledger"]["decryptions"] for r in reps] == [1, 2] and reps[1]["ledger"]["remaining_at_this_budget"] == 14
    strong = json.loads(cli_ok(keyring, "decrypt", tmp_path / "x.fhe", "--share-safe", "-s", "40", "--share-budget",
                               "16", "-o", tmp_path / "w.npy", "--json", *INSECURE).stdout)
    assert strong["precision_cost_bits"] > rep["precision_cost_bits"] + 4.5
    res = cli_ok(keyring, "decrypt", tmp_path / "x.fhe", "--share-safe", *INSECURE)
    assert "share-safe: added discrete Gaussian noise" in res.stderr and "cost" in res.stderr


@pytest.mark.parametrize("weak", ["1", "10", "29"])
def test_share_safe_statistical_security_has_a_floor(keyring, tmp_path, weak):
    (tmp_path / "x.txt").write_text("1 2 3\n")
    encrypt(keyring, tmp_path / "x.txt", tmp_path / "x.fhe")
    cli_fails(keyring, 2, "decrypt", tmp_path / "x.fhe", "--share-safe", "-s", weak, *INSECURE, match="30")


def _scaled_copy(keyring, src, dst, factor):
    """``src`` with every ciphertext multiplied by ``factor`` and valid checksums: a consistent alteration
    anyone can make without a key (CKKS is malleable), scaling the message and the error alike."""
    keys = KeySource.from_keyring(Keyring(keyring), "default", None, allow_insecure=True, device="cpu")
    c = read_container(src)
    data = c.arrays["data"]  # (count, size, limbs, N) residues
    moduli = np.array(keys.params.moduli_q[:data.shape[2]], dtype=object)[None, None, :, None]
    scaled = (data.astype(object) * factor) % moduli
    write_container(dst, Container(c.kind, c.params_id, c.key_id, c.key_version, c.meta,
                                   {"data": scaled.astype(np.uint64)}))


def test_share_safe_refuses_a_ciphertext_whose_error_exceeds_the_bound(keyring, tmp_path, data_rng):
    """A file scaled by 2^9 used to pass (the check allowed 2^10 times the bound), flooded for an error 2^9 times
    too small: about 12 bits of statistical security instead of 30. Its error shows in the imaginary parts."""
    x = data_rng.uniform(-1, 1, 300)
    np.save(tmp_path / "x.npy", x)
    encrypt(keyring, tmp_path / "x.npy", tmp_path / "x.fhe")
    _scaled_copy(keyring, tmp_path / "x.fhe", tmp_path / "scaled.fhe", 2**9)
    # A plain decryption cannot tell: the checksums are unkeyed and the numbers come out 512 times larger.
    y = decrypt_npy(keyring, tmp_path / "scaled.fhe", tmp_path / "y.npy")
    assert np.max(np.abs(y - 512 * x)) < 2.0**-10
    res = cli_fails(keyring, 8, "decrypt", tmp_path / "scaled.fhe", "--share-safe", "-o", tmp_path / "s.npy",
                    *INSECURE, match="refusing share-safe decryption")
    assert "error" in res.stderr and not (tmp_path / "s.npy").exists()
    # Nothing was given out, so nothing was counted.
    ledger = keyring / ".share-safe-ledger"
    assert not any(ledger.glob("*.json"))
    # The decryptor's own, larger bound covers it (and is what gets flooded).
    rep = json.loads(cli_ok(keyring, "decrypt", tmp_path / "scaled.fhe", "--share-safe", "--error-bound-bits", "30",
                            "-o", tmp_path / "s.npy", "--json", *INSECURE).stdout)
    assert rep["error_bound_log2"] == 30 and rep["error_bound_from"] == "your --error-bound-bits"


def test_share_safe_decryptions_are_counted_against_the_key_budget(keyring, tmp_path, data_rng):
    np.save(tmp_path / "x.npy", data_rng.uniform(-1, 1, 600))  # two ciphertexts: two decryptions each time
    encrypt(keyring, tmp_path / "x.npy", tmp_path / "x.fhe")
    budget = {"FHECTL_SHARE_BUDGET": "3"}
    first = json.loads(cli_ok(keyring, "decrypt", tmp_path / "x.fhe", "--share-safe", "-o", tmp_path / "a.npy",
                              "--json", *INSECURE, env=budget).stdout)
    assert first["budget"] == 3 and first["ledger"]["decryptions"] == 2
    cli_ok(keyring, "decrypt", tmp_path / "x.fhe", "-o", tmp_path / "plain.npy", *INSECURE, env=budget)  # not counted
    res = cli_fails(keyring, 8, "decrypt", tmp_path / "x.fhe", "--share-safe", "-o", tmp_path / "b.npy", *INSECURE,
                    env=budget, match="budget spent")
    assert "--exceed-budget" in res.stderr and not (tmp_path / "b.npy").exists()
    forced = cli_ok(keyring, "decrypt", tmp_path / "x.fhe", "--share-safe", "--exceed-budget", "-o",
                    tmp_path / "b.npy", *INSECURE, env=budget)
    assert "over the share-safe budget" in forced.stderr
    files = list((keyring / ".share-safe-ledger").glob("*.json"))
    assert len(files) == 1 and oct(stat.S_IMODE(os.stat(files[0]).st_mode)) == "0o600"
    ledger = json.loads(files[0].read_text())
    assert ledger["decryptions"] == 4 and ledger["over_budget"] == 2 and ledger["spent"] == "4/3"
    assert [e["ciphertexts"] for e in ledger["entries"]] == [2, 2] and ledger["entries"][1]["over_budget"]
    # A larger budget makes each decryption cheaper but cannot undo what was spent.
    cli_fails(keyring, 8, "decrypt", tmp_path / "x.fhe", "--share-safe", "--share-budget", "1000", *INSECURE,
              match="budget spent")
    cli_fails(keyring, 2, "decrypt", tmp_path / "x.fhe", "--share-safe", *INSECURE, env={"FHECTL_SHARE_BUDGET": "0"},
              match="FHECTL_SHARE_BUDGET")


def _ed25519_pair(directory, name):
    key = Ed25519PrivateKey.generate()
    private, public = directory / f"{name}.pem", directory / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def test_signed_files_verify_and_consistent_alterations_fail(keyring, tmp_path, data_rng):
    """The checksums are unkeyed, so a consistently altered file decrypts (see the test above); a signature
    over the whole file is what catches it."""
    sign, pub = _ed25519_pair(tmp_path, "alice")
    _, other_pub = _ed25519_pair(tmp_path, "mallory")
    x = data_rng.uniform(-1, 1, 700)
    np.save(tmp_path / "x.npy", x)
    rep = json.loads(encrypt(keyring, tmp_path / "x.npy", tmp_path / "x.fhe", "--sign-key", sign, "--json").stdout)
    assert rep["signed_by"].startswith("ed25519:")
    verify = ["--verify-key", pub, "--require-signature"]
    dec = json.loads(cli_ok(keyring, "decrypt", tmp_path / "x.fhe", "-o", tmp_path / "y.npy", "--json", *verify,
                            *INSECURE).stdout)
    assert dec["signature"] == "verified" and dec["signer"] == rep["signed_by"]
    assert np.max(np.abs(np.load(tmp_path / "y.npy") - x)) < TOL
    assert "not verified" in cli_ok(keyring, "decrypt", tmp_path / "x.fhe", *INSECURE).stderr

    _scaled_copy(keyring, tmp_path / "x.fhe", tmp_path / "altered.fhe", 3)
    cli_fails(keyring, 8, "decrypt", tmp_path / "altered.fhe", "-o", tmp_path / "z.npy", *verify, *INSECURE,
              match="does not match")
    assert not (tmp_path / "z.npy").exists()
    cli_fails(keyring, 8, "decrypt", tmp_path / "x.fhe", "--verify-key", other_pub, "--require-signature",
              *INSECURE, match="not by the verification key")
    encrypt(keyring, tmp_path / "x.npy", tmp_path / "unsigned.fhe")
    cli_fails(keyring, 8, "decrypt", tmp_path / "unsigned.fhe", *verify, *INSECURE, match="not signed")
    cli_ok(keyring, "decrypt", tmp_path / "unsigned.fhe", "--verify-key", pub, *INSECURE)  # not required: allowed
    cli_fails(keyring, 2, "decrypt", tmp_path / "x.fhe", "--require-signature", *INSECURE, match="--verify-key")
    sign.chmod(0o644)
    cli_fails(keyring, 2, "encrypt", tmp_path / "x.npy", "-o", tmp_path / "w.fhe", "--sign-key", sign, *INSECURE,
              match="chmod 600")
    cli_fails(keyring, 2, "encrypt", tmp_path / "x.npy", "-o", tmp_path / "w.fhe", "--sign-key", pub, *INSECURE)
    assert not (tmp_path / "w.fhe").exists()


def test_share_safe_help_explains_itself(keyring):
    res = cli_ok(keyring, "decrypt", "--help", env={"COLUMNS": "400"})
    for words in ("Li and Micciancio", "2^(s/2)", "precision", "--error-bound-bits", "OpenFHE", "--share-budget",
                  "--exceed-budget", "unkeyed", "--require-signature"):
        assert words in res.stdout


def test_inspect_reads_the_header_without_any_key(keyring, tmp_path):
    (tmp_path / "x.txt").write_text("\n".join(str(i) for i in range(600)))
    encrypt(keyring, tmp_path / "x.txt", tmp_path / "x.fhe")
    data = json.loads(cli_ok(tmp_path / "no-keyring", "inspect", tmp_path / "x.fhe", "--json").stdout)
    assert data["kind"] == "ciphertext" and data["level"] == 5 and data["scale_log2"] == 40.0
    assert data["count"] == 2 and data["slots_used"] == [512, 88] and data["key_version"] == 1
    assert data["profile"] == "tiny-insecure" and data["keyring"] is None and not data["payload_verified"]
    data = json.loads(cli_ok(keyring, "inspect", tmp_path / "x.fhe", "--json", "--verify").stdout)
    assert data["keyring"]["key_set"] == "default" and data["payload_verified"]
    text = cli_ok(keyring, "inspect", keyring / "default" / "v1" / "public" / "relin-key.fhe").stdout
    assert "relin-key" in text and "version 1" in text


def test_pipeline_as_subprocesses_with_plain_stderr(keyring, tmp_path):
    enc = subprocess_fhectl(keyring, "encrypt", "-", *INSECURE, input=b"0.25 0.5 0.75\n")
    assert enc.returncode == 0, enc.stderr
    dec = subprocess_fhectl(keyring, "decrypt", "-", *INSECURE, input=enc.stdout)
    assert dec.returncode == 0, dec.stderr
    assert np.allclose(np.loadtxt(io.StringIO(dec.stdout.decode())), [0.25, 0.5, 0.75], atol=TOL)
    assert b"\x1b[" not in enc.stderr + dec.stderr  # no colour or animation when not a terminal
    bad = subprocess_fhectl(keyring, "decrypt", tmp_path / "missing.fhe", *INSECURE)
    assert bad.returncode == 2 and bad.stderr.decode().startswith("error: ") and b"Traceback" not in bad.stderr
    debug = subprocess_fhectl(keyring, "decrypt", tmp_path / "missing.fhe", *INSECURE, env={"FHECTL_DEBUG": "1"})
    assert debug.returncode != 0 and b"Traceback" in debug.stderr
