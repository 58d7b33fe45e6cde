"""Matches on packet headers (interfaces, icmp/icmp6, multiport, iprange, length, ttl/hl, tos/dscp,
pkttype, mac, addrtype, owner, string) on packets that hit and miss them, through the simulator.
Expectations follow the kernel functions named in each extension's docstring."""
from __future__ import annotations

import pytest

from stockade.extensions.string import kernel_upper
from stockade.model import Family
from tests.simulation import (
    PEERS_V4,
    V6,
    A,
    D,
    hits,
    rule_hits,
    rules,
    run,
    simulator,
    udp,
    verdict,
)

# ---- core interface matches -------------------------------------------------------------------------

def test_interface_wildcard_with_no_device():
    """With no output device (INPUT) the name reads as "": `-o +` matches and `! -o +` never does (the
    kernel compares nothing, and iptables-nft writes `! -o +` as a name no device has); `-o eth+` fails."""
    sim = simulator(":U - [0:0]\n-A INPUT -j U\n-A U -o +\n-A U ! -o +\n-A U -o eth+\n-A U ! -o eth+\n"
                    "-A U ! -o eth0\n-A U ! -i +")  # iptables refuses -o in INPUT itself, not in a chain it calls
    assert hits(sim, f"udp {A}:1 > {D}:53 iif eth0") == [1, 1, 4, 5]


def test_output_packets_are_never_martians():
    """Sources checked on receipt (::1, 127/8) are normal in what this host sends."""
    sim = simulator("-A OUTPUT -p udp", V6)
    assert hits(sim, "udp [::1]:5 > [::1]:53 hook OUTPUT oif lo") == [1]
    assert hits(simulator("-A OUTPUT -p udp"), "udp 127.0.0.1:5 > 127.0.0.1:53 hook OUTPUT oif lo") == [1]


# ---- icmp / icmp6 --------------------------------------------------------------------------------

ICMP_RULES = """
-A FORWARD -p icmp -m icmp --icmp-type 8
-A FORWARD -p icmp -m icmp ! --icmp-type 8
-A FORWARD -p icmp -m icmp --icmp-type any
-A FORWARD -p icmp -m icmp --icmp-type 3/1:3
-A FORWARD -p icmp -m icmp ! --icmp-type any
"""


@pytest.mark.parametrize("spec, expected", [
    ("type 8", [1, 3]),
    ("type 0", [2, 3]),
    ("type 3 code 0", [2, 3]),
    ("type 3 code 1", [2, 3, 4]),
    ("type 3 code 3", [2, 3, 4]),
    ("type 3 code 4", [2, 3]),
    ("type 8 frag 20", []),  # a non-first fragment matches neither way
    ("type 8 mf", [1, 3]),  # the first fragment carries the header
])
def test_icmp(spec, expected):
    sim = simulator(ICMP_RULES)
    assert hits(sim, f"icmp {A} > {D} {spec} hook FORWARD iif eth0 oif eth1") == expected


def test_icmp6_has_no_wildcard_type():
    sim = simulator("""
-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 128
-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 1/3:4
-A INPUT -p ipv6-icmp -m icmp6 ! --icmpv6-type 1
-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 255
""", V6)
    assert hits(sim, "icmpv6 2001:db8::7 > 2001:db8::1 type 128 iif eth0") == [1, 3]
    assert hits(sim, "icmpv6 2001:db8::7 > 2001:db8::1 type 1 code 4 iif eth0") == [2]
    assert hits(sim, "icmpv6 2001:db8::7 > 2001:db8::1 type 1 code 5 iif eth0") == []
    assert hits(sim, "icmpv6 2001:db8::7 > 2001:db8::1 type 255 iif eth0") == [3, 4]
    assert hits(sim, "icmpv6 2001:db8::7 > 2001:db8::1 type 128 frag 3 iif eth0") == []


# ---- multiport -----------------------------------------------------------------------------------

MULTIPORT_RULES = """
-A FORWARD -p tcp -m multiport --dports 22,80:90
-A FORWARD -p tcp -m multiport ! --dports 22,80:90
-A FORWARD -p tcp -m multiport --sports 1024:2048
-A FORWARD -p tcp -m multiport --ports 53,443
-A FORWARD -p tcp -m multiport ! --ports 53,443
"""


@pytest.mark.parametrize("ports, expected", [
    ("5000 > x:22", [1, 5]),
    ("5000 > x:79", [2, 5]),
    ("5000 > x:80", [1, 5]),
    ("5000 > x:90", [1, 5]),
    ("5000 > x:91", [2, 5]),
    ("1023 > x:91", [2, 5]),
    ("1024 > x:91", [2, 3, 5]),
    ("2048 > x:91", [2, 3, 5]),
    ("443 > x:91", [2, 4]),  # --ports: either side
    ("5000 > x:53", [2, 4]),
])
def test_multiport(ports, expected):
    sport, dport = ports.replace(" > x:", " ").split()
    sim = simulator(MULTIPORT_RULES)
    assert hits(sim, f"tcp {A}:{sport} > {D}:{dport} SYN hook FORWARD iif eth0 oif eth1") == expected


def test_multiport_non_first_fragment_never_matches_either_way():
    sim = simulator(MULTIPORT_RULES)
    assert hits(sim, f"tcp {A}:5000 > {D}:22 SYN frag 10 hook FORWARD iif eth0 oif eth1") == []
    assert hits(sim, f"tcp {A}:5000 > {D}:22 SYN mf hook FORWARD iif eth0 oif eth1") == [1, 5]


def test_multiport_ipv6_udp():
    sim = simulator("-A INPUT -p udp -m multiport --dports 53,123\n-A INPUT -p udp -m multiport ! --sports 53", V6)
    assert hits(sim, "udp [2001:db8::7]:53 > [2001:db8::1]:123 iif eth0") == [1]
    assert hits(sim, "udp [2001:db8::7]:54 > [2001:db8::1]:124 iif eth0") == [2]


# ---- simple header matches ----

def test_iprange_edges_inversion_and_backwards_range():
    s = rules("-A INPUT -m iprange --src-range 192.0.2.2-192.0.2.10", "-A INPUT -m iprange ! --dst-range 10.0.0.1-10.0.0.5",
              "-A INPUT -m iprange --src-range 192.0.2.9-192.0.2.3")
    assert rule_hits(s, **udp(src="192.0.2.2", dst="10.0.0.1")) == [1]
    assert rule_hits(s, **udp(src="192.0.2.10", dst="10.0.0.6")) == [1, 2]
    assert rule_hits(s, **udp(src="192.0.2.11", dst="10.0.0.5")) == []
    assert rule_hits(s, **udp(src="192.0.2.1", dst="10.0.0.0")) == [2]
    s6 = rules("-A INPUT -m iprange --src-range 2001:db8::2-2001:db8::10 --dst-range ::1-::1", family=Family.IPV6)
    assert rule_hits(s6, **udp(src="2001:db8::10", dst="::1")) == [1]
    assert rule_hits(s6, **udp(src="2001:db8::11", dst="::1")) == []


def test_length_both_families():
    s = rules("-A INPUT -m length --length 100:200", "-A INPUT -m length ! --length 101")
    assert [rule_hits(s, **udp(length=n)) for n in (99, 100, 101, 200, 201)] == [[2], [1, 2], [1], [1, 2], [2]]
    s6 = rules("-A INPUT -m length --length 100", family=Family.IPV6)
    assert rule_hits(s6, **udp(src="2001:db8::2", dst="2001:db8::1", length=100)) == [1]  # 40 + payload length 60
    assert rule_hits(s6, **udp(src="2001:db8::2", dst="2001:db8::1", length=99)) == []


def test_ttl_and_hl_see_forwarding_lower_it():
    s = rules("-A INPUT -m ttl --ttl-eq 64", "-A INPUT -m ttl --ttl-lt 10", "-A INPUT -m ttl ! --ttl-eq 5",
              "-A FORWARD -m ttl --ttl-eq 63", "-A FORWARD -m ttl --ttl-gt 63")
    assert rule_hits(s, **udp(ttl=64)) == [1, 3]
    assert rule_hits(s, **udp(ttl=9)) == [2, 3]
    assert rule_hits(s, **udp(ttl=5)) == [2]
    assert rule_hits(s, **udp(ttl=64, hook="FORWARD", dst="198.51.100.2", oif="eth1")) == [1]  # FORWARD rule 1: 63
    assert rule_hits(s, **udp(ttl=65, hook="FORWARD", dst="198.51.100.2", oif="eth1")) == [2]
    gone = run(s, **udp(ttl=1, hook="FORWARD", dst="198.51.100.2", oif="eth1"))
    assert gone.verdict == "DROP" and gone.matched == [] and "time exceeded" in gone.reason
    s6 = rules("-A INPUT -m hl --hl-gt 254", "-A FORWARD -m hl --hl-eq 254", family=Family.IPV6)
    assert rule_hits(s6, **udp(src="2001:db8::2", dst="2001:db8::1", ttl=255)) == [1]
    assert rule_hits(s6, **udp(src="2001:db8::2", dst="2001:db8:9::1", ttl=255, hook="FORWARD", oif="eth1")) == [1]


def test_tos_dscp_matches_and_targets():
    s = rules("-A INPUT -m tos --tos 0x10/0x3f", "-A INPUT -m dscp --dscp 0x2e", "-A INPUT -m dscp ! --dscp-class AF11")
    assert rule_hits(s, **udp(tos=0x50)) == [1, 3]
    assert rule_hits(s, **udp(tos=0xBB)) == [2, 3]
    assert rule_hits(s, **udp(tos=0x28)) == []
    m = rules("-A PREROUTING -j DSCP --set-dscp-class EF", "-A PREROUTING -m dscp --dscp 46",
              "-A PREROUTING -m tos --tos 0xbb", "-A PREROUTING -j TOS --set-tos Minimize-Delay",
              "-A PREROUTING -m tos --tos 0x10", "-A PREROUTING -j TOS --xor-tos 0x01", "-A PREROUTING -m tos --tos 0x91",
              table="mangle")
    # DSCP keeps the ECN bits; a TOS name's mask 0x3f takes the low bits with it; --xor-tos keeps the rest
    assert rule_hits(m, **udp(tos=0x03)) == [1, 2, 3, 4, 6, 7]
    assert rule_hits(m, **udp(tos=0x00)) == [1, 2, 4, 6, 7]


def test_pkttype():
    s = rules("-A INPUT -m pkttype --pkt-type unicast", "-A INPUT -m pkttype --pkt-type broadcast",
              "-A INPUT -m pkttype ! --pkt-type multicast")
    assert rule_hits(s, **udp()) == [1, 3]
    assert rule_hits(s, **udp(dst="255.255.255.255")) == [2, 3]
    assert rule_hits(s, **udp(dst="224.0.0.251")) == []
    assert rule_hits(s, **udp(pkttype="broadcast")) == [2, 3]  # a subnet broadcast must be given
    assert rule_hits(s, **udp(pkttype="loopback")) == [2, 3]  # own broadcast looped back
    assert rule_hits(s, **udp(pkttype="loopback", dst="224.0.0.9")) == []
    s6 = rules("-A INPUT -m pkttype --pkt-type multicast", family=Family.IPV6)
    assert rule_hits(s6, **udp(src="2001:db8::2", dst="2001:db8::1", pkttype="loopback")) == [1]


def test_mac():
    s = rules("-A INPUT -m mac --mac-source 52:54:00:12:34:56", "-A INPUT -m mac ! --mac-source 52:54:00:12:34:56")
    assert rule_hits(s, **udp(src_mac="52:54:00:12:34:56")) == [1]
    assert rule_hits(s, **udp(src_mac="02:00:00:00:00:01")) == [2]
    assert rule_hits(s, **udp(iif="lo")) == []  # no Ethernet header: false even with `!`
    assert verdict(s, **udp()) == "UNKNOWN"


def test_addrtype():
    s = rules("-A INPUT -m addrtype --dst-type LOCAL", "-A INPUT -m addrtype --src-type BROADCAST",
              "-A INPUT -m addrtype ! --dst-type MULTICAST --src-type UNICAST")
    assert rule_hits(s, **udp(dst_type="LOCAL", src_type="UNICAST")) == [1, 3]
    b = rules("-A INPUT -m addrtype --dst-type BROADCAST", "-A INPUT -m addrtype --dst-type MULTICAST")
    assert rule_hits(b, **udp(dst="255.255.255.255", dst_type="LOCAL")) == [1]  # address-determined types win
    assert rule_hits(b, **udp(dst="224.0.0.1")) == [2]
    assert verdict(s, **udp()) == "UNKNOWN"
    limited = rules("-A INPUT -m addrtype --dst-type LOCAL --limit-iface-in", "-A INPUT -m addrtype --dst-type UNICAST --limit-iface-in")
    assert verdict(limited, **udp(dst_type="LOCAL")) == "UNKNOWN"
    assert rule_hits(limited, **udp(dst="224.0.0.1")) == []
    assert rule_hits(rules("-A INPUT -m addrtype --dst-type UNICAST --limit-iface-in"), **udp(dst_type="UNICAST")) == [1]
    s6 = rules("-A INPUT -m addrtype --dst-type MULTICAST", "-A INPUT -m addrtype --dst-type LOCAL,MULTICAST",
               "-A INPUT -m addrtype --src-type UNICAST", "-A INPUT -m addrtype --dst-type UNSPEC", family=Family.IPV6)
    # IPv6 lists are requirements: LOCAL,MULTICAST needs a multicast address the route lookup calls local
    assert rule_hits(s6, **udp(src="2001:db8::2", dst="ff02::fb", dst_type="LOCAL")) == [1, 2, 3]
    assert rule_hits(s6, **udp(src="::ffff:192.0.2.2", dst="2001:db8::1", dst_type="LOCAL")) == []  # mapped: not unicast
    assert verdict(s6, **udp(src="2001:db8::2", dst="2001:db8::1")) == "ACCEPT"  # decided by the address class


def test_owner():
    s = rules("-A OUTPUT -m owner --uid-owner 1000-1999", "-A OUTPUT -m owner ! --gid-owner 100",
              "-A OUTPUT -m owner --gid-owner 50 --suppl-groups", "-A OUTPUT -m owner ! --socket-exists")
    out = {"hook": "OUTPUT", "iif": None}
    assert rule_hits(s, **udp(uid=1000, gid=100, groups=[50], **out)) == [1, 3]
    assert rule_hits(s, **udp(uid=2000, gid=7, groups=[], **out)) == [2]
    assert verdict(s, **udp(uid=5, gid=50, **out)) == "ACCEPT"
    assert verdict(s, **udp(uid=5, gid=7, **out)) == "UNKNOWN"  # suppl groups needed, not given
    assert verdict(s, **udp(**out)) == "UNKNOWN"  # socket unknown
    p = rules("-A POSTROUTING -m owner ! --uid-owner 0", "-A POSTROUTING -m owner ! --uid-owner 0"
              " ! --gid-owner 1 --suppl-groups", "-A POSTROUTING -m owner --socket-exists", table="mangle")
    # a forwarded packet has no socket: only all-negated tests hold, and --suppl-groups spoils even that
    assert rule_hits(p, **udp(hook="FORWARD", dst="198.51.100.2", oif="eth1")) == [1]


# ---- -m string ----

HTTP = "GET /index.html HTTP/1.1"


@pytest.mark.parametrize("rule,spec,want", [
    ("--string \"GET /\" --algo kmp", {}, [1]),
    ("--string \"GET /\" --algo bm --from 28", {}, "UNKNOWN"),  # the buffer may be split anywhere after the IP header
    ("--string \"GET /\" --algo bm", {"buffer_splits": [20]}, [1]),
    ("--string \"GET /\" --algo bm", {"buffer_splits": [20, 42]}, []),  # crosses a split: bm misses it
    ("--string \"GET /\" --algo kmp", {"buffer_splits": [42]}, [1]),
    ("--string \"get /\" --algo kmp --icase", {}, [1]),
    ("--string \"get /\" --algo kmp", {}, "UNKNOWN"),  # could hide in the TCP sequence numbers
    ("--string \"get /\" --algo kmp --from 40", {}, []),
    ("! --string \"xyz\" --algo kmp --from 40", {}, [1]),
    ("--string \"HTTP\" --algo kmp --from 40 --to 59", {}, []),  # bytes 56-59: must lie wholly before --to
    ("--string \"HTTP\" --algo kmp --from 40 --to 60", {}, [1]),
    ("--hex-string |c0000202| --algo bm --to 16", {}, [1]),  # the source address, in the IP header
])
def test_string(rule, spec, want):
    s = rules(f"-A INPUT -m string {rule}")
    pkt = {"proto": "tcp", "dport": 80, "payload": HTTP, **PEERS_V4, **spec}
    assert (verdict(s, **pkt) if want == "UNKNOWN" else rule_hits(s, **pkt)) == want


def test_string_without_payload_and_kernel_case_folding():
    s = rules("-A INPUT -m string --string x --algo kmp")
    assert verdict(s, **udp()) == "UNKNOWN"
    assert kernel_upper(ord("a")) == ord("A") and kernel_upper(0xE9) == 0xC9 and kernel_upper(0xFF) == 0xDF
    s = rules("-A INPUT -m string --hex-string |df| --algo bm --icase --from 28")
    assert rule_hits(s, **udp(payload_hex="bf", buffer_splits=[20])) == [1]  # toupper(0xdf) is 0xbf in the kernel
    assert verdict(s, **udp(payload_hex="ffbf", buffer_splits=[20])) == "UNKNOWN"  # bm may skip after 0xff


def test_string_ipv6_fragment_layout():
    s = rules("-A INPUT -m string --hex-string |0011| --algo kmp --from 48", family=Family.IPV6)
    assert rule_hits(s, **udp(src="2001:db8::2", dst="2001:db8::1", frag_offset=3, payload_hex="0011")) == [1]
