"""Writing files, often as root into a directory other users can write to.

Everything goes through a descriptor of the directory opened without following a symlink:
a name planted in it as a symlink or hard link is replaced, never written through; a file
stockade did not write (it does not start with the caller's mark, or another user owns it)
is refused, not clobbered; each file is a temp file (explicit mode, fsync) renamed into
place, then the directory is fsynced, so a crash or a full disk leaves the old file or the
new one, never a torn one.
"""
from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path


class WriteError(Exception):
    """A file could not be written; `path` and `reason` say which and why."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def _open_dir(directory: Path, mode: int) -> int:
    if "\0" in str(directory):
        raise WriteError(directory, "a file name cannot hold a NUL byte")
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(directory, mode)
    except FileExistsError:
        pass
    except OSError as e:
        raise WriteError(directory, e.strerror or str(e)) from None
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        reason = "is a symbolic link or not a directory" if e.errno in (errno.ELOOP, errno.ENOTDIR) else e.strerror
        raise WriteError(directory, reason) from None


def _ours(dfd: int, name: str, mark: bytes) -> bool:
    """Whether replacing `name` clobbers nothing of anyone else's: absent, or a regular file of this
    user that starts with `mark`."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return True
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        return False
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    try:
        return os.read(fd, len(mark)) == mark
    finally:
        os.close(fd)


def write_files(directory: Path, files: dict[str, str], mark: str, mode: int = 0o644,
                dir_mode: int = 0o755) -> list[Path]:
    """Write each `name -> text` into `directory` (created with `dir_mode` if absent), all or none
    replaced. Every text must start with `mark`, which is how a later call knows the file is its own."""
    data = {name: text.encode() for name, text in files.items()}
    assert all(b.startswith(mark.encode()) for b in data.values()), "each file starts with its mark"
    dfd = _open_dir(directory, dir_mode)
    temps: dict[str, str] = {}
    name = ""
    try:
        for name in data:
            if not _ours(dfd, name, mark.encode()):
                raise WriteError(directory / name, "exists and was not written by stockade (or is a link); "
                                 "move it away or write somewhere else")
        for name, content in data.items():
            tmp = f".{name}.{secrets.token_hex(6)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)
            temps[name] = tmp
            try:
                os.fchmod(fd, mode)  # not the umask's
                view = memoryview(content)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
        for name in data:
            os.replace(temps.pop(name), name, src_dir_fd=dfd, dst_dir_fd=dfd)
        os.fsync(dfd)
    except OSError as e:
        raise WriteError(directory / name, e.strerror or str(e)) from None
    finally:
        for tmp in temps.values():
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
        os.close(dfd)
    return [directory / name for name in data]
