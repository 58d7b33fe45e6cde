"""One entry point for every front end: read a file in a given or guessed format."""
from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from ..model import Family, Origin
from .command import Builder
from .diagnostics import Diagnostic
from .save import read_save
from .script import read_script

_RESTORE = re.compile(r"^\s*(\*(filter|nat|mangle|raw|security)\s*$|COMMIT\s*$)", re.M)
_COMMAND = re.compile(r"^\s*(sudo\s+)?(\S*/)?ip6?tables\s", re.M)


def guess_format(text: str) -> str:
    """`save` for iptables-restore input, `script` for shell scripts and pasted tutorials."""
    return "save" if _RESTORE.search(text) and not _COMMAND.search(text) else "script"


BOM = "\ufeff"


class Unreadable(ValueError):
    """Input stockade cannot use (exit 2); `diagnostics` say where and why, `diagnostic` is the first."""

    def __init__(self, *diagnostics: Diagnostic):
        super().__init__("\n".join(map(str, diagnostics)))
        self.diagnostics = list(diagnostics)
        self.diagnostic = diagnostics[0]


def _where(raw: bytes, offset: int, file: str) -> Origin:
    """The line and column (in characters) of a byte offset."""
    start = raw.rfind(b"\n", 0, offset) + 1
    return Origin(file, raw.count(b"\n", 0, offset) + 1, len(raw[start:offset].decode("utf-8", "replace")) + 1)


def decode(raw: bytes, file: str) -> str:
    """The text of a file read as bytes; Unreadable at the first NUL or byte that is not UTF-8."""
    if (nul := raw.find(b"\0")) >= 0:
        raise Unreadable(Diagnostic("error", "binary", "cannot read input: binary data (a NUL byte)", _where(raw, nul, file),
                                    "give an iptables-save dump, a shell script or a policy"))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Unreadable(Diagnostic("error", "encoding", f"cannot read input: byte 0x{raw[e.start]:02x} is not UTF-8",
                                    _where(raw, e.start, file),
                                    "convert the file to UTF-8, e.g. `iconv -f latin1 -t utf-8`")) from None


NUL_NAME = "a file name cannot hold a NUL byte"


def read_file(path: str) -> str:
    """The text of an input file (any kind: a FIFO from `<(...)` too); OSError if it cannot be read,
    Unreadable if it is not UTF-8 text."""
    try:
        raw = Path(path).read_bytes()
    except ValueError:  # a NUL in the name
        raise OSError(errno.EINVAL, NUL_NAME) from None
    return decode(raw, path)


def read_regular(path: str | Path, limit: int) -> bytes:
    """A regular file's bytes, at most `limit` of them; OSError for anything else. Opened without
    blocking and checked before reading, so a FIFO, a terminal or /dev/zero cannot hang stockade."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
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


def read(text: str, file: str, fmt: str = "auto", family: Family | None = None) -> Builder:
    """A ruleset from a dump or script. A leading byte order mark is reported (iptables-restore refuses
    line 1 with it; bash reads it into the first word) and the rest read as if it were not there."""
    bom = text.startswith(BOM)
    text = text.removeprefix(BOM)
    if fmt == "auto":
        fmt = guess_format(text)
    b = read_save(text, file, family) if fmt == "save" else read_script(text, file)
    if bom:
        what = "iptables-restore fails at line 1" if fmt == "save" else "bash reads it as part of the first word"
        b.diagnostics.insert(0, Diagnostic("error", "bom", f"the file starts with a byte order mark (U+FEFF): {what}",
                                           Origin(file, 1, 1), "save it as UTF-8 without BOM, e.g. "
                                           "`sed -i '1s/^\\xEF\\xBB\\xBF//' FILE`"))
    return b
