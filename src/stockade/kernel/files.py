"""Writing files root keeps (state, boot configs): whole or not at all, and said so when the disk says no.

A file is written to a temp file in its directory (O_EXCL|O_NOFOLLOW, explicit mode: never the
umask's), fsynced, renamed over the old one, and the directory fsynced, so a crash or a full disk
leaves the old file or the new one, never a truncated one. An OSError (ENOSPC, EIO, EROFS, ...)
becomes a KernelError naming the file, so no command prints a traceback for it.
"""
from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from .host import KernelError


class WriteError(KernelError):
    """A file could not be written; the old one (if any) is intact."""


def write_atomic(path: Path, data: str, mode: int = 0o600) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        try:
            os.fchmod(fd, mode)  # O_CREAT's mode went through the umask
            view = memoryview(data.encode())
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        fsync_dir(path.parent)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise WriteError(f"cannot write {path}: {e.strerror or e}") from None


def fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path: Path) -> None:
    """Unlink (missing is fine) and make the removal durable."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise WriteError(f"cannot remove {path}: {e.strerror or e}") from None
    try:
        fsync_dir(Path(path).parent)
    except OSError:
        pass


def read_regular(path: Path) -> str | None:
    """A regular file's text, not following a symlink; None if absent. WriteError if it is not a plain file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise WriteError(f"{path} is a symlink: stockade does not follow it") from None
        raise WriteError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise WriteError(f"{path} is not a regular file")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError as e:
        raise WriteError(f"cannot read {path}: {e.strerror or e}") from None
    finally:
        os.close(fd)
