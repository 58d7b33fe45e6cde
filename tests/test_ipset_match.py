"""-m set through the simulator: set types, nomatch, dimensions, unknown contents, counters, timeouts
and list:set."""
from __future__ import annotations

from stockade.model import Family, IPSet
from tests.simulation import PEERS_V4, rule_hits, rules, udp, verdict

# ---- -m set ----

SETS = (
    IPSet("n4", "hash:net", (), ["192.0.2.0/24", "192.0.2.2 nomatch", "10.0.0.0/8"]),
    IPSet("ipp", "hash:ip,port", (), ["192.0.2.2,udp:53", "192.0.2.3,tcp:80", "192.0.2.4,icmp:8/0"]),
    IPSet("bp", "bitmap:port", ("range", "0-1024"), ["53", "80"]),
    IPSet("lst", "list:set", (), ["ipp", "n4"]),
    IPSet("nn", "hash:net,net", (), ["192.0.2.0/24,192.0.2.0/30", "192.0.2.2,192.0.2.0/24 nomatch"]),
    IPSet("ipn", "hash:ip,port,net", (), ["192.0.2.2,udp:53,192.0.2.0/24"]),
    IPSet("n6", "hash:net", ("family", "inet6"), ["2001:db8::/32"]),
    IPSet("hip", "hash:ip", ("netmask", "24"), ["198.51.100.7"]),
    IPSet("bip", "bitmap:ip", ("range", "192.0.2.0/24"), ["192.0.2.2-192.0.2.3"]),
    IPSet("mk", "hash:ip,mark", ("markmask", "0xff"), ["192.0.2.2,0x05"]),
    IPSet("odd", "hash:ip", ("bitmask", "255.255.0.0"), ["192.0.2.2"]),
)


def test_set_types_nomatch_and_dimensions():
    s = rules("-A INPUT -m set --match-set n4 src", "-A INPUT -m set --match-set n4 src --return-nomatch",
              "-A INPUT -m set ! --match-set n4 src", "-A INPUT -m set --match-set ipp src,dst",
              "-A INPUT -m set --match-set ipp src", "-A INPUT -m set --match-set bp dst",
              "-A INPUT -m set --match-set lst src,dst", "-A INPUT -m set --match-set nn src,dst",
              "-A INPUT -m set --match-set nn src,dst --return-nomatch", "-A INPUT -m set --match-set ipn src,dst,src",
              "-A INPUT -m set --match-set hip src", "-A INPUT -m set --match-set bip src",
              "-A INPUT -m set --match-set mk src,src", sets=SETS)
    # 192.0.2.2 is a nomatch element inside 192.0.2.0/24: the /32 wins; ipp needs two flags; nn tries
    # (/32, /30) then (/32, /24), which is the nomatch element
    assert rule_hits(s, **udp(src="192.0.2.2")) == [2, 3, 4, 6, 7, 9, 10, 12]
    assert rule_hits(s, **udp(src="192.0.2.3", dport=80)) == [1, 6, 7, 8, 12]  # bitmap:port takes TCP or UDP
    assert rule_hits(s, **{"proto": "tcp", "dport": 80, **PEERS_V4, "src": "192.0.2.3"}) == [1, 4, 6, 7, 8, 12]
    assert rule_hits(s, **udp(src="198.51.100.9", dport=1025)) == [3, 11]  # outside the bitmap's range
    assert rule_hits(s, **udp(src="192.0.2.2", mark=0x105)) == [2, 3, 4, 6, 7, 9, 10, 12, 13]
    assert rule_hits(s, **{"proto": "icmp", "icmp_type": 8, **PEERS_V4, "src": "192.0.2.4"}) == [1, 4, 7, 8]
    pre = rules("-A PREROUTING -m set --match-set n4 src", "-A PREROUTING -m set --match-set ipp src,dst",
                "-A PREROUTING -m set --match-set bip src", table="mangle", sets=SETS)
    assert rule_hits(pre, **udp(src="192.0.2.3", frag_offset=2)) == [1, 3]  # no ports in a later fragment
    s6 = rules("-A INPUT -m set --match-set n6 src", "-A INPUT -m set --match-set n4 src", family=Family.IPV6,
               sets=SETS)
    assert rule_hits(s6, **udp(src="2001:db8::2", dst="2001:db8::1")) == [1]  # an inet set never matches IPv6


def test_set_unknown_contents():
    s = rules("-A INPUT -m set --match-set odd src", "-A INPUT -m set --match-set lst src,dst", sets=SETS)
    assert verdict(s, **udp()) == "UNKNOWN"  # bitmask is not modelled
    none = rules("-A INPUT -m set --match-set n4 src")  # the model was given no contents
    assert verdict(none, **udp()) == "UNKNOWN"
    macs = rules("-A INPUT -m set --match-set m src", sets=(IPSet("m", "hash:mac", (), ["52:54:00:12:34:56"]),))
    assert verdict(macs, **udp()) == "UNKNOWN"
    assert rule_hits(macs, **udp(src_mac="52:54:00:12:34:56")) == [1]
    assert rule_hits(macs, **udp(iif="lo")) == []


def test_set_counters_are_stateful():
    cnt = (IPSet("cnt", "hash:ip", ("counters",), ["192.0.2.2", "192.0.2.4 packets 5 bytes 100"]),)
    s = rules("-A INPUT -m set --match-set cnt src --packets-gt 1",
              "-A INPUT -m set --match-set cnt src ! --update-counters --bytes-lt 150",
              "-A INPUT -m set --match-set cnt src --packets-eq 3", sets=cnt)
    # each rule that looks at the element counts the packet first (unless told not to): as the kernel did
    assert [rule_hits(s, **udp(length=40)) for _ in range(4)] == [[2], [1, 2], [1], [1]]
    assert [rule_hits(s, **udp(src="192.0.2.4", length=40)) for _ in range(2)] == [[1, 2], [1]]
    fresh = rules("-A INPUT -m set --match-set cnt src --packets-gt 1", sets=cnt)
    assert rule_hits(fresh, **udp(length=40)) == []  # a new simulator starts from the listed counters


def test_set_timeouts():
    to = (IPSet("to", "hash:ip", ("timeout", "100"), ["192.0.2.2", "192.0.2.3 timeout 0", "192.0.2.4 timeout 5"]),)
    s = rules("-A INPUT -m set --match-set to src", sets=to)
    assert rule_hits(s, **udp(t=100.0)) == [1]
    assert rule_hits(s, **udp(t=100.004)) == []  # one jiffy (HZ 250) past the timeout
    assert rule_hits(s, **udp(src="192.0.2.3", t=1e6)) == [1]  # timeout 0: permanent
    assert rule_hits(s, **udp(src="192.0.2.4", t=5.0)) == [1]
    assert rule_hits(s, **udp(src="192.0.2.4", t=5.004)) == []


def test_list_set_subcounters():
    sets = (IPSet("a", "hash:ip", ("counters",), ["192.0.2.2"]), IPSet("l", "list:set", ("counters",), ["a"]))
    s = rules("-A INPUT -m set --match-set l src ! --update-subcounters", "-A INPUT -m set --match-set a src --packets-eq 1",
              "-A INPUT -m set --match-set l src --packets-eq 2", sets=sets)
    assert rule_hits(s, **udp()) == [1, 2, 3]
