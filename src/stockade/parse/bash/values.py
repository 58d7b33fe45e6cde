"""What the bash reader computes with: values it cannot know, streams, word pieces, and its limits."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ...model import Origin
from .tree import Code

CR = "\ue00d"  # a carriage return, which bash keeps in words and tree-sitter would drop as a blank
MAX_VALUE, MAX_DEPTH, MAX_LOOP, MAX_STEPS = 1_000_000, 100, 10_000, 200_000
MAX_FILE = 16 << 20  # bytes of a file a script reads or sources: more is unknown, never cut short
WORDISH = {"word", "string", "raw_string", "ansi_c_string", "translated_string", "simple_expansion", "expansion",
           "command_substitution", "arithmetic_expansion", "concatenation", "number", "process_substitution",
           "brace_expression", "regex", "extglob_pattern", "test_operator", "variable_name"}
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RUNS_CODE = {"eval", "source", ".", "bash", "sh", "dash"}
TEXT_TOOLS = {"grep", "egrep", "fgrep", "cut", "awk", "tr", "head", "tail", "sort", "uniq", "wc", "basename",
              "dirname", "seq"}
PREFIXES = {"sudo", "doas", "nohup", "exec", "nice", "time", "command", "env", "builtin", "stdbuf", "timeout"}
FIREWALL_TOOLS = {"iptables", "ip6tables", "iptables-save", "ip6tables-save", "iptables-restore",
                  "ip6tables-restore", "iptables-legacy", "ip6tables-legacy", "iptables-nft", "ip6tables-nft",
                  "ipset", "ip", "modprobe", "sysctl", "nft", "tc"}


@dataclass(frozen=True)
class Unknown:
    """A value stockade cannot compute: `raw` is what would produce it, at `offset` of `code`."""

    raw: str
    offset: int
    code: Code
    why: str = "command"  # "command", "file", "arith", "read", "source" (a variable a missing sourced file may set)

    @property
    def line(self) -> int:
        return self.code.line(self.offset)


class Unresolved(Exception):
    """A word needs an Unknown; `var` names the variable that held it, if any."""

    def __init__(self, unknown: Unknown, var: str | None, offset: int):
        super().__init__(unknown.raw)
        self.unknown, self.var, self.offset = unknown, var, offset


class Abort(Exception):
    """A limit or a fatal error: the statement is left with a positioned error."""

    def __init__(self, message: str, offset: int, hint: str | None = None, code: str = "shell-limit"):
        super().__init__(message)
        self.message, self.offset, self.hint, self.code = message, offset, hint, code


class Exit(Exception):
    def __init__(self, status: bool | None):
        self.status = status


class Return(Exit):
    pass


class Loop(Exception):
    def __init__(self, n: int, brk: bool):
        self.n, self.brk = n, brk


@dataclass
class Var:
    value: str | list[str] | dict[str, str] | Unknown
    attrs: set[str] = field(default_factory=set)


@dataclass
class Stream:
    """A command's stdin: known text read line by line, or unknown."""

    text: str | Unknown
    pos: int = 0
    where: Callable[[int], Origin] | None = None  # where each character of the text was written, if known

    def readline(self) -> str | None | Unknown:
        if isinstance(self.text, Unknown):
            return self.text
        if self.pos >= len(self.text):
            return None
        end = self.text.find("\n", self.pos)
        end = len(self.text) if end < 0 else end + 1
        line, self.pos = self.text[self.pos:end], end
        return line


@dataclass
class Output:
    parts: list[str] = field(default_factory=list)
    unknown: Unknown | None = None


@dataclass
class Piece:
    text: str
    offset: int
    quoted: bool
    expanded: bool  # from an expansion (split when unquoted) rather than literal text
    brk: bool = False  # ends the field ("$@" between parameters)


Status = bool | None


