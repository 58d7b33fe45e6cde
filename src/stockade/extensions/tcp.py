"""-m tcp: ports, flags and options of TCP segments (libxt_tcp / xt_tcpudp)."""
from __future__ import annotations

from dataclasses import dataclass

from ..model.diagnostics import ParseError
from ..model.netfilter import TCP_FLAGS
from ..model.nft import Part, element_list, neg, span
from ..model.space import DPORT, KIND, PROTO, SPORT
from .base import Extension, Option, register
from .values import format_range, parse_c_uint, parse_port_range

FLAGS = tuple((name, bit) for name, bit in TCP_FLAGS.items() if bit <= 0x20)  # the six iptables names
ALL = 0x3F
SYN_MASK, SYN_COMP = 0x17, 0x02  # --syn: FIN,SYN,RST,ACK SYN


@dataclass(frozen=True)
class Ports:
    """A port range with its `!`; the full range uninverted means "any" and is not kept."""

    lo: int
    hi: int
    invert: bool = False

    def save(self, flag: str) -> list[str]:
        return (["!"] if self.invert else []) + [flag, format_range((self.lo, self.hi))]

    def holds(self, port: int) -> bool:
        return (self.lo <= port <= self.hi) != self.invert


def port_box(d, proto: int, frame) -> dict:
    """The protocol and the --sport/--dport of tcp, udp and friends as a Box."""
    out = {PROTO: ((proto, proto),)}
    for p, dim in ((d.sport, SPORT), (d.dport, DPORT)):
        if p is not None:
            out[dim] = frame.within(dim, ((p.lo, p.hi),), p.invert)
    return out


@dataclass(frozen=True)
class TcpFlags:
    mask: int
    comp: int
    invert: bool = False

    def holds(self, flags: int) -> bool:
        return ((flags & self.mask) == self.comp) != self.invert


@dataclass(frozen=True)
class Tcp:
    sport: Ports | None = None
    dport: Ports | None = None
    option: int | None = None
    option_invert: bool = False
    flags: TcpFlags | None = None


def parse_flags(word: str) -> int:
    value = 0
    for name in word.upper().split(","):
        if name == "ALL":
            value |= ALL
        elif name == "NONE":
            continue
        else:
            bit = dict(FLAGS).get(name)
            if bit is None:
                raise ParseError(f"unknown TCP flag `{name}`", code="bad-tcp-flag",
                                 hint="flags are FIN, SYN, RST, PSH, ACK, URG, ALL and NONE, comma-separated")
            value |= bit
    return value


def format_flags(value: int) -> str:
    return ",".join(name for name, bit in FLAGS if value & bit) or "NONE"


def port_option(ext: Extension, acc: dict, opt: Option, invert: bool, args: list[str]) -> None:
    """--sport/--dport as tcp, udp and friends share them (one of each, `:` forms, names)."""
    key = opt.key
    if key in acc:
        raise ParseError(f"{ext.name}: only one {opt.name} allowed", code="duplicate-option")
    lo, hi = parse_port_range(args[0], ext.name)
    acc[key] = None if (lo, hi) == (0, 65535) and not invert else Ports(lo, hi, invert)


def nft_ports(proto: str, side: str, ranges, invert: bool) -> Part:
    """`PROTO sport|dport RANGES`; a plain dport test is marked for the optimiser."""
    text = f"{proto} {side} {neg(invert)}{element_list([span(*r) for r in ranges])}"
    return Part(text, dport=(proto, tuple(ranges)) if side == "dport" and not invert else None)


def _nft_flags(value: int) -> str:
    return ",".join(n.lower() for n, bit in FLAGS if value & bit) or "0x0"


PORT_OPTIONS = (Option("--sport", ("--source-port",), invertible=True),
                Option("--dport", ("--destination-port",), invertible=True))


@register
class TcpMatch(Extension):
    name = "tcp"
    classwise = True
    proto = 6
    options = PORT_OPTIONS + (
        Option("--tcp-flags", nargs=2, invertible=True),
        Option("--syn", nargs=0, invertible=True),
        Option("--tcp-option", invertible=True),
    )

    def parse(self, acc, opt, invert, args, ctx):
        if opt.key in ("sport", "dport"):
            return port_option(self, acc, opt, invert, args)
        if opt.key in ("tcp-flags", "syn"):
            if "flags" in acc:
                raise ParseError("tcp: only one of --tcp-flags and --syn allowed", code="duplicate-option")
            mask, comp = (SYN_MASK, SYN_COMP) if opt.key == "syn" else (parse_flags(args[0]), parse_flags(args[1]))
            acc["flags"] = TcpFlags(mask, comp, invert)
        else:
            if "option" in acc:
                raise ParseError("tcp: only one --tcp-option allowed", code="duplicate-option")
            acc["option"] = (parse_c_uint(args[0], "TCP option", 1, 255), invert)

    def finish(self, acc, ctx):
        option, option_inv = acc.get("option", (None, False))
        return Tcp(acc.get("sport"), acc.get("dport"), option, option_inv, acc.get("flags"))

    def holds(self, d: Tcp, pkt, env) -> bool | None:
        """A non-first fragment carries no TCP header. iptables-nft runs ports and flags as nft payload
        loads, and the kernel's fast path reads whatever bytes sit where the header would be (payload
        on IPv4, the IPv6 header itself on IPv6): unknown. `-m tcp` alone and --tcp-option stay xt_tcp,
        which never matches a fragment. (Measured on Linux 6.18, tests/kernel/test_differential.py.)"""
        if pkt.frag_offset:
            return False if d.option is not None or (d.sport, d.dport, d.flags) == (None, None, None) else None
        if d.sport is not None and not d.sport.holds(pkt.sport):
            return False
        if d.dport is not None and not d.dport.holds(pkt.dport):
            return False
        if d.option is not None and (d.option in pkt.tcp_options) == d.option_invert:
            return False
        return d.flags is None or d.flags.holds(pkt.tcp_flags)

    def constraint(self, d: Tcp, frame):
        if d.option is not None:
            return None  # which options a segment carries is no dimension
        out = port_box(d, 6, frame)
        if d.flags is not None:
            out[KIND] = frame.kinds_where(lambda k: d.flags.holds(k.flags))
        return out

    def save(self, d: Tcp) -> list[str]:
        out = []
        for flag, ports in (("--sport", d.sport), ("--dport", d.dport)):
            if ports is not None:
                out += ports.save(flag)
        if d.option is not None:
            out += (["!"] if d.option_invert else []) + ["--tcp-option", str(d.option)]
        if d.flags is not None:
            out += (["!"] if d.flags.invert else []) + ["--tcp-flags", format_flags(d.flags.mask),
                                                        format_flags(d.flags.comp)]
        return out

    def nft(self, d: Tcp, ctx) -> list[Part]:
        parts = [nft_ports("tcp", side, [(p.lo, p.hi)], p.invert)
                 for side, p in (("sport", d.sport), ("dport", d.dport)) if p is not None]
        if d.option is not None:
            parts.append(Part(f"tcp option {d.option} {'missing' if d.option_invert else 'exists'}"))
        if d.flags is not None:
            flags = f"{_nft_flags(d.flags.comp)} / {_nft_flags(d.flags.mask)}"
            parts.append(Part(f"tcp flags {neg(d.flags.invert)}{flags}"))
        return parts or [Part("meta l4proto tcp")]
