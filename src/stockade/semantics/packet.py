"""A packet as netfilter sees it at a hook, and its JSON / short human spec.

Spec (JSON): {"family": 4, "proto": "tcp", "src": "203.0.113.5", "dst": "198.51.100.1",
"sport": 40000, "dport": 22, "tcp_flags": ["SYN"], "iif": "eth0", "hook": "INPUT"}
plus optional "state", "t", "icmp_type", "icmp_code", "length", "ttl", "tos",
"frag_offset", "more_fragments", "mark", "oif", "tcp_options", "uid", "gid".

Short form: `tcp 203.0.113.5:40000 > 198.51.100.1:22 SYN iif eth0 [state NEW] [t 1.5] [hook INPUT]`,
`icmp 203.0.113.5 > 198.51.100.1 type 8 [code 0]`, `udp [2001:db8::5]:53 > [2001:db8::1]:1024`.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace

from ..extensions.values import parse_proto
from ..model import Family

TCP_FLAGS = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20, "ECE": 0x40,
             "CWR": 0x80}
HOOKS = ("INPUT", "FORWARD", "OUTPUT")
PORT_PROTOS = (6, 17, 132, 33, 136)  # tcp, udp, sctp, dccp, udplite
STATES = ("NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED")


class SpecError(ValueError):
    """A packet spec that does not describe a packet; the message says which field."""


@dataclass(frozen=True)
class Packet:
    family: Family
    proto: int
    src: int
    dst: int
    sport: int | None = None
    dport: int | None = None
    tcp_flags: int = 0
    tcp_options: frozenset[int] = frozenset()
    icmp_type: int | None = None
    icmp_code: int | None = None
    iif: str | None = None
    oif: str | None = None
    hook: str = "INPUT"
    length: int = 60
    ttl: int = 64
    tos: int = 0
    frag_offset: int = 0  # in 8-byte units, as in the IP header
    more_fragments: bool = False
    mark: int = 0
    uid: int | None = None
    gid: int | None = None
    state: str | None = None  # given conntrack state; None: derive it as conntrack would
    t: float = 0.0
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def fragment(self) -> bool:
        return self.frag_offset > 0 or self.more_fragments

    def with_(self, **kw) -> Packet:
        return replace(self, **kw)

    def addr(self, which: str) -> str:
        cls = ipaddress.IPv4Address if self.family is Family.IPV4 else ipaddress.IPv6Address
        return str(cls(getattr(self, which)))


def _ip(text: str) -> tuple[Family, int]:
    try:
        a = ipaddress.ip_address(text)
    except ValueError:
        raise SpecError(f"`{text}` is not an IP address") from None
    return Family(a.version), int(a)


def from_json(spec: dict) -> Packet:
    """Build a Packet from the JSON spec; unknown keys and bad values raise SpecError."""
    known = {"family", "proto", "src", "dst", "sport", "dport", "tcp_flags", "tcp_options", "icmp_type",
             "icmp_code", "iif", "oif", "hook", "length", "ttl", "tos", "frag_offset", "more_fragments", "mark",
             "uid", "gid", "state", "t", "hl"}
    unknown = set(spec) - known
    if unknown:
        raise SpecError(f"unknown packet field(s): {', '.join(sorted(unknown))}")
    for key in ("src", "dst", "proto"):
        if key not in spec:
            raise SpecError(f"packet spec needs `{key}`")
    fam_s, src = _ip(str(spec["src"]))
    fam_d, dst = _ip(str(spec["dst"]))
    if fam_s is not fam_d:
        raise SpecError("src and dst are of different address families")
    if "family" in spec and int(spec["family"]) != int(fam_s):
        raise SpecError(f"family {spec['family']} does not match the addresses")
    try:
        proto = parse_proto(str(spec["proto"]))
    except Exception:
        raise SpecError(f"unknown protocol `{spec['proto']}`") from None
    flags = 0
    for name in spec.get("tcp_flags", []):
        if str(name).upper() not in TCP_FLAGS:
            raise SpecError(f"unknown TCP flag `{name}`")
        flags |= TCP_FLAGS[str(name).upper()]
    hook = str(spec.get("hook", "INPUT")).upper()
    if hook not in HOOKS:
        raise SpecError(f"hook must be one of {', '.join(HOOKS)}")
    state = spec.get("state")
    if state is not None and str(state).upper() not in STATES:
        raise SpecError(f"state must be one of {', '.join(STATES)}")
    if proto in PORT_PROTOS and "dport" not in spec:
        raise SpecError("a packet with ports needs `dport`")
    ints = {}
    for key, lo, hi in (("sport", 0, 65535), ("dport", 0, 65535), ("icmp_type", 0, 255), ("icmp_code", 0, 255),
                        ("length", 20, 65535), ("ttl", 0, 255), ("hl", 0, 255), ("tos", 0, 255),
                        ("frag_offset", 0, 8191), ("mark", 0, 2**32 - 1), ("uid", 0, 2**32 - 1),
                        ("gid", 0, 2**32 - 1)):
        if key in spec:
            v = spec[key]
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise SpecError(f"`{key}` must be an integer {lo}-{hi}")
            ints[key] = v
    if "hl" in ints:
        ints["ttl"] = ints.pop("hl")
    if proto in PORT_PROTOS:
        ints.setdefault("sport", 40000)
    if proto in (1, 58) and "icmp_type" not in ints:
        raise SpecError("an icmp packet needs `icmp_type`")
    return Packet(
        family=fam_s, proto=proto, src=src, dst=dst, tcp_flags=flags,
        tcp_options=frozenset(int(o) for o in spec.get("tcp_options", [])),
        iif=spec.get("iif"), oif=spec.get("oif"), hook=hook,
        more_fragments=bool(spec.get("more_fragments", False)),
        state=None if state is None else str(state).upper(), t=float(spec.get("t", 0.0)), **ints)


_ENDPOINT = re.compile(r"^(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<addr>[^:\s]+|[0-9a-fA-F:]+))(?::(?P<port>\d+))?$")


def _endpoint(text: str) -> tuple[str, int | None]:
    if text.count(":") > 1 and not text.startswith("["):
        return text, None  # bare IPv6 address, no port
    m = _ENDPOINT.match(text)
    if not m:
        raise SpecError(f"`{text}` is not ADDRESS[:PORT]")
    return (m.group("v6") or m.group("addr")), (int(m.group("port")) if m.group("port") else None)


def from_short(text: str) -> Packet:
    """Parse the short human form, e.g. `tcp 203.0.113.5:40000 > 198.51.100.1:22 SYN`."""
    words = text.replace("->", ">").split()
    if len(words) < 4 or words[2] != ">":
        raise SpecError("short form is `PROTO SRC[:PORT] > DST[:PORT] [FLAGS] [KEY VALUE ...]`")
    spec: dict = {"proto": words[0]}
    spec["src"], sport = _endpoint(words[1])
    spec["dst"], dport = _endpoint(words[3])
    if sport is not None:
        spec["sport"] = sport
    if dport is not None:
        spec["dport"] = dport
    rest = words[4:]
    if rest and rest[0].replace(",", "").replace("|", "").isalpha() and rest[0].upper() not in (
            "IIF", "OIF", "STATE", "T", "HOOK", "TYPE", "CODE", "LEN", "TTL", "FRAG", "MF", "MARK"):
        spec["tcp_flags"] = re.split(r"[,|]", rest.pop(0))
    keys = {"iif": "iif", "oif": "oif", "state": "state", "t": "t", "hook": "hook", "type": "icmp_type",
            "code": "icmp_code", "len": "length", "ttl": "ttl", "frag": "frag_offset", "mark": "mark"}
    while rest:
        key = rest.pop(0).lower()
        if key == "mf":
            spec["more_fragments"] = True
            continue
        if key not in keys or not rest:
            raise SpecError(f"unexpected `{key}` in short form")
        value = rest.pop(0)
        spec[keys[key]] = int(value) if keys[key] in ("icmp_type", "icmp_code", "length", "ttl", "frag_offset",
                                                       "mark") else (float(value) if key == "t" else value)
    return from_json(spec)
