"""Sets the packets fill (`add`/`update`/`delete @set`, timeouts, a full set) and meters, against the kernel.

A ruleset of such rules is loaded into the server namespace of a lab.differential.Probe; real frames are
sent over a few seconds, so elements time out between them, and after each the simulator must name
exactly the `counter`s that moved in the kernel (semantics/nft.py keeps the elements, as nft_dynset
does, in its memory between packets).
"""
from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from stockade.model import Family
from stockade.model.nftables import IPTABLES_NFT
from stockade.model.packet import from_short
from stockade.parse.nft import read_nft_json
from stockade.semantics.nft import NftSimulator

from .conftest import lasting_probe

EMPTY_FILTER = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
RULESET = """table ip dyn {
    set seen { type ipv4_addr; flags dynamic,timeout; timeout 2s; size 2; }
    set knock { type ipv4_addr; flags dynamic,timeout; timeout 2s; }
    chain in {
        type filter hook input priority 0; policy accept;
        ip saddr @seen counter
        tcp dport 1000 add @seen { ip saddr } counter
        tcp dport 1001 update @knock { ip saddr } counter
        ip saddr @knock counter
        tcp dport 1002 delete @seen { ip saddr } counter
        tcp dport 2000 meter m { ip saddr timeout 5s limit rate 1/second burst 1 packets } counter
        tcp dport 2001 meter n { ip saddr limit rate over 1/minute burst 2 packets } counter
    }
}
"""
A, B, C, D, F, G = (f"192.0.2.{n}" for n in (10, 11, 12, 13, 15, 16))
# (index of the packet the delay counts from, or None; seconds after it was sent; source; destination port).
# A packet's time is known only to within the time a send takes, so every test of an element's age is
# at least 0.7 s from its expiry: checks that it is there follow the change at once or well before.
PLAN = [
    (None, 0, A, 1000), (None, 0, A, 9),  # 0-1: add A to @seen, there
    (None, 0, B, 1000), (None, 0, C, 1000), (None, 0, C, 9),  # 2-4: add B, @seen full: C is not added
    (None, 0, B, 1002), (None, 0, C, 1000),  # 5-6: delete B; B is not yet freed: UNKNOWN
    (None, 0, D, 1001), (None, 0, D, 9),  # 7-8: update @knock with D, there
    (None, 0, F, 2000), (None, 0, F, 2000), (None, 0, G, 2001), (None, 0, G, 2001), (None, 0, G, 2001),
    (None, 0, G, 2001),  # 9-14: meters: F over its rate the second time, G over 1/minute from the third
    (7, 1.3, D, 1001), (15, 1.3, D, 9),  # 15-16: update restarts D's timeout: there 2.6 s after it came
    (0, 2.7, A, 9), (15, 2.7, D, 9), (10, 1.5, F, 2000),  # 17-19: A and D timed out; F's bucket refilled
]
def counters(probe) -> Counter:
    counts: Counter = Counter()
    for item in json.loads(probe.server.run(["nft", "-j", "list", "ruleset"]).stdout)["nftables"]:
        rule = item.get("rule")
        if rule and not (rule["family"] in ("ip", "ip6") and rule["table"] in IPTABLES_NFT):
            for stmt in rule["expr"]:
                if isinstance(stmt.get("counter"), dict):
                    counts[rule["handle"]] += stmt["counter"]["packets"]
    return counts


@pytest.fixture(scope="module")
def probe(kernel_ok):
    with lasting_probe(forward=True) as p:
        yield p


def test_sets_the_packets_fill_and_meters_agree_with_the_kernel(probe):
    probe.load(Family.IPV4, EMPTY_FILTER)
    probe.server.run(["nft", "delete", "table", "ip", "dyn"], check=False)
    probe.server.run(["nft", "-f", "-"], input=RULESET)
    sim = NftSimulator(read_nft_json(probe.server.run(["nft", "-j", "list", "ruleset"]).stdout, "kernel").native())
    t0 = time.monotonic()
    before, failures, decided, sent = counters(probe), [], 0, []
    try:
        for ref, delay, src, port in PLAN:
            if ref is not None:
                time.sleep(max(0.0, sent[ref] + delay - time.monotonic()))
            pkt = from_short(f"tcp {src}:40000 > 203.0.113.1:{port} SYN iif in0").with_(t=time.monotonic() - t0)
            probe.send(pkt)
            sent.append(time.monotonic())
            after = counters(probe)
            moved = Counter({h: n - before[h] for h, n in after.items() if n != before[h]})
            before = after
            res = sim.run(pkt)
            if res.verdict == "UNKNOWN":
                continue
            decided += 1
            mine = Counter(c["handle"] for c in res.counted)
            if mine != moved:
                failures.append(f"packet {len(sent) - 1} at {pkt.t:.2f} s, {src}:{port}: simulator "
                                f"{sorted(mine.items())}, kernel {sorted(moved.items())}")
    finally:
        probe.server.run(["nft", "delete", "table", "ip", "dyn"], check=False)
    assert not failures, "\n".join(failures)
    assert decided == len(PLAN) - 1  # only packet 6 is UNKNOWN: whether the kernel has freed B yet


NOTRACK = """table ip nt {
    chain raw {
        type filter hook prerouting priority -300; policy accept;
        ip saddr != 192.0.2.10 return
        udp dport 53 notrack
        ct state invalid counter
        ct state untracked counter
    }
    chain in {
        type filter hook input priority 0; policy accept;
        ct state untracked counter
        ct state new counter
    }
}
"""


def test_notrack_marks_the_packet_at_once(probe):
    """Before conntrack's hook a packet reads `ct state invalid`; once `notrack` ran, it reads untracked
    already in the same chain (nft_notrack_eval sets it on the packet). Found by the kernel differential.
    (The probe's sync packet, from another address, leaves the raw chain at once.)"""
    probe.load(Family.IPV4, EMPTY_FILTER)
    probe.server.run(["nft", "delete", "table", "ip", "nt"], check=False)
    probe.server.run(["nft", "-f", "-"], input=NOTRACK)
    try:
        sim = NftSimulator(read_nft_json(probe.server.run(["nft", "-j", "list", "ruleset"]).stdout, "kernel").native())
        for spec in ("udp 192.0.2.10:40000 > 203.0.113.1:53 iif in0", "udp 192.0.2.10:40000 > 203.0.113.1:54 iif in0"):
            before = counters(probe)
            probe.send(from_short(spec))
            after = counters(probe)
            moved = Counter({h: n - before[h] for h, n in after.items() if n != before[h]})
            assert Counter(c["handle"] for c in sim.run(from_short(spec)).counted) == moved, spec
    finally:
        probe.server.run(["nft", "delete", "table", "ip", "nt"], check=False)
