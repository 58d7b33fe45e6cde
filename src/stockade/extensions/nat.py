"""-j DNAT, SNAT, MASQUERADE and REDIRECT: address and port translation (xt_nat, nat table only).

Ports may only be given when the rule's `-p` (written BEFORE the option: iptables checks it
while parsing) is tcp, udp, sctp, dccp or, oddly, icmp; `!` on -p is not looked at.
Where iptables accepts something that iptables-save then prints in a form it cannot read
back, stockade refuses it: `--to-destination A:P-P/B` (printed `P/B`) and a `/B` port base
on SNAT or MASQUERADE (printed `/0`).
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from ..model import Family
from ..parse.diagnostics import ParseError
from .base import Context, Extension, Option, register
from ..model.address import c_uint_prefix

PORT_PROTOS = (6, 17, 132, 33, 1)  # tcp udp sctp dccp icmp (the icmp id plays the port)
IP = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Ports:
    lo: int
    hi: int
    base: int | None = None  # DNAT only: shift the original port's offset from `base` into lo-hi

    def __str__(self) -> str:
        text = str(self.lo) if self.lo == self.hi else f"{self.lo}-{self.hi}"
        return text if self.base is None else f"{text}/{self.base}"


@dataclass(frozen=True)
class NatRange:
    """Where a connection is mapped to: an address range (first, last), a port range, or both."""

    addrs: tuple[IP, IP] | None
    ports: Ports | None

    def __str__(self) -> str:
        text = ""
        if self.addrs is not None:
            first, last = (ip_text(a) for a in self.addrs)
            text = first if first == last else f"{first}-{last}"
            if self.ports is not None and self.addrs[0].version == 6:
                text = f"[{text}]"
        return text if self.ports is None else f"{text}:{self.ports}"


@dataclass(frozen=True)
class Dnat:
    """Terminating in the nat table: the connection's destination becomes an address (and port)
    from `to`; conntrack rewrites every packet of it the same way (replies get the original
    source back) and the packet leaves the nat chains accepted."""

    to: NatRange
    random: bool = False
    persistent: bool = False


@dataclass(frozen=True)
class Snat:
    """Terminating in the nat table: the connection's source becomes an address (and port) from
    `to`; conntrack rewrites every packet of it the same way and the packet leaves the nat chains
    accepted."""

    to: NatRange
    random: bool = False
    random_fully: bool = False
    persistent: bool = False


@dataclass(frozen=True)
class Masquerade:
    """Terminating in the nat table: SNAT to the primary address of the outgoing interface (ports
    from `ports`), forgotten when that interface goes down; the packet leaves the nat chains accepted."""

    ports: Ports | None = None
    random: bool = False
    random_fully: bool = False


@dataclass(frozen=True)
class Redirect:
    """Terminating in the nat table: DNAT to this host, the incoming interface's primary address
    (loopback for locally generated packets), ports from `ports`; the packet leaves the nat chains
    accepted."""

    ports: Ports | None = None
    random: bool = False


def ip_text(ip: IP) -> str:
    """As inet_ntop prints it (`::1.2.3.4`, `::ffff:1.2.3.4`), like iptables-save does."""
    if ip.version == 4:
        return str(ip)
    return socket.inet_ntop(socket.AF_INET6, ip.packed)


def parse_ip(text: str, family: Family) -> IP:
    try:
        if "%" in text:  # a zone index: inet_pton refuses it
            raise ValueError
        return ipaddress.IPv4Address(text) if family is Family.IPV4 else ipaddress.IPv6Address(text)
    except ValueError:
        raise ParseError(f"`{text}` is not an IPv{int(family)} address", code="bad-address",
                         hint="NAT takes single addresses or FIRST-LAST ranges, not networks or host names"
                         ) from None


def _port(word: str, target: str, names: bool, lo: int = 0) -> tuple[int, str]:
    """A port number (C syntax) at the start of `word`, or, if `names`, a service name filling it."""
    got = c_uint_prefix(word)
    if got is not None and lo <= got[0] <= 65535:
        return got
    if names and got is None:
        try:
            return socket.getservbyname(word), ""
        except (OSError, UnicodeError):
            pass
    hint = "ports are numbers 0-65535" + (" or service names" if names else " (no service names in a range)")
    raise ParseError(f"{target}: `{word}` is not a valid port", code="bad-port", hint=hint)


def parse_ports(text: str, ctx: Context, target: str, base_ok: bool) -> Ports:
    """`P`, `P-Q` or (DNAT) `P-Q/B`, as iptables reads them; needs a port protocol already given."""
    if ctx.proto not in PORT_PROTOS:
        raise ParseError(f"{target}: ports need `-p tcp`, `-p udp`, `-p sctp` or `-p dccp` before -j {target}",
                         code="target-needs-proto",
                         hint="iptables checks the protocol when it reads this option, so -p must come first")
    lo, rest = _port(text, target, names=True)
    if rest.startswith(":"):
        raise ParseError(f"{target}: port range `{text}` uses `:`", code="bad-port", hint="write FIRST-LAST")
    if rest and not rest.startswith("-"):
        raise ParseError(f"{target}: unexpected `{rest}` after port {lo}", code="bad-port")
    if not rest:
        return Ports(lo, lo)
    hi, rest = _port(rest[1:], target, names=False)
    if hi < lo:
        raise ParseError(f"{target}: port range `{text}` is backwards", code="bad-port", hint=f"write {hi}-{lo}")
    if rest and not rest.startswith("/"):
        raise ParseError(f"{target}: unexpected `{rest}` after port range {lo}-{hi}", code="bad-port")
    if not rest:
        return Ports(lo, hi)
    if not base_ok:
        raise ParseError(f"{target}: `/BASE` port shifting is for DNAT only", code="bad-port",
                         hint="iptables would accept it and lose the base")
    base, tail = _port(rest[1:], target, names=True, lo=1)
    if tail:
        raise ParseError(f"{target}: unexpected `{tail}` after port base {base}", code="bad-port")
    if lo == hi:
        raise ParseError(f"{target}: `/{base}` on the single port {lo} changes nothing", code="bad-port",
                         hint=f"write {lo} (iptables-save would print `{lo}/{base}`, which it cannot read back)")
    return Ports(lo, hi, base)


def parse_to(text: str, ctx: Context, target: str, base_ok: bool) -> NatRange:
    """`[ADDR[-ADDR]][:PORTS]`; IPv6 addresses go in brackets when ports follow."""
    family, ports = ctx.family, None
    if text.startswith("["):
        close = text.find("]")
        if family is Family.IPV4 or close < 0:
            raise ParseError(f"{target}: bad address `{text}`", code="bad-address",
                             hint="brackets are for IPv6 addresses: [2001:db8::1]:80")
        addr, after = text[1:close], text[close + 1:]
        if after and not after.startswith(":"):
            raise ParseError(f"{target}: unexpected `{after}` after `]`", code="bad-address",
                             hint="write [ADDRESS]:PORT (iptables would silently drop it)")
        if after:
            ports = parse_ports(after[1:], ctx, target, base_ok)
    else:
        addr, colon, port_text = text.partition(":")
        if colon and ":" in port_text:  # more than one colon: an IPv6 address without ports
            addr = text
        elif colon:
            ports = parse_ports(port_text, ctx, target, base_ok)
    if not addr and ports is not None:
        return NatRange(None, ports)
    first, dash, last = addr.partition("-")
    lo = parse_ip(first, family)
    return NatRange((lo, parse_ip(last, family) if dash else lo), ports)


FLAG_OPTIONS = {name: Option(f"--{name}", nargs=0) for name in ("random", "random-fully", "persistent")}


class _Nat(Extension):
    kind = "target"
    tables = ("nat",)

    def convert(self, opt, args, ctx):
        if opt.key in FLAG_OPTIONS:
            return True
        if opt.key == "to-ports":
            return parse_ports(args[0], ctx, self.name, base_ok=False)
        return parse_to(args[0], ctx, self.name, base_ok=self.name == "DNAT")

    @staticmethod
    def value(acc, key):
        return key in acc if key in FLAG_OPTIONS else acc.get(key, (False, None))[1]

    def required(self, acc, key, ctx):
        if key not in acc:
            example = "192.0.2.1" if ctx.family is Family.IPV4 else "2001:db8::1"
            raise ParseError(f"{self.name} needs --{key}", code="missing-option", hint=f"add e.g. `--{key} {example}`")
        return acc[key][1]

    @staticmethod
    def flags(d, *names: str) -> list[str]:
        return [f"--{n}" for n in names if getattr(d, n.replace("-", "_"))]


@register
class DnatTarget(_Nat):
    name = "DNAT"
    # `--to` is the getopt abbreviation nearly every tutorial writes.
    options = (Option("--to-destination", ("--to",)), FLAG_OPTIONS["random"], FLAG_OPTIONS["persistent"])
    chains = ("PREROUTING", "OUTPUT")

    def finish(self, acc, ctx):
        return Dnat(self.required(acc, "to-destination", ctx), self.value(acc, "random"), self.value(acc, "persistent"))

    def save(self, d: Dnat) -> list[str]:
        return ["--to-destination", str(d.to)] + self.flags(d, "random", "persistent")


@register
class SnatTarget(_Nat):
    name = "SNAT"
    options = (Option("--to-source", ("--to",)),) + tuple(FLAG_OPTIONS.values())
    chains = ("POSTROUTING", "INPUT")

    def finish(self, acc, ctx):
        return Snat(self.required(acc, "to-source", ctx), self.value(acc, "random"), self.value(acc, "random-fully"),
                    self.value(acc, "persistent"))

    def save(self, d: Snat) -> list[str]:
        return ["--to-source", str(d.to)] + self.flags(d, "random", "random-fully", "persistent")


@register
class MasqueradeTarget(_Nat):
    name = "MASQUERADE"
    options = (Option("--to-ports", ("--to",)), FLAG_OPTIONS["random"], FLAG_OPTIONS["random-fully"])
    chains = ("POSTROUTING",)

    def finish(self, acc, ctx):
        return Masquerade(self.value(acc, "to-ports"), self.value(acc, "random"), self.value(acc, "random-fully"))

    def save(self, d: Masquerade) -> list[str]:
        return (["--to-ports", str(d.ports)] if d.ports else []) + self.flags(d, "random", "random-fully")


@register
class RedirectTarget(_Nat):
    name = "REDIRECT"
    options = (Option("--to-ports", ("--to",)), FLAG_OPTIONS["random"])
    chains = ("PREROUTING", "OUTPUT")

    def finish(self, acc, ctx):
        return Redirect(self.value(acc, "to-ports"), self.value(acc, "random"))

    def save(self, d: Redirect) -> list[str]:
        return (["--to-ports", str(d.ports)] if d.ports else []) + self.flags(d, "random")
