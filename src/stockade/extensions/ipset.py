"""The kernel's ipsets (net/netfilter/ipset): which set types stockade models, how `ipset restore`
reads a set's create options and members, and which element a packet's values find in a set.

`-m set` (set.py) asks it through set_test; a packet's lookup depends on the set's contents,
which the simulator keeps in env.memory so that element counters persist between packets.
"""
from __future__ import annotations

import ipaddress
import shlex
import socket
from dataclasses import dataclass, field

from ..model import Family
from ..model.diagnostics import ParseError
from .recent import HZ, jiffies
from .values import parse_proto


@dataclass(frozen=True)
class CounterTest:
    """A condition on the matched element's packet or byte counter: op is eq, ne, lt or gt."""

    op: str
    value: int


# Dimension kinds per type. "net" dimensions are tried prefix length by prefix length, longest first
# (mtype_test_cidrs); the others are compared exactly.
KINDS = {"hash:ip": ("ip",), "hash:net": ("net",), "hash:ip,port": ("ip", "port"), "hash:net,port": ("net", "port"),
         "hash:ip,port,ip": ("ip", "port", "ip"), "hash:ip,port,net": ("ip", "port", "net"),
         "hash:net,port,net": ("net", "port", "net"), "hash:net,net": ("net", "net"), "hash:ip,mark": ("ip", "mark"),
         "hash:mac": ("mac",), "hash:ip,mac": ("ip", "mac"), "bitmap:ip": ("ip",), "bitmap:port": ("port",),
         "list:set": ()}
NOMATCH_TYPES = frozenset({"hash:net", "hash:net,port", "hash:ip,port,net", "hash:net,port,net", "hash:net,net"})
UNSPEC_TYPES = frozenset({"bitmap:port", "hash:mac", "list:set"})  # NFPROTO_UNSPEC: either family
HARMLESS = frozenset({"hashsize", "maxelem", "bucketsize", "initval", "size"})  # options with a value
FLAGS = frozenset({"counters", "comment", "skbinfo", "forceadd"})
PORT_PROTOS = (6, 17, 132, 136)  # ip_set_proto_with_ports
TIMEOUT_MAX = 4294967  # ip_set_timeout_uget: UINT_MAX / MSEC_PER_SEC
NOMATCH = -1  # -ENOTEMPTY: an element stored with nomatch


class Unknowable(Exception):
    """The set's contents or the packet lack what the kernel would look at."""


def _ip(text: str, family: Family) -> int:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise Unknowable from None
    if addr.version != int(family):
        raise Unknowable
    return int(addr)


def _cidrs(text: str, family: Family) -> list[tuple[int, int]]:
    """`A`, `A/len` or (IPv4) `A-B`, as the prefixes ipset stores (ip_set_range_to_cidr)."""
    bits = 32 if family is Family.IPV4 else 128
    if "-" in text and family is Family.IPV4:
        first, last = (_ip(t, family) for t in text.split("-", 1))
        nets = ipaddress.summarize_address_range(ipaddress.IPv4Address(first), ipaddress.IPv4Address(last))
        return [(int(n.network_address), n.prefixlen) for n in nets]
    addr, _, plen = text.partition("/")
    size = int(plen) if plen else bits
    if not 0 <= size <= bits:
        raise Unknowable
    return [(_ip(addr, family) & _mask(size, bits), size)]


def _mask(size: int, bits: int) -> int:
    return ((1 << bits) - 1) ^ ((1 << (bits - size)) - 1)


def _port(text: str, family: Family) -> tuple[int, int, int]:
    """`[proto:]port[-port]`, ICMP `type/code`, or `proto:0`: (protocol, first, last)."""
    proto_text, _, port_text = text.rpartition(":")
    try:
        proto = parse_proto(proto_text or "tcp")
    except ParseError:
        raise Unknowable from None
    if proto in (1, 58):
        kind, _, code = port_text.partition("/")
        if not (kind.isdigit() and code.isdigit()):
            raise Unknowable  # ICMP type names are not modelled
        value = int(kind) << 8 | int(code)
        return proto, value, value
    lo_text, _, hi_text = port_text.partition("-")
    try:
        lo, hi = (int(t) if t.isdigit() else socket.getservbyname(t) for t in (lo_text, hi_text or lo_text))
    except OSError:
        raise Unknowable from None
    if proto not in PORT_PROTOS and (lo, hi) != (0, 0):
        raise Unknowable
    return proto, min(lo, hi), max(lo, hi)


@dataclass
class Member:
    dims: tuple  # per dimension: ip (lo, hi); net [(addr, len)]; port (proto, lo, hi); mark int; mac bytes
    nomatch: bool = False
    timeout: int | None = None
    packets: int = 0
    bytes: int = 0


@dataclass
class Contents:
    """One ipset, parsed: its type, family (None: either), options, and members in order."""

    type: str
    family: Family | None
    members: list[Member]
    timeout: int | None = None  # the set was created with timeouts (default for members)
    counters: bool = False
    netmask: int | None = None
    markmask: int = 0xFFFFFFFF
    range: tuple[int, int] | None = None  # bitmap types
    counts: dict = field(default_factory=dict)  # (member index, key) -> [packets, bytes]


def parse_contents(s) -> Contents:
    """model.IPSet (create options and members as written) -> Contents; Unknowable if not modelled."""
    if s.type not in KINDS:
        raise Unknowable
    opts, words = {}, list(s.options)
    while words:
        word = words.pop(0)
        if word in FLAGS:
            opts[word] = True
        elif word in HARMLESS | {"family", "timeout", "netmask", "markmask", "range"} and words:
            opts[word] = words.pop(0)
        else:
            raise Unknowable
    family = None if s.type in UNSPEC_TYPES else {"inet": Family.IPV4, "inet6": Family.IPV6}.get(
        opts.get("family", "inet"))
    if family is None and s.type not in UNSPEC_TYPES:
        raise Unknowable
    c = Contents(s.type, family, [], counters="counters" in opts)
    try:
        if "timeout" in opts:
            c.timeout = int(opts["timeout"])
        if "markmask" in opts:
            c.markmask = int(opts["markmask"], 0)
        if "netmask" in opts:
            c.netmask = int(opts["netmask"])
        if "range" in opts:
            if s.type == "bitmap:port":
                lo, _, hi = opts["range"].partition("-")
                c.range = (int(lo), int(hi or lo))
            else:
                nets = _cidrs(opts["range"], Family.IPV4)
                c.range = (nets[0][0], nets[-1][0] | ((1 << (32 - nets[-1][1])) - 1))
        for text in s.members:
            c.members.append(_member(c, text))
    except ValueError:
        raise Unknowable from None
    return c


def _member(c: Contents, text: str) -> Member:
    words = shlex.split(text)
    if not words:
        raise Unknowable
    elem, rest = words[0], words[1:]
    m = Member(_dims(c, elem))
    while rest:
        word = rest.pop(0)
        if word == "nomatch" and c.type in NOMATCH_TYPES:
            m.nomatch = True
        elif word in ("timeout", "packets", "bytes") and rest:
            setattr(m, word, int(rest.pop(0)))
        elif word in ("comment", "skbmark", "skbprio", "skbqueue") and rest:
            rest.pop(0)
        else:
            raise Unknowable
    return m


def _dims(c: Contents, elem: str) -> tuple:
    kinds = KINDS[c.type]
    if c.type == "list:set":
        return (elem,)
    parts = elem.split(",")
    if len(parts) != len(kinds):
        raise Unknowable
    fam = c.family or Family.IPV4
    bits = 32 if fam is Family.IPV4 else 128
    out = []
    for kind, part in zip(kinds, parts):
        if kind == "net":
            out.append(_cidrs(part, fam))
        elif kind == "ip":
            nets = _cidrs(part, fam)
            lo, hi = nets[0][0], nets[-1][0] | ((1 << (bits - nets[-1][1])) - 1)
            mask = _mask(c.netmask if c.netmask is not None else bits, bits)
            out.append((lo & mask, hi & mask))
        elif kind == "port" and c.type == "bitmap:port":  # a bare port or range: no protocol is stored
            out.append((0, *_port("tcp:" + part.rpartition(":")[2], fam)[1:]))
        elif kind == "port":
            out.append(_port(part, fam))
        elif kind == "mark":
            out.append(int(part, 0) & c.markmask)
        else:
            raw = bytes.fromhex(part.replace(":", ""))
            if len(raw) != 6:
                raise Unknowable
            out.append(raw)
    return tuple(out)


def _value(c: Contents, kind: str, src: bool, pkt, env):
    """What kadt takes from the packet for one dimension; False: kadt refuses (-EINVAL), no match."""
    if kind in ("ip", "net"):
        return pkt.src if src else pkt.dst
    if kind == "mark":
        if env.mark is None:
            raise Unknowable
        return env.mark & c.markmask
    if kind == "mac":  # a received Ethernet header; lo has one with zero addresses
        if pkt.hook == "OUTPUT" or pkt.iif == "lo":
            return False
        if not src or pkt.src_mac is None:
            raise Unknowable
        return pkt.src_mac if any(pkt.src_mac) else False
    # ip_set_get_ip4_port / ip_set_get_ip6_port
    if pkt.frag_offset and (pkt.family is Family.IPV6 or pkt.proto in PORT_PROTOS + (1,)):
        return False
    if pkt.frag_offset:
        return pkt.proto, 0
    if pkt.proto in PORT_PROTOS:
        return pkt.proto, pkt.sport if src else pkt.dport
    if pkt.proto in (1, 58):
        return pkt.proto, pkt.icmp_type << 8 | (pkt.icmp_code or 0)
    return pkt.proto, 0


def _contains(kind: str, spec, value) -> bool:
    if kind == "ip":
        return spec[0] <= value <= spec[1]
    if kind == "port":
        return spec[0] == value[0] and spec[1] <= value[1] <= spec[2]
    return spec == value


def _extensions(c: Contents, idx: int, key, m: Member, flags: dict, pkt) -> bool:
    """ip_set_match_extensions: a timed-out element is absent; counters count first (unless told
    not to), then are compared if the rule asks."""
    if c.timeout is not None:
        life = min(m.timeout if m.timeout is not None else c.timeout, TIMEOUT_MAX)
        if life and jiffies(pkt.t) > life * HZ:
            return False
    if c.counters:
        count = c.counts.setdefault((idx, key), [m.packets, m.bytes])
        if not flags["skip"]:
            count[0] += 1
            count[1] += pkt.length
        tests = flags["counters"]
        if tests and not all(_compare(v, t) for v, t in zip(count, tests) if t is not None):
            return False
    return True


def _compare(value: int, test: CounterTest) -> bool:
    return {"eq": value == test.value, "ne": value != test.value, "lt": value < test.value,
            "gt": value > test.value}[test.op]


def set_test(c: Contents, dirs: tuple[str, ...], pkt, env, flags: dict) -> bool:
    """ip_set_test: too few src/dst flags or the wrong family match nothing; --return-nomatch swaps
    plain and nomatch elements of the types that have them."""
    kinds = KINDS[c.type]
    if len(dirs) < len(kinds) or (c.family is not None and c.family is not pkt.family):
        return False
    ret = _list_test(c, dirs, pkt, env, flags) if c.type == "list:set" else _kadt(c, dirs, pkt, env, flags)
    if flags["return_nomatch"] and c.type in NOMATCH_TYPES and ret:
        ret = -ret
    return ret > 0


def _kadt(c: Contents, dirs, pkt, env, flags) -> int:
    kinds = KINDS[c.type]
    values = [_value(c, k, d == "src", pkt, env) for k, d in zip(kinds, dirs)]
    if any(v is False for v in values):  # not `False in values`: address 0 == False
        return 0
    bits = 32 if pkt.family is Family.IPV4 else 128
    if c.type == "bitmap:ip":  # an address outside the range is an error, so no match
        if c.range is None or not c.range[0] <= values[0] <= c.range[1]:
            return 0
        values = [values[0] & _mask(c.netmask or 32, 32)]
    elif c.type == "bitmap:port":  # ip_set_get_ip_port: TCP and UDP only; the protocol is not stored
        proto, port = values[0]
        if proto not in (6, 17) or c.range is None or not c.range[0] <= port <= c.range[1]:
            return 0
        values = [(0, port)]
    elif c.type == "hash:ip":
        values[0] &= _mask(c.netmask if c.netmask is not None else bits, bits)
        if values[0] == 0:
            return 0
    nets = [i for i, k in enumerate(kinds) if k == "net"]
    lengths = [sorted({n for m in c.members for _, n in m.dims[i]}, reverse=True) for i in nets]
    for combo in _product(lengths):
        key = list(values)
        for i, size in zip(nets, combo):
            key[i] = (values[i] & _mask(size, bits), size)
        for idx, m in enumerate(c.members):
            if all((key[i] in m.dims[i]) if k == "net" else _contains(k, m.dims[i], key[i])
                   for i, k in enumerate(kinds)):
                if _extensions(c, idx, tuple(key), m, flags, pkt):
                    return NOMATCH if m.nomatch else 1
                break  # one element per key: try the next prefix lengths
    return 0


def _product(lengths: list[list[int]]):
    if not lengths:
        yield ()
        return
    for first in lengths[0]:
        for rest in _product(lengths[1:]):
            yield (first, *rest)


def _list_test(c: Contents, dirs, pkt, env, flags) -> int:
    """list_set_ktest: the member sets in order, without counter tests (and with their counters left
    alone under `! --update-subcounters`); the first that matches has the list element's own
    timeout and counters checked."""
    sub = dict(flags, counters=None, skip=flags["skip"] or flags["skip_sub"])
    for idx, m in enumerate(c.members):
        if set_test(contents(env, m.dims[0]), dirs, pkt, env, sub) and _extensions(c, idx, m.dims[0], m, flags, pkt):
            return 1
    return 0


def contents(env, name: str) -> Contents:
    """The named set of env.sets, parsed once per simulator: its element counters live in env.memory
    as long as the simulator does."""
    key = ("set", name)
    if key not in env.memory:
        sets = getattr(env, "sets", None) or {}
        if name not in sets:
            raise Unknowable
        env.memory[key] = parse_contents(sets[name])
    return env.memory[key]


# -- what `ipset save` prints (ipset 7.17, measured in a namespace) ------------------------------------------

OLD_NAMES = {"iphash": "hash:ip", "nethash": "hash:net", "ipporthash": "hash:ip,port", "portmap": "bitmap:port",
             "ipmap": "bitmap:ip", "macipmap": "bitmap:ip,mac", "ipportiphash": "hash:ip,port,ip",
             "ipportnethash": "hash:ip,port,net", "setlist": "list:set"}
HASH_ORDER = ("family", "hashsize", "maxelem", "netmask", "markmask", "timeout", "counters", "comment", "skbinfo")


def saved_create(name: str, type_: str, words: list[str]) -> tuple[str, tuple[str, ...]]:
    """`ipset create NAME TYPE OPTIONS` as `ipset save` prints it: the type's current name and every option
    in the kernel's order with its default (hash types: family, hashsize rounded up to a power of two, at
    least 64, maxelem, then timeout/counters/comment/skbinfo, bucketsize 12; the random initval left out).
    ParseError for a type or option stockade does not know, naming it."""
    type_ = OLD_NAMES.get(type_, type_)
    if type_ not in KINDS or type_ == "list:set":
        raise ParseError(f"ipset: set type `{type_}` is not modelled by stockade", code="ipset-type",
                         hint="hash:ip, hash:net, hash:ip,port, hash:net,port, bitmap:port, bitmap:ip and more are")
    opts: dict[str, str | None] = {}
    words = list(words)
    while words:
        word = words.pop(0).lstrip("-") if words[0].startswith("--") else words.pop(0)
        if word in FLAGS:
            opts[word] = None
        elif word in ("from", "to") and words and type_.startswith("bitmap:"):  # the old `--from A --to B`
            opts[word] = words.pop(0)
        elif word in HARMLESS | {"family", "timeout", "netmask", "markmask", "range"} and words:
            opts[word] = words.pop(0)
        else:
            raise ParseError(f"ipset create {name}: option `{word}` is not known here", code="ipset-option")
    if "from" in opts:
        opts["range"] = f"{opts.pop('from')}-{opts.pop('to', '')}"
    try:
        if type_.startswith("bitmap:"):
            if "range" not in opts:
                raise ParseError(f"ipset create {name}: a {type_} set needs `range`", code="ipset-option")
            rng = opts["range"] or ""
            if type_ == "bitmap:ip":
                nets = _cidrs(rng, Family.IPV4)
                lo, hi = nets[0][0], nets[-1][0] | ((1 << (32 - nets[-1][1])) - 1)
                rng = f"{ipaddress.IPv4Address(lo)}-{ipaddress.IPv4Address(hi)}"
            out = ["range", rng] + [w for k in ("timeout", "counters", "comment", "skbinfo") if k in opts
                                    for w in (k, opts[k]) if w is not None]
            return type_, tuple(out)
        family = opts.get("family") or "inet"
        if family not in ("inet", "inet6"):
            raise ParseError(f"ipset create {name}: family `{family}`", code="ipset-option", hint="inet or inet6")
        size = max(64, int(opts.get("hashsize") or 1024))
        opts.update(family=family, hashsize=str(1 << (size - 1).bit_length()), maxelem=opts.get("maxelem") or "65536")
        out = [w for k in HASH_ORDER if k in opts for w in (k, opts[k]) if w is not None]
        return type_, tuple(out + ["bucketsize", opts.get("bucketsize") or "12"])
    except (ValueError, Unknowable):
        raise ParseError(f"ipset create {name}: a value ipset refuses", code="ipset-option") from None


def saved_members(type_: str, options: tuple[str, ...], element: str) -> list[str]:
    """One `ipset add` element as `ipset save` prints it: addresses of a hash:ip range one by one (masked by
    its netmask), networks with their host bits cleared (a full-length prefix bare), ports with their
    protocol (tcp when none is given) and as numbers. ParseError for what ipset refuses."""
    opts = dict(zip(options[::2], options[1::2]))
    family = Family.IPV6 if opts.get("family") == "inet6" else Family.IPV4
    bits = 32 if family is Family.IPV4 else 128
    kinds = KINDS[type_]
    parts = element.split(",")
    if len(parts) != len(kinds):
        raise ParseError(f"ipset: `{element}` is no element of a {type_} set", code="ipset-element")
    try:
        choices: list[list[str]] = []
        for kind, part in zip(kinds, parts):
            if kind == "ip":
                nets = _cidrs(part, family)
                plen = int(opts.get("netmask", bits))
                lo, hi = nets[0][0], nets[-1][0] | ((1 << (bits - nets[-1][1])) - 1)
                step = 1 << (bits - plen)
                first = lo & _mask(plen, bits)
                if (hi - first) // step > 1 << 16:
                    raise ParseError(f"ipset: `{part}` holds more addresses than stockade lists one by one",
                                     code="ipset-element", hint="use a hash:net set for networks")
                choices.append([str(ipaddress.ip_address(a) if family is Family.IPV4 else ipaddress.IPv6Address(a))
                                for a in range(first, hi + 1, step)])
            elif kind == "net":
                choices.append([str(ipaddress.ip_network((a, n))) if n != bits else str(ipaddress.ip_address(a))
                                for a, n in _cidrs(part, family)])
            elif kind == "port" and type_ == "bitmap:port":
                lo, hi = _port("tcp:" + part, family)[1:]
                choices.append([str(p) for p in range(lo, hi + 1)])
            elif kind == "port":
                proto, lo, hi = _port(part, family)
                name = {6: "tcp", 17: "udp", 132: "sctp", 136: "udplite"}.get(proto)
                if name is None:
                    raise ParseError(f"ipset: protocol of `{part}` is not modelled", code="ipset-element")
                choices.append([f"{name}:{p}" for p in range(lo, hi + 1)])
            else:
                choices.append([part.lower() if kind == "mac" else part])
    except Unknowable:
        raise ParseError(f"ipset: `{element}` is no element of a {type_} set", code="ipset-element") from None
    out = [""]
    for options_ in choices:
        out = [f"{o},{c}" if o else c for o in out for c in options_]
    return out
