"""Netfilter's fixed vocabulary: protocols, TCP flags, hooks, conntrack states, route types,
ICMP error types and the sources the kernel drops before any rule sees them. Each constant
is defined here once; the parsers, the simulator, the analyser and the back ends share it."""
from __future__ import annotations

import ipaddress

# Protocol numbers as iptables-save prints them: the first name netbase's /etc/protocols
# gives (iptables calls getprotobynumber), fixed here so output does not vary by machine.
PROTO_PRINT = {
    1: "icmp", 2: "igmp", 3: "ggp", 4: "ipencap", 5: "st", 6: "tcp", 8: "egp", 9: "igp", 12: "pup",
    17: "udp", 20: "hmp", 22: "xns-idp", 27: "rdp", 29: "iso-tp4", 33: "dccp", 36: "xtp", 37: "ddp",
    38: "idpr-cmtp", 41: "ipv6", 43: "ipv6-route", 44: "ipv6-frag", 45: "idrp", 46: "rsvp", 47: "gre",
    50: "esp", 51: "ah", 57: "skip", 58: "ipv6-icmp", 59: "ipv6-nonxt", 60: "ipv6-opts", 73: "rspf",
    81: "vmtp", 88: "eigrp", 89: "ospf", 93: "ax.25", 94: "ipip", 97: "etherip", 98: "encap", 103: "pim",
    108: "ipcomp", 112: "vrrp", 115: "l2tp", 124: "isis", 132: "sctp", 133: "fc", 135: "mobility-header",
    136: "udplite", 137: "mpls-in-ip", 138: "manet", 139: "hip", 140: "shim6", 141: "wesp", 142: "rohc",
    143: "ethernet",
}
# Names iptables accepts: its own table (xtables_chain_protos), then /etc/protocols names and aliases.
PROTO_NAMES = {name: num for num, name in PROTO_PRINT.items()} | {
    "all": 0, "icmpv6": 58, "mh": 135, "ipv6-mh": 135, "ip": 0}
PORT_PROTOS = (6, 17, 132, 33, 136)  # tcp, udp, sctp, dccp, udplite: a connection has ports
ICMP_PROTOS = (1, 58)

TCP_FLAGS = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20, "ECE": 0x40,
             "CWR": 0x80}
SYN, ACK, RST = TCP_FLAGS["SYN"], TCP_FLAGS["ACK"], TCP_FLAGS["RST"]

BUILTIN_HOOKS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
FILTER_HOOKS = ("INPUT", "FORWARD", "OUTPUT")  # where a packet spec, diff and findings start
SEES_IIF = ("PREROUTING", "INPUT", "FORWARD")  # hooks where a packet has an input device
SEES_OIF = ("FORWARD", "OUTPUT", "POSTROUTING")

CT_STATES = ("NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED")

# Route types in kernel order (RTN_*), the order iptables prints them in.
ROUTE_TYPES = ("UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE", "UNREACHABLE",
               "PROHIBIT", "THROW", "NAT", "XRESOLVE")

# ICMP types that are errors (icmp_pointers[].error): they quote a packet, and nothing answers them.
ICMP_ERRORS = frozenset({3, 4, 5, 11, 12})
ICMPV6_ERRORS = frozenset({1, 2, 3, 4})  # ICMPv6 types below 128

# ip_route_input_slow drops these IPv4 sources after PREROUTING: 0.0.0.0 itself (the rest of 0.0.0.0/8 is
# routed since Linux 5.3), loopback (route_localnet=0), multicast and the limited broadcast. 240.0.0.0/4 is
# routed like any unicast source. (Measured in a namespace by tests/kernel/test_differential.py.)
MARTIAN_V4 = [ipaddress.ip_network(n) for n in ("0.0.0.0/32", "127.0.0.0/8", "224.0.0.0/4", "255.255.255.255/32")]
# ip6_rcv_core drops these IPv6 sources before any hook: not even raw PREROUTING or conntrack sees them.
MARTIAN_V6 = [ipaddress.ip_network(n) for n in ("::1/128", "ff00::/8")]
# ip6_forward refuses to forward the unspecified and link-local sources (INPUT takes them).
UNFORWARDED_V6 = [ipaddress.ip_network(n) for n in ("::/128", "fe80::/10")]


def proto_name(number: int) -> str:
    return PROTO_PRINT.get(number, str(number))


def proto_number(word: str) -> int | None:
    """A protocol name or number 0-255 as iptables reads it; None if it is neither."""
    w = word.lower()
    if w in PROTO_NAMES:
        return PROTO_NAMES[w]
    return int(w) if w.isdigit() and int(w) <= 255 else None
