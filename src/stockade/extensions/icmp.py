"""-m icmp: ICMP type and code (iptables only; ip6tables has icmp6).

Names are matched as iptables does: any case-insensitive prefix of one name in
the table (`echo-req`), ambiguous prefixes refused; iptables-save prints numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..model import Family
from ..model.diagnostics import ParseError
from ..model.nft import Part, neg, span
from ..model.space import ICMP, PROTO
from .base import Extension, Option, register
from .values import parse_c_uint

ANY = 255  # for IPv4 the kernel treats type 255 as "every ICMP message"
ALL_CODES = (0, 255)

# (name, type, lowest code, highest code), in iptables' order (its ambiguity messages follow it).
ICMP_NAMES = (
    ("any", 255, 0, 255), ("echo-reply", 0, 0, 255), ("pong", 0, 0, 255),
    ("destination-unreachable", 3, 0, 255), ("network-unreachable", 3, 0, 0), ("host-unreachable", 3, 1, 1),
    ("protocol-unreachable", 3, 2, 2), ("port-unreachable", 3, 3, 3), ("fragmentation-needed", 3, 4, 4),
    ("source-route-failed", 3, 5, 5), ("network-unknown", 3, 6, 6), ("host-unknown", 3, 7, 7),
    ("network-prohibited", 3, 9, 9), ("host-prohibited", 3, 10, 10), ("TOS-network-unreachable", 3, 11, 11),
    ("TOS-host-unreachable", 3, 12, 12), ("communication-prohibited", 3, 13, 13),
    ("host-precedence-violation", 3, 14, 14), ("precedence-cutoff", 3, 15, 15),
    ("source-quench", 4, 0, 255),
    ("redirect", 5, 0, 255), ("network-redirect", 5, 0, 0), ("host-redirect", 5, 1, 1),
    ("TOS-network-redirect", 5, 2, 2), ("TOS-host-redirect", 5, 3, 3),
    ("echo-request", 8, 0, 255), ("ping", 8, 0, 255),
    ("router-advertisement", 9, 0, 255), ("router-solicitation", 10, 0, 255),
    ("time-exceeded", 11, 0, 255), ("ttl-exceeded", 11, 0, 255), ("ttl-zero-during-transit", 11, 0, 0),
    ("ttl-zero-during-reassembly", 11, 1, 1),
    ("parameter-problem", 12, 0, 255), ("ip-header-bad", 12, 0, 0), ("required-option-missing", 12, 1, 1),
    ("timestamp-request", 13, 0, 255), ("timestamp-reply", 14, 0, 255),
    ("info-request", 15, 0, 255), ("info-reply", 16, 0, 255),  # since iptables 1.8.10
    ("address-mask-request", 17, 0, 255), ("address-mask-reply", 18, 0, 255),
)


@dataclass(frozen=True)
class IcmpType:
    """ICMP (or ICMPv6) messages of `type` whose code is in code_lo..code_hi; with `invert`, every other
    message of that protocol. For IPv4 only, type 255 matches every ICMP message whatever the codes.
    Non-first fragments never match, `!` or not; a packet too short for the header is dropped."""

    type: int
    code_lo: int = 0
    code_hi: int = 255
    invert: bool = False

    def save(self, flag: str, wildcard: bool) -> list[str]:
        out = (["!"] if self.invert else []) + [flag]
        codes = (self.code_lo, self.code_hi)
        if wildcard and self.type == ANY and codes == ALL_CODES:
            return out + ["any"]
        text = str(self.type)
        if codes != ALL_CODES:
            text += f"/{self.code_lo}" + (f":{self.code_hi}" if self.code_hi != self.code_lo else "")
        return out + [text]


def _range(word: str, what: str) -> tuple[int, int]:
    """`N` or `N:M`, each 0-255."""
    first, sep, last = word.partition(":")
    lo = parse_c_uint(first, what, 0, 255)
    return lo, (parse_c_uint(last, what, 0, 255) if sep else lo)


def parse_icmp_type(word: str, names: tuple, proto: str) -> tuple[int, int, int]:
    """`NAME`, `TYPE` or `TYPE/CODE[:CODE]` into (type, lowest code, highest code)."""
    low = word.lower()
    hits = [n for n in names if n[0].lower().startswith(low)]
    if len(hits) > 1:
        raise ParseError(f"ambiguous {proto} type `{word}`: `{hits[0][0]}` or `{hits[1][0]}`?",
                         code="bad-value", hint="write more of the name, or the type number")
    if hits:
        return hits[0][1:]
    type_part, slash, code_part = word.partition("/")
    if not type_part.lstrip(" +")[:1].isdigit():
        raise ParseError(f"unknown {proto} type `{word}`", code="bad-value",
                         hint="use a type number, TYPE/CODE, or a name such as echo-request")
    lo, hi = _range(type_part, f"{proto} type")
    if lo != hi:
        raise ParseError(f"{proto} type ranges such as `{type_part}` are not supported", code="bad-value",
                         hint="write one rule per type")
    codes = _range(code_part, f"{proto} code") if slash else ALL_CODES
    if codes[0] > codes[1]:
        raise ParseError(f"{proto} code range `{code_part}` is backwards and would never match",
                         code="bad-range", hint=f"write {codes[1]}:{codes[0]}")
    return lo, *codes


class IcmpBase(Extension):
    """What -m icmp and -m icmp6 share: one mandatory, invertible type option."""

    classwise = True

    flag: str
    names: tuple
    label: str
    wildcard: bool  # type 255 means "any" (IPv4 only)
    nft_key: str  # nft's header: icmp or icmpv6
    nft_names: dict[int, str]  # the types nft has a name for

    def convert(self, opt, args, ctx):
        return parse_icmp_type(args[0], self.names, self.label)

    def finish(self, acc, ctx):
        invert, (type_, lo, hi) = acc[self.flag.lstrip("-")]
        return IcmpType(type_, lo, hi, invert)

    def save(self, d: IcmpType) -> list[str]:
        return d.save(self.flag, self.wildcard)

    def holds(self, d: IcmpType, pkt, env) -> bool | None:
        """icmp_match (ip_tables.c) and icmp6_match (ip6_tables.c), run by nft_compat: a non-first
        fragment never matches, `!` or not; on IPv4 type 255 matches any message. A packet spec without
        a code has code 0."""
        if pkt.frag_offset:
            return False
        if pkt.icmp_type is None:
            return None
        code = pkt.icmp_code or 0
        hit = (self.wildcard and d.type == ANY) or (pkt.icmp_type == d.type and d.code_lo <= code <= d.code_hi)
        return hit != d.invert

    def nft(self, d: IcmpType, ctx) -> list[Part]:
        key = self.nft_key
        fam = "ipv4" if key == "icmp" else "ipv6"
        if self.wildcard and d.type == ANY:
            if d.invert:
                raise ctx.fail("`! --icmp-type any` matches no packet")
            return [Part("ip protocol icmp", fam)]
        name = self.nft_names.get(d.type, str(d.type))
        if (d.code_lo, d.code_hi) == ALL_CODES:
            return [Part(f"{key} type {neg(d.invert)}{name}", fam)]
        if d.invert:  # not (type and code): one lookup of the pair
            return [Part(f"{key} type . {key} code != {{ {name} . {span(d.code_lo, d.code_hi)} }}", fam)]
        return [Part(f"{key} type {name}", fam), Part(f"{key} code {span(d.code_lo, d.code_hi)}", fam)]
    def constraint(self, d: IcmpType, frame):
        """ICMP is type*256+code; on IPv4 type 255 is every message whatever the codes (as holds)."""
        inside = ((0, 65535),) if self.wildcard and d.type == ANY else \
            ((d.type * 256 + d.code_lo, d.type * 256 + d.code_hi),)
        return {PROTO: ((self.proto, self.proto),), ICMP: frame.within(ICMP, inside, d.invert)}


@register
class IcmpMatch(IcmpBase):
    name = "icmp"
    proto = 1
    families = frozenset({Family.IPV4})
    options = (Option("--icmp-type", invertible=True, required=True, hint="add e.g. `--icmp-type echo-request`"),)
    flag, names, label, wildcard = "--icmp-type", ICMP_NAMES, "ICMP", True
    nft_key, nft_names = "icmp", {
        0: "echo-reply", 3: "destination-unreachable", 4: "source-quench", 5: "redirect", 8: "echo-request",
        9: "router-advertisement", 10: "router-solicitation", 11: "time-exceeded", 12: "parameter-problem",
        13: "timestamp-request", 14: "timestamp-reply", 15: "info-request", 16: "info-reply",
        17: "address-mask-request", 18: "address-mask-reply"}
