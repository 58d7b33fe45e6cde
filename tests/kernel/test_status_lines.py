"""Issue 16, item 4, in the kernel: `stockade status` attributes counters to the policy line that produced
each rule, and its per-line sums equal the kernel's per-rule counters summed by the rule's origin.

Every example (interface in0) is applied with the real CLI to the server of a lab Topology, the client
sends real traffic (TCP connects to open and closed ports, UDP, ping, NULL and XMAS scans with hping3,
IPv4 and IPv6), then:
- iptables backend: `iptables-nft-save -c` / `ip6tables-nft-save -c` counters are matched to the compiled
  model's rules by position (table, chain, n), each summed under the model rule's own Origin (never the
  comment), and compared with status's per-line sums;
- nftables backend: `nft -j list table` (JSON, a path of its own) summed by rule comment, compared alike.
Every rule must carry a policy line (a number, or the key of a default the file leaves unsaid).
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from stockade.kernel.part import BUILTIN, HOOK_COMMENT
from stockade.lab.counters import read_counters
from stockade.lab.topology import SERVER_V4, SERVER_V6, Topology
from stockade.model import Family

from ..test_policy_equivalence import compile_gen, example_policies
from .applylab import PY, stockade

TCP_PORTS = (21, 22, 25, 53, 80, 443, 3306, 8080, 9999)
UDP_PORTS = (53, 161, 5000)
SCANS = (("NULL", []), ("XMAS", ["-F", "-S", "-R", "-P", "-A", "-U"]))


def traffic(client) -> None:
    """Real packets from the client: connects (answered or not), UDP, ping and two scans per family."""
    code = ("import socket,sys\nfor a in sys.argv[1:3]:\n for p in map(int, sys.argv[3].split(',')):\n"
            "  try: socket.create_connection((a, p), timeout=0.3).close()\n  except OSError: pass\n"
            " for p in map(int, sys.argv[4].split(',')):\n"
            "  s = socket.socket(socket.AF_INET6 if ':' in a else socket.AF_INET, socket.SOCK_DGRAM)\n"
            "  s.sendto(b'x', (a, p)); s.close()\n")
    client.run([PY, "-c", code, SERVER_V4, SERVER_V6, ",".join(map(str, TCP_PORTS)), ",".join(map(str, UDP_PORTS))])
    client.run(["ping", "-c", "2", "-i", "0.2", "-W", "1", SERVER_V4], check=False)
    client.run(["ping", "-6", "-c", "2", "-i", "0.2", "-W", "1", SERVER_V6], check=False)
    for _, flags in SCANS:
        client.run(["hping3", "-q", "-c", "2", "-i", "u20000", *flags, "-p", "81", SERVER_V4], check=False)


def iptables_sums(ns, compiled) -> tuple[Counter, Counter]:
    """Kernel packets and bytes per rule origin, each rule found by its position in the compiled model.
    apply hooks the built-in chains into stockade's (those hooks are `stockade`'s, no policy line's) and
    moves a built-in chain's other rules, in order, into stk-CHAIN (stk-TABLE-CHAIN outside filter)."""
    packets, octets = Counter(), Counter()
    for family, tool in ((Family.IPV4, "iptables-nft-save"), (Family.IPV6, "ip6tables-nft-save")):
        text = ns.run([tool, "-c"]).stdout
        snap = read_counters(text)
        rs = compiled.rulesets[family]
        model = {(t, c): ch.rules for t, tb in rs.tables.items() for c, ch in tb.chains.items()}
        moved = {(t, f"stk-{c.lower()}" if t == "filter" else f"stk-{t}-{c.lower()}"): (t, c)
                 for t, c in model if c in BUILTIN}
        table, seen = None, Counter()
        for line in text.splitlines():  # read_counters names rules (table, chain, n) in this order
            if line.startswith("*"):
                table = line[1:]
            if not (line.startswith("[") and " -A " in line):
                continue
            chain = line.split()[2]
            seen[(table, chain)] += 1
            n = seen[(table, chain)]
            if chain in BUILTIN:
                assert f"--comment {HOOK_COMMENT} " in line, line
                where = HOOK_COMMENT
            else:
                rules = model[moved.get((table, chain), (table, chain))]
                origin = rules[n - 1].origin
                assert origin is not None and (origin.line > 0 or origin.key), line
                where = origin.tag
            packets[where] += snap.rules[(table, chain, n)]
            octets[where] += int(line[1:].split("]")[0].split(":")[1])
        assert sum(seen.values()) == len(snap.rules)
    return packets, octets


def comments(node) -> list[str]:
    """The comments of set elements anywhere in an nft JSON expression."""
    if isinstance(node, dict):
        own = [node["elem"]["comment"]] if "elem" in node and "comment" in node["elem"] else []
        return own + [c for v in node.values() for c in comments(v)] if not own else own
    return [c for v in node for c in comments(v)] if isinstance(node, list) else []


def nft_sums(ns) -> tuple[Counter, Counter]:
    packets, octets = Counter(), Counter()
    for item in json.loads(ns.run(["nft", "-j", "list", "table", "inet", "stockade"]).stdout)["nftables"]:
        rule = item.get("rule")
        if rule is None:
            continue
        counter = next((e["counter"] for e in rule["expr"] if "counter" in e), None)
        if counter is None:  # a verdict map: nft counts nothing for it
            continue
        heads = {c.split(" ", 1)[0] for c in [rule.get("comment")] + comments(rule["expr"]) if c}
        assert len(heads) == 1, rule  # a merged rule's elements all come from one policy line
        where = heads.pop()
        packets[where] += counter["packets"]
        octets[where] += counter["bytes"]
    return packets, octets


def status_sums(ns, state: Path) -> tuple[Counter, Counter]:
    s = json.loads(stockade(["status", "--netns", ns.name, "--json"], state).stdout)
    assert all(r["origin"] for r in s["rules"]), [r for r in s["rules"] if not r["origin"]]
    return (Counter({r["origin"]: r["packets"] for r in s["lines"]}),
            Counter({r["origin"]: r["bytes"] for r in s["lines"]}))


@pytest.mark.parametrize("backend", ["iptables-nft", "nftables"])
@pytest.mark.parametrize("gp", example_policies(), ids=lambda gp: gp.name)
def test_status_counters_per_policy_line(kernel_ok, tmp_path, backend, gp):
    compiled = compile_gen(gp, tmp_path / "policy")
    path = tmp_path / "policy" / f"{gp.name}.toml"
    state = tmp_path / "state"
    with Topology() as topo:
        stockade(["apply", str(path), "--netns", topo.server.name, "--backend", backend, "--confirm-timeout", "0"],
                 state)
        traffic(topo.client)
        for _ in range(10):  # the namespaces' own neighbour discovery may move counters between the reads
            before = iptables_sums(topo.server, compiled) if backend != "nftables" else nft_sums(topo.server)
            got = status_sums(topo.server, state)
            after = iptables_sums(topo.server, compiled) if backend != "nftables" else nft_sums(topo.server)
            if before == after:
                break
        else:
            pytest.fail("the counters never held still between two reads")
    assert +got[0] == +before[0] and +got[1] == +before[1], (got, before)
    assert set(got[0]) == set(before[0])  # the same lines, zero counters included
    lines = [o for o, n in before[0].items() if n]
    assert len(lines) >= 4, f"traffic reached too few policy lines: {before[0]}"
    assert any(o.partition(":")[2].isdigit() for o in lines)
