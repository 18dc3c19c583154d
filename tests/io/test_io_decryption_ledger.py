"""The per-key ledger of share-safe decryptions (fhectl.io.decryption_ledger)."""

import json
import os
import stat
import threading
from fractions import Fraction

import pytest

from fhectl.errors import InputError, KeyringError, RefusedError
from fhectl.io.decryption_ledger import DEFAULT_BUDGET, DecryptionLedger, budget_from_environment


def _charge(ledger, n, budget, exceed=False):
    with ledger.charge(n, budget, exceed=exceed, source="f.fhe", statistical_security=30) as c:
        return c


def test_counts_refuses_past_the_budget_and_records_forced_ones(tmp_path):
    ledger = DecryptionLedger(tmp_path, "k-abc")
    assert _charge(ledger, 2, 4).remaining == 2
    assert _charge(ledger, 2, 4).remaining == 0
    with pytest.raises(RefusedError, match="budget spent"):
        _charge(ledger, 1, 4)
    assert ledger.state().decryptions == 4  # the refused one is not counted
    forced = _charge(ledger, 1, 4, exceed=True)
    assert forced.over_budget and ledger.state().over_budget == 1 and ledger.state().spent == Fraction(5, 4)
    assert stat.S_IMODE(os.stat(ledger.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(ledger.directory).st_mode) == 0o700
    assert [e["ciphertexts"] for e in json.loads(ledger.path.read_text())["entries"]] == [2, 2, 1]
    assert DecryptionLedger(tmp_path, "k-other").state().decryptions == 0  # per key


def test_changing_the_budget_keeps_the_sum_of_shares(tmp_path):
    """Decryptions flooded for budget Q each spend 1/Q: raising the budget later does not refund."""
    ledger = DecryptionLedger(tmp_path, "k-abc")
    _charge(ledger, 1, 2)  # half spent
    _charge(ledger, 50, 100)  # the other half
    with pytest.raises(RefusedError):
        _charge(ledger, 1, 10**6)


def test_nothing_is_recorded_when_the_decryption_fails(tmp_path):
    ledger = DecryptionLedger(tmp_path, "k-abc")
    with pytest.raises(ValueError):
        with ledger.charge(3, 10, exceed=False, source="f", statistical_security=30):
            raise ValueError("decryption failed")
    assert ledger.state().decryptions == 0


def test_concurrent_decryptions_are_all_counted(tmp_path):
    errors = []

    def work():
        try:
            for _ in range(10):
                _charge(DecryptionLedger(tmp_path, "k-abc"), 1, 1000)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and DecryptionLedger(tmp_path, "k-abc").state().decryptions == 40


def test_a_damaged_ledger_is_an_error_never_a_reset(tmp_path):
    ledger = DecryptionLedger(tmp_path, "k-abc")
    _charge(ledger, 1, 4)
    for damage in (b"{", b"[]", json.dumps({"format": "x"}).encode(),
                   ledger.path.read_bytes().replace(b'"spent":"1/4"', b'"spent":"-1"')):
        ledger.path.write_bytes(damage)
        with pytest.raises(KeyringError, match="damaged"):
            _charge(ledger, 1, 4)
    with pytest.raises(KeyringError):
        DecryptionLedger(tmp_path, "../escape")


def test_budget_from_flag_environment_or_default(monkeypatch):
    monkeypatch.delenv("FHECTL_SHARE_BUDGET", raising=False)
    assert budget_from_environment(None) == DEFAULT_BUDGET
    monkeypatch.setenv("FHECTL_SHARE_BUDGET", "12")
    assert budget_from_environment(None) == 12 and budget_from_environment(5) == 5
    for bad in ("0", "-3", "many"):
        monkeypatch.setenv("FHECTL_SHARE_BUDGET", bad)
        with pytest.raises(InputError, match="FHECTL_SHARE_BUDGET"):
            budget_from_environment(None)
