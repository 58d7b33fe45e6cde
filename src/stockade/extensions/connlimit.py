"""-m connlimit: how many connections the packet's source (or destination) network has."""
from __future__ import annotations

import socket
from dataclasses import dataclass, field

from ..model import Family
from ..model.address import c_uint_prefix
from ..model.diagnostics import ParseError
from ..model.nft import Part, netmask
from .base import Extension, Option, register
from .ct import TEMPLATE_NOTE
from .recent import HZ, jiffies
from .state import ct_state
from .values import parse_c_uint

U32 = 2**32 - 1
GC_MAX = 8  # CONNCOUNT_GC_MAX_NODES: one add stops evicting once it has evicted more than this
# How long the entry a flow's first packet creates lives, in seconds (default sysctls): TCP SYN_SENT;
# a TCP segment picked up mid-stream (capped at the unacknowledged timeout until a reply); UDP,
# UDP-Lite, ICMP, ICMPv6 and GRE unreplied; everything the generic tracker handles (DCCP included,
# its tracker is gone since Linux 6.16). SCTP depends on the first chunk, which is not modelled.
TIMEOUTS = {17: 30, 136: 30, 47: 30}
GENERIC_TIMEOUT = 600


def _lifetime(pkt) -> int | None:
    if pkt.proto == 6:
        return 120 if pkt.tcp_flags & 0x02 else 300
    if (int(pkt.family), pkt.proto) in ((4, 1), (6, 58)):
        return 30
    if pkt.proto == 132:
        return None
    return TIMEOUTS.get(pkt.proto, GENERIC_TIMEOUT)


def _tuple(pkt) -> tuple:
    """A flow's conntrack tuple as far as the packet model has it (None: an ICMP id or GRE key)."""
    if pkt.proto in (6, 17, 132, 136):
        return (pkt.proto, pkt.src, pkt.dst, pkt.sport, pkt.dport)
    if (int(pkt.family), pkt.proto) in ((4, 1), (6, 58)):
        return (pkt.proto, pkt.src, pkt.dst, None, pkt.icmp_type, pkt.icmp_code or 0)
    return (pkt.proto, pkt.src, pkt.dst, None if pkt.proto == 47 else 0, 0)


def _same(a: tuple, b: tuple) -> bool | None:
    if len(a) != len(b) or any(x != y for x, y in zip(a, b) if x is not None and y is not None):
        return False
    return None if None in a + b else True


@dataclass
class _Conn:
    tuple: tuple
    added: int  # jiffies
    lifetime: int | None  # seconds its conntrack entry lives once confirmed
    result: object  # the simulator's Result for the packet that added it (final once that run ended)

    def alive(self, now: int) -> bool | None:
        """Whether nf_conntrack_find_get finds its entry: confirmed (the packet was accepted while
        tracked as NEW) and not yet timed out."""
        verdict = getattr(self.result, "verdict", None)
        if verdict in ("DROP", "REJECT") or verdict == "ACCEPT" and self.result.ctstate != "NEW":
            return False
        if verdict != "ACCEPT" or self.lifetime is None:
            return None
        return now - self.added < self.lifetime * HZ


@dataclass
class _List:
    conns: list = field(default_factory=list)
    last_gc: int | None = None  # jiffies, 32 bits
    known: bool = True


@dataclass(frozen=True)
class ConnlimitMatch:
    """count = the tracked connections (this packet's included) whose source address,
    or destination address with daddr, masked to `prefix` bits equals this packet's;
    true when count > limit (above) or count <= limit (not above: --connlimit-upto)."""

    limit: int
    above: bool
    prefix: int
    daddr: bool = False


def parse_prefix(word: str, family: Family) -> int:
    """A prefix length, or a netmask in address form, as iptables 1.8.9 reads
    --connlimit-mask; a mask that is not a prefix counts as all bits."""
    bits = 32 if family is Family.IPV4 else 128
    got = c_uint_prefix(word)
    if got is not None and not got[1] and got[0] <= bits:
        return got[0]
    af = socket.AF_INET if family is Family.IPV4 else socket.AF_INET6
    try:  # what xtables does with a non-number: a numeric host lookup (`33` is 0.0.0.33)
        packed = socket.getaddrinfo(word, None, af, 0, 0, socket.AI_NUMERICHOST)[0][4][0]
        mask = int.from_bytes(socket.inet_pton(af, packed), "big")
    except (OSError, UnicodeError, ValueError):
        raise ParseError(f"connlimit: --connlimit-mask `{word}` is neither a prefix length 0-{bits} "
                         "nor a netmask", code="bad-mask") from None
    inverse = mask ^ ((1 << bits) - 1)
    return bits if inverse & (inverse + 1) else bits - inverse.bit_length()


@register
class ConnlimitMatchExt(Extension):
    name = "connlimit"
    conntrack = True
    stateful = True
    undecidable = "counts the connections other packets opened"
    options = (Option("--connlimit-upto", invertible=True), Option("--connlimit-above", invertible=True),
               Option("--connlimit-mask"), Option("--connlimit-saddr", nargs=0), Option("--connlimit-daddr", nargs=0))

    def convert(self, opt, args, ctx):
        if opt.key == "connlimit-mask":
            return parse_prefix(args[0], ctx.family)
        return parse_c_uint(args[0], opt.name) if args else True

    def finish(self, acc, ctx):
        for a, b in (("connlimit-upto", "connlimit-above"), ("connlimit-saddr", "connlimit-daddr")):
            if a in acc and b in acc:
                raise ParseError(f"connlimit: --{a} and --{b} cannot be combined", code="conflicting-options")
        key = "connlimit-above" if "connlimit-above" in acc else "connlimit-upto"
        if key not in acc:
            raise ParseError("connlimit: --connlimit-above or --connlimit-upto is required", code="missing-option")
        invert, limit = acc[key]
        prefix = acc["connlimit-mask"][1] if "connlimit-mask" in acc else (32 if ctx.family is Family.IPV4 else 128)
        return ConnlimitMatch(limit, (key == "connlimit-above") != invert, prefix, "connlimit-daddr" in acc)

    def holds(self, d: ConnlimitMatch, pkt, env) -> bool | None:
        """connlimit_mt (xt_connlimit.c) and nf_conncount_count (nf_conncount.c). Each rule keeps its
        own lists, one per masked address: every packet that reaches the rule adds its flow's tuple
        (the entry's original tuple; the packet's own without an entry) and the count is the list's
        length afterwards. Adding first walks the list, unless it was walked in this same jiffy:
        tuples whose conntrack entry is found stay, others are evicted (at most 9 per walk).

        Modelled: the entries of earlier packets this simulator ran through the rule, each alive if
        that packet was accepted as NEW and its first-packet timeout has not run out (TIMEOUTS);
        replies never come. None when the answer would depend on what is not modelled: a packet of
        a flow already in the table (the simulator makes every packet a new flow), a given
        ESTABLISHED/RELATED state, ICMP ids, an earlier packet's verdict left open, an evicted entry
        one jiffy old (the kernel keeps it if another CPU added it), or dead entries beyond what one
        walk evicts (the background collector may or may not have taken them); such a list stays
        unknown."""
        state = ct_state(pkt, env)
        if state in (None, "ESTABLISHED", "RELATED") or TEMPLATE_NOTE in env.notes:
            return None  # a template's zone (part of the key) and zero tuple are not modelled
        flow = _tuple(env.orig if state == "NEW" else pkt)
        bits = 32 if pkt.family is Family.IPV4 else 128
        drop = bits - d.prefix
        key = (pkt.dst if d.daddr else pkt.src) >> drop << drop
        lists = env.memory.setdefault(("connlimit",) + env.key, {})
        lst = lists.setdefault(key, _List())
        now = jiffies(pkt.t)
        if lst.known and lst.last_gc != now & U32:
            lst.known = self._walk(lst, flow, now)
        if not lst.known:
            return None
        lst.conns.append(_Conn(flow, now, _lifetime(env.orig), getattr(env, "result", None)))
        lst.last_gc = now & U32
        return (len(lst.conns) > d.limit) == d.above

    @staticmethod
    def _walk(lst: _List, flow: tuple, now: int) -> bool:
        """__nf_conncount_add's walk; False when its outcome is not known."""
        evicted = 0
        for conn in list(lst.conns):
            alive = conn.alive(now)
            if alive is None or alive and _same(conn.tuple, flow) is not False:
                return False
            if not alive:
                if evicted > GC_MAX or (now - conn.added) & U32 < 2:
                    return False
                lst.conns.remove(conn)
                evicted += 1
        return True

    def save(self, d: ConnlimitMatch) -> list[str]:
        return ["--connlimit-above" if d.above else "--connlimit-upto", str(d.limit),
                "--connlimit-mask", str(d.prefix), "--connlimit-daddr" if d.daddr else "--connlimit-saddr"]

    def nft(self, d: ConnlimitMatch, ctx) -> list[Part]:
        """One dynamic set per rule (xt_connlimit keeps its lists per rule too), counted by ct count."""
        key = f"{ctx.ip} {'d' if d.daddr else 's'}addr"
        if d.prefix != (32 if ctx.family is Family.IPV4 else 128):
            key += f" and {netmask(ctx, d.prefix)}"
        name = ctx.decls.new_name("connlimit")
        kind = "ipv4_addr" if ctx.family is Family.IPV4 else "ipv6_addr"
        ctx.decls.items[name] = f"set {name} {{ type {kind}; flags dynamic; }}"
        text = f"add @{name} {{ {key} ct count {'over ' if d.above else ''}{d.limit} }}"
        return [Part(text, stateful=True)]

    def shares_state(self, d: ConnlimitMatch, family: Family) -> bool:
        """Connections are counted per source address, unless --connlimit-daddr or a shorter mask."""
        bits = 32 if family is Family.IPV4 else 128
        return d.daddr or d.prefix < bits
