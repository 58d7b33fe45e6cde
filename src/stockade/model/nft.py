"""The vocabulary of nftables translations: the error, a rule's match fragment, the context a rule
is translated in, and nft's literals. Each extension's `nft` method speaks it, and render/nft/
arranges the results into a table (nft 1.0.6 syntax: no quoted chain or set names, no backslash
escapes in quoted strings).
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from .address import Address, ntop
from .diagnostics import StockadeError
from .ruleset import Family, IPSet, Origin


class NftError(StockadeError, ValueError):
    """The model holds something nftables cannot express, or not with the same meaning.
    `located`: the message already names the rule."""

    def __init__(self, message: str, located: bool = False):
        super().__init__(message)
        self.located = located


@dataclass(frozen=True)
class Part:
    """One match expression of a rule, in nft syntax.

    `family` is set when nft only ever matches packets of that family ("ipv4"/"ipv6"),
    so a rule of a shared inet chain needs no `meta nfproto` guard. `stateful` parts
    (limit, meters, ct count) change state when evaluated, so the optimiser may not move
    or merge them. `dport` marks a plain destination-port test, (protocol, ranges).
    """

    text: str
    family: str | None = None
    stateful: bool = False
    dport: tuple[str, tuple[tuple[int, int], ...]] | None = None


@dataclass
class Decls:
    """Named things the rules need declared in the table (sets, ct helpers), shared by all rules."""

    taken: set[str] = field(default_factory=set)
    items: dict[str, str] = field(default_factory=dict)  # name -> declaration, e.g. "set x { ... }"
    meters: dict[tuple, tuple] = field(default_factory=dict)  # (family, hashlimit name) -> (nft name, data)

    def new_name(self, base: str) -> str:
        """BASE0, BASE1, ...: the first not taken."""
        n = 0
        while f"{base}{n}" in self.taken:
            n += 1
        self.taken.add(f"{base}{n}")
        return f"{base}{n}"


@dataclass
class Ctx:
    """Where a rule is translated: its family, the nft table family, the iptables table and
    chain, and how names of user chains and ipsets map to nft names."""

    family: Family
    nft_family: str  # "ip", "ip6" or "inet"
    table: str = "filter"
    chain: str = "INPUT"
    chains: dict[str, str] | None = None  # iptables user chain -> nft chain; None: same name
    ipsets: dict[str, tuple[str, IPSet]] | None = None  # ipset name -> (nft set name, the set)
    decls: Decls = field(default_factory=Decls)
    inline_meters: bool = True  # hashlimit as `meter NAME {...}` (as iptables-translate); else a declared set
    helpers: bool = False  # CT --helper allowed: the chain runs after conntrack
    proto: int | None = None  # the rule's -p, when not inverted
    origin: Origin | None = None

    @property
    def ip(self) -> str:
        return "ip" if self.family is Family.IPV4 else "ip6"

    @property
    def nfproto(self) -> str:
        return "ipv4" if self.family is Family.IPV4 else "ipv6"

    def chain_name(self, name: str) -> str:
        return name if self.chains is None else self.chains[name]

    def fail(self, message: str) -> NftError:
        where = f"{self.origin}: " if self.origin else ""
        return NftError(f"{where}{self.family.cmd} -t {self.table} -A {self.chain}: {message}", located=True)


IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def identifier(name: str) -> bool:
    """Can nft read `name` bare, and never as a keyword? Its keywords are lower-case letters, digits
    and `-`, so a name with an upper-case letter, `_` or `.` is never one of them."""
    return bool(IDENT.fullmatch(name)) and any(c.isupper() or c in "_." for c in name)


def quote(text: str, what: str, cut: int | None = None) -> str:
    """A "..." string for nft, which has no escapes: a `"` or control character cannot be written.
    With `cut`, longer text is cut to that many bytes (for comments, which carry no meaning)."""
    bad = [c for c in text if c == '"' or ord(c) < 32 or ord(c) == 127]
    if bad:
        raise NftError(f"{what} {text!r} contains {bad[0]!r}, which an nft string cannot hold")
    if cut is not None and len(text.encode()) > cut:
        text = text.encode()[:cut].decode(errors="ignore")
    return f'"{text}"'


def hexnum(value: int, width: int = 0) -> str:
    return f"0x{value:0{width}x}"


def span(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}-{hi}"


def neg(invert: bool) -> str:
    return "!= " if invert else ""


def element_list(items: list[str]) -> str:
    """One value bare, several as an anonymous set."""
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def address(a: Address) -> str:
    """An address or network as nft writes it (a non-prefix mask needs `& MASK ==`, see addr_match)."""
    plen = a.prefixlen
    text = ntop(a.version, a.addr)
    return text if plen == a.bits else f"{text}/{plen}"


def addr_match(key: str, a: Address, invert: bool) -> str:
    """`KEY ADDR`, `KEY ADDR/LEN` or, for a mask that is not a prefix, `KEY & MASK == ADDR`."""
    if a.prefixlen is None:
        return f"{key} & {ntop(a.version, a.mask)} {'!=' if invert else '=='} {ntop(a.version, a.addr)}"
    return f"{key} {neg(invert)}{address(a)}"


def masked(key: str, value: int, mask: int, invert: bool, width: int, op: str = "and") -> str:
    """`KEY VALUE`, or `KEY and MASK == VALUE` when the mask leaves bits out."""
    if mask == 2**width - 1:
        return f"{key} {neg(invert)}{hexnum(value)}"
    return f"{key} {op} {hexnum(mask)} {'!=' if invert else '=='} {hexnum(value)}"


ALL = 0xFFFFFFFF


def xmark(current: str, value: int, mask: int) -> str:
    """The nft expression for (current & ~mask) ^ value, in its simplest form. nft's precedence
    (`and` before `xor`) writes the kernel's order as `mark and ~MASK xor VALUE`."""
    if mask == ALL:
        return hexnum(value)
    if mask == 0:
        return f"{current} xor {hexnum(value)}"
    if value == 0:
        return f"{current} and {hexnum(~mask & ALL)}"
    if value == mask:
        return f"{current} or {hexnum(value)}"
    return f"{current} and {hexnum(~mask & ALL)} xor {hexnum(value)}"


def netmask(ctx: Ctx, plen: int) -> str:
    """The netmask of a prefix length in the rule's family."""
    return str(ipaddress.ip_network(f"{'0.0.0.0' if ctx.family is Family.IPV4 else '::'}/{plen}").netmask)


IPSET_DIMS = ("ip", "net", "port", "mac")  # ipset dimensions an nft set key can hold


def dims_of(s: IPSet) -> list[str]:
    kind, _, dims = s.type.partition(":")
    parts = dims.split(",")
    if kind not in ("hash", "bitmap") or not all(p in IPSET_DIMS for p in parts) \
            or (kind == "bitmap" and parts != ["ip"]):
        raise NftError(f"ipset {s.name}: type {s.type} has no nftables equivalent in stockade")
    return parts


def set_family(s: IPSet) -> Family:
    words = list(s.options)
    at = words.index("family") if "family" in words else -1
    return Family.IPV6 if 0 <= at < len(words) - 1 and words[at + 1] == "inet6" else Family.IPV4
