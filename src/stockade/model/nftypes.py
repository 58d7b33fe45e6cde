"""nft's datatypes as numbers: each value nft JSON can hold (a symbol, an address, a prefix, a range,
an interface name) as the closed interval of integers the kernel compares.

Every key is an integer, as in the kernel's registers: addresses by their value, interface names as
their 16 bytes (IFNAMSIZ, NUL padded), so `"in*"` is the interval of names starting with `in`
(nft compares only the bytes before the `*`), symbols by the numbers nft's symbol tables give them.
"""
from __future__ import annotations

import ipaddress
from typing import Any

from .netfilter import PROTO_NAMES

IFNAMSIZ = 16
Interval = tuple[int, int]


class NftValueError(ValueError):
    """A value this datatype cannot hold, or a symbol stockade does not know."""


SYMBOLS: dict[str, dict[str, int]] = {
    "inet_proto": PROTO_NAMES | {"icmpv6": 58, "ipv6-icmp": 58},
    "ct_state": {"invalid": 1, "established": 2, "related": 4, "new": 8, "untracked": 64},
    "ct_dir": {"original": 0, "reply": 1},
    "ct_status": {"expected": 1, "seen-reply": 2, "assured": 4, "confirmed": 8, "snat": 16, "dnat": 32,
                  "dying": 512},
    "tcp_flag": {"fin": 1, "syn": 2, "rst": 4, "psh": 8, "ack": 16, "urg": 32, "ecn": 64, "cwr": 128},
    "icmp_type": {"echo-reply": 0, "destination-unreachable": 3, "source-quench": 4, "redirect": 5,
                  "echo-request": 8, "router-advertisement": 9, "router-solicitation": 10, "time-exceeded": 11,
                  "parameter-problem": 12, "timestamp-request": 13, "timestamp-reply": 14, "info-request": 15,
                  "info-reply": 16, "address-mask-request": 17, "address-mask-reply": 18},
    "icmpv6_type": {"destination-unreachable": 1, "packet-too-big": 2, "time-exceeded": 3,
                    "parameter-problem": 4, "echo-request": 128, "echo-reply": 129, "mld-listener-query": 130,
                    "mld-listener-report": 131, "mld-listener-done": 132, "mld-listener-reduction": 132,
                    "nd-router-solicit": 133, "nd-router-advert": 134, "nd-neighbor-solicit": 135,
                    "nd-neighbor-advert": 136, "nd-redirect": 137, "router-renumbering": 138,
                    "ind-neighbor-solicit": 141, "ind-neighbor-advert": 142, "mld2-listener-report": 143},
    "icmp_code": {"net-unreachable": 0, "host-unreachable": 1, "prot-unreachable": 2, "port-unreachable": 3,
                  "frag-needed": 4, "net-prohibited": 9, "host-prohibited": 10, "admin-prohibited": 13},
    "icmpv6_code": {"no-route": 0, "admin-prohibited": 1, "addr-unreachable": 3, "port-unreachable": 4,
                    "policy-fail": 5, "reject-route": 6},
    "pkttype": {"host": 0, "unicast": 0, "broadcast": 1, "multicast": 2, "other": 3},
    "nf_proto": {"ipv4": 2, "ipv6": 10},
    "ether_type": {"ip": 0x0800, "arp": 0x0806, "8021q": 0x8100, "vlan": 0x8100, "ip6": 0x86DD, "8021ad": 0x88A8},
    "fib_addrtype": {"unspec": 0, "unicast": 1, "local": 2, "broadcast": 3, "anycast": 4, "multicast": 5,
                     "blackhole": 6, "unreachable": 7, "prohibit": 8},
    "boolean": {"exists": 1, "missing": 0, "true": 1, "false": 0},
}
BITMASKS = frozenset({"ct_state", "ct_status", "tcp_flag"})  # a bare value of these is a flag test
ADDRESSES = {"ipv4_addr": 4, "ipv6_addr": 6}


def ifname(name: str) -> int:
    """An interface name as the kernel's 16-byte register holds it."""
    raw = name.encode()[:IFNAMSIZ]
    return int.from_bytes(raw.ljust(IFNAMSIZ, b"\0"), "big")


def _ifname_interval(text: str) -> Interval:
    """`in0` exactly, or `in*`: every name whose first bytes are `in` (a literal star is `\\*`)."""
    if text.endswith("*") and not text.endswith("\\*"):
        stem = text[:-1].encode()
        pad = IFNAMSIZ - len(stem)
        return (int.from_bytes(stem + b"\0" * pad, "big"), int.from_bytes(stem + b"\xff" * pad, "big"))
    v = ifname(text.replace("\\*", "*"))
    return v, v


def _address(version: int, text: str) -> int:
    try:
        a = ipaddress.ip_address(text)
    except ValueError:
        raise NftValueError(f"`{text}` is not an IPv{version} address") from None
    if a.version != version:
        raise NftValueError(f"`{text}` is not an IPv{version} address")
    return int(a)


def _scalar(dtype: str, v: Any) -> int:
    if isinstance(v, bool):
        return int(v)
    if dtype in ADDRESSES:
        return _address(ADDRESSES[dtype], str(v))
    if isinstance(v, int):
        return v
    if not isinstance(v, str):
        raise NftValueError(f"{dtype} value {v!r} is not a number or name")
    if dtype in SYMBOLS and v in SYMBOLS[dtype]:
        return SYMBOLS[dtype][v]
    try:
        return int(v, 0)
    except ValueError:
        raise NftValueError(f"`{v}` is not a known {dtype} value") from None


def interval(dtype: str, v: Any) -> Interval:
    """The integers a right-hand value or set element component stands for."""
    if isinstance(v, dict) and "prefix" in v and dtype in ADDRESSES:
        p = v["prefix"]
        version = ADDRESSES[dtype]
        bits = 32 if version == 4 else 128
        try:
            net = ipaddress.ip_network(f"{p['addr']}/{p['len']}", strict=False)
        except (ValueError, KeyError, TypeError):
            raise NftValueError(f"{v!r} is not an IPv{version} prefix") from None
        if net.version != version:
            raise NftValueError(f"{v!r} is not an IPv{version} prefix")
        return int(net.network_address), int(net.network_address) | ((1 << (bits - net.prefixlen)) - 1)
    if isinstance(v, dict) and "range" in v:
        r = v["range"]
        if not isinstance(r, list) or len(r) != 2:
            raise NftValueError(f"{v!r} is not a range")
        return interval(dtype, r[0])[0], interval(dtype, r[1])[1]
    if dtype in ("ifname", "iface_index", "string"):
        if dtype == "iface_index" and v in (0, "0"):
            return 0, 0  # no device (nft prints index 0 as "0")
        if not isinstance(v, str):
            raise NftValueError(f"{dtype} value {v!r} is not a name")
        return _ifname_interval(v) if dtype == "ifname" else (ifname(v), ifname(v))
    if isinstance(v, dict) and isinstance(v.get("|"), list) and dtype in BITMASKS:  # `syn|ack` in a set
        v = v["|"]
    if isinstance(v, list) and dtype in BITMASKS:
        n = 0
        for item in v:
            n |= _scalar(dtype, item)
        return n, n
    if isinstance(v, dict):
        raise NftValueError(f"{dtype} value {v!r} is not understood")
    n = _scalar(dtype, v)
    return n, n
