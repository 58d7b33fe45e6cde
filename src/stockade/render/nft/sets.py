"""ipsets as nft sets declared in the table (`-m set` looks them up: extensions/set.py).

One lookup replaces any number of rules: a hash set for single addresses, nft's interval
structures (`flags interval`) wherever a member is a network, range or port range. Each dimension
of an ipset type becomes one part of a concatenated key; the match's src/dst flags pick
the packet field for each.
"""
from __future__ import annotations

import ipaddress
import re
import shlex
import socket
from collections import deque

from ...model import Family, IPSet
from ...model.address import inet_pton4
from ...model.netfilter import PORT_PROTOS as PORTED
from ...model.netfilter import proto_name
from ...model.nft import dims_of, set_family
from .core import NftError, quote, span

# Create options that tune ipset's own storage and change no membership.
STORAGE = {"family": 1, "hashsize": 1, "maxelem": 1, "bucketsize": 1, "initval": 1, "counters": 0, "comment": 0,
           "skbinfo": 0, "forceadd": 0}
PORT_PROTOS = tuple(proto_name(p) for p in PORTED)
MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
PREFIXES = frozenset(map(str, range(33)))


def declare_ipset(name: str, s: IPSet) -> str:
    """`set NAME { type ...; flags ...; elements = { ... } }` for one ipset."""
    dims, family = dims_of(s), set_family(s)
    timeout, maxelem = _options(s)
    plain = _plain_ipv4(s, dims, family)
    if plain is not None:
        elements, interval = plain
    else:
        members = dict.fromkeys(_member(s, m, dims, family) for m in s.members)  # ipset ignores repeats
        elements, interval = [text for text, _ in members], "net" in dims or any(i for _, i in members)
    addr = "ipv4_addr" if family is Family.IPV4 else "ipv6_addr"
    types = {"ip": addr, "net": addr, "port": "inet_proto . inet_service", "mac": "ether_addr"}
    flags = ["interval"] if interval else []
    flags += ["timeout"] if timeout is not None else []
    lines = [f"set {name} {{", f"\ttype {' . '.join(types[d] for d in dims)}"]
    lines += [f"\tsize {maxelem}"] if maxelem and not interval else []  # a hash sized up front loads faster
    lines += [f"\tflags {','.join(flags)}"] if flags else []
    lines += ["\tauto-merge"] if interval and len(dims) == 1 else []  # ipset allows overlaps
    lines += [f"\ttimeout {timeout}s"] if timeout else []  # 0: timeouts allowed, none by default
    if elements:
        lines.append("\telements = { " + ", ".join(elements) + " }")
    return "\n".join(lines + ["}"])


def _plain_ipv4(s: IPSet, dims: list[str], family: Family) -> tuple[list[str], bool] | None:
    """(elements, interval) when every member of a one-dimension IPv4 set is a bare address or CIDR, as in
    million-entry blocklists: checked in bulk, not read one by one with ipaddress; else None.

    inet_pton takes exactly the dotted quads nft reads as written. Networks make an interval set, its
    elements sorted by address, as nft 1.0.6 reads an unsorted interval list several times slower; nft
    clears host bits as ipset does, and auto-merge joins overlaps and repeats."""
    if dims not in (["ip"], ["net"]) or family is not Family.IPV4:
        return None
    try:
        if "net" in dims or "/" in "".join(s.members):
            return sorted(s.members, key=_ipv4_key), True
        deque(map(inet_pton4, s.members), maxlen=0)  # raises at the first that is not an address
        return list(s.members), False
    except (OSError, ValueError):
        return None


def _ipv4_key(member: str) -> bytes:
    addr, slash, prefix = member.partition("/")
    if slash and prefix not in PREFIXES:
        raise ValueError(member)
    return inet_pton4(addr)


def _options(s: IPSet) -> tuple[int | None, int | None]:
    """The default timeout, if any, and maxelem; options that would change membership are refused."""
    words, timeout, maxelem = list(s.options), None, None
    while words:
        word = words.pop(0)
        if word == "timeout" and words and words[0].isdigit():
            timeout = int(words.pop(0))
        elif word == "maxelem" and words and words[0].isdigit():
            maxelem = int(words.pop(0))
        elif word in STORAGE and len(words) >= STORAGE[word]:
            del words[:STORAGE[word]]
        else:
            raise NftError(f"ipset {s.name}: create option `{word}` has no nftables equivalent in stockade")
    return timeout, maxelem


def _member(s: IPSet, text: str, dims: list[str], family: Family) -> tuple[str, bool]:
    """One member as an nft element, and whether it needs an interval set."""
    if not any(c in text for c in " \t\"'\\"):
        words = [text]  # the common case, a bare address or network: no shell-style splitting needed
    else:
        try:
            words = shlex.split(text)
        except ValueError:
            words = []
    if not words:
        raise NftError(f"ipset {s.name}: cannot read member {text!r}")
    values = words[0].split(",")
    if len(values) != len(dims):
        raise NftError(f"ipset {s.name}: member {words[0]!r} does not have the {len(dims)} parts of {s.type}")
    parts = [_value(s, v, d, family) for v, d in zip(values, dims)]
    out, extra = " . ".join(p for p, _ in parts), words[1:]
    while extra:
        word = extra.pop(0)
        if word == "timeout" and extra and extra[0].isdigit():
            out += f" timeout {extra.pop(0)}s"
        elif word == "comment" and extra:
            out += f" comment {quote(extra.pop(0), 'comment')}"
        elif word in ("packets", "bytes", "skbmark", "skbprio", "skbqueue") and extra:
            extra.pop(0)  # counters and skbinfo data change no membership
        else:
            raise NftError(f"ipset {s.name}: member option `{word}` has no nftables equivalent in stockade"
                           + (" (nomatch entries punch holes nft sets cannot)" if word == "nomatch" else ""))
    return out, any(interval for _, interval in parts)


def _value(s: IPSet, value: str, dim: str, family: Family) -> tuple[str, bool]:
    try:
        if dim in ("ip", "net"):
            return _address(value, family)
        if dim == "port":
            proto, _, ports = value.rpartition(":")
            proto = proto.lower() or "tcp"
            lo, _, hi = ports.partition("-")
            lo_n, hi_n = _port(lo, proto), _port(hi or lo, proto)
            if proto not in PORT_PROTOS or lo_n > hi_n:
                raise ValueError
            return f"{proto} . {span(lo_n, hi_n)}", lo_n != hi_n
        if MAC.fullmatch(value):
            return value.lower(), False
    except (ValueError, OSError):
        pass
    raise NftError(f"ipset {s.name}: cannot write {dim} value {value!r} as an nft element")


def _address(value: str, family: Family) -> tuple[str, bool]:
    version = 4 if family is Family.IPV4 else 6
    if "-" in value:
        first, last = (ipaddress.ip_address(v) for v in value.split("-", 1))
        if first.version != version or last.version != version or first > last:
            raise ValueError
        return (str(first), False) if first == last else (f"{first}-{last}", True)
    net = ipaddress.ip_network(value, strict=False)
    if net.version != version:
        raise ValueError
    return (str(net.network_address), False) if net.prefixlen == net.max_prefixlen else (str(net), True)


def _port(text: str, proto: str) -> int:
    port = int(text) if text.isdigit() else socket.getservbyname(text, proto)
    if not 0 <= port <= 65535:
        raise ValueError
    return port
