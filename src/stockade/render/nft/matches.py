"""The rule header (-i -o -f -p -s -d) and each match as nft expressions, in iptables-translate's forms.

One function per extension, registered in MATCHES. Where iptables-translate writes
something that does not mean what the kernel does for iptables (ct expiration,
CONNMARK's operator order, owner tests on packets without a socket), the translation
here keeps the meaning, or refuses.
"""
from __future__ import annotations

import ipaddress
from itertools import pairwise

from ...extensions import Opaque
from ...extensions.conntrack import ADDRESS_KEYS, PORT_KEYS, STATUS_NAMES
from ...extensions.hashlimit import SCALE as HL_SCALE
from ...extensions.hashlimit import bytes_to_cost, cost_to_bytes
from ...extensions.limit import printed_rate
from ...extensions.state import PRINT_ORDER
from ...extensions.tcp import FLAGS as TCP_FLAGS
from ...model import Family, Rule
from ...model.address import ntop
from ...model.netfilter import PORT_PROTOS as PORTED
from ...model.netfilter import ROUTE_TYPES, proto_name
from .core import (
    IDENT,
    Ctx,
    Part,
    addr_match,
    address,
    element_list,
    hexnum,
    identifier,
    neg,
    quote,
    span,
)
from .sets import set_match

UNITS = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
PORT_PROTOS = {p: proto_name(p) for p in PORTED}
ICMP_TYPES = {0: "echo-reply", 3: "destination-unreachable", 4: "source-quench", 5: "redirect",
              8: "echo-request", 9: "router-advertisement", 10: "router-solicitation", 11: "time-exceeded",
              12: "parameter-problem", 13: "timestamp-request", 14: "timestamp-reply", 15: "info-request",
              16: "info-reply", 17: "address-mask-request", 18: "address-mask-reply"}
ICMPV6_TYPES = {1: "destination-unreachable", 2: "packet-too-big", 3: "time-exceeded", 4: "parameter-problem",
                128: "echo-request", 129: "echo-reply", 130: "mld-listener-query", 131: "mld-listener-report",
                132: "mld-listener-done", 133: "nd-router-solicit", 134: "nd-router-advert",
                135: "nd-neighbor-solicit", 136: "nd-neighbor-advert", 137: "nd-redirect",
                138: "router-renumbering", 141: "ind-neighbor-solicit", 142: "ind-neighbor-advert",
                143: "mld2-listener-report"}
FIB_TYPES = ("unspec", "unicast", "local", "broadcast", "anycast", "multicast", "blackhole", "unreachable",
             "prohibit")  # RTN_THROW and later have no nft name: written as numbers
PKTTYPES = {"unicast": "unicast", "broadcast": "broadcast", "multicast": "multicast", "otherhost": "other"}
NO_ENTRY = frozenset({"INVALID", "UNTRACKED"})  # states of packets without a conntrack entry


# ---- the header ----

def iface(key: str, name: str, invert: bool) -> Part | None:
    """`-i eth+` is a prefix (`"eth*"`); a literal `*` at the end is escaped; `-i +` is any interface,
    and `! -i +` none (iptables-translate's never-matching name)."""
    if name == "+":
        return Part(f'{key} "INVAL/D"') if invert else None
    wildcard = name.endswith("+")
    text = name[:-1] + "*" if wildcard else (name[:-1] + "\\*" if name.endswith("*") else name)
    return Part(f"{key} {neg(invert)}{quote(text, 'interface name')}")


def _implied(proto: int, rule: Rule) -> bool:
    """Does a match say the protocol already? iptables-translate looks for a match of the protocol's
    name (`-p tcp -m tcp`); icmp6 implies ipv6-icmp just as well."""
    return any(m.name == proto_name(proto) or (proto, m.name) == (58, "icmp6") for m in rule.matches)


def header(rule: Rule, ctx: Ctx) -> list[Part]:
    """In iptables-translate's order: interfaces, fragment, protocol, addresses."""
    parts = [p for p in (iface("iifname", rule.iif.name, rule.iif.invert) if rule.iif else None,
                         iface("oifname", rule.oif.name, rule.oif.invert) if rule.oif else None) if p]
    v4 = ctx.family is Family.IPV4
    if rule.fragment is not None:
        parts.append(Part("ip frag-off & 0x1fff " + ("!= 0" if rule.fragment else "0"), "ipv4"))
    if rule.proto and rule.proto.number and not _implied(rule.proto.number, rule):
        key = "ip protocol" if v4 else "meta l4proto"
        parts.append(Part(f"{key} {neg(rule.proto.invert)}{proto_name(rule.proto.number)}",
                          "ipv4" if v4 else None))
    for key, am in (("saddr", rule.src), ("daddr", rule.dst)):
        if am is not None and (am.addr.mask or am.invert):
            parts.append(Part(addr_match(f"{ctx.ip} {key}", am.addr, am.invert), ctx.nfproto))
    return parts


def translate_match(name: str, data, ctx: Ctx) -> list[Part]:
    if isinstance(data, Opaque) or name not in MATCHES:
        raise ctx.fail(f"-m {name} has no nftables translation in stockade")
    return MATCHES[name](data, ctx)


# ---- ports and protocols ----

def _ports(proto: str, side: str, ranges, invert: bool) -> Part:
    text = f"{proto} {side} {neg(invert)}{element_list([span(*r) for r in ranges])}"
    return Part(text, dport=(proto, tuple(ranges)) if side == "dport" and not invert else None)


def _flags(value: int) -> str:
    return ",".join(n.lower() for n, bit in TCP_FLAGS if value & bit) or "0x0"


def tcp(d, ctx: Ctx) -> list[Part]:
    parts = [_ports("tcp", side, [(p.lo, p.hi)], p.invert)
             for side, p in (("sport", d.sport), ("dport", d.dport)) if p is not None]
    if d.option is not None:
        parts.append(Part(f"tcp option {d.option} {'missing' if d.option_invert else 'exists'}"))
    if d.flags is not None:
        parts.append(Part(f"tcp flags {neg(d.flags.invert)}{_flags(d.flags.comp)} / {_flags(d.flags.mask)}"))
    return parts or [Part("meta l4proto tcp")]


def udp(d, ctx: Ctx) -> list[Part]:
    parts = [_ports("udp", side, [(p.lo, p.hi)], p.invert)
             for side, p in (("sport", d.sport), ("dport", d.dport)) if p is not None]
    return parts or [Part("meta l4proto udp")]


def multiport(d, ctx: Ctx) -> list[Part]:
    """A list with overlapping ranges is written as their union: nft refuses overlapping elements.
    --ports (either port in the list) becomes disjoint (sport . dport) pairs: sport in the list, or
    sport outside it and dport in it (iptables-translate's overlapping pairs the kernel may refuse)."""
    proto = PORT_PROTOS[ctx.proto]
    ranges = d.ranges if _disjoint(d.ranges) else _union(d.ranges)
    if d.side != "ports":
        return [_ports(proto, d.side[:-1], ranges, d.invert)]
    ranges = _union(ranges)
    outside, lo = [], 0
    for a, b in ranges + [(65536, 65536)]:
        outside += [(lo, a - 1)] if a > lo else []
        lo = b + 1
    pairs = [f"{span(*r)} . 0-65535" for r in ranges] + [f"{span(*o)} . {span(*r)}" for o in outside for r in ranges]
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


def _icmp(d, ctx: Ctx, key: str, names: dict[int, str], wildcard: bool) -> list[Part]:
    fam = "ipv4" if key == "icmp" else "ipv6"
    if wildcard and d.type == 255:
        if d.invert:
            raise ctx.fail("`! --icmp-type any` matches no packet")
        return [Part("ip protocol icmp", fam)]
    name = names.get(d.type, str(d.type))
    if (d.code_lo, d.code_hi) == (0, 255):
        return [Part(f"{key} type {neg(d.invert)}{name}", fam)]
    if d.invert:  # not (type and code): one lookup of the pair
        return [Part(f"{key} type . {key} code != {{ {name} . {span(d.code_lo, d.code_hi)} }}", fam)]
    return [Part(f"{key} type {name}", fam), Part(f"{key} code {span(d.code_lo, d.code_hi)}", fam)]


def icmp(d, ctx: Ctx) -> list[Part]:
    return _icmp(d, ctx, "icmp", ICMP_TYPES, True)


def icmp6(d, ctx: Ctx) -> list[Part]:
    return _icmp(d, ctx, "icmpv6", ICMPV6_TYPES, False)


# ---- connection tracking ----

def _states(names, invert: bool) -> str:
    return f"ct state {'! ' if invert else ''}{','.join(n.lower() for n in PRINT_ORDER if n in names)}"


def state(d, ctx: Ctx) -> list[Part]:
    return [Part(_states(d.names, d.invert))]


def _passes_without_entry(states) -> bool:
    """Can the state test hold for a packet conntrack has no entry for (INVALID or UNTRACKED)?"""
    return states is not None and any((s in states.names) != states.invert for s in NO_ENTRY)


def conntrack(d, ctx: Ctx) -> list[Part]:
    """xt_conntrack skips every other test for a packet without an entry, where nft's ct
    expressions fail: refused when the state test could let such a packet through. The
    virtual SNAT/DNAT states are `ct status` bits, which need an entry too."""
    others = [k for k in ("proto", "direction", "status", "expire", *ADDRESS_KEYS, *PORT_KEYS)
              if getattr(d, k) is not None]
    if any(getattr(d, k) is not None for k in PORT_KEYS) and (d.proto is None or d.proto_invert):
        raise ctx.fail("conntrack: nft can only compare tuple ports after `--ctproto` names the protocol")
    if others and _passes_without_entry(d.state):
        raise ctx.fail("conntrack: with this --ctstate a packet without a conntrack entry skips the other "
                       "tests in iptables, but fails them in nftables")
    parts = []
    if d.direction:
        parts.append(Part(f"ct direction {d.direction.lower()}"))
    if d.proto is not None:
        parts.append(Part(f"ct original protocol {neg(d.proto_invert)}{d.proto}"))
    if d.state is not None:
        parts += _ctstate(d.state, ctx)
    if d.status is not None:
        if not d.status.names:
            raise ctx.fail("conntrack: --ctstatus NONE tests no status bit")
        names = ",".join(n.lower().replace("_", "-") for n in STATUS_NAMES if n in d.status.names)
        parts.append(Part(f"ct status {'! ' if d.status.invert else ''}{names}"))
    if d.expire is not None:
        parts.append(Part(f"ct expiration {neg(d.expire.invert)}{_expiry(d.expire, ctx)}"))
    ip = "" if ctx.nft_family != "inet" else f"{ctx.ip} "  # inet cannot tell the address family itself
    for key in ADDRESS_KEYS:
        if (a := getattr(d, key)) is not None:
            where = "original" if key.startswith("ctorig") else "reply"
            parts.append(Part(f"ct {where} {ip}{key[-3]}addr {neg(a.invert)}{address(a.net)}"))
    for key in PORT_KEYS:
        if (p := getattr(d, key)) is not None:
            where = "original" if key.startswith("ctorig") else "reply"
            parts.append(Part(f"ct {where} proto-{key[-7:-4]} {neg(p.invert)}{span(p.lo, p.hi)}"))
    return parts


def _ctstate(states, ctx: Ctx) -> list[Part]:
    """Real states are `ct state`, SNAT/DNAT `ct status` bits: two tests nft can only AND."""
    nat = states.names & {"SNAT", "DNAT"}
    real = states.names - nat
    if not nat:
        return [Part(_states(real, states.invert))]
    if not states.invert and real:
        raise ctx.fail("conntrack: --ctstate mixing SNAT/DNAT with other states is an OR nft cannot write")
    if states.invert and not NO_ENTRY <= real:
        raise ctx.fail("conntrack: `! --ctstate SNAT/DNAT` holds for packets without an entry, "
                       "`ct status` does not; add INVALID,UNTRACKED to the list")
    status = Part(f"ct status {'! ' if states.invert else ''}{','.join(n.lower() for n in PRINT_ORDER if n in nat)}")
    return ([Part(_states(real, True))] if real else []) + [status]


def _expiry(e, ctx: Ctx) -> str:
    """--ctexpire counts whole seconds, nft's ct expiration milliseconds (32 bits): N:M is Ns-Ms999ms."""
    hi = min(e.hi * 1000 + 999, 2**32 - 1)
    if e.lo * 1000 > hi:
        raise ctx.fail(f"conntrack: --ctexpire {e.lo} is beyond what ct expiration holds")
    return f"{e.lo}s-{hi // 1000}s" + (f"{hi % 1000}ms" if hi % 1000 else "")


# ---- rates ----

def limit(d, ctx: Ctx) -> list[Part]:
    return [Part(f"limit rate {d.rate}/{UNITS[d.per]} burst {d.burst} packets", stateful=True)]


BYTE_UNITS = (("mbytes", 1 << 20), ("kbytes", 1 << 10))


def _rate_bytes(cost: int) -> str:
    """A byte rate as iptables prints it: the largest unit whose rounding keeps the kernel's cost."""
    n = cost_to_bytes(cost)
    unit = next(((name, size) for name, size in BYTE_UNITS if n >= size and bytes_to_cost(n & ~(size - 1)) == cost),
                ("bytes", 1))
    return f"{n // unit[1]} {unit[0]}"


def _size_bytes(n: int) -> str:
    """A burst size in the largest unit it reaches, rounded down (as iptables-translate does)."""
    unit = next(((name, size) for name, size in BYTE_UNITS if n >= size), ("bytes", 1))
    return f"{n // unit[1]} {unit[0]}"


def hashlimit(d, ctx: Ctx) -> list[Part]:
    """A per-flow token bucket: a dynamic set keyed by the flow, with a limit on each element. Without
    a mode all packets are one flow: keyed by something they share, so that the bucket still
    expires as xt_hashlimit's entry does."""
    if d.rate_match:
        raise ctx.fail("hashlimit: --hashlimit-rate-match has no nftables equivalent")
    keys, types = ([], []) if d.mode else (["meta nfproto"], ["nf_proto"])  # no mode: one flow for all
    for mode in ("dstip", "dstport", "srcip", "srcport"):  # iptables-translate's order
        if mode not in d.mode:
            continue
        if mode.endswith("ip"):
            mask = d.dstmask if mode == "dstip" else d.srcmask
            keys.append(f"{ctx.ip} {mode[0]}addr" + (f" and {_netmask(ctx, mask)}" if mask is not None else ""))
            types.append("ipv4_addr" if ctx.family is Family.IPV4 else "ipv6_addr")
        else:
            if ctx.proto not in PORT_PROTOS:
                raise ctx.fail("hashlimit: port modes need `-p tcp` (or udp, sctp, dccp, udplite) in nftables")
            keys.append(f"{PORT_PROTOS[ctx.proto]} {mode[0]}port")
            types.append("inet_service")
    rate = "limit rate " + ("over " if d.above else "")
    if d.bytes:
        rate += _rate_bytes(d.avg) + "/second" + (f" burst {_size_bytes(cost_to_bytes(d.avg) * d.burst)}"
                                                 if d.burst else "")
    else:
        count, per = printed_rate(d.avg, HL_SCALE)
        rate += f"{count}/{UNITS[per]}" + (f" burst {d.burst} packets" if d.burst != 5 else "")
    timeout = f"{d.expire // 1000}s" if d.expire % 1000 == 0 else f"{d.expire}ms"
    return [Part(_meter(d, ctx, " . ".join(keys), " . ".join(types), timeout, rate), stateful=True)]


def _meter(d, ctx: Ctx, key: str, types: str, timeout: str, rate: str) -> str:
    """iptables-translate's `meter NAME {...}`, or a declared set shared by the rules naming the same
    table. nft attaches the first rule's limit to each flow, where xt_hashlimit lets each rule
    test the table its own way: rules sharing a name must therefore agree on everything."""
    if ctx.inline_meters:
        if not IDENT.fullmatch(d.name):
            raise ctx.fail(f"hashlimit: `{d.name}` cannot be an nft meter name")
        return f"meter {d.name} {{ {key} timeout {timeout} {rate} }}"
    known = ctx.decls.meters.get((ctx.family, d.name))
    if known is None:
        names = [n for n in (d.name, f"{ctx.ip}_{d.name}") if identifier(n) and n not in ctx.decls.taken]
        if not names:
            raise ctx.fail(f"hashlimit: `{d.name}` cannot be an nft set name")
        ctx.decls.taken.add(names[0])
        known = ctx.decls.meters[(ctx.family, d.name)] = (names[0], d, key)
        ctx.decls.items[names[0]] = (f"set {names[0]} {{ type {types}; size {d.max or 65535}; "
                                     f"flags dynamic,timeout; timeout {timeout}; }}")
    elif known[1:] != (d, key):
        raise ctx.fail(f"hashlimit: rules sharing --hashlimit-name {d.name} differ; nftables gives each "
                       "flow the limit of the rule that saw it first")
    return f"update @{known[0]} {{ {key} {rate} }}"


def _netmask(ctx: Ctx, plen: int) -> str:
    return str(ipaddress.ip_network(f"{'0.0.0.0' if ctx.family is Family.IPV4 else '::'}/{plen}").netmask)


def connlimit(d, ctx: Ctx) -> list[Part]:
    """One dynamic set per rule (xt_connlimit keeps its lists per rule too), counted by ct count."""
    key = f"{ctx.ip} {'d' if d.daddr else 's'}addr"
    if d.prefix != (32 if ctx.family is Family.IPV4 else 128):
        key += f" and {_netmask(ctx, d.prefix)}"
    name = ctx.decls.new_name("connlimit")
    kind = "ipv4_addr" if ctx.family is Family.IPV4 else "ipv6_addr"
    ctx.decls.items[name] = f"set {name} {{ type {kind}; flags dynamic; }}"
    text = f"add @{name} {{ {key} ct count {'over ' if d.above else ''}{d.limit} }}"
    return [Part(text, stateful=True)]


# ---- addresses and headers ----

def iprange(d, ctx: Ctx) -> list[Part]:
    parts = []
    for key, r in (("saddr", d.src), ("daddr", d.dst)):
        if r is None:
            continue
        if r.first > r.last:
            raise ctx.fail("iprange: a range whose first address is above its last matches nothing")
        v = int(ctx.family)
        parts.append(Part(f"{ctx.ip} {key} {neg(r.invert)}{ntop(v, r.first)}-{ntop(v, r.last)}", ctx.nfproto))
    return parts


def mac(d, ctx: Ctx) -> list[Part]:
    return [Part(f"ether saddr {neg(d.invert)}{d.address.hex(':')}")]


def _masked(key: str, value: int, mask: int, invert: bool, width: int, op: str = "and") -> str:
    """`KEY VALUE`, or `KEY and MASK == VALUE` when the mask leaves bits out."""
    if mask == 2**width - 1:
        return f"{key} {neg(invert)}{hexnum(value)}"
    return f"{key} {op} {hexnum(mask)} {'!=' if invert else '=='} {hexnum(value)}"


def mark(d, ctx: Ctx) -> list[Part]:
    return [Part(_masked("mark", d.value, d.mask, d.invert, 32))]


def connmark(d, ctx: Ctx) -> list[Part]:
    return [Part(_masked("ct mark", d.value, d.mask, d.invert, 32))]


def length(d, ctx: Ctx) -> list[Part]:
    return [Part(f"meta length {neg(d.invert)}{span(d.lo, d.hi)}")]


OPS = {"eq": "", "ne": "!= ", "lt": "lt ", "gt": "gt "}


def ttl(d, ctx: Ctx) -> list[Part]:
    return [Part(f"ip ttl {OPS[d.op]}{d.value}", "ipv4")]


def hl(d, ctx: Ctx) -> list[Part]:
    return [Part(f"ip6 hoplimit {OPS[d.op]}{d.value}", "ipv6")]


def tos(d, ctx: Ctx) -> list[Part]:
    """The whole TOS byte (IPv4) or traffic class (IPv6, 4 bits into the header) as raw payload."""
    key = "@nh,8,8" if ctx.family is Family.IPV4 else "@nh,4,8"
    return [Part(_masked(key, d.value, d.mask, d.invert, 8, "&"))]


def dscp(d, ctx: Ctx) -> list[Part]:
    return [Part(f"{ctx.ip} dscp {neg(d.invert)}{hexnum(d.value, 2)}", ctx.nfproto)]


# ---- who and where ----

def pkttype(d, ctx: Ctx) -> list[Part]:
    """One difference stays: a locally sent IPv6 unicast packet is `broadcast` to xt_pkttype and
    `multicast` to nft (both look at the address only for IPv4)."""
    return [Part(f"pkttype {neg(d.invert)}{PKTTYPES[d.type]}")]


def addrtype(d, ctx: Ctx) -> list[Part]:
    dev = {"in": " . iif", "out": " . oif", None: ""}[d.limit_iface]
    parts = []
    for key, ts in (("saddr", d.src), ("daddr", d.dst)):
        if ts is not None:
            names = [FIB_TYPES[i] if i < len(FIB_TYPES) else str(i) for i, t in enumerate(ROUTE_TYPES)
                     if t in ts.types]
            parts.append(Part(f"fib {key}{dev} type {neg(ts.invert)}{element_list(names)}"))
    return parts


def owner(d, ctx: Ctx) -> list[Part]:
    """meta skuid/skgid need a socket with a file, and fail without one; xt_owner's negated tests
    then hold, its --socket-exists has no nft counterpart, nor do supplementary groups."""
    if d.socket is not None or d.suppl_groups:
        raise ctx.fail("owner: --socket-exists and --suppl-groups have no nftables equivalent")
    parts = []
    for key, r in (("skuid", d.uid), ("skgid", d.gid)):
        if r is None:
            continue
        if r.invert:
            raise ctx.fail(f"owner: a negated {key[2:]} test holds for packets without a socket in iptables, "
                           f"`{key} !=` does not")
        parts.append(Part(f"{key} {span(r.lo, r.hi)}"))
    return parts


def refuse(reason: str):
    def translate(d, ctx: Ctx) -> list[Part]:
        raise ctx.fail(reason)
    return translate


def no_parts(d, ctx: Ctx) -> list[Part]:
    return []  # -m comment: becomes the rule's comment


MATCHES = {
    "tcp": tcp, "udp": udp, "multiport": multiport, "icmp": icmp, "icmp6": icmp6, "icmpv6": icmp6,
    "ipv6-icmp": icmp6, "state": state, "conntrack": conntrack, "limit": limit, "hashlimit": hashlimit,
    "connlimit": connlimit, "iprange": iprange, "set": set_match, "mac": mac, "mark": mark,
    "connmark": connmark, "length": length, "ttl": ttl, "hl": hl, "tos": tos, "dscp": dscp,
    "pkttype": pkttype, "addrtype": addrtype, "owner": owner, "comment": no_parts,
    "recent": refuse("recent: nftables has no lists of recently seen addresses with hit counts and ages"),
    "string": refuse("string: nftables cannot search packet payload for a pattern"),
}
