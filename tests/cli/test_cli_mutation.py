"""CLI-level mutation test: damaged or edited ciphertext and key files written by the CLI.

Every mutant is decrypted (and inspected) through the real command. The only acceptable outcomes
are a one-line error with a documented non-zero exit code, or, where the damage does not touch
what decryption reads (a limb beyond the ones decryption uses, a header field that only routes),
the original numbers. Never a crash (exit 70), a traceback, or silently wrong numbers.

Forged mutants have their digests recomputed (a deliberate, consistent edit rather than
corruption); they are caught by the bindings, the semantic checks and the plausibility check of
decryption. Positions come from a numpy Generator seeded with MUTATION_SEED.
"""

import hashlib
import json
import struct

import numpy as np
import pytest

from clitools import INSECURE, cli, cli_ok

MUTATION_SEED = 20261122
PREFIX = struct.Struct("<8sHHIQ32s32s")
ERROR_CODES = {2, 4, 5, 6}  # input, misuse, corrupt file, wrong key / keyring
TOL = 2.0**-20


def split(data: bytes):
    fields = PREFIX.unpack_from(data)
    header = data[PREFIX.size:PREFIX.size + fields[3]]
    return fields, header, data[len(data) - fields[4]:]


def forge(fields, header: bytes, payload: bytes) -> bytes:
    """A file with valid digests around the given header and payload."""
    fixed = struct.pack("<8sHHIQ", fields[0], fields[1], fields[2], len(header), len(payload))
    prefix = fixed + hashlib.sha256(fixed + header).digest() + hashlib.sha256(payload).digest()
    return prefix + header + bytes(-(PREFIX.size + len(header)) % 64) + payload


def canonical(doc) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Oracle:
    """Decrypts mutants of one file through the CLI and judges the outcome."""

    def __init__(self, keyring, tmp_path, original: np.ndarray):
        self.keyring, self.tmp, self.original = keyring, tmp_path, original
        self.outcomes = {"error": 0, "correct": 0}

    def judge(self, data: bytes, case: str) -> None:
        path = self.tmp / "mutant.fhe"
        path.write_bytes(data)
        out = self.tmp / "out.npy"
        res = cli(self.keyring, "decrypt", path, "-o", out, "--force", *INSECURE)
        self._check(res, case)
        if res.exit_code == 0:
            got = np.load(out)
            assert got.size == self.original.size, f"{case}: decrypted {got.size} values, not {self.original.size}"
            err = np.max(np.abs(got.reshape(-1).astype(np.complex128) - self.original.reshape(-1)))
            assert err < TOL, f"{case}: decrypted to wrong numbers (max error {err:.3g}) without an error"
            self.outcomes["correct"] += 1
        else:
            self.outcomes["error"] += 1
        ins = cli(self.keyring, "inspect", path, "--json")
        self._check(ins, f"inspect, {case}")

    @staticmethod
    def _check(res, case: str) -> None:
        assert "Traceback" not in res.stderr and "internal error" not in res.stderr, f"{case}: {res.stderr}"
        if res.exit_code != 0:
            assert res.exit_code in ERROR_CODES, f"{case}: exit {res.exit_code}: {res.stderr}"
            lines = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
            assert len(lines) == 1, f"{case}: expected one error line, got {res.stderr!r}"


@pytest.fixture
def ciphertexts(keyring, tmp_path):
    """Two CLI-written files: 700 real values (2 ciphertexts) and 100 complex ones (padding to check)."""
    rng = np.random.default_rng(MUTATION_SEED)
    real = rng.uniform(-2, 2, 700)
    cplx = rng.uniform(-2, 2, 100) + 1j * rng.uniform(-2, 2, 100)
    files = {}
    for name, x in (("real", real), ("complex", cplx)):
        np.save(tmp_path / f"{name}.npy", x)
        cli_ok(keyring, "encrypt", tmp_path / f"{name}.npy", "-o", tmp_path / f"{name}.fhe", *INSECURE)
        files[name] = ((tmp_path / f"{name}.fhe").read_bytes(), x)
    return files


def test_bit_flips_truncations_extensions(keyring, tmp_path, ciphertexts):
    rng = np.random.default_rng(MUTATION_SEED + 1)
    for name, (data, x) in ciphertexts.items():
        oracle = Oracle(keyring, tmp_path, x)
        header_end = PREFIX.size + split(data)[0][3]
        positions = [int(p) for p in rng.integers(0, header_end, 12)] + [int(p) for p in rng.integers(0, len(data), 12)]
        for pos in positions:
            mutant = bytearray(data)
            mutant[pos] ^= 1 << int(rng.integers(8))
            oracle.judge(bytes(mutant), f"{name}: flip in byte {pos}")
        for cut in sorted({0, 1, 87, 88, header_end, len(data) - 1} | {int(c) for c in rng.integers(0, len(data), 6)}):
            oracle.judge(data[:cut], f"{name}: truncated to {cut}")
        for n in (1, 64, int(rng.integers(2, 5000))):
            oracle.judge(data + rng.integers(0, 256, n, dtype=np.uint8).tobytes(), f"{name}: extended by {n}")
        assert oracle.outcomes["correct"] == 0  # checksums catch every accidental change


def _header_forgeries(doc: dict, other_key_id: str):
    def edit(**changes):
        out = json.loads(json.dumps(doc))
        for key, value in changes.items():
            if key.startswith("meta."):
                out["meta"][key[5:]] = value
            else:
                out[key] = value
        return out

    meta = doc["meta"]
    yield "key id of another key set", edit(key_id=other_key_id)
    yield "unknown key id", edit(key_id="k-000000000000")
    yield "other parameters", edit(params_id="0123456789abcdef")
    yield "key version 2", edit(key_version=2)
    yield "no key version", edit(key_version=None)
    yield "level 4", edit(**{"meta.level": 4})
    yield "scale 2^41", edit(**{"meta.scale": float.hex(2.0**41)})
    yield "scale garbage", edit(**{"meta.scale": "nan"})
    yield "count 1", edit(**{"meta.count": 1})
    yield "slots_used shifted", edit(**{"meta.slots_used": [s - 1 for s in meta["slots_used"]]})
    yield "shape product off", edit(**{"meta.data": {**meta["data"], "shape": [meta["data"]["values"] + 1]}})
    yield "values off", edit(**{"meta.data": {**meta["data"], "values": meta["data"]["values"] - 1}})
    yield "dtype int64", edit(**{"meta.data": {**meta["data"], "dtype": "int64"}})
    yield "dtype bool", edit(**{"meta.data": {**meta["data"], "dtype": "bool"}})
    yield "dtype object", edit(**{"meta.data": {**meta["data"], "dtype": "object"}})
    yield "dtype float64", edit(**{"meta.data": {**meta["data"], "dtype": "float64"}})
    yield "no data description", edit(**{"meta.data": None})
    yield "negative key switches", edit(**{"meta.key_switches": -1})
    yield "many key switches", edit(**{"meta.key_switches": 1000})
    yield "origin unknown", edit(**{"meta.origin": "computed"})
    yield "size 3", edit(**{"meta.size": 3})


def test_forged_headers(keyring, tmp_path, ciphertexts):
    cli_ok(keyring, "keygen", "--name", "other", "--profile", "tiny-insecure", *INSECURE)
    other = json.loads(cli_ok(keyring, "keys", "show", "--name", "other", "--json").stdout)["key_id"]
    for name, (data, x) in ciphertexts.items():
        oracle = Oracle(keyring, tmp_path, x)
        fields, header, payload = split(data)
        doc = json.loads(header)
        for case, forged in _header_forgeries(doc, other):
            oracle.judge(forge(fields, canonical(forged), payload), f"{name}: {case}")
        for kind in (2, 3, 4, 9):  # another kind code, with the JSON kind left as it was
            oracle.judge(forge(fields[:2] + (kind,) + fields[3:], header, payload), f"{name}: kind code {kind}")
        # raw edits of the JSON, digests left as they were
        for old, new in ((b'"level":5', b'"level":4'), (b'"key_version":1', b'"key_version":2')):
            at = header.find(old)
            mutant = bytearray(data)
            mutant[PREFIX.size + at:PREFIX.size + at + len(new)] = new
            oracle.judge(bytes(mutant), f"{name}: raw {old!r} -> {new!r}")
        assert oracle.outcomes["error"] > 20


def test_forged_payloads_never_decrypt_to_wrong_numbers(keyring, tmp_path, ciphertexts):
    """Payload bits flipped with the payload digest recomputed: CKKS is malleable, so only the plausibility
    check of decryption stands between such a file and wrong numbers."""
    rng = np.random.default_rng(MUTATION_SEED + 2)
    for name, (data, x) in ciphertexts.items():
        oracle = Oracle(keyring, tmp_path, x)
        fields, header, payload = split(data)
        words = np.frombuffer(payload, dtype="<u8")
        count, size, limbs, n = json.loads(header)["arrays"][0]["shape"]
        for _ in range(14):
            ct, poly, limb, coeff = (int(rng.integers(d)) for d in (count, size, limbs, n))
            if _ < 8:
                limb = int(rng.integers(2))  # the limbs decryption reads (tiny-insecure decrypts on 2 primes)
            bit = int(rng.integers(40))
            mutated = words.copy()
            mutated[((ct * size + poly) * limbs + limb) * n + coeff] ^= np.uint64(1 << bit)
            oracle.judge(forge(fields, header, mutated.tobytes()),
                         f"{name}: ct {ct} poly {poly} limb {limb} coeff {coeff} bit {bit}")
        assert oracle.outcomes["error"] >= 8


def _rewrite_manifest_digest(keyring, rel: str) -> None:
    manifest = keyring / "default" / "v1" / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["files"][rel] = hashlib.sha256((keyring / "default" / "v1" / rel).read_bytes()).hexdigest()
    manifest.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def test_damaged_and_forged_key_files(keyring, tmp_path, ciphertexts):
    data, x = ciphertexts["real"]
    oracle = Oracle(keyring, tmp_path, x)
    rng = np.random.default_rng(MUTATION_SEED + 3)
    v1 = keyring / "default" / "v1"
    for rel in ("secret/secret-key.fhe", "public/public-key.fhe", "manifest.json"):
        path = v1 / rel
        original = path.read_bytes()
        mutants = [original[:int(rng.integers(len(original)))], original + b"\x00" * 7]
        for _ in range(4):
            m = bytearray(original)
            m[int(rng.integers(len(m)))] ^= 1 << int(rng.integers(8))
            mutants.append(bytes(m))
        for i, mutant in enumerate(mutants):
            path.write_bytes(mutant)
            oracle.judge(data, f"{rel} mutant {i}")
            verify = cli(keyring, "keys", "verify", *INSECURE)
            assert "Traceback" not in verify.stderr and verify.exit_code in (0, 6), f"{rel} mutant {i}"
            if rel != "manifest.json":  # key files are fingerprinted by the manifest: any change is refused
                assert oracle.outcomes["correct"] == 0 and verify.exit_code == 6, f"{rel} mutant {i} was accepted"
        path.write_bytes(original)
    before = oracle.outcomes["correct"]
    oracle.judge(data, "key files restored")
    assert oracle.outcomes["correct"] == before + 1

    # A forged secret key: one coefficient changed, container digests and the manifest's sha256 recomputed.
    secret = v1 / "secret" / "secret-key.fhe"
    original = secret.read_bytes()
    fields, header, payload = split(original)
    for new_value, code, message in ((2, 5, "outside {-1, 0, 1}"), (None, 6, "does not belong")):
        coeffs = np.frombuffer(payload, dtype="<i8").copy()
        coeffs[17] = new_value if new_value is not None else (1 if coeffs[17] != 1 else 0)
        secret.write_bytes(forge(fields, header, coeffs.tobytes()))
        _rewrite_manifest_digest(keyring, "secret/secret-key.fhe")
        res = cli(keyring, "decrypt", tmp_path / "real.fhe", *INSECURE)
        assert res.exit_code == code and message in res.stderr, res.stderr
    secret.write_bytes(original)
    _rewrite_manifest_digest(keyring, "secret/secret-key.fhe")


def test_damaged_bundle_is_refused_by_encrypt(keyring, tmp_path):
    cli_ok(keyring, "keys", "export", "--files", "public-key", "-o", tmp_path / "pub.fhe")
    (tmp_path / "x.txt").write_text("1 2 3\n")
    data = (tmp_path / "pub.fhe").read_bytes()
    rng = np.random.default_rng(MUTATION_SEED + 4)
    for i in range(6):
        m = bytearray(data)
        m[int(rng.integers(len(m)))] ^= 0x10
        (tmp_path / "bad.fhe").write_bytes(bytes(m))
        res = cli(tmp_path / "none", "encrypt", tmp_path / "x.txt", "--bundle", tmp_path / "bad.fhe", "-o",
                  tmp_path / f"x{i}.fhe", *INSECURE)
        Oracle._check(res, f"bundle mutant {i}")
        assert res.exit_code == 5 and not (tmp_path / f"x{i}.fhe").exists()
