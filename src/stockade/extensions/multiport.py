"""-m multiport: a list of up to 15 ports and port ranges (xt_multiport revision 1)."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from ..model.diagnostics import ParseError
from ..model.netfilter import proto_name
from ..model.nft import Part, neg, span
from ..model.space import DPORT, SPORT, AnyOf
from .base import Extension, Option, register
from .tcp import nft_ports
from .values import format_range, parse_port

PROTOS = (6, 17, 136, 132, 33)  # tcp, udp, udplite, sctp, dccp
SLOTS = 15  # the kernel's array holds 15 ports; a range takes two


@dataclass(frozen=True)
class Multiport:
    """Packets whose source port (side "sports"), destination port ("dports") or either port ("ports")
    lies in one of `ranges` (inclusive; single ports have lo == hi); with `invert`, in none of them
    (for "ports": neither port in any). Non-first fragments never match, `!` or not; a packet too short
    for the ports is dropped."""

    side: str
    ranges: tuple[tuple[int, int], ...]
    invert: bool = False


def parse_ports(word: str, proto: str) -> tuple[tuple[int, int], ...]:
    ranges = []
    for item in word.split(","):
        first, sep, last = item.partition(":")
        lo = parse_port(first, proto)
        hi = parse_port(last, proto) if sep else lo
        if sep and lo >= hi:
            raise ParseError(f"multiport: invalid port range `{item}`", code="bad-port",
                             hint="a range needs its first port below its last; write a single port alone")
        ranges.append((lo, hi))
    if sum(1 if lo == hi else 2 for lo, hi in ranges) > SLOTS:
        raise ParseError(f"multiport: too many ports in `{word}`", code="bad-value",
                         hint=f"at most {SLOTS} ports, a range counting as two; split the rule")
    return tuple(ranges)


@register
class MultiportMatch(Extension):
    name = "multiport"
    classwise = True
    options = (
        Option("--sports", ("--source-ports",), invertible=True),
        Option("--dports", ("--destination-ports",), invertible=True),
        Option("--ports", invertible=True),
    )

    def parse(self, acc, opt, invert, args, ctx):
        if acc:
            raise ParseError("multiport: only one of --sports, --dports and --ports per match",
                             code="conflicting-options", hint="add a second `-m multiport` for the other side")
        # iptables checks the protocol when it meets the option, so `-p` must come first.
        if ctx.proto is None:
            raise ParseError("multiport needs `-p tcp`, `-p udp`, `-p udplite`, `-p sctp` or `-p dccp` first",
                             code="match-needs-proto", hint="put `-p tcp` (or udp, ...) before -m multiport")
        if ctx.proto not in PROTOS or ctx.proto_inverted:
            raise ParseError("multiport only works with TCP, UDP, UDPLITE, SCTP and DCCP", code="match-needs-proto",
                             hint="use `-p tcp`, `-p udp`, `-p udplite`, `-p sctp` or `-p dccp` without `!`")
        acc["ports"] = Multiport(opt.key, parse_ports(args[0], proto_name(ctx.proto)), invert)

    def finish(self, acc, ctx):
        if not acc:
            raise ParseError("multiport: no ports given", code="missing-option",
                             hint="add --dports, --sports or --ports, e.g. `--dports 80,443`")
        return acc["ports"]

    def holds(self, d: Multiport, pkt, env) -> bool | None:
        """multiport_mt / ports_match_v1 (xt_multiport.c), run by nft_compat (iptables-nft does not
        translate it): a non-first fragment never matches, `!` or not."""
        if pkt.frag_offset:
            return False
        if pkt.sport is None or pkt.dport is None:
            return None
        ports = {"sports": (pkt.sport,), "dports": (pkt.dport,), "ports": (pkt.sport, pkt.dport)}[d.side]
        hit = any(lo <= port <= hi for lo, hi in d.ranges for port in ports)
        return hit != d.invert

    def constraint(self, d: Multiport, frame):
        """No protocol: the rule's -p carries it. `--ports` is either port (negated: neither)."""
        if d.side == "ports":
            if d.invert:
                return {SPORT: frame.within(SPORT, d.ranges, True), DPORT: frame.within(DPORT, d.ranges, True)}
            return AnyOf(({SPORT: frame.within(SPORT, d.ranges)}, {DPORT: frame.within(DPORT, d.ranges)}))
        dim = SPORT if d.side == "sports" else DPORT
        return {dim: frame.within(dim, d.ranges, d.invert)}

    def save(self, d: Multiport) -> list[str]:
        return (["!"] if d.invert else []) + [f"--{d.side}", ",".join(format_range(r) for r in d.ranges)]

    def nft(self, d: Multiport, ctx) -> list[Part]:
        """A list with overlapping ranges is written as their union: nft refuses overlapping elements.
        --ports (either port in the list) becomes disjoint (sport . dport) pairs: sport in the list, or
        sport outside it and dport in it (iptables-translate's overlapping pairs the kernel may refuse)."""
        proto = proto_name(ctx.proto)
        ranges = d.ranges if _disjoint(d.ranges) else _union(d.ranges)
        if d.side != "ports":
            return [nft_ports(proto, d.side[:-1], ranges, d.invert)]
        ranges = _union(ranges)
        outside, lo = [], 0
        for a, b in ranges + [(65536, 65536)]:
            outside += [(lo, a - 1)] if a > lo else []
            lo = b + 1
        pairs = [f"{span(*r)} . 0-65535" for r in ranges]
        pairs += [f"{span(*o)} . {span(*r)}" for o in outside for r in ranges]
        return [Part(f"{proto} sport . {proto} dport {neg(d.invert)}{{ {', '.join(pairs)} }}")]


def _disjoint(ranges) -> bool:
    return all(a[1] < b[0] for a, b in pairwise(sorted(ranges)))


def _union(ranges) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out
