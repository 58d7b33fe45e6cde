"""Matches with memory (limit, hashlimit, recent, connlimit) through the simulator: buckets, tables and
times across packets, per rule, and where the model must answer UNKNOWN. Expectations follow the kernel
functions named in each extension's docstring; several were measured on Linux 6.18."""
from __future__ import annotations

from tests.simulation import V6, A, B, D, hits, seq, simulator

# ---- limit ---------------------------------------------------------------------------------------

def test_limit_bucket():
    """2/sec, burst 3: 500 ms per token, counted in nanoseconds (nft_limit)."""
    sim = simulator("-A INPUT -m limit --limit 2/sec --limit-burst 3\n-A INPUT -m limit --limit 2/sec --limit-burst 3")
    got = seq(sim, f"udp {A}:5 > {D}:53 iif eth0", [0, 0.01, 0.02, 0.03, 0.53, 0.6, 1.03, 1.53, 1.5301, 10])
    assert got == [True, True, True, False, True, False, True, True, False, True]


def test_limit_refills_for_unmatched_packets_too():
    """A packet that finds the bucket short still moves its clock: tokens accrue continuously."""
    sim = simulator("-A INPUT -m limit --limit 1/sec --limit-burst 1")
    assert seq(sim, f"udp {A}:5 > {D}:53 iif eth0", [0, 0.5, 0.99, 1.0, 1.5, 2.0]) == \
        [True, False, False, True, False, True]


def test_limit_buckets_are_per_rule_and_untouched_when_rule_is_skipped():
    sim = simulator("-A INPUT -p tcp -m limit --limit 1/hour --limit-burst 1\n"
                    "-A INPUT -p udp -m limit --limit 1/hour --limit-burst 1")
    assert hits(sim, f"tcp {A}:5 > {D}:22 SYN iif eth0 t 0") == [1]
    assert hits(sim, f"udp {A}:5 > {D}:53 iif eth0 t 1") == [2]
    assert hits(sim, f"tcp {A}:5 > {D}:22 SYN iif eth0 t 2") == []


# ---- hashlimit -----------------------------------------------------------------------------------

def test_hashlimit_per_source():
    sim = simulator("-A INPUT -m hashlimit --hashlimit-upto 4/sec --hashlimit-burst 2 "
                    "--hashlimit-mode srcip --hashlimit-name h")
    a, b = f"udp {A}:5 > {D}:53 iif eth0", f"udp {B}:5 > {D}:53 iif eth0"
    assert seq(sim, a, [0, 0.02, 0.04]) == [True, True, False]
    assert seq(sim, b, [0.06, 0.08, 0.1]) == [True, True, False]
    # 250 ms a token; A's bucket held 0.16 tokens at jiffy 10 (0.04 s) and gains 0.016 a jiffy
    assert seq(sim, a, [0.25, 0.3, 0.33, 0.6]) == [False, True, False, True]  # jiffies 62, 75, 82, 150


def test_hashlimit_jiffies_and_masks():
    """Credits accrue per jiffy (HZ 250): a token of 250 ms is 62.5 jiffies, so it takes 63."""
    sim = simulator("-A INPUT -m hashlimit --hashlimit-upto 4/sec --hashlimit-burst 1 "
                    "--hashlimit-mode srcip --hashlimit-srcmask 24 --hashlimit-name m")
    assert hits(sim, f"udp {A}:5 > {D}:53 iif eth0 t 0") == [1]
    assert hits(sim, f"udp {B}:5 > {D}:53 iif eth0 t 0.248") == []  # same /24: same bucket; 62 jiffies
    assert hits(sim, f"udp {B}:5 > {D}:53 iif eth0 t 0.252") == [1]  # 63 jiffies
    assert hits(sim, f"udp 198.51.101.7:5 > {D}:53 iif eth0 t 0.26") == [1]


def test_hashlimit_above_and_ports():
    sim = simulator("-A INPUT -p udp -m hashlimit --hashlimit-above 1/hour --hashlimit-burst 1 "
                    "--hashlimit-mode dstport --hashlimit-name p")
    assert hits(sim, f"udp {A}:5 > {D}:53 iif eth0 t 0") == []
    assert hits(sim, f"udp {B}:6 > {D}:53 iif eth0 t 1") == [1]
    assert hits(sim, f"udp {B}:6 > {D}:54 iif eth0 t 2") == []


def test_hashlimit_ports_of_fragments():
    rules = ("-A FORWARD -m hashlimit --hashlimit-upto 1/hour --hashlimit-burst 1 "
             "--hashlimit-mode srcport --hashlimit-name f")
    v4 = simulator(rules)
    assert hits(v4, f"udp {A}:5 > {D}:53 frag 10 hook FORWARD iif eth0 oif eth1") is None  # reads payload
    assert hits(v4, f"icmp {A} > {D} type 8 frag 10 hook FORWARD iif eth0 oif eth1") == [1]  # no ports
    v6 = simulator(rules, V6)
    spec = "udp [2001:db8::7]:{} > [2001:db8::1]:53 frag 10 hook FORWARD iif eth0 oif eth1"
    assert hits(v6, spec.format(5)) == [1]
    assert hits(v6, spec.format(6)) == []  # no ports on IPv6: both are port 0


def test_hashlimit_bytes():
    """1kb/s, no burst: the bucket holds one second of credit; a packet costs (len/16 + 1) × cost."""
    sim = simulator("-A INPUT -m hashlimit --hashlimit-upto 1kb/s --hashlimit-name b")
    got = [1 in hits(sim, f"udp {A}:5 > {D}:53 len {n} iif eth0 t {t}")
           for t, n in ((0, 500), (0.01, 400), (0.02, 200), (0.5, 400), (0.51, 300))]
    assert got == [True, True, False, True, False]


def test_hashlimit_bytes_burst_refills_once_each():
    sim = simulator("-A INPUT -m hashlimit --hashlimit-upto 1kb/s --hashlimit-burst 2kb --hashlimit-name bb")
    got = [1 in hits(sim, f"udp {A}:5 > {D}:53 len 1000 iif eth0 t {i * 0.001}") for i in range(5)]
    assert got == [True, True, True, False, False]


def test_hashlimit_rate_match():
    sim = simulator("-A INPUT -m hashlimit --hashlimit-upto 10/sec --hashlimit-burst 2 --hashlimit-rate-match "
                    "--hashlimit-rate-interval 1 --hashlimit-name r")
    spec = f"udp {A}:5 > {D}:53 iif eth0"
    assert seq(sim, spec, [i * 0.03 for i in range(13)]) == [True] * 12 + [False]
    assert seq(sim, spec, [1.05, 1.1]) == [False, False]  # the last window was over the rate
    assert seq(sim, spec, [2.2]) == [True]


def test_hashlimit_expiry_is_unknown_when_it_matters():
    """Idle past --hashlimit-htable-expire, a flow may or may not have been collected yet."""
    sim = simulator("-A INPUT -m hashlimit --hashlimit-upto 1/sec --hashlimit-burst 2 "
                    "--hashlimit-htable-expire 1000 --hashlimit-name e")
    spec = f"udp {A}:5 > {D}:53 iif eth0"
    assert seq(sim, spec, [0, 0.02, 0.04, 0.3]) == [True, True, False, False]
    assert seq(sim, spec, [1.6, 1.62]) == [True, None]  # fresh bucket or a refilled one: both pass 1.6
    assert seq(sim, spec, [10]) == [True]  # long idle: every possibility is full again


def test_hashlimit_shared_table_must_agree():
    sim = simulator("-A INPUT -p tcp -m hashlimit --hashlimit-upto 1/sec --hashlimit-name s\n"
                    "-A INPUT -p udp -m hashlimit --hashlimit-above 1/sec --hashlimit-name s\n"
                    "-A INPUT -p icmp -m hashlimit --hashlimit-upto 2/sec --hashlimit-name t\n"
                    "-A INPUT -p icmp -m hashlimit --hashlimit-upto 3/sec --hashlimit-name t")
    assert hits(sim, f"tcp {A}:5 > {D}:22 SYN iif eth0") == [1]  # upto/above may differ
    assert hits(sim, f"icmp {A} > {D} type 8 iif eth0") is None  # which rate the table got: load order


# ---- recent --------------------------------------------------------------------------------------

RECENT_RULES = """
-A INPUT -p udp -m udp --dport 1 -m recent --set --name r --mask 255.255.255.0
-A INPUT -p udp -m udp --dport 2 -m recent --rcheck --seconds 1 --hitcount 2 --name r --mask 255.255.255.0
-A INPUT -p udp -m udp --dport 3 -m recent --update --seconds 1 --name r --mask 255.255.255.0
-A INPUT -p udp -m udp --dport 4 -m recent --remove --name r --mask 255.255.255.0
-A INPUT -p udp -m udp --dport 5 -m recent ! --update --seconds 1 --rttl --name r --mask 255.255.255.0
"""


def test_recent_sequence():
    """The sequence measured against Linux 6.18 (every answer agreed)."""
    sim = simulator(RECENT_RULES)

    def go(src, port, t, ttl=64):
        return hits(sim, f"udp {src}:1000 > {D}:{port} iif eth0 ttl {ttl} t {t}")
    a, a2, b = "198.18.1.1", "198.18.1.77", "198.18.2.7"
    assert go(a, 2, 0) == [] and go(a, 3, 0.02) == []  # nothing listed yet
    assert go(a, 1, 0.04) == [1]
    assert go(a2, 2, 0.06) == []  # same /24, one timestamp: hitcount 2 not reached
    assert go(a2, 3, 0.08) == [3]  # listed: matches and records a second timestamp
    assert go(a2, 2, 0.10) == [2]
    assert go(b, 5, 0.12) == [5]  # not listed: `!` holds, but nothing is recorded
    assert go(a, 5, 0.14, ttl=63) == [5]  # TTL differs from the one recorded: not found
    assert go(a, 5, 0.16) == []  # found: `!` fails, so --update records nothing
    assert go(a, 2, 0.18) == [2]
    assert go(a, 2, 1.3) == [] and go(a, 3, 1.32) == []  # all older than a second
    assert go(a, 4, 1.38) == [4] and go(a, 4, 1.40) == []


def test_recent_update_refreshes_only_when_it_matches():
    sim = simulator("-A INPUT -p udp -m udp --dport 1 -m recent --set --name u\n"
                    "-A INPUT -p udp -m udp --dport 2 -m recent --update --seconds 10 --hitcount 3 --name u")
    def go(port, t):
        return hits(sim, f"udp {A}:1000 > {D}:{port} iif eth0 t {t}")
    assert go(1, 0) == [1]
    assert [go(2, t) for t in (1, 2, 3)] == [[], [], []]  # never matches, so never counts up
    assert go(1, 4) == [1] and go(1, 5) == [1]
    assert go(2, 6) == [2] and go(2, 12) == [2]  # stamps at 0, 4, 5, 6: three within 10 s at 12


def test_recent_records_the_ttl_before_forwarding():
    sim = simulator("-A FORWARD -m recent --set --name t\n-A INPUT -m recent --rcheck --rttl --name t")
    assert hits(sim, f"udp {A}:5 > 203.0.113.9:53 ttl 64 hook FORWARD iif eth0 oif eth1 t 0") == [1]
    assert hits(sim, f"udp {A}:5 > {D}:53 ttl 63 iif eth0 t 1") == []
    assert hits(sim, f"udp {A}:5 > {D}:53 ttl 64 iif eth0 t 2") == [1]


def test_recent_keeps_100_addresses_and_reaps():
    sim = simulator("-A INPUT -p udp -m udp --dport 1 -m recent --set --name q\n"
                    "-A INPUT -p udp -m udp --dport 2 -m recent --rcheck --name q\n"
                    "-A INPUT -p udp -m udp --dport 6 -m recent --rcheck --seconds 1 --reap --name q")
    for i in range(101):
        assert hits(sim, f"udp 198.18.3.{i}:1000 > {D}:1 iif eth0 t {i * 0.01}") == [1]
    assert hits(sim, f"udp 198.18.3.0:1000 > {D}:2 iif eth0 t 1.1") == []  # evicted
    assert hits(sim, f"udp 198.18.3.1:1000 > {D}:2 iif eth0 t 1.1") == [2]
    # reap: the least recently updated address (198.18.3.1) is older than a second: dropped
    assert hits(sim, f"udp 198.18.3.100:1000 > {D}:6 iif eth0 t 1.9") == [3]
    assert hits(sim, f"udp 198.18.3.1:1000 > {D}:2 iif eth0 t 1.91") == []
    assert hits(sim, f"udp 198.18.3.2:1000 > {D}:2 iif eth0 t 1.92") == [2]


def test_recent_rdest_and_ipv6_mask():
    sim = simulator("-A INPUT -m recent --set --rdest --name d --mask ffff:ffff:ffff:ffff::\n"
                    "-A INPUT -m recent --rcheck --hitcount 2 --rdest --name d --mask ffff:ffff:ffff:ffff::", V6)
    assert hits(sim, "udp [2001:db8::7]:5 > [2001:db8::1]:53 iif eth0 t 0") == [1]
    assert hits(sim, "udp [2001:db8::8]:5 > [2001:db8::2]:53 iif eth0 t 1") == [1, 2]


def test_recent_masks_must_agree():
    """The table takes the mask of the rule loaded first (measured): rules disagreeing leave it open."""
    sim = simulator("-A INPUT -p udp -m recent --set --name m --mask 255.255.0.0\n"
                    "-A INPUT -p tcp -m recent --set --name m\n"
                    "-A INPUT -p icmp -m recent --set --name n")
    assert hits(sim, f"udp {A}:5 > {D}:53 iif eth0") is None
    assert hits(sim, f"icmp {A} > {D} type 8 iif eth0") == [3]


# ---- connlimit -----------------------------------------------------------------------------------

CONNLIMIT_RULES = """
-A INPUT -p tcp -m tcp --dport 22 --tcp-flags FIN,SYN,RST,ACK SYN -m connlimit --connlimit-above 2 --connlimit-mask 24 -j DROP
-A INPUT -p tcp -m tcp --dport 22
"""


def test_connlimit_counts_accepted_flows():
    """The sequence measured against Linux 6.18 (every answer agreed)."""
    sim = simulator(CONNLIMIT_RULES)
    def syn(src, sport, t, flags="SYN"):
        return hits(sim, f"tcp {src}:{sport} > {D}:22 {flags} iif eth0 t {t}")
    assert syn("198.18.1.1", 1000, 0) == [2]
    assert syn("198.18.1.2", 1001, 0.05) == [2]
    assert syn("198.18.1.3", 1002, 0.10) == [1]  # third in the /24: dropped, so never confirmed
    assert syn("198.18.1.1", 1003, 0.15) == [1]  # the dropped one is gone, two remain: three again
    assert syn("198.18.2.1", 1000, 0.20) == [2]  # another /24
    assert syn("198.18.1.1", 1004, 0.25, "ACK") == [2]  # not a SYN: the connlimit rule never sees it
    assert syn("198.18.1.9", 1005, 0.30) == [1]
    # SYN_SENT lives 120 s: after that the two accepted flows are gone
    assert syn("198.18.1.9", 1006, 121) == [2]


def test_connlimit_unknowns():
    sim = simulator(CONNLIMIT_RULES)
    def syn(sport, t):
        return hits(sim, f"tcp 198.18.1.1:{sport} > {D}:22 SYN iif eth0 t {t}")
    assert syn(1000, 0) == [2] and syn(1001, 0.01) == [2] and syn(1002, 0.02) == [1]
    # the dropped flow was added 1 jiffy before: whether it is evicted depends on the CPU
    assert syn(1003, 0.024) is None
    assert syn(1004, 10) is None  # and the list stays unknown
    other = simulator(CONNLIMIT_RULES)
    assert hits(other, f"tcp 198.18.1.1:1000 > {D}:22 SYN iif eth0 t 0") == [2]
    assert hits(other, f"tcp 198.18.1.1:1000 > {D}:22 SYN iif eth0 t 1") is None  # a flow already in the table


def test_connlimit_same_jiffy_skips_the_walk():
    sim = simulator("-A INPUT -p udp -m connlimit --connlimit-above 1 -j DROP")
    spec = f"udp {A}:{{}} > {D}:53 iif eth0 t 0.001"
    assert hits(sim, spec.format(1)) == []
    assert hits(sim, spec.format(2)) == [1]  # 2 > 1: dropped
    assert hits(sim, spec.format(3)) == [1]  # the dropped one is still listed in this jiffy


def test_connlimit_upto_daddr_udp_and_timeout():
    sim = simulator("-A INPUT -p udp -m udp --dport 53 -m connlimit --connlimit-upto 1 --connlimit-daddr", V6)
    spec = "udp [2001:db8::{}]:5 > [2001:db8::1]:53 iif eth0 t {}"
    assert hits(sim, spec.format(7, 0)) == [1]
    assert hits(sim, spec.format(8, 1)) == []  # two flows to the same destination
    assert hits(sim, spec.format(9, 31)) == [1]  # UDP entries unreplied for 30 s are gone
