"""Atomic writes: modes, exclusivity, and the old file surviving a failed write."""

import os
import stat

import pytest

from fhectl.errors import FhectlError, OutputExistsError
from fhectl.io import atomic
from fhectl.io.atomic import atomic_write_bytes, atomic_write_chunks, atomic_writer


def _leftovers(directory):
    return [p for p in os.listdir(directory) if p.endswith(".tmp")]


def test_write_then_replace(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert _leftovers(tmp_path) == []


def test_mode_is_applied_from_creation(tmp_path, monkeypatch):
    seen = []
    real_open = os.open

    def spy(path, flags, mode=0o777, *args, **kwargs):
        fd = real_open(path, flags, mode, *args, **kwargs)
        if str(path).endswith(".tmp"):
            seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return fd

    monkeypatch.setattr(atomic.os, "open", spy)
    target = tmp_path / "secret.fhe"
    atomic_write_bytes(target, b"k" * 10, mode=0o600)
    assert seen == [0o600]  # the temporary file never had wider permissions
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600


def test_exclusive_refuses_existing(tmp_path):
    target = tmp_path / "key.fhe"
    atomic_write_bytes(target, b"original", exclusive=True)
    with pytest.raises(OutputExistsError, match="already exists") as info:
        atomic_write_bytes(target, b"other", exclusive=True)
    assert isinstance(info.value, FileExistsError) and isinstance(info.value, FhectlError)
    assert str(target) in str(info.value)
    assert target.read_bytes() == b"original"
    assert _leftovers(tmp_path) == []


def test_exclusive_race_has_one_winner(tmp_path):
    """Both writers start before the target exists (so both pass the early check); the first to
    publish wins and the other fails at publication, leaving the winner's bytes."""
    target = tmp_path / "race.fhe"
    with pytest.raises(OutputExistsError):
        with atomic_writer(target, 0o600, exclusive=True) as slow:
            slow.write(b"slow writer")
            with atomic_writer(target, 0o600, exclusive=True) as fast:
                fast.write(b"fast writer")
    assert target.read_bytes() == b"fast writer"
    assert _leftovers(tmp_path) == []


def test_exception_midway_keeps_old_file(tmp_path):
    target = tmp_path / "ct.fhe"
    atomic_write_bytes(target, b"old contents")

    def chunks():
        yield b"new "
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write_chunks(target, chunks())
    assert target.read_bytes() == b"old contents"
    assert _leftovers(tmp_path) == []


def test_failed_fsync_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "ct.fhe"
    atomic_write_bytes(target, b"old contents")

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(atomic.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output"):
        atomic_write_bytes(target, b"new contents")
    monkeypatch.undo()
    assert target.read_bytes() == b"old contents"
    assert _leftovers(tmp_path) == []


def test_failed_rename_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "ct.fhe"
    atomic_write_bytes(target, b"old contents")
    monkeypatch.setattr(atomic.os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(OSError, match="No space"):
        atomic_write_bytes(target, b"new contents")
    monkeypatch.undo()
    assert target.read_bytes() == b"old contents"
    assert _leftovers(tmp_path) == []


def test_exclusive_without_hard_links(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(atomic.os, "link", no_links)
    target = tmp_path / "k.fhe"
    atomic_write_bytes(target, b"a", exclusive=True)
    with pytest.raises(OutputExistsError):
        atomic_write_bytes(target, b"b", exclusive=True)
    assert target.read_bytes() == b"a"
    assert _leftovers(tmp_path) == []
