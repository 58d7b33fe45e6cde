"""The service matrix against the real kernel: one real packet per class pair.

For each ruleset (hand-written ones and the seeds' imported INPUT chains), the
filter table is loaded into a Probe's server namespace; for every pair of classes
of the tcp/22 and udp/53 matrices, one packet from an address of the first class
to a server address (203.0.113.0/24 is all the server's) of the second is sent.
Where the matrix is sure, the kernel must agree: an "always" edge passes filter,
a pair without a "may" edge does not. Sources in 127.0.0.0/8 are left out: the
analysis reads them as loopback traffic, which a packet from the wire is not.
"""
from __future__ import annotations

import ipaddress
import random

import pytest

from stockade.lab.differential import Probe
from stockade.model import Family, Ruleset
from stockade.parse.read import read
from stockade.render.save import render_save
from stockade.semantics.flatten import flatten
from stockade.semantics.matrix import Service, service_matrix, setting
from tests.corpus import SEEDS

from .conftest import lasting_probe

LOCAL = (int(ipaddress.ip_address("203.0.113.0")), int(ipaddress.ip_address("203.0.113.255")))
LOOPBACK = (0x7F000000, 0x7FFFFFFF)
HAND = [
    """*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:ssh - [0:0]
-A INPUT -m state --state ESTABLISHED,RELATED -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -j ssh
-A INPUT -s 198.51.100.0/24 -d 203.0.113.53/32 -p udp -m udp --dport 53 -j ACCEPT
-A INPUT -p udp -m udp --dport 53 -j REJECT
-A ssh -s 192.0.2.0/25 -j RETURN
-A ssh -m iprange --src-range 192.0.2.10-192.0.2.200 -j ACCEPT
-A ssh -d 203.0.113.22/32 -j ACCEPT
COMMIT
""",
    """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -s 192.0.2.7/32 -j DROP
-A INPUT ! -s 198.51.100.0/24 -p tcp -m multiport --dports 22,80 -j REJECT --reject-with tcp-reset
-A INPUT -d 203.0.113.0/25 -p udp -j DROP
COMMIT
""",
]


def _seed_rulesets() -> list[tuple[str, Ruleset]]:
    out = []
    for path in sorted(SEEDS.iterdir()):
        rs = read(path.read_text(), path.name).rulesets.get(Family.IPV4)
        if rs is not None and "filter" in rs.tables and rs.tables["filter"].chains["INPUT"].rules:
            out.append((path.name, Ruleset(rs.family, {"filter": rs.tables["filter"]}, rs.sets)))
    return out


def _pick(ranges, rnd: random.Random, within: tuple[int, int] | None = None, avoid=LOOPBACK) -> int | None:
    spans = []
    for lo, hi in ranges:
        if within is not None:
            lo, hi = max(lo, within[0]), min(hi, within[1])
        if lo > hi:
            continue
        for a, b in ((lo, min(hi, avoid[0] - 1)), (max(lo, avoid[1] + 1), hi)):
            if a <= b:
                spans.append((a, b))
    if not spans:
        return None
    a, b = rnd.choice(spans)
    return rnd.randint(a, b)


@pytest.fixture(scope="module")
def probe(kernel_ok):
    with lasting_probe(forward=False) as p:
        yield p


def _check(probe: Probe, name: str, rs: Ruleset, rnd: random.Random) -> tuple[int, list[str]]:
    probe.load(Family.IPV4, render_save(rs))
    flat = flatten(rs, "filter", "INPUT")
    s = setting(flat, None)
    sent, wrong = 0, []
    for service in (Service(6, 22, 40000), Service(17, 53, 40000)):
        m = service_matrix(flat, service, s=s)
        for a, ca in enumerate(m.classes):
            for b, cb in enumerate(m.classes):
                sure_yes, sure_no = (a, b) in m.always, (a, b) not in m.may
                if not (sure_yes or sure_no):
                    continue
                src, dst = _pick(ca, rnd), _pick(cb, rnd, LOCAL)
                if src is None or dst is None:
                    continue
                pkt = service.packet(Family.IPV4, "INPUT", src, dst, iif="in0")
                obs = probe.send(pkt)
                sent += 1
                if obs.passed != sure_yes:
                    wrong.append(f"{name} {service.label} {pkt.addr('src')} -> {pkt.addr('dst')}: matrix says "
                                 f"{'always' if sure_yes else 'never'}, kernel {'passed' if obs.passed else 'dropped'}")
    return sent, wrong


def test_matrix_agrees_with_the_kernel_on_hand_written_rulesets(probe):
    rnd = random.Random(7)
    total, wrong = 0, []
    for n, text in enumerate(HAND):
        rs = read(text, f"hand{n}", "save", Family.IPV4).rulesets[Family.IPV4]
        sent, bad = _check(probe, f"hand{n}", rs, rnd)
        total, wrong = total + sent, wrong + bad
    print(f"hand-written rulesets: {total} packets, one per decided class pair")
    assert not wrong, "\n".join(wrong)
    assert total >= 10


def test_matrix_agrees_with_the_kernel_on_the_seeds(probe):
    rnd = random.Random(8)
    total, wrong = 0, []
    for name, rs in _seed_rulesets():
        sent, bad = _check(probe, name, rs, rnd)
        total, wrong = total + sent, wrong + bad
    print(f"seed rulesets: {total} packets, one per decided class pair")
    assert not wrong, "\n".join(wrong)
    assert total >= 5
