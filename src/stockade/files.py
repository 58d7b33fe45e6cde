"""Reading and writing files as root, often in directories other users can write to.

Writes are whole or not at all: each file is a temp file created beside it (O_EXCL|O_NOFOLLOW,
an explicit mode, never the umask's), fsynced, renamed over the old one, and the directory is
fsynced, so a crash or a full disk leaves the old file or the new one, never a torn one. Reads of
files a user names take regular files only, without blocking and up to a size cap, so a FIFO,
/dev/zero or a symlink planted for root cannot hang stockade or redirect it. Failures are
WriteError (a StockadeError naming the file), never a traceback.
"""
from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from .model.diagnostics import StockadeError

NUL_NAME = "a file name cannot hold a NUL byte"


class WriteError(StockadeError):
    """A file could not be written (or a file root keeps could not be read); the old one is intact."""

    code = "cannot-write"

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def read_regular(path: str | Path, limit: int, follow: bool = True) -> bytes:
    """A regular file's bytes, at most `limit` of them; OSError for anything else (ELOOP for a
    symlink when not `follow`). Opened without blocking and checked before reading."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except ValueError:
        raise OSError(errno.EINVAL, NUL_NAME) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit >> 20} MiB")
    return data


def _write_temp(dfd: int, name: str, content: bytes, mode: int) -> str:
    """`content` in a new temp file beside `name` in the directory `dfd`, synced; its name."""
    tmp = f".{name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode went through the umask
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp, dir_fd=dfd)
        raise
    os.close(fd)
    return tmp


def _open_dir(directory: Path) -> int:
    if "\0" in str(directory):
        raise WriteError(directory, NUL_NAME)
    try:
        return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        reason = "is a symbolic link or not a directory" if e.errno in (errno.ELOOP, errno.ENOTDIR) else e.strerror
        raise WriteError(directory, reason or str(e)) from None


def write_atomic(path: Path, data: str, mode: int = 0o600) -> None:
    """Replace `path` with `data` whole (its directory must exist and is not followed if a link)."""
    path = Path(path)
    dfd = _open_dir(path.parent)
    try:
        tmp = _write_temp(dfd, path.name, data.encode(), mode)
        try:
            os.rename(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except OSError:
            os.unlink(tmp, dir_fd=dfd)
            raise
        os.fsync(dfd)
    except OSError as e:
        raise WriteError(path, f"cannot write: {e.strerror or e}") from None
    finally:
        os.close(dfd)


def remove(path: Path) -> None:
    """Unlink (missing is fine) and make the removal durable."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise WriteError(path, f"cannot remove: {e.strerror or e}") from None
    try:
        dfd = _open_dir(Path(path).parent)
    except WriteError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


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
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(directory, dir_mode)
    except FileExistsError:
        pass
    except (OSError, ValueError) as e:
        raise WriteError(directory, getattr(e, "strerror", None) or NUL_NAME) from None
    dfd = _open_dir(directory)
    temps: dict[str, str] = {}
    name = ""
    try:
        for name in data:
            if not _ours(dfd, name, mark.encode()):
                raise WriteError(directory / name, "exists and was not written by stockade (or is a link); "
                                 "move it away or write somewhere else")
        for name, content in data.items():
            temps[name] = _write_temp(dfd, name, content, mode)
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
