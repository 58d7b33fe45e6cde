"""-m set: membership of the packet's addresses/ports in an ipset (xt_set, revision 4)."""
from __future__ import annotations

import ipaddress
import shlex
import socket
from dataclasses import dataclass, field

from ..model import Family
from ..model.diagnostics import ParseError
from ..model.space import DST, SRC
from .base import Extension, Option, register
from .recent import HZ, jiffies
from .values import check_printable, parse_c_uint, parse_proto

MAX_NAME = 31  # IPSET_MAXNAMELEN - 1
MAX_DIMS = 6  # IPSET_DIM_MAX
COUNTER_OPS = ("eq", "lt", "gt")


@dataclass(frozen=True)
class CounterTest:
    """A condition on the matched element's packet or byte counter: op is eq, ne, lt or gt."""

    op: str
    value: int


@dataclass(frozen=True)
class SetMatch:
    """True when the tuple taken from the packet, one part per entry of `dirs` ("src":
    source address/port/..., "dst": destination), is an element of ipset `name`, and the
    element's counters pass `packets`/`bytes` if given; `!` negates. return_nomatch makes
    an element stored with the nomatch flag count as a match and a plain one as a miss.
    A matched element's packet/byte counters are bumped unless update_counters (for the
    set itself) / update_subcounters (for members of a list:set) are False."""

    name: str
    dirs: tuple[str, ...]
    invert: bool = False
    return_nomatch: bool = False
    update_counters: bool = True
    update_subcounters: bool = True
    packets: CounterTest | None = None
    bytes: CounterTest | None = None


def parse_dirs(word: str) -> tuple[str, ...]:
    """`src,dst,...`: like ipset's own parser, only the first three letters are compared."""
    parts = word.split(",")
    if len(parts) > MAX_DIMS:
        raise ParseError(f"set: {len(parts)} src/dst flags in `{word}`; at most {MAX_DIMS}", code="bad-set-flags")
    if not all(p[:3] in ("src", "dst") for p in parts):
        raise ParseError(f"set: bad flags `{word}`", code="bad-set-flags",
                         hint="write a comma-separated list of src and dst, one per set dimension, e.g. src,dst")
    return tuple(p[:3] for p in parts)


# ---- What the kernel's set types (net/netfilter/ipset) find for a packet ----
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


@register
class SetMatchExt(Extension):
    name = "set"
    options = (
        Option("--match-set", ("--set",), nargs=2, invertible=True),
        Option("--return-nomatch", nargs=0),
        Option("--update-counters", nargs=0, invertible=True),
        Option("--update-subcounters", nargs=0, invertible=True),
        *(Option(f"--{what}-{op}", invertible=op == "eq") for what in ("packets", "bytes") for op in COUNTER_OPS),
    )

    def parse(self, acc, opt, invert, args, ctx):
        key = opt.key
        if invert and not opt.invertible:
            raise ParseError(f"set: {opt.name} cannot be inverted with `!`", code="bad-invert")
        if key == "match-set":
            if key in acc:
                raise ParseError("set: --match-set can be given only once per -m set", code="duplicate-option",
                                 hint="add another `-m set --match-set ...` for a second set")
            name, flags = args
            if flags.startswith(("-", "!")):
                raise ParseError("set: --match-set needs two arguments, the set name and src/dst flags",
                                 code="missing-argument", hint="e.g. --match-set blocklist src")
            check_printable(name, "set name")
            if not 0 < len(name) <= MAX_NAME or any(c.isspace() or c in "\"'\\" for c in name):
                raise ParseError(f"set: `{name}` is not a valid set name (1-{MAX_NAME} characters, "
                                 "no blanks or quotes, which iptables-save could not print back)",
                                 code="bad-set-name")
            if ctx.known_sets is not None and name not in ctx.known_sets:
                raise ParseError(f"set: ipset `{name}` does not exist", code="unknown-set",
                                 hint=f"create it first (ipset create {name} TYPE)")
            acc[key] = (invert, name, parse_dirs(flags))
        elif key == "return-nomatch":
            acc[key] = True
        elif key in ("update-counters", "update-subcounters"):
            acc[f"no-{key}"] = acc.get(f"no-{key}", False) or invert  # without `!` it is the default
        else:
            what, op = key.split("-")
            if what in acc:
                raise ParseError(f"set: only one of --{what}-eq, --{what}-lt and --{what}-gt is allowed",
                                 code="conflicting-options")
            acc[what] = CounterTest("ne" if invert else op, parse_c_uint(args[0], f"set {opt.name}", 0, 2**64 - 1))

    def finish(self, acc, ctx):
        if "match-set" not in acc:
            raise ParseError("set: --match-set NAME FLAGS is required", code="missing-option")
        invert, name, dirs = acc["match-set"]
        return SetMatch(name, dirs, invert, acc.get("return-nomatch", False),
                        not acc.get("no-update-counters", False), not acc.get("no-update-subcounters", False),
                        acc.get("packets"), acc.get("bytes"))

    def holds(self, d: SetMatch, pkt, env) -> bool | None:
        """set_match_v4 -> ip_set_test -> the type's kadt and test: None when the set's contents
        (env.sets) are not known or not modelled, or the packet lacks what the set looks at."""
        flags = {"return_nomatch": d.return_nomatch, "skip": not d.update_counters,
                 "skip_sub": not d.update_subcounters,
                 "counters": (d.packets, d.bytes) if d.packets or d.bytes else None}
        try:
            return set_test(contents(env, d.name), d.dirs, env.pkt, env, flags) != d.invert
        except Unknowable:
            return None

    def constraint(self, d: SetMatch, frame):
        """A plain hash:ip or hash:net set of one direction is a set of addresses; other types,
        nomatch, timeouts and counter tests are left to the simulator."""
        s = frame.sets.get(d.name)
        if s is None or len(d.dirs) != 1 or d.return_nomatch or d.packets or d.bytes \
                or s.type not in ("hash:ip", "hash:net"):
            return None
        pairs = []
        for member in s.members:
            words = member.split()
            if len(words) != 1:
                return None
            try:
                net = ipaddress.ip_network(words[0], strict=False)
            except ValueError:
                return None
            if net.version == int(frame.family):
                pairs.append((int(net.network_address), int(net.broadcast_address)))
        dim = SRC if d.dirs[0] == "src" else DST
        return {dim: frame.within(dim, pairs, d.invert)}

    def save(self, d: SetMatch) -> list[str]:
        out = (["!"] if d.invert else []) + ["--match-set", d.name, ",".join(d.dirs)]
        out += ["--return-nomatch"] if d.return_nomatch else []
        out += [] if d.update_counters else ["!", "--update-counters"]
        out += [] if d.update_subcounters else ["!", "--update-subcounters"]
        for what, test in (("packets", d.packets), ("bytes", d.bytes)):
            if test is not None:
                out += (["!", f"--{what}-eq"] if test.op == "ne" else [f"--{what}-{test.op}"]) + [str(test.value)]
        return out
