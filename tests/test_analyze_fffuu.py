"""stockade's service matrices against fffuu's reference output (Iptables_Semantics golden files).

fffuu's matrix is its over-approximation for new connections on the chain alone, so
stockade's "may" matrix is compared with martian drops off (`routing=False`). Each
golden file is read for the chain, interface map and services fffuu used; classes
are compared as sets of address ranges, edges through them. The TUM dump is anonymised
(every MAC is XX:XX:XX:XX:XX:XX, which iptables refuses and fffuu keeps as an unknown
match); a valid placeholder MAC keeps those rules in, and MAC tests are undecided anyway.
"""
import ipaddress
import re

import pytest

from stockade.model import Family
from stockade.parse.read import read
from stockade.semantics.ipassmt import parse_ipassmt, parse_routes
from stockade.semantics.matrix import Service, analyze_chain
from tests.corpus import NET_NETWORK, SEMANTICS

GOLDEN = SEMANTICS / "haskell_tool" / "test" / "Suites" / "GoldenFiles"
TOOL = SEMANTICS / "haskell_tool"
EXAMPLES = SEMANTICS / "thy" / "Iptables_Semantics" / "Examples"
DOCKER = NET_NETWORK / "configs_corny_docker" / "dfwfw"
# golden file -> (ruleset, table, chain, interface map, routing table): what fffuu was run on (upstream's
# golden test for the first three; the docker output was recorded with --ipassmt and --routingtbl)
CASES = {
    GOLDEN / "i8_iptables-save-2015-05-15_15-23-41_cheating": (
        EXAMPLES / "TUM_Net_Firewall" / "iptables-save-2015-05-15_15-23-41_cheating", "filter", "FORWARD",
        TOOL / "ipassmt_tumi8", None),
    GOLDEN / "synology_iptables-save_jun_2015_cleanup": (
        NET_NETWORK / "configs_synology_diskstation_ds414" / "iptables-save_jun_2015_cleanup", "filter", "INPUT",
        None, None),
    GOLDEN / "sqrl_2015_aug_iptables-save-spoofing-protection": (
        NET_NETWORK / "configs_sqrl_shorewall" / "2015_aug_iptables-save-spoofing-protection", "raw", "PREROUTING",
        TOOL / "ipassmt_sqrl", None),
    GOLDEN / "parser_test": (EXAMPLES / "Parser_Test" / "data" / "iptables-save", "filter", "FORWARD", None, None),
    DOCKER / "fffuu.out.txt": (DOCKER / "dockermynet.dfwfw", "filter", "FORWARD", DOCKER / "ipassmt_docker2",
                               DOCKER / "routingtbldocker"),
}
IDS = [p.name if p.parent == GOLDEN else "docker-" + p.name for p in CASES]


def load(path):
    text = path.read_text().replace("XX:XX:XX:XX:XX:XX", "02:00:00:00:00:00")
    b = read(text, str(path))
    assert not [d for d in b.diagnostics if d.code == "bad-mac"]
    return b.rulesets[Family.IPV4]


def _addr(text: str) -> int:
    return int(ipaddress.ip_address(text.strip()))


def parse_golden(text: str) -> dict[tuple[int, int], tuple[dict[str, frozenset], set[tuple[str, str]]]]:
    """fffuu's `== calculating service matrices ==` section: per (sport, dport) its classes and edges."""
    out = {}
    section = text.split("== calculating service matrices ==", 1)[1]
    for m in re.finditer(r"=+ TCP port (\d+)->(\d+) =+\n(.*?)(?=\n=+ TCP port|\Z)", section, re.DOTALL):
        classes: dict[str, frozenset] = {}
        edges = set()
        for line in m.group(3).splitlines():
            if "|->" in line:
                name, body = line.split("|->")
                ranges = []
                for part in body.split(" u "):
                    part = part.strip().strip("{}")
                    lo, _, hi = part.partition("..")
                    ranges.append((_addr(lo), _addr(hi or lo)))
                classes[name.strip()] = frozenset(ranges)  # fffuu sometimes prints a class twice
            elif (e := re.fullmatch(r"\((\w+),(\w+)\)", line.strip())):
                edges.add((e.group(1), e.group(2)))
        out[(int(m.group(1)), int(m.group(2)))] = (classes, edges)
    return out


def _merged(ranges) -> frozenset:
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return frozenset((lo, hi) for lo, hi in out)


def _canonical(classes: dict[str, frozenset], edges) -> tuple[set, set]:
    """Classes as sets of merged ranges; edges as pairs of those sets."""
    named = {k: _merged(v) for k, v in classes.items()}
    return set(named.values()), {(named[a], named[b]) for a, b in edges}


def inputs(golden):
    ruleset_path, table, chain, ipassmt_path, routes_path = CASES[golden]
    amap = parse_ipassmt(ipassmt_path.read_text(), str(ipassmt_path), Family.IPV4) if ipassmt_path else None
    routes = parse_routes(routes_path.read_text(), str(routes_path), Family.IPV4) if routes_path else None
    return load(ruleset_path), table, chain, amap, routes


@pytest.mark.parametrize("golden", CASES, ids=IDS)
def test_service_matrices_equal_fffuu(golden):
    expected = parse_golden(golden.read_text())
    assert expected, "no service matrix in the golden file"
    rs, table, chain, amap, routes = inputs(golden)
    services = [Service(6, dport, sport) for sport, dport in expected]
    _, got = analyze_chain(rs, table, chain, services, amap, routing=False, compat="fffuu", routes=routes)
    for (sport, dport), (classes, edges) in expected.items():
        m = got[f"tcp/{dport}"]
        mine = {m.name(i): frozenset(c) for i, c in enumerate(m.classes)}
        want = _canonical(classes, edges)
        have = _canonical(mine, {(m.name(a), m.name(b)) for a, b in m.may})
        assert have[0] == want[0], f"{golden} tcp {sport}->{dport}: classes differ"
        assert have[1] == want[1], f"{golden} tcp {sport}->{dport}: edges differ"


@pytest.mark.parametrize("golden", CASES, ids=IDS)
def test_stockades_own_reading_allows_no_more_than_fffuu(golden):
    """Deciding more (sctp, ICMP types, ...) may only remove edges from fffuu's over-approximation."""
    expected = parse_golden(golden.read_text())
    rs, table, chain, amap, routes = inputs(golden)
    _, got = analyze_chain(rs, table, chain, [Service(6, d, s) for s, d in expected], amap, routing=False,
                           routes=routes)
    for (_sport, dport), (classes, edges) in expected.items():
        m = got[f"tcp/{dport}"]
        meets = {i: [n for n, f in classes.items() if _overlap(c, f)] for i, c in enumerate(m.classes)}
        for a, b in m.may:
            assert {(x, y) for x in meets[a] for y in meets[b]} <= edges, f"{golden} {dport}: {a}->{b}"


def _overlap(a, b) -> bool:
    return any(max(x[0], y[0]) <= min(x[1], y[1]) for x in a for y in b)


def test_golden_parser_reads_classes_and_edges():
    text = ("== calculating service matrices ==\n=========== TCP port 10000->80 =========\n"
            "a |-> {0.0.0.0 .. 126.255.255.255} u {128.0.0.0 .. 255.255.255.255}\nb |-> 127.0.0.1\n\n(b,a)\n(b,b)\n")
    (classes, edges), = parse_golden(text).values()
    assert classes["b"] == {(0x7F000001, 0x7F000001)} and len(classes["a"]) == 2 and edges == {("b", "a"), ("b", "b")}
