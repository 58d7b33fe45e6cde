"""The conntrack state of a packet that opens a flow on an empty connection table.

Each rule below is what net/netfilter/nf_conntrack_proto_*.c does with the
first packet it sees for a tuple (kernel 6.x, default sysctls:
nf_conntrack_tcp_loose=1, nf_conntrack_checksum=1 with correct checksums).
"""
from __future__ import annotations

from .netfilter import TCP_FLAGS
from .packet import Packet
from .ruleset import Family

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = TCP_FLAGS.values()

# tcp_error(): flag combinations conntrack accepts at all, after masking ECE, CWR and PSH.
# Anything else (NULL, XMAS, SYN+FIN, SYN+RST, FIN alone, ...) is INVALID.
TCP_VALID_FLAGS = {SYN, SYN | URG, SYN | ACK, RST, RST | ACK, FIN | ACK, FIN | ACK | URG, ACK, ACK | URG}

# icmp_new() / icmpv6_new(): only queries may open a connection.
# Everything else is INVALID: replies have no request to belong to, and icmp_error() finds no
# connection for the packet an error message quotes, so no entry is attached.
ICMP_QUERIES = {8, 13, 15, 17}  # echo, timestamp, info, address-mask request
ICMPV6_QUERIES = {128, 139}  # echo request, node information query
# icmpv6_error(): MLD and neighbour discovery are left UNTRACKED on purpose.
ICMPV6_UNTRACKED = {130, 131, 132, 133, 134, 135, 136, 143}


def tcp_first(flags: int) -> str:
    """State of a TCP segment that matches no connection.

    tcp_error() rejects invalid flag combinations; tcp_new() then looks up
    tcp_conntracks[0][index][TCP_CONNTRACK_NONE]: SYN opens SYN_SENT (NEW);
    a bare ACK is picked up mid-stream as ESTABLISHED internally, but the
    packet's ctinfo is still IP_CT_NEW, so -m state sees NEW (only with
    nf_conntrack_tcp_loose=1, the default); SYN/ACK, FIN/ACK and RST map to
    sIV and the packet is left without a conntrack entry: INVALID.
    """
    core = flags & ~(ECE | CWR | PSH)
    if core not in TCP_VALID_FLAGS:
        return "INVALID"
    if core & SYN and not core & ACK:
        return "NEW"
    if core & (SYN | FIN | RST):
        return "INVALID"
    return "NEW"  # ACK or ACK|URG, picked up by loose tracking


def first_packet_state(pkt: Packet) -> str:
    """The ctstate -m state/-m conntrack see for a packet opening a flow on an empty table."""
    if pkt.proto == 6:
        return tcp_first(pkt.tcp_flags)
    if pkt.family is Family.IPV4 and pkt.proto == 1:
        return "NEW" if pkt.icmp_type in ICMP_QUERIES else "INVALID"
    if pkt.family is Family.IPV6 and pkt.proto == 58:
        if pkt.icmp_type in ICMPV6_UNTRACKED:
            return "UNTRACKED"
        return "NEW" if pkt.icmp_type in ICMPV6_QUERIES else "INVALID"
    # udp, udplite, gre and the generic tracker open an entry for anything. sctp and dccp would
    # check the first chunk/packet type, which the packet model does not carry: NEW is assumed.
    return "NEW"
