"""Atomic, durable file writes.

A reader of the target path sees either the old file or the complete new one, never a
partial write, and after the call returns the new file survives a crash:

1. a temporary file is created in the target's directory with ``O_CREAT | O_EXCL`` and
   the final mode from the first instant (a secret never exists with wider permissions;
   the umask can only narrow it further);
2. the data is written, flushed and ``fsync``-ed;
3. the temporary file is renamed over the target (``os.replace``), or, with
   ``exclusive=True``, hard-linked to the target name (``os.link`` fails if the name
   exists, so of two racing writers exactly one wins) and then unlinked;
4. the directory is ``fsync``-ed so the rename itself is durable.

The temporary file is removed on any exception, including one raised by the caller
inside :func:`atomic_writer`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from fhectl.errors import OutputExistsError

_LINK_UNSUPPORTED = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}


def _exists_error(path: str) -> OutputExistsError:
    return OutputExistsError(f"{path}: already exists; refusing to overwrite it")


def fsync_directory(directory: str) -> None:
    """fsync a directory so renames and creations inside it are durable."""
    fd = os.open(directory or ".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems (and non-Linux systems) refuse fsync on a directory
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _publish_exclusive(tmp: str, path: str) -> None:
    """Give ``tmp`` the name ``path`` only if ``path`` does not exist (atomic test-and-set)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise _exists_error(path) from None
    except OSError as exc:
        if exc.errno not in _LINK_UNSUPPORTED:
            raise
        # No hard links here (some FUSE/network filesystems): claim the name with O_EXCL, then
        # rename over the claim. Still exactly one winner; a reader may briefly see an empty file.
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            raise _exists_error(path) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: int = 0o644, exclusive: bool = False) -> Iterator[BinaryIO]:
    """Yield a binary file whose contents replace ``path`` atomically when the block exits cleanly.

    ``mode`` is applied at creation (then narrowed by the umask). With ``exclusive=True`` an
    existing ``path`` raises :class:`~fhectl.errors.OutputExistsError` (checked early, to avoid
    writing hundreds of MB for nothing, and again atomically at publication). If the block
    raises, the target is untouched and the temporary file is removed.
    """
    path = os.fspath(path)
    directory, base = os.path.split(os.path.abspath(path))
    if exclusive and os.path.lexists(path):
        raise _exists_error(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    while True:
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, mode)
            break
        except FileExistsError:  # a leftover with the same random name: draw again
            continue
    published = False
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            _publish_exclusive(tmp, path)
        else:
            os.replace(tmp, path)
        published = True
        fsync_directory(directory)
    finally:
        if not published:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes | bytearray | memoryview, mode: int = 0o644,
                       exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` atomically and durably (see the module docstring)."""
    with atomic_writer(path, mode, exclusive) as f:
        f.write(data)


def atomic_write_chunks(path: str | os.PathLike, chunks: Iterable[bytes | bytearray | memoryview],
                        mode: int = 0o644, exclusive: bool = False) -> None:
    """Like :func:`atomic_write_bytes`, but streams an iterable of byte chunks (large keys)."""
    with atomic_writer(path, mode, exclusive) as f:
        for chunk in chunks:
            f.write(chunk)


def shred_file(path: str | os.PathLike) -> None:
    """Overwrite a regular file's bytes with zeros, fsync, then unlink it. A symlink is unlinked, not followed.

    Best effort against later reads of the disk blocks: on copy-on-write or journalling file systems and on
    SSDs (wear levelling) the old blocks may survive elsewhere; full-disk encryption covers those. What it
    does guarantee is that no name (hard link or open handle) still reads the secret.
    """
    path = os.fspath(path)
    fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        zeros = bytes(min(size, 1 << 20))
        done = 0
        while done < size:
            done += os.write(fd, zeros[: size - done])
        os.fsync(fd)
    finally:
        os.close(fd)
    os.unlink(path)


def shred_tree(root: str | os.PathLike) -> None:
    """:func:`shred_file` every regular file under ``root``, then remove the directories (links are not followed)."""
    root = os.fspath(root)
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) or not os.path.isfile(path):
                os.unlink(path)
            else:
                shred_file(path)
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.rmdir(path)
    os.rmdir(root)
