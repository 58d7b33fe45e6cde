"""One entry point for every front end: read a file in a given or guessed format."""
from __future__ import annotations

import re

from ..model import Family
from .command import Builder
from .save import read_save
from .script import Invocation, read_script

_RESTORE = re.compile(r"^\s*(\*(filter|nat|mangle|raw|security)\s*$|COMMIT\s*$)", re.MULTILINE)
_COMMAND = re.compile(r"^\s*(sudo\s+)?(\S*/)?ip6?tables\s", re.MULTILINE)


def guess_format(text: str) -> str:
    """`save` for iptables-restore input, `script` for shell scripts and pasted tutorials."""
    return "save" if _RESTORE.search(text) and not _COMMAND.search(text) else "script"


def read(text: str, file: str, fmt: str = "auto", family: Family | None = None,
         how: Invocation | None = None) -> Builder:
    if fmt == "auto":
        fmt = guess_format(text)
    if fmt == "save":
        return read_save(text, file, family)
    return read_script(text, file, how=how)
