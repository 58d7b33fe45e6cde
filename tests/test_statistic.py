"""-m statistic (extensions/statistic.py): parse and save as iptables 1.8.9 does, nft translation,
simulation. The saved forms and refusals below are what iptables (1.8.9, nf_tables) printed for the
same rules in a namespace; the kernel round trip runs from the extension's `roundtrip` rules in
tests/kernel/test_roundtrip.py.
"""
from __future__ import annotations

import pytest

from stockade.extensions import REGISTRY
from stockade.model import Family
from stockade.model.nft import Ctx
from stockade.model.packet import from_short
from stockade.parse.save import read_save
from stockade.render.save import render_save
from stockade.semantics.simulate import Simulator

V4 = Family.IPV4
SYN = "tcp 203.0.113.5:40000 > 198.51.100.1:80 SYN iif eth0"


def load(rule: str):
    text = f"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT {rule}\nCOMMIT\n"
    b = read_save(text, "t.rules", V4)
    return b, b.rulesets.get(V4)


def saved(rule: str) -> str:
    b, rs = load(rule)
    assert not [d for d in b.diagnostics if d.severity == "error"], [str(d) for d in b.diagnostics]
    return next(line for line in render_save(rs).splitlines() if line.startswith("-A "))


@pytest.mark.parametrize("given,kernel", [
    ("--mode random --probability 1", "--mode random --probability 1.00000000000"),
    ("--mode random --probability 0.5", "--mode random --probability 0.50000000000"),
    ("--mode random ! --probability 0.25", "--mode random ! --probability 0.25000000000"),
    ("--mode random --probability 0", "--mode random --probability 0.00000000000"),
    ("--mode nth --every 3 --packet 2", "--mode nth --every 3 --packet 2"),
    ("--mode nth ! --every 2 --packet 1", "--mode nth ! --every 2 --packet 1"),
    ("--mode random --probability 0x1p-1", "--mode random --probability 0.50000000000"),
    ("--mode random --probability 1e-1", "--mode random --probability 0.10000000009"),
    ("--mode random --probability .333333333333", "--mode random --probability 0.33333333349"),
    ("--mode random --probability 0.0000000001", "--mode random --probability 0.00000000000"),
])
def test_saved_as_the_kernel_prints_it(given, kernel):
    assert saved(f"-m statistic {given} -j ACCEPT") == f"-A INPUT -m statistic {kernel} -j ACCEPT"


@pytest.mark.parametrize("rule", [
    "--mode nth --every 3", "--mode random --probability 1.5", "--mode nth --every 3 --packet 3",
    "--mode nth --every 0 --packet 0", "--mode random", "--mode nth", "--probability 0.3",
    "--mode random --every 2", "--mode nth --every 2 --packet 0 --probability 0.3", "--mode random --probability nan",
    "--mode random --probability 1_0", "--mode sometimes --probability 0.5",
])
def test_refused_where_iptables_refuses(rule):
    b, _ = load(f"-m statistic {rule} -j ACCEPT")
    assert [d for d in b.diagnostics if d.severity == "error"], rule


def test_nth_counts_every_packet_that_reaches_the_rule():
    _, rs = load("-m statistic --mode nth --every 3 --packet 2 -j DROP")
    sim = Simulator(rs)
    assert [sim.run(from_short(SYN)).verdict for _ in range(7)] == ["ACCEPT", "ACCEPT", "DROP"] * 2 + ["ACCEPT"]


def test_random_is_decided_only_at_its_ends():
    for rule, verdict in (("--probability 1", "DROP"), ("--probability 0", "ACCEPT"),
                          ("! --probability 1", "ACCEPT"), ("--probability 0.5", "UNKNOWN")):
        _, rs = load(f"-m statistic --mode random {rule} -j DROP")
        assert Simulator(rs).run(from_short(SYN)).verdict == verdict, rule


def test_nft_as_iptables_translate_writes_it():
    ext = REGISTRY.find("match", "statistic", V4)
    for rule, nft in (("--mode random --probability 0.5", "meta random & 2147483647 < 1073741824"),
                      ("--mode random ! --probability 0.25", "meta random & 2147483647 >= 536870912"),
                      ("--mode nth --every 3 --packet 2", "numgen inc mod 3 2"),
                      ("--mode nth ! --every 3 --packet 0", "numgen inc mod 3 != 0")):
        _, rs = load(f"-m statistic {rule} -j ACCEPT")
        match = rs.tables["filter"].chains["INPUT"].rules[0].matches[0]
        assert [p.text for p in ext.nft(match.data, Ctx(V4, "inet"))] == [nft]


@pytest.mark.parametrize("dispatch", [False, True])
def test_unknown_counts_the_rules_examined_up_to_the_undecided_one(dispatch):
    """INPUT's first rule fails, its second jumps to X (2 rules); X's second rule is undecided (2 more).
    With dispatch, X holds a run of exact-source rules the simulator looks up by the packet's source."""
    hosts = "".join(f"-A X -s 192.0.2.{n}/32 -j DROP\n" for n in range(1, 12)) if dispatch else ""
    text = ("*filter\n:INPUT ACCEPT [0:0]\n:X - [0:0]\n-A INPUT -p udp -j DROP\n-A INPUT -j X\n"
            f"{hosts}-A X -s 203.0.113.5/32 -p udp -j DROP\n"
            "-A X -s 203.0.113.5/32 -m statistic --mode random --probability 0.5 -j DROP\nCOMMIT\n")
    res = Simulator(read_save(text, "t.rules", V4).rulesets[V4]).run(from_short(SYN))
    assert res.verdict == "UNKNOWN" and res.evaluated == 4 + (11 if dispatch else 0)
