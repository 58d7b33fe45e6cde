"""-m addrtype: the routing type (local, broadcast, unicast, ...) of the packet's addresses."""
from __future__ import annotations

from dataclasses import dataclass

from ..model import BUILTIN_CHAINS, Family
from ..model.diagnostics import ParseError
from ..model.netfilter import ROUTE_TYPES
from ..model.nft import Part, element_list, neg
from .base import Extension, Option, register

NOT_IPV6 = ("BROADCAST", "BLACKHOLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE")  # the kernel refuses these
ROUTED_V6 = frozenset({"LOCAL", "ANYCAST", "UNREACHABLE"})  # what match_lookup_rt6 can report


def v4_type(addr: int, given: str | None, limited: bool) -> str | None:
    """inet_dev_addr_type: 0.0.0.0 and 255.255.255.255 are BROADCAST and 224.0.0.0/4 MULTICAST
    whatever the tables say; otherwise the local table's route type (pkt.src_type/dst_type), UNICAST
    if it has none. Limited to an interface, a route through another device counts as UNICAST, and
    the model does not know which device owns an address: only UNICAST stays certain."""
    if addr in (0, 0xFFFFFFFF):  # ipv4_is_zeronet is 0.0.0.0 alone since Linux 5.3
        return "BROADCAST"
    if addr >> 28 == 0xE:
        return "MULTICAST"
    if given is None or (limited and given != "UNICAST"):
        return None
    return given


def v6_holds(addr: int, types: frozenset[str], given: str | None, limited: bool) -> bool | None:
    """match_type6: the listed types are requirements, not alternatives: MULTICAST, UNICAST and
    UNSPEC each demand that class of address (ipv6_addr_type); then LOCAL, ANYCAST or UNREACHABLE,
    if listed, need the route lookup to report one of them (pkt.*_type; with an interface limit
    the model cannot redo the lookup)."""
    multicast = addr >> 120 == 0xFF
    hi64, w2 = addr >> 64, (addr >> 32) & 0xFFFFFFFF
    unicast = not multicast and addr != 0 and not (hi64 == 0 and w2 == 0xFFFF)
    if ("MULTICAST" in types and not multicast) or ("UNICAST" in types and not unicast) or (
            "UNSPEC" in types and addr != 0):
        return False
    if not types & ROUTED_V6:
        return True
    if given is None or limited:
        return None
    return given in types & ROUTED_V6


def parse_types(word: str) -> frozenset[str]:
    """A comma list; like iptables, each item may be any leading part of a name, in any case
    (`loc` is LOCAL, `u` the first U-name, UNSPEC)."""
    out = set()
    for item in word.split(","):
        name = next((t for t in ROUTE_TYPES if item and t.startswith(item.upper())), None)
        if name is None:
            raise ParseError(f"addrtype: unknown address type `{item}` in `{word}`", code="bad-addrtype",
                             hint="types are " + ", ".join(ROUTE_TYPES))
        out.add(name)
    return frozenset(out)


FIB_TYPES = ("unspec", "unicast", "local", "broadcast", "anycast", "multicast", "blackhole", "unreachable",
             "prohibit")  # nft's names; RTN_THROW and later have none: written as numbers


@dataclass(frozen=True)
class TypeSet:
    """True when an address's route type is one of `types`; `!` negates."""

    types: frozenset[str]
    invert: bool = False

    def save(self, flag: str) -> list[str]:
        return (["!"] if self.invert else []) + [flag, ",".join(t for t in ROUTE_TYPES if t in self.types)]


@dataclass(frozen=True)
class AddrTypeMatch:
    """True when the route type the kernel finds for the source address is in `src` and
    that of the destination address is in `dst` (each only if given, each negated by its
    own `!`). With limit_iface "in"/"out" the lookup is made for the incoming/outgoing
    interface only, so e.g. LOCAL means local to that interface."""

    src: TypeSet | None = None
    dst: TypeSet | None = None
    limit_iface: str | None = None  # "in", "out" or None


@register
class AddrTypeMatchExt(Extension):
    name = "addrtype"
    undecidable = "address types depend on the host's routes and addresses"
    options = (Option("--src-type", invertible=True), Option("--dst-type", invertible=True),
               Option("--limit-iface-in", nargs=0), Option("--limit-iface-out", nargs=0))

    def convert(self, opt, args, ctx):
        return parse_types(args[0]) if args else True

    def finish(self, acc, ctx):
        if "src-type" not in acc and "dst-type" not in acc:
            raise ParseError("addrtype: --src-type or --dst-type is required", code="missing-option")
        if "limit-iface-in" in acc and "limit-iface-out" in acc:
            raise ParseError("addrtype: --limit-iface-in and --limit-iface-out cannot be combined",
                             code="conflicting-options")
        limit = "in" if "limit-iface-in" in acc else "out" if "limit-iface-out" in acc else None
        if ctx.chain in BUILTIN_CHAINS.get(ctx.table, ()):
            wrong = {"in": ("OUTPUT", "POSTROUTING"), "out": ("PREROUTING", "INPUT")}.get(limit, ())
            if ctx.chain in wrong:
                raise ParseError(f"addrtype: --limit-iface-{limit} is not valid in {ctx.chain}: "
                                 f"packets there have no {'incoming' if limit == 'in' else 'outgoing'} interface",
                                 code="wrong-chain")
        src, dst = ((TypeSet(acc[k][1], acc[k][0]) if k in acc else None) for k in ("src-type", "dst-type"))
        if ctx.family is Family.IPV6:
            bad = [t for t in NOT_IPV6 if any(s and t in s.types for s in (src, dst))]
            if bad:
                raise ParseError(f"addrtype: ip6tables cannot match address type {bad[0]}", code="wrong-family",
                                 hint="IPv6 supports UNSPEC, UNICAST, LOCAL, ANYCAST, MULTICAST and UNREACHABLE")
        return AddrTypeMatch(src, dst, limit)

    def holds(self, d: AddrTypeMatch, pkt, env) -> bool | None:
        """addrtype_mt_v1: the source test, then (only if it held) the destination test; a test the
        model cannot decide leaves the match open unless the other one fails."""
        limited = d.limit_iface is not None
        results = []
        for ts, addr, given in ((d.src, pkt.src, pkt.src_type), (d.dst, pkt.dst, pkt.dst_type)):
            if ts is None:
                continue
            if pkt.family is Family.IPV4:
                kind = v4_type(addr, given, limited)
                got = None if kind is None else kind in ts.types
            else:
                got = v6_holds(addr, ts.types, given, limited)
            results.append(None if got is None else got != ts.invert)
        if False in results:
            return False
        return None if None in results else True

    def save(self, d: AddrTypeMatch) -> list[str]:
        out = (d.src.save("--src-type") if d.src else []) + (d.dst.save("--dst-type") if d.dst else [])
        return out + ([f"--limit-iface-{d.limit_iface}"] if d.limit_iface else [])

    def nft(self, d: AddrTypeMatch, ctx) -> list[Part]:
        dev = {"in": " . iif", "out": " . oif", None: ""}[d.limit_iface]
        parts = []
        for key, ts in (("saddr", d.src), ("daddr", d.dst)):
            if ts is not None:
                names = [FIB_TYPES[i] if i < len(FIB_TYPES) else str(i) for i, t in enumerate(ROUTE_TYPES)
                         if t in ts.types]
                parts.append(Part(f"fib {key}{dev} type {neg(ts.invert)}{element_list(names)}"))
        return parts
