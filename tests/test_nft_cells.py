"""semantics/nftcells.py and the truth commands on nftables: the cells an nft ruleset cuts are exact (every
packet of a class gets the class's verdict from the simulator), diff across input kinds, analyze on nft."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from itertools import product
from pathlib import Path

from stockade.model import Family
from stockade.model.netfilter import PORT_PROTOS
from stockade.model.packet import Packet
from stockade.model.space import DPORT, DST, ICMP, IIF, KIND, KINDS, OIF, PROTO, SPORT, SRC
from stockade.parse.nft import read_nft_json
from stockade.parse.save import read_save
from stockade.semantics.diff import semantic_diff
from stockade.semantics.nft import NftSimulator

from .nftjson import ACCEPT, COUNTER, DROP, RETURN, Doc, ct, jump, match, meta, payload

SRC_DIR = Path(__file__).resolve().parents[1] / "src"


def rich() -> Doc:
    """Two tables at the input hook with what nftcells reads: ct state, interfaces with a wildcard, anonymous
    sets and ranges, a concatenation, a flag mask, a verdict map with a jump, ICMP types, negations, a named
    interval set; a forward chain with oifname, th and comparisons."""
    d = Doc().table("inet", "f").chain("inet", "f", "in", "input", 0, "drop").chain("inet", "f", "sub")
    d.chain("inet", "f", "fwd", "forward", 0, "drop")
    d.rule("inet", "f", "in", match(ct("state"), ["established", "related"], "in"), ACCEPT)
    d.rule("inet", "f", "in", match(ct("state"), "invalid", "in"), DROP)
    d.rule("inet", "f", "in", match(meta("iifname"), "lo"), ACCEPT)
    d.rule("inet", "f", "in", match(meta("iifname"), "eth*"),
           match(payload("tcp", "dport"), {"set": [22, {"range": [80, 90]}]}), COUNTER, ACCEPT)
    d.rule("inet", "f", "in", match({"concat": [payload("ip", "saddr"), payload("tcp", "dport")]},
                                    {"set": [{"concat": [{"prefix": {"addr": "192.0.2.0", "len": 24}}, 443]},
                                             {"concat": ["198.51.100.7", 8080]}]}), ACCEPT)
    d.rule("inet", "f", "in", match({"&": [payload("tcp", "flags"), ["syn", "ack"]]}, "syn"),
           match(payload("tcp", "dport"), 25), ACCEPT)
    d.rule("inet", "f", "in", {"vmap": {"key": payload("udp", "dport"),
                                        "data": {"set": [[53, {"accept": None}], [123, {"drop": None}],
                                                         [{"range": [1000, 2000]}, {"jump": {"target": "sub"}}]]}}})
    d.rule("inet", "f", "in", match(payload("icmp", "type"), "echo-request"), ACCEPT)
    d.rule("inet", "f", "in", match(payload("icmpv6", "type"), {"set": ["nd-neighbor-solicit", "echo-request"]}),
           ACCEPT)
    d.rule("inet", "f", "in", match(payload("ip6", "saddr"), {"prefix": {"addr": "2001:db8::", "len": 32}}, "!="),
           match(payload("tcp", "dport"), 8443), ACCEPT)
    d.rule("inet", "f", "in", match(meta("l4proto"), 47), ACCEPT)
    d.rule("inet", "f", "sub", match(payload("ip", "saddr"), {"prefix": {"addr": "203.0.113.0", "len": 24}}), RETURN)
    d.rule("inet", "f", "sub", ACCEPT)
    d.rule("inet", "f", "fwd", match(meta("oifname"), "wan0"), match(payload("th", "dport"), 1024, ">="), ACCEPT)
    d.rule("inet", "f", "fwd", match(meta("iifname"), "lan*"), match(payload("th", "sport"), 1024, "<"), ACCEPT)
    d.table("ip", "b").chain("ip", "b", "in", "input", 10, "accept")
    d.set("ip", "b", "blocked", "ipv4_addr", [{"prefix": {"addr": "198.51.100.0", "len": 28}}, "203.0.113.9"],
          ["interval"])
    d.rule("ip", "b", "in", match(payload("ip", "saddr"), "@blocked"), DROP)
    d.rule("ip", "b", "in", match(payload("tcp", "dport"), 80), match(payload("ip", "saddr"),
                                                                      {"prefix": {"addr": "192.0.2.0", "len": 25}}),
           jump("deny"))
    d.chain("ip", "b", "deny")
    d.rule("ip", "b", "deny", DROP)
    return d


def _pick(rng: random.Random, ranges) -> int:
    lo, hi = rng.choice(ranges)
    return rng.randint(lo, hi)


def sample(space, box: dict, hook: str, rng: random.Random) -> Packet:
    """A random packet of the class (any value of every dimension the box allows)."""
    proto = _pick(rng, box[PROTO])
    kind = KINDS[_pick(rng, box[KIND])]
    kw: dict = {}
    if proto in PORT_PROTOS:
        kw["sport"], kw["dport"] = _pick(rng, box[SPORT]), _pick(rng, box[DPORT])
    if proto == 6:
        kw["tcp_flags"] = kind.flags
    if proto in (1, 58):
        code = _pick(rng, box[ICMP])
        kw["icmp_type"], kw["icmp_code"] = code // 256, code % 256
    return Packet(family=space.family, proto=proto, src=_pick(rng, box[SRC]), dst=_pick(rng, box[DST]),
                  iif=space.ifaces[_pick(rng, box[IIF])] or None, oif=space.ifaces[_pick(rng, box[OIF])] or None,
                  hook=hook, state=kind.state, **kw)


def test_every_packet_of_a_class_gets_its_verdict():
    nft = read_nft_json(rich().text(), "rich.json")
    d = semantic_diff(nft, {}, keep=True)
    sim = NftSimulator(nft)
    rng = random.Random(13)
    checked = 0
    verdicts = set()
    for c in d.changes + d.unchanged:
        for _ in range(8):  # classes are cut only where a walk meets a test they are not constant on: fewer, wider
            # a merged change's box is the hull of its parts (lo's martian sources beside other interfaces)
            pkt = sample(c.space, rng.choice(c.parts), c.hook, rng)
            sim.memory.clear()
            got = sim.run(pkt).verdict
            assert got == c.old.verdict, (c.text(), pkt, got, c.old.verdict)
            checked += 1
        verdicts.add(c.old.verdict)
    assert checked > 1000 and {"ACCEPT", "DROP"} <= verdicts


DUMP = """*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -i lo -j ACCEPT
-A INPUT -s 192.0.2.0/24 -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -p udp -m udp --dport 53 -j ACCEPT
-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT
COMMIT
"""


def rewrite(ssh_port: int = 22) -> Doc:
    """DUMP as nftables (what iptables-restore-translate writes for it, as nft lists it)."""
    d = Doc().table("ip", "filter").chain("ip", "filter", "INPUT", "input", 0, "drop")
    d.chain("ip", "filter", "FORWARD", "forward", 0, "drop").chain("ip", "filter", "OUTPUT", "output", 0, "accept")
    d.rule("ip", "filter", "INPUT", match(ct("state"), ["established", "related"], "in"), COUNTER, ACCEPT)
    d.rule("ip", "filter", "INPUT", match(meta("iifname"), "lo"), COUNTER, ACCEPT)
    d.rule("ip", "filter", "INPUT", match(payload("ip", "saddr"), {"prefix": {"addr": "192.0.2.0", "len": 24}}),
           match(payload("tcp", "dport"), ssh_port), COUNTER, ACCEPT)
    d.rule("ip", "filter", "INPUT", match(payload("udp", "dport"), 53), COUNTER, ACCEPT)
    d.rule("ip", "filter", "INPUT", match(payload("icmp", "type"), "echo-request"), COUNTER, ACCEPT)
    return d


def test_iptables_against_its_nft_rewrite_is_equal():
    old = read_save(DUMP, "rules.v4", Family.IPV4).rulesets
    d = semantic_diff(old, read_nft_json(rewrite().text(), "new.json"))
    assert d.changes == [] and d.classes > 50


def test_a_changed_rewrite_lists_the_classes_that_differ():
    old = read_save(DUMP, "rules.v4", Family.IPV4).rulesets
    d = semantic_diff(old, read_nft_json(rewrite(2222).text(), "new.json"))
    shown = {(c.family, c.hook, c.state, c.text(), c.old.verdict, c.new.verdict) for c in d.changes}
    kinds = "NEW, INVALID, NEW without SYN, INVALID NULL"  # every kind that neither accepts as ESTABLISHED
    assert shown == {(Family.IPV4, "INPUT", kinds, "tcp/22 from 192.0.2.0/24", "ACCEPT", "DROP"),
                     (Family.IPV4, "INPUT", kinds, "tcp/2222 from 192.0.2.0/24", "DROP", "ACCEPT")}, d.text()
    # and the other way round: nft old, iptables new
    back = semantic_diff(read_nft_json(rewrite(2222).text(), "old.json"), old)
    assert {(c.text(), c.old.verdict, c.new.verdict) for c in back.changes} == \
        {("tcp/22 from 192.0.2.0/24", "DROP", "ACCEPT"), ("tcp/2222 from 192.0.2.0/24", "ACCEPT", "DROP")}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stockade.cli", *args], capture_output=True, text=True,
                          env={"PYTHONPATH": str(SRC_DIR), "PATH": "/usr/bin:/bin"}, timeout=300)


def test_diff_and_analyze_commands_read_nft(tmp_path):
    (tmp_path / "rules.v4").write_text(DUMP)
    (tmp_path / "same.json").write_text(rewrite().text())
    (tmp_path / "moved.json").write_text(rewrite(2222).text())
    same = cli("diff", str(tmp_path / "rules.v4"), str(tmp_path / "same.json"))
    assert same.returncode == 0 and same.stdout.startswith("no packet class changes its verdict"), same
    moved = cli("diff", "--json", str(tmp_path / "rules.v4"), str(tmp_path / "moved.json"))
    assert moved.returncode == 1 and json.loads(moved.stdout)["changed"] == 2, moved
    an = cli("analyze", "--json", "--family", "4", str(tmp_path / "moved.json"))
    assert an.returncode == 0, an
    res = json.loads(an.stdout)
    ports = {src: e["open"] for e in res["open_ports"] for src in e["sources"]}
    assert ports["192.0.2.0-192.0.2.255"] == {"tcp": ["2222"], "udp": ["53"], "icmp": ["8"]}, res["open_ports"]
    assert ports["192.0.3.0-223.255.255.255"] == {"udp": ["53"], "icmp": ["8"]}
    m = res["service_matrix"]["tcp/2222"]
    inside = next(n for n, ranges in m["classes"].items() if "192.0.2.0-192.0.2.255" in ranges)
    assert {a for a, _ in m["always"]} == {inside}


def test_nft_findings():
    from stockade.semantics.findings.nft import nft_findings

    d = Doc().table("inet", "own").chain("inet", "own", "input", "input", 0, "drop")
    d.set("inet", "own", "empty4", "ipv4_addr", [])
    est = d.rule("inet", "own", "input", match(ct("state"), ["established", "related"], "in"), ACCEPT)
    d.rule("inet", "own", "input", match(payload("tcp", "dport"), 22), ACCEPT)
    web = d.rule("inet", "own", "input", match(payload("tcp", "dport"), 80), ACCEPT)
    empty = d.rule("inet", "own", "input", match(payload("ip", "saddr"), "@empty4"), DROP)
    shadowed = d.rule("inet", "own", "input", match(payload("tcp", "dport"), 22),
                      match(payload("ip", "saddr"), {"prefix": {"addr": "192.0.2.0", "len": 24}}), DROP)
    catch_all = d.rule("inet", "own", "input", COUNTER, DROP)
    late = d.rule("inet", "own", "input", match(payload("tcp", "dport"), 443), ACCEPT)
    d.table("inet", "fw").chain("inet", "fw", "input", "input", 10, "accept")
    fw = d.rule("inet", "fw", "input", match(payload("tcp", "dport"), 80), {"reject": None})
    found = nft_findings(read_nft_json(d.text(), "f.json"), "f.json")
    got = {(f.name, f.message.split(" ")[5]) for f in found}  # "inet own chain input handle N ..."
    assert ("after-match-all", str(catch_all)) in got
    assert ("empty-set", str(empty)) in got
    shadow = {int(f.message.split(" ")[5]) for f in found if f.name == "shadowed-rule"}
    assert shadow == {empty, shadowed, late}  # and not the first tcp/22 accept, nor handle 80's
    crossed = [f.message for f in found if f.name == "accept-dropped-elsewhere"]
    assert len(crossed) == 2 and all(f"inet fw chain input handle {fw} drops" in m for m in crossed)
    assert {int(m.split(" ")[5]) for m in crossed} == {est, web}
    assert "IPv4 INPUT NEW: tcp/80 from anywhere" in next(m for m in crossed if f"handle {web} " in m)


# -- what a class may get: statements no dimension decides are taken both ways (diff.cross_diff) ----------------

LIMITED = DUMP.replace("COMMIT\n", """-A INPUT -p tcp -m tcp --dport 80 -m limit --limit 5/sec -j ACCEPT
-A INPUT -p tcp -m tcp --dport 8080 -m mark --mark 0x1 -j ACCEPT
-A INPUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j flood
-A INPUT -p tcp -m tcp --dport 25 -j ACCEPT
-A flood -m limit --limit 1/sec --limit-burst 3 -j RETURN
-A flood -j DROP
COMMIT
""").replace(":OUTPUT ACCEPT [0:0]\n", ":OUTPUT ACCEPT [0:0]\n:flood - [0:0]\n")


def limited(limit: bool = True, mark: bool = True, flood: bool = True) -> Doc:
    """LIMITED as nftables: rewrite() plus the limited, marked and flood-guarded rules (each optional)."""
    d = rewrite().chain("ip", "filter", "flood")
    http = match(payload("tcp", "dport"), 80)
    d.rule("ip", "filter", "INPUT", http, *([{"limit": {"rate": 5, "per": "second", "burst": 5}}] if limit else []),
           COUNTER, ACCEPT)
    d.rule("ip", "filter", "INPUT", match(payload("tcp", "dport"), 8080), *([match(meta("mark"), 1)] if mark else []),
           COUNTER, ACCEPT)
    if flood:
        d.rule("ip", "filter", "INPUT", match({"&": [payload("tcp", "flags"), ["fin", "syn", "rst", "ack"]]}, "syn"),
               COUNTER, jump("flood"))
    d.rule("ip", "filter", "INPUT", match(payload("tcp", "dport"), 25), COUNTER, ACCEPT)
    d.rule("ip", "filter", "flood", {"limit": {"rate": 1, "per": "second", "burst": 3}}, COUNTER, RETURN)
    d.rule("ip", "filter", "flood", COUNTER, DROP)
    return d


def test_an_exact_translation_with_limits_and_marks_is_equal():
    """Both sides may drop what a limit or a mark decides, in the same classes: no class is listed."""
    old = read_save(LIMITED, "rules.v4", Family.IPV4).rulesets
    d = semantic_diff(old, read_nft_json(limited().text(), "new.json"))
    assert d.changes == [], d.text()
    back = semantic_diff(read_nft_json(limited().text(), "old.json"), old, keep=True)
    assert back.changes == []
    smtp = [c for c in back.unchanged if c.hook == "INPUT" and c.text() == "tcp/25 from anywhere"
            and c.state == "NEW"]
    assert smtp and all(c.old.may == c.new.may == {"ACCEPT", "DROP"} for c in smtp)  # the flood guard may drop
    assert any("chain flood" in dep and "limit rate 1/second" in dep for dep in smtp[0].old.depends), smtp[0].old


def test_a_limit_the_rewrite_left_out_may_change():
    old = read_save(LIMITED, "rules.v4", Family.IPV4).rulesets
    d = semantic_diff(old, read_nft_json(limited(limit=False).text(), "new.json"))
    assert {(c.text(), c.old.verdict, c.new.verdict) for c in d.changes} == {("tcp/80 from anywhere", "ACCEPT",
                                                                              "ACCEPT")}, d.text()
    (c,) = d.changes
    assert c.old.may == {"ACCEPT", "DROP"} and c.new.may == {"ACCEPT"} and "-m limit" in c.old.depends[0]
    assert c.state.startswith("NEW") and "May change" in d.text()


def test_an_nft_mark_test_may_change():
    """`meta mark 1` against no test: the packet's mark is no dimension of a class, so both ways are possible."""
    d = semantic_diff(read_nft_json(limited().text(), "old.json"), read_nft_json(limited(mark=False).text(), "new.j"))
    assert {c.text() for c in d.changes} == {"tcp/8080 from anywhere"}, d.text()
    c = next(c for c in d.changes if c.state.startswith("NEW"))
    assert (c.old.verdict, c.old.may, c.new.verdict, c.new.may) == ("DROP", {"ACCEPT", "DROP"}, "ACCEPT", {"ACCEPT"})
    assert "meta mark" in c.old.depends[0] and "chain INPUT handle" in c.old.depends[0]


def test_a_flood_guard_left_out_may_change_every_new_tcp_class():
    d = semantic_diff(read_nft_json(limited().text(), "old.json"), read_nft_json(limited(flood=False).text(), "n"))
    assert d.changes and all(c.old.may == {c.new.verdict, "DROP"} and c.new.may == {c.new.verdict}
                             and c.state == "NEW" and c.klass()["proto"] == "tcp" for c in d.changes), d.text()
    assert {c.text() for c in d.changes} == {"tcp/25 from anywhere"}  # 80 and 8080 may be dropped either way


def test_numgen_quota_a_filled_set_ct_mark_and_xt_are_taken_both_ways():
    base = Doc().table("inet", "t").chain("inet", "t", "in", "input", 0, "accept")
    base.set("inet", "t", "seen", "ipv4_addr", [], ["dynamic"])
    other = json.loads(base.text())
    d = base
    d.rule("inet", "t", "in", match(payload("tcp", "dport"), 1), match({"numgen": {"mode": "random", "mod": 2}}, 0),
           DROP)
    d.rule("inet", "t", "in", match(payload("tcp", "dport"), 2), {"quota": {"val": 10, "val_unit": "mbytes"}}, DROP)
    d.rule("inet", "t", "in", match(payload("tcp", "dport"), 3), match(payload("ip", "saddr"), "@seen"), DROP)
    d.rule("inet", "t", "in", match(payload("tcp", "dport"), 4),
           {"set": {"op": "add", "elem": payload("ip", "saddr"), "set": "@seen"}})
    d.rule("inet", "t", "in", match(payload("tcp", "dport"), 5), match(ct("mark"), 5), DROP)
    d.rule("inet", "t", "in", match(payload("tcp", "dport"), 6), {"xt": {"type": "match", "name": "recent"}}, DROP)
    d = semantic_diff(read_nft_json(d.text(), "old.json"), read_nft_json(json.dumps(other), "new.json"))
    got = {}  # (family, port, packet kind, on lo) -> (verdict, may) of the old side, over the exact parts
    for c in d.changes:
        lo = c.space.ifaces.index("lo")
        for part in c.parts:
            for (a, b), k, (i, j) in product(part[DPORT], part[KIND], part[IIF]):
                for port, kind, iif in product(range(max(a, 1), min(b, 6) + 1), range(k[0], k[1] + 1), range(i, j + 1)):
                    got[(c.family, port, KINDS[kind].label, iif == lo)] = (c.old.verdict, tuple(sorted(c.old.may)))
    unknown = ("UNKNOWN", ("ACCEPT", "DROP", "UNKNOWN"))
    kinds = [k.label for k in KINDS if k.label != "UNTRACKED"]
    want = {(f, port, k, False): answer for f in Family for k in kinds for port, answer in (
        (1, unknown), (6, unknown),  # numgen, an xt match: the simulator cannot say
        (2, ("DROP", ("ACCEPT", "DROP"))))}  # a first packet is within the quota
    # `ip saddr` never matches an IPv6 packet: the set the packets fill concerns IPv4 only
    want |= {(Family.IPV4, 3, k, False): ("ACCEPT", ("ACCEPT", "DROP")) for k in kinds}
    # a new connection's mark is 0; an established one's is not known; an untracked packet has none
    want |= {(f, 5, k, False): ("ACCEPT", ("ACCEPT", "DROP")) for f in Family for k in ("NEW", "NEW without SYN")}
    want |= {(f, 5, k, False): unknown for f in Family for k in ("ESTABLISHED", "RELATED")}
    assert {k: v for k, v in got.items() if not k[3]} == want, d.text()
    # looped back, a new connection's mark was set on its way out: not known
    assert got[(Family.IPV4, 5, "NEW", True)] == unknown
    assert all(c.new.may == {"ACCEPT"} for c in d.changes)


def test_a_mark_set_on_the_way_reads_alike_on_both_sides():
    """A mangle rule marks ssh and filter accepts the mark: the example packet's verdict follows the mark on
    both sides, and a mark test may go either way on both (iptables' -m mark is no dimension either)."""
    dump = """*mangle
:PREROUTING ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 22 -j MARK --set-xmark 0x1/0xffffffff
COMMIT
*filter
:INPUT DROP [0:0]
-A INPUT -m mark --mark 0x1 -j ACCEPT
COMMIT
"""
    d = Doc().table("ip", "mangle").chain("ip", "mangle", "PREROUTING", "prerouting", -150, "accept")
    d.rule("ip", "mangle", "PREROUTING", match(payload("tcp", "dport"), 22),
           {"mangle": {"key": meta("mark"), "value": 1}})
    d.table("ip", "filter").chain("ip", "filter", "INPUT", "input", 0, "drop")
    d.rule("ip", "filter", "INPUT", match(meta("mark"), 1), ACCEPT)
    old = read_save(dump, "rules.v4", Family.IPV4).rulesets
    got = semantic_diff(old, read_nft_json(d.text(), "new.json"), keep=True, hooks=("INPUT",))
    assert got.changes == [], got.text()
    ssh = [c for c in got.unchanged if c.family is Family.IPV4 and c.example.proto == 6 and c.example.dport == 22]
    assert ssh and all(c.old.verdict == c.new.verdict == "ACCEPT" and c.new.may == {"ACCEPT", "DROP"} for c in ssh)


RAW_DUMP = """*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -p tcp -m tcp --dport 80 -j NOTRACK
-A PREROUTING -s 198.51.100.0/24 -p udp -j NOTRACK
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -p udp -m state --state UNTRACKED -m udp --dport 53 -j ACCEPT
-A INPUT -p tcp -m state --state UNTRACKED -j ACCEPT
COMMIT
"""


def untracking() -> Doc:
    """RAW_DUMP as nftables: notrack in a raw-priority prerouting chain, `ct state untracked` in input."""
    d = Doc().table("ip", "raw").chain("ip", "raw", "PREROUTING", "prerouting", -300, "accept")
    d.rule("ip", "raw", "PREROUTING", match(payload("tcp", "dport"), 80), {"notrack": None})
    d.rule("ip", "raw", "PREROUTING", match(payload("ip", "saddr"), {"prefix": {"addr": "198.51.100.0", "len": 24}}),
           match(meta("l4proto"), "udp"), {"notrack": None})
    d.table("ip", "filter").chain("ip", "filter", "INPUT", "input", 0, "drop")
    d.chain("ip", "filter", "FORWARD", "forward", 0, "drop").chain("ip", "filter", "OUTPUT", "output", 0, "accept")
    d.rule("ip", "filter", "INPUT", match(ct("state"), ["established", "related"], "in"), ACCEPT)
    d.rule("ip", "filter", "INPUT", match(ct("state"), "untracked", "in"), match(payload("udp", "dport"), 53), ACCEPT)
    d.rule("ip", "filter", "INPUT", match(ct("state"), "untracked", "in"), match(meta("l4proto"), "tcp"), ACCEPT)
    return d


def test_what_raw_untracks_is_seen_untracked_on_every_path():
    """Packets raw untracks meet filter as UNTRACKED whatever state they arrived in (on lo into INPUT only
    INVALID ones: the others keep their output path's entry), and a filter rule that tests them further
    (udp/53) cuts their class: iptables against iptables, nft or iptables against the other, the same answer."""
    ipt = read_save(RAW_DUMP, "raw.rules", Family.IPV4).rulesets
    bare = read_save(RAW_DUMP.split("*filter")[0].replace("-A PREROUTING", "#") + "*filter" +
                     RAW_DUMP.split("*filter")[1], "bare.rules", Family.IPV4).rulesets
    nft = read_nft_json(untracking().text(), "raw.json")
    assert semantic_diff(ipt, nft).changes == [] and semantic_diff(nft, ipt).changes == []
    # established packets raw untracks miss the established rule: tcp ones are accepted anyway, udp
    # ones only to port 53
    want = {("NEW, INVALID, NEW without SYN, INVALID NULL", "tcp/80 from anywhere", "ACCEPT", "DROP"),
            ("INVALID, INVALID NULL", "tcp/80 from anywhere on lo", "ACCEPT", "DROP"),
            ("NEW, INVALID", "udp/53 from 198.51.100.0/24", "ACCEPT", "DROP"),
            ("INVALID", "udp/53 from 198.51.100.0/24 on lo", "ACCEPT", "DROP"),
            ("ESTABLISHED, RELATED", "udp/all but 53 from 198.51.100.0/24", "DROP", "ACCEPT")}
    for old in (ipt, nft):
        got = {(c.state, c.text(), c.old.verdict, c.new.verdict) for c in semantic_diff(old, bare).changes}
        assert got == want, semantic_diff(old, bare).text()
