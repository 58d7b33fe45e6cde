"""-m udp: source and destination ports of UDP datagrams (libxt_udp / xt_tcpudp)."""
from __future__ import annotations

from dataclasses import dataclass

from ..model.nft import Part
from .base import Extension, register
from .tcp import PORT_OPTIONS, Ports, nft_ports, port_box, port_option


@dataclass(frozen=True)
class Udp:
    sport: Ports | None = None
    dport: Ports | None = None


@register
class UdpMatch(Extension):
    name = "udp"
    classwise = True
    proto = 17
    options = PORT_OPTIONS

    def parse(self, acc, opt, invert, args, ctx):
        port_option(self, acc, opt, invert, args)

    def finish(self, acc, ctx):
        return Udp(acc.get("sport"), acc.get("dport"))

    def holds(self, d: Udp, pkt, env) -> bool | None:
        """On a non-first fragment ports are read from whatever bytes sit there (see tcp.py): unknown."""
        if pkt.frag_offset:
            return False if (d.sport, d.dport) == (None, None) else None
        return all(p is None or p.holds(port) for p, port in ((d.sport, pkt.sport), (d.dport, pkt.dport)))

    def constraint(self, d: Udp, frame):
        return port_box(d, 17, frame)

    def save(self, d: Udp) -> list[str]:
        return [w for flag, p in (("--sport", d.sport), ("--dport", d.dport)) if p for w in p.save(flag)]

    def nft(self, d: Udp, ctx) -> list[Part]:
        parts = [nft_ports("udp", side, [(p.lo, p.hi)], p.invert)
                 for side, p in (("sport", d.sport), ("dport", d.dport)) if p is not None]
        return parts or [Part("meta l4proto udp")]
