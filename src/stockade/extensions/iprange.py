"""-m iprange: source and/or destination address within an inclusive range FROM-TO."""
from __future__ import annotations

from dataclasses import dataclass

from ..model import Family
from ..model.address import ntop, parse_ipv4, parse_ipv6
from ..model.diagnostics import ParseError
from ..model.nft import Part, neg
from ..model.space import DST, SRC
from .base import Extension, Option, register


@dataclass(frozen=True)
class AddrRange:
    """An inclusive address range; a range whose first address is above its last is
    accepted by iptables and the kernel and matches no address (so with `!`, all)."""

    first: int
    last: int
    invert: bool = False


@dataclass(frozen=True)
class IpRange:
    """True when the source address is in `src` (if given) and the destination address
    is in `dst` (if given), each range negated by its own `!`."""

    family: Family
    src: AddrRange | None = None
    dst: AddrRange | None = None


@register
class IpRangeMatch(Extension):
    name = "iprange"
    options = (Option("--src-range", invertible=True), Option("--dst-range", invertible=True))

    def convert(self, opt, args, ctx):
        """`FROM-TO`, or a single address meaning FROM-FROM."""
        word = args[0]
        parse = parse_ipv4 if ctx.family is Family.IPV4 else parse_ipv6
        texts = word.split("-", 1)
        values = [parse(t) for t in texts]
        if None in values:
            bad = texts[values.index(None)]
            raise ParseError(f"iprange: `{bad}` in {opt.name} {word} is not an IPv{int(ctx.family)} address",
                             code="bad-address", hint=f"write {opt.name} FIRST-LAST, e.g. "
                             + ("192.0.2.10-192.0.2.20" if ctx.family is Family.IPV4 else "2001:db8::1-2001:db8::ff"))
        return values[0], values[-1]

    def finish(self, acc, ctx):
        if not acc:
            raise ParseError("iprange: --src-range or --dst-range is required", code="missing-option")
        src, dst = ((AddrRange(*acc[k][1], acc[k][0]) if k in acc else None) for k in ("src-range", "dst-range"))
        return IpRange(ctx.family, src, dst)

    def holds(self, d: IpRange, pkt, env) -> bool:
        """iprange_mt4/iprange_mt6: each given range is tested, numerically, and negated by its `!`."""
        return all(r is None or (r.first <= addr <= r.last) != r.invert
                   for r, addr in ((d.src, pkt.src), (d.dst, pkt.dst)))

    def constraint(self, d: IpRange, frame):
        """A backwards range is empty (so with `!`, every address), as holds reads it."""
        return {dim: frame.within(dim, ((r.first, r.last),), r.invert)
                for r, dim in ((d.src, SRC), (d.dst, DST)) if r is not None}

    def save(self, d: IpRange) -> list[str]:
        out = []
        for flag, r in (("--src-range", d.src), ("--dst-range", d.dst)):
            if r is not None:
                out += (["!"] if r.invert else []) + [
                    flag, f"{ntop(d.family, r.first)}-{ntop(d.family, r.last)}"]
        return out

    def nft(self, d: IpRange, ctx) -> list[Part]:
        parts = []
        for key, r in (("saddr", d.src), ("daddr", d.dst)):
            if r is None:
                continue
            if r.first > r.last:
                raise ctx.fail("iprange: a range whose first address is above its last matches nothing")
            v = int(ctx.family)
            parts.append(Part(f"{ctx.ip} {key} {neg(r.invert)}{ntop(v, r.first)}-{ntop(v, r.last)}", ctx.nfproto))
        return parts
