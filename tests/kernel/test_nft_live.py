"""kernel/live.py whole_ruleset: a namespace's native nft tables and its iptables-nft tables, read each the
way that is exact (nft JSON; iptables-nft-save) and composed by semantics/nft.py at their priorities."""
from __future__ import annotations

from stockade.kernel.host import Host
from stockade.kernel.live import whole_ruleset
from stockade.model import Family
from stockade.model.packet import from_short
from stockade.semantics.nft import NftSimulator

IPTABLES = """*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 22 -m comment --comment "admins" -j ACCEPT
COMMIT
"""
NATIVE = """table inet guard {
    set banned { type ipv4_addr; elements = { 192.0.2.66 } }
    chain input {
        type filter hook input priority filter + 10; policy accept;
        ip saddr @banned counter drop
    }
}
"""


def test_iptables_nft_and_native_tables_compose(netns):
    netns.run(["iptables-nft-restore"], input=IPTABLES)
    netns.run(["nft", "-f", "-"], input=NATIVE)
    nft, iptables = whole_ruleset(Host(netns.name))
    assert [t.label for t in nft.tables] == ["inet guard"]  # ip filter is read from iptables-nft-save
    assert iptables[Family.IPV4].tables["filter"].chains["INPUT"].policy == "DROP"
    sim = NftSimulator(nft, iptables)
    ok = sim.run(from_short("tcp 192.0.2.5:40000 > 203.0.113.1:22 SYN iif in0"))
    assert ok.verdict == "ACCEPT" and {"table": "filter", "chain": "INPUT", "rule": 1} in ok.matched
    banned = sim.run(from_short("tcp 192.0.2.66:40000 > 203.0.113.1:22 SYN iif in0"))
    assert banned.verdict == "DROP" and banned.counted[0]["table"] == "guard"  # iptables accepted it first
    assert sim.run(from_short("tcp 192.0.2.5:40000 > 203.0.113.1:80 SYN iif in0")).verdict == "DROP"


def test_a_native_table_named_like_iptables_stays_native(netns):
    """iptables-nft-save calls a native `table ip filter` with chains of its own incompatible and prints
    empty built-in chains for it, and invents the built-in chains a compatible table lacks."""
    netns.run(["nft", "-f", "-"], input="""table ip filter {
    chain input { type filter hook input priority 0; policy drop;
        tcp dport 22 accept
    }
}
table ip mangle {
    chain PREROUTING { type filter hook prerouting priority -150; policy accept;
        tcp dport 23 counter drop
    }
}
""")
    nft, iptables = whole_ruleset(Host(netns.name))
    assert [t.label for t in nft.tables] == ["ip filter"]
    assert list(iptables[Family.IPV4].tables) == ["mangle"]
    assert list(iptables[Family.IPV4].tables["mangle"].chains) == ["PREROUTING"]
    sim = NftSimulator(nft, iptables)
    assert sim.run(from_short("tcp 192.0.2.5:40000 > 203.0.113.1:22 SYN iif in0")).verdict == "ACCEPT"
    assert sim.run(from_short("tcp 192.0.2.5:40000 > 203.0.113.1:80 SYN iif in0")).verdict == "DROP"
    res = sim.run(from_short("tcp 192.0.2.5:40000 > 203.0.113.1:23 SYN iif in0"))
    assert res.verdict == "DROP" and res.matched == [{"table": "mangle", "chain": "PREROUTING", "rule": 1}]
