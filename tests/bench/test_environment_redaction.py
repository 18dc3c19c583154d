"""Reports and `fhectl env` record the environment by allow-list: a secret in a variable never appears."""

from fhectl.bench.environment import environment


def test_passphrase_and_unknown_variables_are_never_recorded(monkeypatch):
    monkeypatch.setenv("FHECTL_PASSPHRASE", "hunter2-very-secret")
    monkeypatch.setenv("FHECTL_SOMETHING_NEW", "also-secret")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "2")
    env = environment()
    text = repr(env)
    assert "hunter2-very-secret" not in text and "also-secret" not in text
    assert env["env"].get("NUMBA_NUM_THREADS") == "2"
