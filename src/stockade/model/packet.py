"""A packet as netfilter sees it at a hook, and its JSON / short human spec.

Spec (JSON): {"family": 4, "proto": "tcp", "src": "203.0.113.5", "dst": "198.51.100.1",
"sport": 40000, "dport": 22, "tcp_flags": ["SYN"], "iif": "eth0", "hook": "INPUT"}
plus optional "state", "t", "icmp_type", "icmp_code", "length", "ttl", "tos",
"frag_offset", "more_fragments", "dont_fragment" (IPv4's DF bit), "mark", "oif", "tcp_options", "uid", "gid",
"groups" (supplementary gids), "ctmark", "src_mac", "pkttype", "src_type",
"dst_type", "src_via_iif", "payload" (text, sent as UTF-8) or "payload_hex", "buffer_splits".
"length" is the IPv4 total length, or for IPv6 the 40-byte header plus the payload
length; with a payload it defaults to the headers the packet carries plus the payload.
"ttl" (alias "hl") is the value on arrival: forwarding lowers it before FORWARD.
"pkttype" (unicast, broadcast, multicast, otherhost, loopback) is the class the
receiving device gave the frame; absent, it is the one an Ethernet sender's destination
MAC gives: multicast for a multicast address, broadcast for 255.255.255.255, else
unicast (so a subnet broadcast must be given), and unicast for locally sent packets.
"src_type"/"dst_type" name the route type the kernel's local table gives the address
(LOCAL, UNICAST, BROADCAST, ...), which the model cannot derive for most addresses.
"src_via_iif" (true/false; short form `rpf yes|no`) says whether the route back to the source leaves
through the interface the packet came in on: the reverse-path test of `fib saddr . iif oif`.
"ctmark" is the connection's mark on arrival; absent, 0 for a packet opening a
connection (and unknown for other packets of a connection, or on lo).
"buffer_splits" lists the offsets (from the IP header) where the kernel's buffer for the
packet is split into pieces (-m string --algo bm searches each piece on its own); absent,
only the IP header is known to lie in one piece. A frame sent from a packet socket
and received over veth is split after the IP header: [20] (IPv4) or [40] (IPv6).

Short form: `tcp 203.0.113.5:40000 > 198.51.100.1:22 SYN iif eth0 [state NEW] [t 1.5] [hook INPUT]`,
`icmp 203.0.113.5 > 198.51.100.1 type 8 [code 0]`, `udp [2001:db8::5]:53 > [2001:db8::1]:1024`;
also `mac`, `pkttype`, `srctype`, `dsttype`, `ctmark`, `uid`, `gid` and `payload` (one word).
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, fields

from .address import inet_pton4
from .diagnostics import StockadeError
from .netfilter import (
    CT_STATES,
    FILTER_HOOKS,
    PORT_PROTOS,
    PROTO_NAMES,
    ROUTE_TYPES,
    TCP_FLAGS,
    proto_number,
)
from .ruleset import Family


class SpecError(StockadeError, ValueError):
    """A packet spec that does not describe a packet; the message says which field, `col` where if known."""

    def __init__(self, message: str, col: int = 1):
        super().__init__(message)
        self.col = col


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
    dont_fragment: bool = False  # IPv4's DF bit (IPv6 has none)
    mark: int = 0
    uid: int | None = None
    gid: int | None = None
    groups: frozenset[int] | None = None  # the socket owner's supplementary groups; None: unknown
    ctmark: int | None = None  # the connection's mark on arrival; None: see arrival_ctmark
    src_mac: bytes | None = None  # Ethernet source address; None: unknown
    pkttype: str | None = None  # link-layer class as received; None: derived (link_class)
    src_type: str | None = None  # route type of the source address; None: unknown
    dst_type: str | None = None
    src_via_iif: bool | None = None  # the route to the source leaves through iif (reverse path); None: unknown
    payload: bytes | None = None  # bytes after the last header the packet carries; None: unknown
    buffer_splits: tuple[int, ...] | None = None  # where the skb's data is split; None: unknown
    state: str | None = None  # given conntrack state; None: derive it as conntrack would
    t: float = 0.0

    @property
    def fragment(self) -> bool:
        return self.frag_offset > 0 or self.more_fragments

    @property
    def arrival_ctmark(self) -> int | None:
        """The connection mark when the packet arrives: given, or 0 when the packet opens its
        connection (init_conntrack starts at 0); unknown (None) for later packets of a connection
        and for packets on lo, whose connection their output path created."""
        if self.ctmark is not None:
            return self.ctmark
        return 0 if self.state in (None, "NEW") and self.iif != "lo" else None

    @property
    def link_class(self) -> str:
        """skb->pkt_type as pkttype: given, else what an Ethernet sender's destination MAC makes it
        (eth_type_trans); a locally sent packet is PACKET_HOST until it leaves."""
        if self.pkttype is not None:
            return self.pkttype
        if self.hook == "OUTPUT":
            return "unicast"
        multicast = self.dst >> 28 == 0xE if self.family is Family.IPV4 else self.dst >> 120 == 0xFF
        if multicast:
            return "multicast"
        return "broadcast" if self.family is Family.IPV4 and self.dst == 0xFFFFFFFF else "unicast"

    def with_(self, **kw) -> Packet:
        """A copy with fields changed (dataclasses.replace re-runs __init__: ten times the cost)."""
        if not kw.keys() <= FIELDS:
            raise TypeError(f"Packet has no field(s) {', '.join(sorted(kw.keys() - FIELDS))}")
        p = object.__new__(Packet)
        d = self.__dict__.copy()
        d.update(kw)
        object.__setattr__(p, "__dict__", d)
        return p

    def addr(self, which: str) -> str:
        cls = ipaddress.IPv4Address if self.family is Family.IPV4 else ipaddress.IPv6Address
        return str(cls(getattr(self, which)))


FIELDS = frozenset(f.name for f in fields(Packet))


def _new(given: dict) -> Packet:
    """A Packet from fields already checked, `given` becoming its own: a field left out reads the class's
    default (the frozen dataclass's __init__ sets each of its 30 fields through object.__setattr__, a third
    of what a batch of specs costs)."""
    p = object.__new__(Packet)
    object.__setattr__(p, "__dict__", given)
    return p


def _ip(text: str) -> tuple[Family, int]:
    try:
        a = ipaddress.ip_address(text)
    except ValueError:
        raise SpecError(f"`{text}` is not an IP address") from None
    return Family(a.version), int(a)


def address(value) -> tuple[Family, int]:
    """A spec's `src` or `dst` as its family and number; SpecError if it is no address."""
    try:  # the common case first: inet_pton accepts exactly the dotted quads ipaddress does
        return Family.IPV4, int.from_bytes(inet_pton4(value), "big")
    except (OSError, ValueError, TypeError):
        return _ip(str(value))


KNOWN = frozenset({"family", "proto", "src", "dst", "sport", "dport", "tcp_flags", "tcp_options", "icmp_type",
                   "icmp_code", "iif", "oif", "hook", "length", "ttl", "tos", "frag_offset", "more_fragments",
                   "dont_fragment", "mark",
                   "uid", "gid", "state", "t", "hl", "groups", "ctmark", "src_mac", "pkttype", "src_type", "dst_type",
                   "src_via_iif",
                   "payload", "payload_hex", "buffer_splits"})
INTS = (("sport", 0, 65535), ("dport", 0, 65535), ("icmp_type", 0, 255), ("icmp_code", 0, 255),
        ("length", 20, 65535), ("ttl", 0, 255), ("hl", 0, 255), ("tos", 0, 255), ("frag_offset", 0, 8191),
        ("mark", 0, 2**32 - 1), ("uid", 0, 2**32 - 1), ("gid", 0, 2**32 - 1), ("ctmark", 0, 2**32 - 1))
INT_RANGES = {key: (lo, hi) for key, lo, hi in INTS}
INT_KEYS = frozenset(INT_RANGES)
LINK = frozenset({"groups", "buffer_splits", "src_mac", "pkttype", "src_type", "dst_type", "src_via_iif"})


def _listed(spec: dict, name: str) -> list:
    """A list-valued field of a packet spec; SpecError for anything else (a number, a string, an object)."""
    value = spec.get(name, [])
    if value.__class__ is not list:
        raise SpecError(f"`{name}` is a list, e.g. [\"SYN\"] or [2, 4]")
    return value


COMMON = frozenset({"family", "proto", "src", "dst", "sport", "dport", "tcp_flags", "icmp_type", "icmp_code", "iif",
                    "oif", "hook", "state"})


def from_json(spec: dict) -> Packet:
    """Build a Packet from the JSON spec; unknown keys and bad values raise SpecError. A spec of only the
    COMMON fields skips the checks of the others (a batch of a million specs is mostly such)."""
    common = spec.keys() <= COMMON
    if not common and not spec.keys() <= KNOWN:
        raise SpecError(f"unknown packet field(s): {', '.join(sorted(spec.keys() - KNOWN))}")
    try:
        src, dst, proto = spec["src"], spec["dst"], spec["proto"]
    except KeyError:
        raise SpecError(f"packet spec needs `{next(k for k in ('src', 'dst', 'proto') if k not in spec)}`") from None
    fam_s, src = address(src)
    fam_d, dst = address(dst)
    if fam_s is not fam_d:
        raise SpecError("src and dst are of different address families")
    if "family" in spec:
        try:
            given = int(spec["family"])
        except (TypeError, ValueError, OverflowError):  # null, a list, "x", Infinity
            raise SpecError("`family` is 4 or 6") from None
        if given != int(fam_s):
            raise SpecError(f"family {spec['family']} does not match the addresses")
    proto = PROTO_NAMES.get(proto) if proto.__class__ is str else None
    if proto is None:
        proto = proto_number(str(spec["proto"]))
        if proto is None:
            raise SpecError(f"unknown protocol `{spec['proto']}`")
    flags = 0
    names = spec.get("tcp_flags", ())
    for name in names if names.__class__ is list else _listed(spec, "tcp_flags"):
        bit = (name.__class__ is str and TCP_FLAGS.get(name)) or TCP_FLAGS.get(str(name).upper())
        if bit is None:
            raise SpecError(f"unknown TCP flag `{name}`")
        flags |= bit
    hook = spec.get("hook", "INPUT")
    if hook not in FILTER_HOOKS:
        hook = str(hook).upper()
        if hook not in FILTER_HOOKS:
            raise SpecError(f"hook must be one of {', '.join(FILTER_HOOKS)}")
    state = spec.get("state")
    if state is not None:
        state = str(state).upper()
        if state not in CT_STATES:
            raise SpecError(f"state must be one of {', '.join(CT_STATES)}")
    ported = proto in PORT_PROTOS
    if ported and "dport" not in spec:
        raise SpecError("a packet with ports needs `dport`")
    iif, oif = spec.get("iif"), spec.get("oif")
    if (iif.__class__ is not str and iif is not None) or (oif.__class__ is not str and oif is not None):
        bad = "iif" if iif.__class__ is not str and iif is not None else "oif"
        raise SpecError(f"`{bad}` is an interface name, e.g. \"eth0\"")
    ints = {"family": fam_s, "proto": proto, "src": src, "dst": dst, "tcp_flags": flags, "iif": iif,
            "oif": oif, "hook": hook, "state": state}
    for key in INT_KEYS.intersection(spec):
        v = spec[key]
        if v.__class__ is not int or not INT_RANGES[key][0] <= v <= INT_RANGES[key][1]:
            _check_ints(spec)  # the first bad one in INTS's order, as isinstance judges it
        ints[key] = v
    if ported:
        ints.setdefault("sport", 40000)
    if proto in (1, 58) and "icmp_type" not in ints:
        raise SpecError("an icmp packet needs `icmp_type`")
    if not common:
        _rare(spec, ints)
    return _new(ints)


def _rare(spec: dict, ints: dict) -> None:
    """The fields from_json reads beyond COMMON, into `ints`."""
    if "hl" in ints:
        ints["ttl"] = ints.pop("hl")
    fam_s, proto = ints["family"], ints["proto"]
    frag_offset, more = ints.get("frag_offset", 0), bool(spec.get("more_fragments", False))
    if not LINK.isdisjoint(spec):
        ints.update(_link_fields(spec))
    payload = _payload(spec) if "payload" in spec or "payload_hex" in spec else None
    if payload is not None:
        fragment = bool(frag_offset or more)
        heads = header_len(fam_s, proto, frag_offset, fragment, len(_listed(spec, "tcp_options")))
        if "length" not in ints:
            if heads is None:
                raise SpecError("give `length` with a payload: the header length of this packet is not fixed")
            ints["length"] = heads + len(payload)
        least = header_len(fam_s, proto, frag_offset, fragment) or header_len(fam_s, 0, 0, fragment) + 12
        if ints["length"] - len(payload) < least:
            raise SpecError(f"`length` {ints['length']} leaves no room for the headers before the payload")
        if ints["length"] > 65535:
            raise SpecError("the payload makes the packet longer than 65535 bytes")
        ints["payload"] = payload
    if "tcp_options" in spec:
        kinds = _listed(spec, "tcp_options")
        if not all(o.__class__ is int and 0 <= o <= 255 for o in kinds):
            raise SpecError("`tcp_options` lists TCP option kinds, whole numbers 0-255")
        ints["tcp_options"] = frozenset(kinds)
    if "t" in spec:
        if spec["t"].__class__ not in (int, float) or not 0 <= spec["t"] < 1e12:
            raise SpecError("`t` is the packet's time in seconds, a number from 0")
        ints["t"] = float(spec["t"])
    ints["more_fragments"] = more
    if spec.get("dont_fragment", False):
        if fam_s is not Family.IPV4:
            raise SpecError("`dont_fragment` is IPv4's DF bit: IPv6 has none")
        ints["dont_fragment"] = True


def _check_ints(spec: dict) -> None:
    for key, lo, hi in INTS:
        if key in spec:
            v = spec[key]
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise SpecError(f"`{key}` must be an integer {lo}-{hi}")


def header_len(family: Family, proto: int, frag_offset: int, fragment: bool, n_options: int = 0) -> int | None:
    """Bytes of header before the payload: IP (no options; IPv6 adds its fragment header to
    fragments) and the transport header a non-later fragment carries. None: not fixed (TCP with
    options, DCCP)."""
    ip = 20 if family is Family.IPV4 else 40 + (8 if fragment else 0)
    if frag_offset:
        return ip
    if proto == 6:
        return None if n_options else ip + 20
    return None if proto == 33 else ip + {17: 8, 136: 8, 1: 8, 58: 8, 132: 12}.get(proto, 0)


PKTTYPES = {"unicast": "unicast", "host": "unicast", "broadcast": "broadcast", "multicast": "multicast",
            "otherhost": "otherhost", "loopback": "loopback"}


def _link_fields(spec: dict) -> dict:
    """groups, buffer_splits, src_mac, pkttype, src_type, dst_type and src_via_iif, checked."""
    out: dict = {}
    if "groups" in spec:
        groups = spec["groups"]
        if not isinstance(groups, list) or not all(isinstance(g, int) and 0 <= g < 2**32 for g in groups):
            raise SpecError("`groups` must be a list of group ids")
        out["groups"] = frozenset(groups)
    if "buffer_splits" in spec:
        splits = spec["buffer_splits"]
        if not isinstance(splits, list) or not all(isinstance(o, int) and 0 < o < 65536 for o in splits):
            raise SpecError("`buffer_splits` must be a list of byte offsets")
        out["buffer_splits"] = tuple(sorted(set(splits)))
    if "src_mac" in spec:
        text = str(spec["src_mac"])
        if not re.fullmatch(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", text):
            raise SpecError(f"`src_mac` {text} is not a MAC address like 52:54:00:12:34:56")
        out["src_mac"] = bytes.fromhex(text.replace(":", ""))
    if "pkttype" in spec:
        kind = PKTTYPES.get(str(spec["pkttype"]).lower())
        if kind is None:
            raise SpecError(f"`pkttype` must be one of {', '.join(PKTTYPES)}")
        out["pkttype"] = kind
    for key in ("src_type", "dst_type"):
        if key in spec:
            kind = str(spec[key]).upper()
            if kind not in ROUTE_TYPES:
                raise SpecError(f"`{key}` must be one of {', '.join(ROUTE_TYPES)}")
            out[key] = kind
    if "src_via_iif" in spec:
        if not isinstance(spec["src_via_iif"], bool):
            raise SpecError("`src_via_iif` is true or false")
        out["src_via_iif"] = spec["src_via_iif"]
    return out


def _payload(spec: dict) -> bytes | None:
    if "payload" in spec and "payload_hex" in spec:
        raise SpecError("give `payload` or `payload_hex`, not both")
    if "payload" in spec:
        if not isinstance(spec["payload"], str):
            raise SpecError("`payload` must be a string (use `payload_hex` for raw bytes)")
        return spec["payload"].encode("utf-8", "surrogateescape")
    if "payload_hex" in spec:
        try:
            return bytes.fromhex(str(spec["payload_hex"]))
        except ValueError:
            raise SpecError("`payload_hex` must be hex digits, two per byte") from None
    return None


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
    found = list(re.finditer(r"\S+", text.replace("->", " >")))  # same length: columns stay those of `text`
    words = [m.group() for m in found]
    if len(words) < 4 or words[2] != ">":
        raise SpecError("short form is `PROTO SRC[:PORT] > DST[:PORT] [FLAGS] [KEY VALUE ...]`")
    spec: dict = {"proto": words[0]}
    spec["src"], sport = _endpoint(words[1])
    spec["dst"], dport = _endpoint(words[3])
    if sport is not None:
        spec["sport"] = sport
    if dport is not None:
        spec["dport"] = dport
    rest = found[4:]
    keys = {"iif": "iif", "oif": "oif", "state": "state", "t": "t", "hook": "hook", "type": "icmp_type",
            "code": "icmp_code", "len": "length", "ttl": "ttl", "frag": "frag_offset", "mark": "mark",
            "mac": "src_mac", "pkttype": "pkttype", "srctype": "src_type", "dsttype": "dst_type", "rpf": "src_via_iif",
            "ctmark": "ctmark", "uid": "uid", "gid": "gid", "payload": "payload"}
    first = rest[0].group() if rest else ""
    if first.replace(",", "").replace("|", "").isalpha() and first.lower() not in keys | {"mf": 1, "df": 1}:
        spec["tcp_flags"] = re.split(r"[,|]", rest.pop(0).group())
    while rest:
        word = rest.pop(0)
        key = word.group().lower()
        if key in ("mf", "df"):
            spec["more_fragments" if key == "mf" else "dont_fragment"] = True
            continue
        if key not in keys or not rest:
            raise SpecError(f"unexpected `{key[:20]}` in short form", col=word.start() + 1)
        value = rest.pop(0)
        try:
            if keys[key] in ("mark", "ctmark"):
                spec[keys[key]] = int(value.group(), 0)
            elif keys[key] in ("icmp_type", "icmp_code", "length", "ttl", "frag_offset", "uid", "gid"):
                spec[keys[key]] = int(value.group())
            elif key == "rpf":
                spec["src_via_iif"] = {"yes": True, "no": False}[value.group().lower()]
            else:
                spec[keys[key]] = float(value.group()) if key == "t" else value.group()
        except (ValueError, KeyError):
            raise SpecError(f"`{value.group()[:20]}` is not a number (after `{key}`)" if key != "rpf" else
                            f"`rpf` takes yes or no, not `{value.group()[:20]}`", col=value.start() + 1) from None
    return from_json(spec)
