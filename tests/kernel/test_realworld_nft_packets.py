"""Real nft files against the kernel with real packets: stockade's reading decides as the kernel does.

Each real file that nft loads (the cases of test_realworld_nft.py) is loaded by the real nft, its
listing given back to the server namespace of a lab.differential.Probe, and packets aimed at the ports
the file names (tests/kernel/rulegen.py PacketGen) are sent through it. Two changes make it measurable
and change no verdict: every rule gets a `counter` before its action (so each rule the kernel runs a
packet to the end of is seen; the file's own counters, which may be named and shared, give way to it),
and a table named as iptables-nft's (`ip filter`, `ip nat`, ...) is
loaded as `sk_NAME`, beside the probe's own iptables-nft tables rather than into them. After each packet
the simulator, reading the kernel's listing as `stockade explain` does, must name exactly the counters
that moved, and its verdict must be the kernel's where the probe sees it (no chain of the file runs after
the probe's security table at priority 50). Packets it calls UNKNOWN are counted, not compared.

Seed fixed under CI=true, random otherwise, always printed (STOCKADE_SEED overrides it).
"""
from __future__ import annotations

import ipaddress
import json
import os
import random
import time
from collections import Counter
from typing import Any

import pytest

from stockade.kernel.nftfile import nft_json_of_file
from stockade.lab.topology import CLIENT_NET_V4, CLIENT_NET_V6, SERVER_V4, SERVER_V6
from stockade.model import Family
from stockade.model.nftables import IPTABLES_NFT
from stockade.model.packet import Packet
from stockade.parse.nft import read_nft_json
from stockade.parse.save import read_save
from stockade.semantics.nft import NftSimulator

from .conftest import lasting_probe
from .rulegen import Anchors, GenRuleset, PacketGen
from .test_nft_differential import pkt_json, wire_length
from .test_realworld_nft import CASES, NO_STORE, STORE

CI = os.environ.get("CI") == "true"
SEED = int(os.environ.get("STOCKADE_SEED") or (20261207 if CI else random.randrange(1, 2**31)))
PACKETS = int(os.environ.get("STOCKADE_REALWORLD_NFT_PACKETS", "24"))  # per file
EMPTY_FILTER = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
ACTIONS = ("accept", "drop", "reject", "queue", "continue", "return", "jump", "goto", "vmap", "snat", "dnat",
           "masquerade", "redirect")
SECURITY_PRIO = 50  # the probe's security INPUT/FORWARD, which says whether the packet got through
# The probe knows a packet has been handled when its sync packet (from 198.18.0.9) reaches the probe's raw
# table at -300; a file whose chain at that priority drops it (registered later, so it runs first) cannot
# be measured so: artfarm-zerofirewall drops 198.18.0.0/15 as a bogon there.
UNMEASURABLE = {"artfarm-zerofirewall"}
LOADED = sorted(c for c, (_, refused, _, _) in CASES.items() if not refused and c not in UNMEASURABLE)


def instrumented(listing: str) -> str:
    """The listing as nft input: handles dropped, iptables-nft's table names moved aside, a counter in
    every rule before its action (or at its end)."""
    out = []
    for item in json.loads(listing)["nftables"]:
        (kind, obj), = item.items()
        if kind == "metainfo":
            continue
        obj = {k: v for k, v in obj.items() if k != "handle"}
        key = "name" if kind == "table" else "table"
        if obj.get("family") in ("ip", "ip6") and obj.get(key) in IPTABLES_NFT:
            obj[key] = "sk_" + obj[key]
        if kind == "rule":  # the file's own counters (anonymous or named, shared) give way to one per rule
            expr = [stmt for stmt in obj["expr"] if "counter" not in stmt]
            at = next((i for i, s in enumerate(expr) if next(iter(s)) in ACTIONS), len(expr))
            obj["expr"] = expr[:at] + [{"counter": {"packets": 0, "bytes": 0}}] + expr[at:]
        out.append({kind: obj})
    return json.dumps({"nftables": out})


def ports(listing: str) -> list[int]:
    """Ports the rules compare with (dport/sport values, inet_service set elements), for PacketGen."""
    found: set[int] = set()

    def values(node: Any) -> None:
        if isinstance(node, bool):
            return
        if isinstance(node, int) and 0 < node < 65536:
            found.add(node)
        elif isinstance(node, dict):
            for v in node.values():
                values(v)
        elif isinstance(node, list):
            for v in node:
                values(v)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            m = node.get("match")
            if isinstance(m, dict) and isinstance(m.get("left"), dict) and \
                    m["left"].get("payload", {}).get("field") in ("dport", "sport"):
                values(m.get("right"))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for item in json.loads(listing)["nftables"]:
        s = item.get("set") or item.get("map")
        if s and s.get("type") == "inet_service":
            values(s.get("elem", []))
        walk(item.get("rule", {}).get("expr", []))
    return sorted(found)


def via_in(pkt: Packet) -> bool:
    """Whether the server's route back to the packet's source leaves through in0, where every packet comes
    in (`fib saddr . iif oif`): the client's subnet is there, but not the server's own address on it."""
    net, own = (CLIENT_NET_V4, SERVER_V4) if pkt.family is Family.IPV4 else (CLIENT_NET_V6, SERVER_V6)
    src = ipaddress.ip_address(pkt.src) if pkt.family is Family.IPV6 else ipaddress.IPv4Address(pkt.src)
    return src in ipaddress.ip_network(net) and src != ipaddress.ip_address(own)


def counters(probe) -> Counter:
    counts: Counter = Counter()
    for item in json.loads(probe.server.run(["nft", "-j", "list", "ruleset"]).stdout)["nftables"]:
        rule = item.get("rule")
        if rule and not (rule["family"] in ("ip", "ip6") and rule["table"] in IPTABLES_NFT):
            for stmt in rule["expr"]:
                if isinstance(stmt.get("counter"), dict):
                    counts[(rule["family"], rule["table"], rule["chain"], rule["handle"])] += \
                        stmt["counter"]["packets"]
    return counts


def clear(probe) -> None:
    """Every table but the probe's own iptables-nft ones."""
    for item in json.loads(probe.server.run(["nft", "-j", "list", "tables"]).stdout)["nftables"]:
        t = item.get("table")
        if t and not (t["family"] in ("ip", "ip6") and t["name"] in IPTABLES_NFT):
            probe.server.run(["nft", "delete", "table", t["family"], t["name"]])


@pytest.fixture(scope="module")
def probe(kernel_ok):
    with lasting_probe(forward=True) as p:
        for fam in Family:
            p.load(fam, EMPTY_FILTER)
        yield p
        clear(p)


@NO_STORE
@pytest.mark.parametrize("case", LOADED)
def test_real_nft_file_decides_as_the_kernel(case, probe, capsys):
    name, _, devices, _ = CASES[case]
    listing = nft_json_of_file(str(STORE / case / name), devices)
    for dev in devices:
        if probe.server.run(["ip", "link", "show", dev], check=False).returncode != 0:
            probe.server.run(["ip", "link", "add", dev, "type", "veth", "peer", "name", f"skp{dev}"[:15]])
    clear(probe)
    probe.server.run(["nft", "-j", "-f", "-"], input=instrumented(listing))
    loaded = probe.server.run(["nft", "-j", "list", "ruleset"]).stdout
    nft = read_nft_json(loaded, "kernel").native()
    empty = {fam: read_save(EMPTY_FILTER, "iptables", fam).rulesets[fam] for fam in Family}
    late = {hook for t in nft.tables if t.analysed for c in t.chains.values() if c.base
            for hook in [c.hook] if (hook in ("input", "forward") and (c.prio or 0) > SECURITY_PRIO)
            or hook == "postrouting"}
    rng = random.Random(f"{SEED}-{case}")
    anchors = Anchors(ports=ports(listing))
    gens = {fam: PacketGen(rng, GenRuleset(fam, "", anchors, False)) for fam in Family}
    sim = NftSimulator(nft, empty)
    before, failures, unknown = counters(probe), [], Counter()
    t0 = time.monotonic()  # limits are full at load; the simulator's clock starts there
    for n in range(PACKETS):
        pkt = gens[Family.IPV4 if n % 3 else Family.IPV6].packet()
        # the route type of its destination, as `fib daddr type` reads it: all of the probe's local
        # pools are the server's own (lab.topology), its forward pool is routed on
        pkt = pkt.with_(t=time.monotonic() - t0, length=wire_length(pkt),
                        dst_type="LOCAL" if pkt.hook == "INPUT" else "UNICAST",
                        dont_fragment=pkt.family is Family.IPV4 and rng.random() < 0.5,
                        src_via_iif=via_in(pkt))
        obs = probe.send(pkt)
        after = counters(probe)
        moved = Counter({k: v - before[k] for k, v in after.items() if v != before[k]})
        before = after
        res = sim.run(pkt)
        if res.verdict == "UNKNOWN":
            unknown[res.reason.split(": ", 1)[-1][:70]] += 1
            continue
        mine = Counter((c["family"], c["table"], c["chain"], c["handle"]) for c in res.counted)
        diffs = []
        if mine != moved:
            diffs.append(f"counters: simulator {sorted(mine.items())}, kernel {sorted(moved.items())}")
        path = {"INPUT": {"input"}, "FORWARD": {"forward", "postrouting"}}[pkt.hook]
        if not (late & path) and (res.verdict == "ACCEPT") != obs.passed:
            diffs.append(f"verdict: simulator {res.verdict}, kernel {'ACCEPT' if obs.passed else 'not ACCEPT'}")
        if diffs:
            failures.append(f"{json.dumps(pkt_json(pkt))}: " + "; ".join(diffs) + f"\n  trace {res.trace}")
    with capsys.disabled():
        print(f"\n{case}: seed {SEED}, {PACKETS} packets, {sum(unknown.values())} UNKNOWN {dict(unknown)}, "
              f"{len(failures)} disagreements")
    assert not failures, f"seed {SEED}:\n" + "\n".join(failures[:5])
    assert sum(unknown.values()) < PACKETS, "no packet decided: the file tests nothing"
