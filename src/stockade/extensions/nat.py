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
from ..model.address import c_uint_prefix
from ..model.diagnostics import ParseError
from ..model.nft import span
from .base import Context, Extension, Option, register

PORT_PROTOS = (6, 17, 132, 33, 1)  # tcp udp sctp dccp icmp (the icmp id plays the port)
NFT_FLAGS = {"random": "random", "random_fully": "fully-random", "persistent": "persistent"}
IP = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class NatPorts:
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
    ports: NatPorts | None

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

    ports: NatPorts | None = None
    random: bool = False
    random_fully: bool = False


@dataclass(frozen=True)
class Redirect:
    """Terminating in the nat table: DNAT to this host, the incoming interface's primary address
    (loopback for locally generated packets), ports from `ports`; the packet leaves the nat chains
    accepted."""

    ports: NatPorts | None = None
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


def parse_ports(text: str, ctx: Context, target: str, base_ok: bool) -> NatPorts:
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
        return NatPorts(lo, lo)
    hi, rest = _port(rest[1:], target, names=False)
    if hi < lo:
        raise ParseError(f"{target}: port range `{text}` is backwards", code="bad-port", hint=f"write {hi}-{lo}")
    if rest and not rest.startswith("/"):
        raise ParseError(f"{target}: unexpected `{rest}` after port range {lo}-{hi}", code="bad-port")
    if not rest:
        return NatPorts(lo, hi)
    if not base_ok:
        raise ParseError(f"{target}: `/BASE` port shifting is for DNAT only", code="bad-port",
                         hint="iptables would accept it and lose the base")
    base, tail = _port(rest[1:], target, names=True, lo=1)
    if tail:
        raise ParseError(f"{target}: unexpected `{tail}` after port base {base}", code="bad-port")
    if lo == hi:
        raise ParseError(f"{target}: `/{base}` on the single port {lo} changes nothing", code="bad-port",
                         hint=f"write {lo} (iptables-save would print `{lo}/{base}`, which it cannot read back)")
    return NatPorts(lo, hi, base)


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

# How nf_nat_core.c maps the first packet of a connection (the conntrack table taken as empty, so
# every candidate tuple is free, and the default zone 0).
M32 = 0xFFFFFFFF
KEYED = (6, 17, 136, 132, 33)  # tcp udp udplite sctp dccp: nf_nat_l4proto_unique_tuple rewrites a port
UNKNOWN = object()  # a value the kernel picks at random, or from what the model lacks


def _rol(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & M32


def jhash2(k: list[int], initval: int) -> int:
    """include/linux/jhash.h: Bob Jenkins' lookup3 hash over 32-bit words."""
    a = b = c = (0xDEADBEEF + (len(k) << 2) + initval) & M32
    rest = list(k)
    while len(rest) > 3:
        a, b, c = (a + rest[0]) & M32, (b + rest[1]) & M32, (c + rest[2]) & M32
        for x, y, z, s in ((0, 2, 1, 4), (1, 0, 2, 6), (2, 1, 0, 8), (0, 2, 1, 16), (1, 0, 2, 19), (2, 1, 0, 4)):
            v = [a, b, c]  # __jhash_mix, one line at a time: x -= y; x ^= rol(y, s); y += z
            v[x] = ((v[x] - v[y]) & M32) ^ _rol(v[y], s)
            v[y] = (v[y] + v[z]) & M32
            a, b, c = v
        rest = rest[3:]
    if not rest:
        return c
    a, b, c = [(v + w) & M32 for v, w in zip((a, b, c), rest + [0] * (3 - len(rest)))]
    for x, y, s in ((2, 1, 14), (0, 2, 11), (1, 0, 25), (2, 1, 16), (0, 2, 4), (1, 0, 14), (2, 1, 24)):
        v = [a, b, c]  # __jhash_final: x ^= y; x -= rol(y, s)
        v[x] = ((v[x] ^ v[y]) - _rol(v[y], s)) & M32
        a, b, c = v
    return c


def _words(addr: int, family: Family) -> list[int]:
    """union nf_inet_addr as the CPU (little-endian) loads it: four u32, IPv4 in the first."""
    raw = addr.to_bytes(4, "big") + bytes(12) if family is Family.IPV4 else addr.to_bytes(16, "big")
    return [int.from_bytes(raw[i:i + 4], "little") for i in range(0, 16, 4)]


def pick_addr(pkt, first: int, last: int, which: str, persistent: bool) -> int:
    """find_best_ips_proto: one address, or one chosen by hashing the tuple's addresses."""
    if first == last:
        return first
    fam, n = pkt.family, (1 if pkt.family is Family.IPV4 else 4)
    src, dst = _words(pkt.src, fam), _words(pkt.dst, fam)
    j = jhash2(src, 0 if persistent else dst[n - 1])
    bits = 32 * n
    chunk = [lambda v, i=i: (v >> (bits - 32 * (i + 1))) & M32 for i in range(n)]
    out, full = [], False
    for i in range(n):
        lo, dist = (0, M32) if full else (chunk[i](first), (chunk[i](last) - chunk[i](first) + 1) & M32)
        val = (lo + ((j * dist) >> 32)) & M32
        out.append(val)
        full = full or val != chunk[i](last)
        if which == "dst":  # the hash goes on over the tuple's destination, rewritten in place
            dst[i] = int.from_bytes(val.to_bytes(4, "big"), "little")
        if not persistent:
            j ^= dst[i]
    return int.from_bytes(b"".join(v.to_bytes(4, "big") for v in out), "big")


def pick_port(pkt, ports: NatPorts | None, which: str, random: bool):
    """get_unique_tuple steps 3 and nf_nat_l4proto_unique_tuple: the port (the ICMP id, which the
    model lacks, for icmp) the manip leaves; a port already in the range (or none asked for) stays."""
    if pkt.proto in (1, 58):
        return None if ports is None and not random else UNKNOWN
    if pkt.proto not in KEYED:
        return None
    cur = pkt.sport if which == "src" else pkt.dport
    if not random and (ports is None or (ports.base is None and ports.lo <= cur <= ports.hi)):
        return cur
    if ports is None:
        return cur if which == "dst" else UNKNOWN
    size = ports.hi - ports.lo + 1
    if ports.base is not None:
        off = (cur - ports.base) & 0xFFFF
    elif random or which == "src":
        return ports.lo if size == 1 else UNKNOWN
    else:
        off = 0
    return ports.lo + off % size


def _addr_in(pkt, value: int) -> str:
    return str(ipaddress.ip_address(value) if pkt.family is Family.IPV4 else ipaddress.IPv6Address(value))


def rewrite(env, which: str, addr: int | str | None, port, what: str) -> str | None:
    """Apply what is known to env.pkt and note the rest (addr: the new address, a description of
    one the model lacks, or None for none; port: the new port, UNKNOWN, or None for no port).
    "UNKNOWN" when the new destination port is unknown: later rules may read it."""
    pkt, key = env.pkt, ("sport" if which == "src" else "dport")
    changes = {}
    if isinstance(addr, int):
        changes[which] = addr
    if isinstance(port, int):
        changes[key] = port
    env.pkt = pkt.with_(**changes)
    parts = [f"{which} {_addr_in(pkt, getattr(pkt, which))} -> " + (
        _addr_in(pkt, addr) if isinstance(addr, int) else (addr or "unchanged"))]
    if port is UNKNOWN:
        parts.append(("ICMP id" if pkt.proto in (1, 58) else "port") + " chosen at random or not modelled")
    elif isinstance(port, int) and port != getattr(pkt, key):
        parts.append(f"port {getattr(pkt, key)} -> {port}")
    env.notes.append(f"{what}: " + ", ".join(parts))
    if which == "dst" and port is UNKNOWN and pkt.proto in KEYED:
        return "UNKNOWN"
    return None


class _Nat(Extension):
    terminal = True
    conntrack = True
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

    @staticmethod
    def nft_flags(d, *names: str) -> str:
        on = [NFT_FLAGS[n] for n in names if getattr(d, n)]
        return (" " + ",".join(on)) if on else ""


@register
class DnatTarget(_Nat):
    name = "DNAT"
    # `--to` is the getopt abbreviation nearly every tutorial writes.
    options = (Option("--to-destination", ("--to",)), FLAG_OPTIONS["random"], FLAG_OPTIONS["persistent"])
    chains = ("PREROUTING", "OUTPUT")

    def finish(self, acc, ctx):
        return Dnat(self.required(acc, "to-destination", ctx), self.value(acc, "random"), self.value(acc, "persistent"))

    def act(self, d: Dnat, pkt, env) -> str:
        """nf_nat_setup_info for the destination: the address is hashed from the range
        (find_best_ips_proto), the port kept if in range, else the first one (or offset by /base)."""
        p = env.pkt
        addr = pick_addr(p, int(d.to.addrs[0]), int(d.to.addrs[1]), "dst", d.persistent) if d.to.addrs else None
        return rewrite(env, "dst", addr, pick_port(p, d.to.ports, "dst", d.random), "DNAT") or "ACCEPT"

    def save(self, d: Dnat) -> list[str]:
        return ["--to-destination", str(d.to)] + self.flags(d, "random", "persistent")

    def nft(self, d: Dnat, ctx) -> str:
        return f"dnat {_nft_to(d.to, ctx)}{self.nft_flags(d, 'random', 'persistent')}"


@register
class SnatTarget(_Nat):
    name = "SNAT"
    options = (Option("--to-source", ("--to",)),) + tuple(FLAG_OPTIONS.values())
    chains = ("POSTROUTING", "INPUT")

    def finish(self, acc, ctx):
        return Snat(self.required(acc, "to-source", ctx), self.value(acc, "random"), self.value(acc, "random-fully"),
                    self.value(acc, "persistent"))

    def act(self, d: Snat, pkt, env) -> str:
        """nf_nat_setup_info for the source: a tuple already inside the range is kept whole; else
        the address is hashed from the range and a port outside the range drawn at random."""
        p, rnd = env.pkt, d.random or d.random_fully
        ports, addrs = d.to.ports, d.to.addrs
        if not rnd:  # nf_in_range(orig_tuple): the ICMP id is unknown, other portless protocols pass
            ports_in = True if ports is None or p.proto not in KEYED + (1, 58) else (
                ports.lo <= p.sport <= ports.hi if p.proto in KEYED else None)
            if addrs is None or int(addrs[0]) <= p.src <= int(addrs[1]):
                if ports_in:
                    env.notes.append("SNAT: the source is already inside the range: unchanged")
                    return "ACCEPT"
                if ports_in is None:
                    rewrite(env, "src", "kept or remapped, as the ICMP id decides", UNKNOWN, "SNAT")
                    return "ACCEPT"
        addr = pick_addr(p, int(addrs[0]), int(addrs[1]), "src", d.persistent) if addrs else None
        rewrite(env, "src", addr, pick_port(p, ports, "src", rnd), "SNAT")
        return "ACCEPT"

    def save(self, d: Snat) -> list[str]:
        return ["--to-source", str(d.to)] + self.flags(d, "random", "random-fully", "persistent")

    def nft(self, d: Snat, ctx) -> str:
        return f"snat {_nft_to(d.to, ctx)}{self.nft_flags(d, 'random', 'random_fully', 'persistent')}"


@register
class MasqueradeTarget(_Nat):
    name = "MASQUERADE"
    options = (Option("--to-ports", ("--to",)), FLAG_OPTIONS["random"], FLAG_OPTIONS["random-fully"])
    chains = ("POSTROUTING",)

    def finish(self, acc, ctx):
        return Masquerade(self.value(acc, "to-ports"), self.value(acc, "random"), self.value(acc, "random-fully"))

    def act(self, d: Masquerade, pkt, env) -> str:
        """nf_nat_masquerade_ipv4/ipv6: SNAT to the outgoing interface's address, which the model
        lacks (and the packet is dropped if it has none); the port is kept or drawn as for SNAT."""
        rnd = d.random or d.random_fully
        where = f"the primary address of {env.pkt.oif}" if env.pkt.oif else "the outgoing interface's address"
        rewrite(env, "src", where, pick_port(env.pkt, d.ports, "src", rnd), "MASQUERADE")
        return "ACCEPT"

    def save(self, d: Masquerade) -> list[str]:
        return (["--to-ports", str(d.ports)] if d.ports else []) + self.flags(d, "random", "random-fully")

    def nft(self, d: Masquerade, ctx) -> str:
        return f"masquerade{_nft_to_ports(d.ports)}{self.nft_flags(d, 'random', 'random_fully')}"


@register
class RedirectTarget(_Nat):
    name = "REDIRECT"
    options = (Option("--to-ports", ("--to",)), FLAG_OPTIONS["random"])
    chains = ("PREROUTING", "OUTPUT")

    def finish(self, acc, ctx):
        return Redirect(self.value(acc, "to-ports"), self.value(acc, "random"))

    def act(self, d: Redirect, pkt, env) -> str:
        """nf_nat_redirect_ipv4/ipv6: DNAT to 127.0.0.1 / ::1 from OUTPUT; from PREROUTING to the
        incoming interface's first address, which the model lacks (dropped if it has none)."""
        p = env.pkt
        if p.hook == "OUTPUT":
            addr = 0x7F000001 if p.family is Family.IPV4 else 1
        else:
            addr = f"the first address of {p.iif}" if p.iif else "an address of the incoming interface"
        return rewrite(env, "dst", addr, pick_port(p, d.ports, "dst", d.random), "REDIRECT") or "ACCEPT"

    def save(self, d: Redirect) -> list[str]:
        return (["--to-ports", str(d.ports)] if d.ports else []) + self.flags(d, "random")

    def nft(self, d: Redirect, ctx) -> str:
        return f"redirect{_nft_to_ports(d.ports)}{self.nft_flags(d, 'random')}"


def _nft_to(r: NatRange, ctx) -> str:
    """`[ip|ip6 ]to ADDR[-ADDR][:PORT[-PORT]]`, IPv6 addresses bracketed before ports (nft 1.0.6)."""
    if r.ports is not None and r.ports.base is not None:
        raise ctx.fail("NAT: a /BASE port offset has no nftables 1.0.6 equivalent")
    text = ""
    if r.addrs is not None:
        first, last = (str(a) for a in r.addrs)
        v6 = r.addrs[0].version == 6 and r.ports is not None
        if v6:
            first, last = f"[{first}]", f"[{last}]"
        text = first if first == last else f"{first}-{last}"
    if r.ports is not None:
        text += f":{span(r.ports.lo, r.ports.hi)}"
    family = f"{ctx.ip} " if ctx.nft_family == "inet" and r.addrs is not None else ""
    return f"{family}to {text}"


def _nft_to_ports(ports: NatPorts | None) -> str:
    return f" to :{span(ports.lo, ports.hi)}" if ports is not None else ""
