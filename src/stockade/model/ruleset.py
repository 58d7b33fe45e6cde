"""The netfilter model every front end produces and every back end consumes.

A Ruleset is one address family's tables; a Table holds chains in the order
they were declared (the iptables-save renderer prints the kernel's order instead:
render.save.TABLE_ORDER, built-in chains, then user chains by name).
A Rule is the core header fields (-s -d -i -o -p -f), an ordered list of
extension matches and an optional target, plus where it came from.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from .address import Address


class Family(IntEnum):
    IPV4 = 4
    IPV6 = 6

    @property
    def cmd(self) -> str:
        """The command that manages this family, as diagnostics name it."""
        return "iptables" if self is Family.IPV4 else "ip6tables"


TABLES = ("filter", "nat", "mangle", "raw", "security")

BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}

VERDICTS = ("ACCEPT", "DROP", "RETURN", "QUEUE")


@dataclass(frozen=True, init=False)
class Origin:
    """Where a rule or declaration was read: file, 1-based line and column. A rule a policy compiles
    from a default its file leaves unsaid has no line (0) but names the key it stands for, e.g. `log`."""

    file: str
    line: int
    col: int = 1
    key: str = ""

    def __init__(self, file: str, line: int, col: int = 1, key: str = ""):
        # Fields written straight into the instance: the generated __init__ of a frozen dataclass calls
        # object.__setattr__ per field, twice the time, and a large dump makes one Origin per word.
        d = self.__dict__
        d["file"], d["line"], d["col"], d["key"] = file, line, col, key

    def __str__(self) -> str:
        if not self.line and self.key:
            return f"{self.file}:{self.key} (default)"
        return f"{self.file}:{self.line}:{self.col}"

    @property
    def tag(self) -> str:
        """The origin as a rule comment starts with it: `FILE:LINE`, or `FILE:KEY` for a default, the file's
        name only, cut and stripped of what a comment cannot hold in every back end."""
        return f"{re.sub(r'[^A-Za-z0-9._+-]', '_', Path(self.file).name)[:64]}:{self.line or self.key}"


_TAG = re.compile(r"[A-Za-z0-9._+-]{1,64}:(?:[1-9][0-9]*|[a-z][a-z_.]*)(?= |$)")


def comment_tag(comment: str | None) -> str | None:
    """The Origin.tag a rule comment starts with (the policy compiler writes one on every rule), or None:
    status sums counters by it, logs map rules by it, nft merges rules only of one tag."""
    m = _TAG.match(comment or "")
    return m.group(0) if m else None


@dataclass(frozen=True)
class Counters:
    packets: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class Match:
    """One extension match (`-m NAME ...`); data is the extension's own value.

    `data` is whatever the extension's parser returns; for an extension stockade
    does not know it is the raw option tokens (see extensions.opaque).
    """

    name: str
    data: Any


@dataclass(frozen=True)
class Target:
    """What a rule does: a verdict, a jump/goto to a user chain, or a target extension."""

    name: str
    data: Any = None
    goto: bool = False


@dataclass(frozen=True)
class Iface:
    name: str
    invert: bool = False


@dataclass(frozen=True)
class Proto:
    number: int  # 0 means "all"
    invert: bool = False


@dataclass(frozen=True)
class AddrMatch:
    addr: Address
    invert: bool = False


@dataclass
class Rule:
    src: AddrMatch | None = None
    dst: AddrMatch | None = None
    iif: Iface | None = None
    oif: Iface | None = None
    proto: Proto | None = None
    fragment: bool | None = None  # True: -f, False: ! -f (IPv4 only)
    matches: list[Match] = field(default_factory=list)
    target: Target | None = None
    counters: Counters | None = None
    origin: Origin | None = None

    def same_rule(self, other: Rule) -> bool:
        """Equality of what the rule matches and does, ignoring counters and origin."""
        key = lambda r: (r.src, r.dst, r.iif, r.oif, r.proto, r.fragment, r.matches, r.target)  # noqa: E731
        return key(self) == key(other)


@dataclass
class Chain:
    name: str
    policy: str | None = None  # None for user-defined chains
    counters: Counters | None = None
    rules: list[Rule] = field(default_factory=list)
    origin: Origin | None = None

    @property
    def builtin(self) -> bool:
        return self.policy is not None


@dataclass
class Table:
    name: str
    chains: dict[str, Chain] = field(default_factory=dict)

    @classmethod
    def with_builtins(cls, name: str) -> Table:
        return cls(name, {c: Chain(c, "ACCEPT", Counters()) for c in BUILTIN_CHAINS[name]})


@dataclass
class IPSet:
    """A named ipset: `create NAME TYPE OPTIONS` plus its members (as written)."""

    name: str
    type: str
    options: tuple[str, ...] = ()
    members: list[str] = field(default_factory=list)
    origin: Origin | None = None


@dataclass
class Ruleset:
    family: Family
    tables: dict[str, Table] = field(default_factory=dict)
    sets: dict[str, IPSet] = field(default_factory=dict)

    def table(self, name: str) -> Table:
        """The named table, created with its built-in chains on first use."""
        if name not in self.tables:
            self.tables[name] = Table.with_builtins(name)
        return self.tables[name]
