"""IPv6 extension headers (`exthdr frag exists`, `frag frag-off`) and IPv4's DF bit (`ip frag-off`) against
the kernel: a ruleset of such tests in the server namespace of a lab.differential.Probe, real frames sent
(fragments among them: nothing here turns conntrack on, so no defragmentation holds them), and the
simulator must name exactly the `counter`s that moved."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from stockade.model import Family
from stockade.model.packet import from_short
from stockade.parse.nft import read_nft_json
from stockade.semantics.nft import NftSimulator

from .conftest import lasting_probe

EMPTY_FILTER = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
RULESET = """table inet hdr {
    chain pre {
        type filter hook prerouting priority 0; policy accept;
        exthdr frag exists counter
        exthdr frag missing counter
        frag frag-off 3 counter
        frag more-fragments 1 counter
        exthdr rt exists counter
        ip frag-off 0x4000 counter
        ip frag-off & 0x4000 != 0 counter
        ip frag-off & 0x1fff != 0 counter
    }
}
"""
PACKETS = ["udp [2001:db8::5]:1 > [2001:db8:2::1]:53 frag 3 iif in0",
           "udp [2001:db8::5]:1 > [2001:db8:2::1]:53 frag 0 mf iif in0",
           "udp [2001:db8::5]:1 > [2001:db8:2::1]:53 iif in0",
           "udp 192.0.2.5:1 > 203.0.113.1:53 iif in0", "udp 192.0.2.5:1 > 203.0.113.1:53 df iif in0",
           "udp 192.0.2.5:1 > 203.0.113.1:53 frag 3 df iif in0", "udp 192.0.2.5:1 > 203.0.113.1:53 frag 3 iif in0"]


def counters(probe) -> Counter:
    out: Counter = Counter()
    for item in json.loads(probe.server.run(["nft", "-j", "list", "table", "inet", "hdr"]).stdout)["nftables"]:
        rule = item.get("rule")
        if rule:
            out[rule["handle"]] += sum(s["counter"]["packets"] for s in rule["expr"] if isinstance(s.get("counter"),
                                                                                                 dict))
    return +out


@pytest.fixture(scope="module")
def probe(kernel_ok):
    with lasting_probe(forward=True) as p:
        yield p


def test_extension_headers_and_fragment_bits_agree_with_the_kernel(probe):
    for fam in Family:
        probe.load(fam, EMPTY_FILTER)
    probe.server.run(["nft", "-f", "-"], input=RULESET)
    try:
        sim = NftSimulator(read_nft_json(probe.server.run(["nft", "-j", "list", "ruleset"]).stdout, "kernel").native())
        before, failures = counters(probe), []
        for spec in PACKETS:
            probe.send(from_short(spec))
            after = counters(probe)
            moved = +Counter({h: n - before[h] for h, n in after.items()})
            before = after
            mine = Counter(c["handle"] for c in sim.run(from_short(spec)).counted)
            if mine != moved:
                failures.append(f"{spec}: simulator {sorted(mine.items())}, kernel {sorted(moved.items())}")
        assert not failures, "\n".join(failures)
        assert sim.undecided() == []
    finally:
        probe.server.run(["nft", "delete", "table", "inet", "hdr"], check=False)
