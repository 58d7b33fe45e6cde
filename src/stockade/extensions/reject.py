"""-j REJECT: refuse a packet and tell the sender why (xt_REJECT, IPv4 and IPv6 variants).

The kernel keeps REJECT to the filter table's INPUT, FORWARD and OUTPUT hooks and
allows tcp-reset only on rules that match `-p tcp` (not inverted).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..model import Family
from ..model.diagnostics import ParseError
from ..model.netfilter import ICMP_ERRORS
from .base import Extension, Option, register

# (name iptables-save prints, alias), in the order iptables tries them: a value may be any
# case-insensitive prefix of either, and the first entry it fits wins (`p` is proto-unreachable).
TYPES = {
    Family.IPV4: (("icmp-net-unreachable", "net-unreach"), ("icmp-host-unreachable", "host-unreach"),
                  ("icmp-proto-unreachable", "proto-unreach"), ("icmp-port-unreachable", "port-unreach"),
                  ("icmp-net-prohibited", "net-prohib"), ("icmp-host-prohibited", "host-prohib"),
                  ("tcp-reset", "tcp-rst"), ("icmp-admin-prohibited", "admin-prohib")),
    # ip6tables 1.8.9 has no tcp-rst alias.
    Family.IPV6: (("icmp6-no-route", "no-route"), ("icmp6-adm-prohibited", "adm-prohibited"),
                  ("icmp6-addr-unreachable", "addr-unreach"), ("icmp6-port-unreachable", "port-unreach"),
                  ("tcp-reset", "tcp-reset"), ("icmp6-policy-fail", "policy-fail"),
                  ("icmp6-reject-route", "reject-route")),
}
DEFAULT = {Family.IPV4: "icmp-port-unreachable", Family.IPV6: "icmp6-port-unreachable"}


NFT_TYPES = {
    "icmp-net-unreachable": "icmp type net-unreachable", "icmp-host-unreachable": "icmp type host-unreachable",
    "icmp-proto-unreachable": "icmp type prot-unreachable", "icmp-net-prohibited": "icmp type net-prohibited",
    "icmp-host-prohibited": "icmp type host-prohibited", "icmp-admin-prohibited": "icmp type admin-prohibited",
    "icmp6-no-route": "icmpv6 type no-route", "icmp6-adm-prohibited": "icmpv6 type admin-prohibited",
    "icmp6-addr-unreachable": "icmpv6 type addr-unreachable", "icmp6-policy-fail": "icmpv6 type policy-fail",
    "icmp6-reject-route": "icmpv6 type reject-route", "tcp-reset": "tcp reset",
}  # port-unreachable is nft's default


@dataclass(frozen=True)
class Reject:
    """Terminating: the packet is dropped and the sender gets `with_` back, an ICMP/ICMPv6
    error of that type or, for tcp-reset, a TCP RST."""

    with_: str




def reply(with_: str, pkt) -> str:
    """What goes back to the sender: nf_send_reset(6) answers no RST, non-first fragment or
    broadcast/multicast destination; icmp_send/icmp6_send answer no ICMP error, non-first fragment
    or broadcast/multicast destination, and are rate-limited."""
    v4 = pkt.family is Family.IPV4
    multi = (pkt.dst >> 28 == 0xE or pkt.dst == 0xFFFFFFFF) if v4 else pkt.dst >> 120 == 0xFF
    if pkt.frag_offset or multi:
        return "nothing is sent back (" + ("a non-first fragment)" if pkt.frag_offset else
                                           "broadcast/multicast destination)")
    if with_ == "tcp-reset":
        return "nothing is sent back (the packet is a RST)" if pkt.tcp_flags & 0x04 else \
            f"a TCP RST goes back to {pkt.addr('src')}"
    # ICMP types above 18 are not answered either
    if pkt.proto == (1 if v4 else 58) and (
            (pkt.icmp_type in ICMP_ERRORS or pkt.icmp_type > 18) if v4 else pkt.icmp_type < 128):
        return "nothing is sent back (no ICMP error answers an ICMP error)"
    return f"an ICMP{'' if v4 else 'v6'} {with_} goes back to {pkt.addr('src')} (rate-limited)"


def reject_type(word: str, family: Family) -> str:
    w = word.lower()
    if w:
        for name, alias in TYPES[family]:
            if name.startswith(w) or alias.startswith(w):
                return name
    other = Family.IPV6 if family is Family.IPV4 else Family.IPV4
    if any(w in pair for pair in TYPES[other]):
        hint = f"`{word}` is for {other.cmd} only; {family.cmd} takes {', '.join(n for n, _ in TYPES[family])}"
    else:
        hint = f"{family.cmd} takes {', '.join(n for n, _ in TYPES[family])}"
    raise ParseError(f"REJECT: unknown reject type `{word}`", hint=hint, code="bad-value")


@register
class RejectTarget(Extension):
    name = "REJECT"
    terminal = True
    kind = "target"
    options = (Option("--reject-with"),)
    tables = ("filter",)
    chains = ("INPUT", "FORWARD", "OUTPUT")

    def convert(self, opt, args, ctx):
        return reject_type(args[0], ctx.family)

    def finish(self, acc, ctx):
        with_ = acc["reject-with"][1] if "reject-with" in acc else DEFAULT[ctx.family]
        if with_ == "tcp-reset" and (ctx.proto != 6 or ctx.proto_inverted):
            raise ParseError("REJECT --reject-with tcp-reset needs `-p tcp`: the kernel refuses it otherwise",
                             hint="add `-p tcp` to the rule, or reject with an ICMP type",
                             code="target-needs-proto")
        return Reject(with_)

    def act(self, d: Reject, pkt, env) -> str:
        """reject_tg/reject_tg6: the packet is dropped (NF_DROP) after the reply, if any, is sent."""
        env.notes.append(f"REJECT with {d.with_}: {reply(d.with_, env.pkt)}")
        return "REJECT"

    def save(self, d: Reject) -> list[str]:
        return ["--reject-with", d.with_]

    def nft(self, d: Reject, ctx) -> str:
        return "reject" if d.with_.endswith("port-unreachable") else f"reject with {NFT_TYPES[d.with_]}"
