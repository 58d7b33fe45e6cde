"""One entry point for every front end: read a file in a given or guessed format."""
from __future__ import annotations

import re

from ..model import Family, Origin
from ..model.diagnostics import Diagnostic, Unreadable
from .command import Builder
from .save import read_save
from .script import Invocation, read_script

_RESTORE = re.compile(r"^\s*(\*(filter|nat|mangle|raw|security)\s*$|COMMIT\s*$)", re.MULTILINE)
_COMMAND = re.compile(r"^\s*(sudo\s+)?(\S*/)?ip6?tables\s", re.MULTILINE)


def guess_format(text: str) -> str:
    """`save` for iptables-restore input, `script` for shell scripts and pasted tutorials."""
    return "save" if _RESTORE.search(text) and not _COMMAND.search(text) else "script"


BOM = "\ufeff"


def _where(raw: bytes, offset: int, file: str) -> Origin:
    """The line and column (in characters) of a byte offset."""
    start = raw.rfind(b"\n", 0, offset) + 1
    return Origin(file, raw.count(b"\n", 0, offset) + 1, len(raw[start:offset].decode("utf-8", "replace")) + 1)


def decode(raw: bytes, file: str) -> str:
    """The text of a file read as bytes; Unreadable at the first NUL or byte that is not UTF-8."""
    if (nul := raw.find(b"\0")) >= 0:
        raise Unreadable(Diagnostic("error", "binary", "cannot read input: binary data (a NUL byte)",
                                    _where(raw, nul, file), "give an iptables-save dump, a shell script or a policy"))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Unreadable(Diagnostic("error", "encoding", f"cannot read input: byte 0x{raw[e.start]:02x} is not UTF-8",
                                    _where(raw, e.start, file),
                                    "convert the file to UTF-8, e.g. `iconv -f latin1 -t utf-8`")) from None


def read(text: str, file: str, fmt: str = "auto", family: Family | None = None,
         how: Invocation | None = None, builder: Builder | None = None) -> Builder:
    """A ruleset from a dump or script (`how`: a script's arguments and environment), into `builder` if
    given (e.g. one that knows which ipsets exist). A leading byte
    order mark is reported (iptables-restore refuses line 1 with it; bash reads it into the first word)
    and the rest read as if it were not there."""
    bom = text.startswith(BOM)
    text = text.removeprefix(BOM)
    if fmt == "auto":
        fmt = guess_format(text)
    b = read_save(text, file, family, builder) if fmt == "save" else read_script(text, file, builder, how)
    if bom:
        what = "iptables-restore fails at line 1" if fmt == "save" else "bash reads it as part of the first word"
        b.diagnostics.insert(0, Diagnostic("error", "bom", f"the file starts with a byte order mark (U+FEFF): {what}",
                                           Origin(file, 1, 1), "save it as UTF-8 without BOM, e.g. "
                                           "`sed -i '1s/^\\xEF\\xBB\\xBF//' FILE`"))
    return b
