"""One stockade change at a time per namespace: an exclusive flock on <state dir>/lock.

flock (not a POSIX record lock) because it belongs to the open file, so `apply` can hand the
held lock to its detached worker: the lock stays held until the worker has finished the
transaction, even if `apply` is killed, and the kernel drops it when the last holder dies,
so a crash never leaves it stuck.
"""
from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path

from .host import KernelError


def acquire(path: Path, timeout: float = 30.0) -> int:
    """An open fd holding the lock; KernelError after `timeout` seconds."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        raise KernelError(f"cannot open the lock {path}: {e.strerror or e}; nothing was changed") from None
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise KernelError(f"another stockade command holds {path}") from None
            time.sleep(0.02)


@contextmanager
def locked(path: Path, timeout: float = 30.0):
    fd = acquire(path, timeout)
    try:
        yield fd
    finally:
        os.close(fd)


def held(path: Path) -> bool:
    """Is the lock held by someone right now? (for tests and status)"""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
