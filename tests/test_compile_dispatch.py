"""Compiled chains index runs of rules by an exact interface or address; the answers (verdict, trace and
the count of rules evaluated) are those of testing every rule in turn."""
import json
import random
import sys
from pathlib import Path

import pytest

from stockade.model import Family
from stockade.model.packet import from_json
from stockade.parse.read import read
from stockade.semantics import compile as compiled
from stockade.semantics.simulate import Simulator

from .corpus import NET_NETWORK

TUM = NET_NETWORK / "configs_chair_for_Network_Architectures_and_Services"


def synthetic() -> str:
    """Per-VLAN dispatch by input and output interface, per-host mac chains (-s /32) with RETURN and DROP,
    a goto, a wildcard interface and an inverted one that end a run, and IPv4 hosts shared between runs."""
    lines = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]"]
    lines += [f":mac_{v} - [0:0]" for v in range(12)] + [f":flt_{v} - [0:0]" for v in range(12)]
    lines.append("-A FORWARD -m state --state ESTABLISHED -j ACCEPT")
    for v in range(12):
        lines.append(f"-A FORWARD -s 192.0.2.{16 * v}/28 -i eth{v} -j mac_{v}")
        lines.append(f"-A FORWARD -i eth{v} -p tcp --dport {20 + v} -j ACCEPT")
    lines.append("-A FORWARD -i eth+ -p udp -j LOG")
    lines += [f"-A FORWARD -o eth{v} -g flt_{v}" for v in range(12)]
    lines.append("-A FORWARD ! -o eth3 -p icmp -j ACCEPT")
    for v in range(12):
        for h in range(10):
            host = f"192.0.2.{16 * v + h}/32"
            lines.append(f"-A mac_{v} -s {host} -m mac --mac-source 52:54:00:00:{v:02x}:{h:02x} -j RETURN")
            lines.append(f"-A mac_{v} -s {host} -j DROP")
        lines += [f"-A flt_{v} -d 198.51.100.{v}/32 -p tcp --dport {20 + p} -j REJECT" for p in range(0, 18, 2)]
        lines.append(f"-A flt_{v} -d 198.51.100.{v}/32 -j ACCEPT")
        lines.append(f"-A flt_{v} -j RETURN")
    return "\n".join(lines + ["COMMIT", ""])


def specs(n: int, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        v = rnd.randrange(13)
        spec = {"proto": rnd.choice(["tcp", "udp", "icmp"]), "src": f"192.0.2.{rnd.randrange(200)}",
                "dst": f"198.51.100.{rnd.randrange(14)}", "hook": "FORWARD", "iif": f"eth{v}",
                "oif": f"eth{rnd.randrange(13)}", "state": rnd.choice(["NEW", "NEW", "ESTABLISHED"]),
                "src_mac": f"52:54:00:00:{rnd.randrange(13):02x}:{rnd.randrange(11):02x}"}
        if spec["proto"] == "icmp":
            spec["icmp_type"] = 8
        else:
            spec["dport"] = rnd.randrange(15, 35)
        out.append(spec)
    return out


def answers(text: str, packets: list[dict], indexed: int, monkeypatch) -> list[dict]:
    monkeypatch.setattr(compiled, "INDEXED", indexed)
    b = read(text, "t.rules", "save", Family.IPV4)
    sim = Simulator(b.rulesets[Family.IPV4])
    return [sim.run(from_json(p)).to_json() for p in packets]


def test_dispatch_gives_the_answers_of_testing_every_rule(monkeypatch):
    text, packets = synthetic(), specs(3000, 1)
    got = answers(text, packets, compiled.INDEXED, monkeypatch)
    assert got == answers(text, packets, 10**9, monkeypatch)
    assert {a["verdict"] for a in got} >= {"ACCEPT", "DROP", "REJECT"}  # the packets reach every kind of end
    assert max(a["evaluated"] for a in got) > 60


def test_the_synthetic_chains_are_dispatched(monkeypatch):
    b = read(synthetic(), "t.rules", "save", Family.IPV4)
    table = compiled.CompiledTable(b.rulesets[Family.IPV4].tables["filter"], Family.IPV4)
    assert table.indexes, "no run was indexed"
    assert {len(idx) for idx in table.indexes} >= {10, 12}  # hosts in a mac chain, VLANs in FORWARD
    assert not any(callable(g) and not isinstance(g, compiled._Group) for idx in table.indexes for g in idx.values())


def test_a_group_is_compiled_when_a_packet_looks_it_up():
    """A blocklist's run of 50,000 `-s ADDR` rules costs no compiled function until a packet comes from ADDR."""
    b = read(synthetic(), "t.rules", "save", Family.IPV4)
    sim = Simulator(b.rulesets[Family.IPV4])
    spec = specs(1, 3)[0] | {"iif": "eth2", "src": "192.0.2.33", "proto": "tcp", "dport": 22, "state": "NEW"}
    sim.run(from_json(spec))
    table = sim.compiled["filter"]
    done = {v for idx in table.indexes for v, g in idx.items() if not isinstance(g, compiled._Group)}
    assert "eth2" in done and len(done) < sum(len(idx) for idx in table.indexes) // 4


@pytest.mark.skipif(not TUM.is_dir(), reason="net-network corpus not present")
@pytest.mark.parametrize("name", ["iptables-save-2016-06-27_16-29-01", "iptables-save-2015-05-15_14-14-46"])
def test_dispatch_on_tum_dumps(name, monkeypatch):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from explain_batch import packets as bench_packets

    text = (TUM / name).read_text()
    packets = [json.loads(s) for s in bench_packets(2000, text, seed=5)]
    assert answers(text, packets, compiled.INDEXED, monkeypatch) == answers(text, packets, 10**9, monkeypatch)
