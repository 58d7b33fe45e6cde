"""`explain --packets` answers every line byte for byte as the per-packet explain does, packet after packet
with the same simulator memory: its fast paths (orjson on a line's bytes, from_json's common fields, the
compiled hook paths, the memory journal of a ruleset with stand-ins, the answers' buffer) change nothing.

The reference reads each spec with the json module and through from_json's full path (a field beyond the
common ones that changes nothing, `more_fragments: false`), one Explainer over the same load."""
from __future__ import annotations

import copy
import json
import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from stockade.commands.inputs import Source, load
from stockade.model.packet import SpecError, from_json
from stockade.semantics.explain import Explainer, parse_spec
from stockade.semantics.simulate import MAX_FORKS, Simulator

from .corpus import NET_NETWORK

TUM = NET_NETWORK / "configs_chair_for_Network_Architectures_and_Services" / "iptables-save-2016-06-27_16-29-01"

# A seed-style host firewall for both families: conntrack states, an SSH rate limit (-m recent), logged drops
# under -m limit, a blocklist, nat, and a rule stockade cannot read (a stand-in tried both ways).
SEEDLIKE = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i eth0 -p tcp --dport 8080 -j DNAT --to-destination 192.0.2.10:80
-A POSTROUTING -o eth0 -j MASQUERADE
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:LOGDROP - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT -m state --state INVALID -j LOGDROP
-A INPUT -s 203.0.113.0/28 -j DROP
-A INPUT -s 198.51.100.66/32 -j DROP
-A INPUT -p tcp --dport 22 -m state --state NEW -m recent --set --name ssh --rsource
-A INPUT -p tcp --dport 22 -m state --state NEW -m recent --update --seconds 60 --hitcount 4 --name ssh --rsource -j LOGDROP
-A INPUT -p tcp -m multiport --dports 22,25,80,443 -m state --state NEW -j ACCEPT
-A INPUT -p udp --dport 5353 -m mac --mac-source XX:XX:XX:XX:XX:XX -j LOGDROP
-A INPUT -p udp --dport 53 -j ACCEPT
-A INPUT -p icmp --icmp-type echo-request -m limit --limit 2/sec --limit-burst 3 -j ACCEPT
-A INPUT -p tcp --dport 8443 -m mac --mac-source XX:XX:XX:XX:XX:XX -j ACCEPT
-A INPUT -j LOGDROP
-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i eth1 -o eth0 -j ACCEPT
-A FORWARD -d 192.0.2.10/32 -p tcp --dport 80 -j ACCEPT
-A LOGDROP -m limit --limit 5/min -j LOG --log-prefix "drop: "
-A LOGDROP -j DROP
COMMIT
"""


def varied(n: int, seed: int, nets: list[str]) -> list[str]:
    """Lines of every kind: JSON with common and rarer fields, IPv6, the short form, blank lines, and lines
    that are no packet (an error each, in its place)."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        if i % 97 == 5:
            out.append(rnd.choice(["", "   ", '{"proto": "tcp", "src": "192.0.2.1"}', "not a packet",
                                  '{"proto": "udp", "src": "192.0.2.1", "dst": "192.0.2.2", "dport": 99999}',
                                  '[1, 2]', '{"proto": "tcp", "src": NaN}']))
            continue
        v6 = rnd.random() < 0.1
        addr = (lambda: f"2001:db8::{rnd.randrange(1, 400):x}") if v6 else \
            (lambda: f"{rnd.choice(nets)}.{rnd.randrange(256)}")
        proto = rnd.choice(["tcp", "tcp", "udp", "icmp"])
        spec: dict = {"proto": "icmpv6" if v6 and proto == "icmp" else proto, "src": addr(), "dst": addr(),
                      "hook": rnd.choice(["INPUT", "INPUT", "FORWARD", "OUTPUT"]),
                      "iif": rnd.choice(["eth0", "eth1", "lo", "eth1.96", "eth1.110"]), "oif": "eth0"}
        if proto == "icmp":
            spec["icmp_type"] = rnd.choice([8, 0, 3, 128] if v6 else [8, 0, 3, 11])
        else:
            spec["dport"] = rnd.choice([22, 22, 53, 80, 443, 5353, 8080, 8443, rnd.randrange(1, 65536)])
            spec["sport"] = rnd.randrange(1024, 65536)
            if proto == "tcp":
                spec["tcp_flags"] = rnd.choice([["SYN"], ["ACK"], ["SYN", "ACK"], ["FIN", "ACK"], ["RST"]])
        if rnd.random() < 0.3:
            spec["state"] = rnd.choice(["NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED"])
        if rnd.random() < 0.2:
            spec.update(rnd.choice([{"ttl": rnd.choice([1, 2, 64])}, {"t": round(i * 0.05, 2)},
                                    {"length": 1400}, {"frag_offset": 10}, {"payload": "GET / HTTP/1.1"},
                                    {"src_mac": "52:54:00:12:34:56"}, {"mark": 7}]))
        if rnd.random() < 0.05 and spec["proto"] in ("tcp", "udp") and "payload" not in spec:
            words = [spec["proto"], f"[{spec['src']}]" if v6 else spec["src"], ">",
                     (f"[{spec['dst']}]" if v6 else spec["dst"]) + f":{spec['dport']}"]
            out.append(" ".join(words + ["iif", spec["iif"], "hook", spec["hook"]]))
            continue
        out.append(json.dumps(spec))
    return out


def expected(rulesets, lines: list[str], name: str) -> list[bytes | None]:
    """Each line's answer from the per-packet path, in order (None: the line is an error, or blank)."""
    run = Explainer(rulesets).run
    out: list[bytes | None] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            spec = json.loads(line)
        except ValueError:
            spec = None
        try:
            if isinstance(spec, dict) and spec.keys() <= {"family", "proto", "src", "dst", "sport", "dport",
                                                          "tcp_flags", "icmp_type", "iif", "oif", "hook", "state"}:
                pkt = from_json(spec | {"more_fragments": False})
            else:
                pkt = parse_spec(line)
            out.append(orjson.dumps(run(pkt).to_json()))
        except SpecError:
            out.append(None)
    return out


def batch(ruleset: Path, lines: list[str], tmp_path: Path) -> list[bytes]:
    packets = tmp_path / "packets.jsonl"
    packets.write_text("\n".join(lines) + "\n")
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "explain", str(ruleset), "--packets", str(packets),
                        "--json"], capture_output=True, check=False)
    assert r.returncode in (0, 2) and b"Traceback" not in r.stderr, r.stderr[-2000:]
    return r.stdout.splitlines()


def check(ruleset: Path, lines: list[str], tmp_path: Path) -> list[dict]:
    want = expected(load(str(ruleset), Source()).rulesets, lines, str(ruleset))
    got = batch(ruleset, lines, tmp_path)
    assert len(got) == len(want)
    for n, (g, w) in enumerate(zip(got, want)):
        if w is None:
            assert json.loads(g).keys() == {"error"}, (n, g)
        else:
            assert g == w, (n, g, w)
    return [json.loads(w) for w in want if w is not None]


def test_batch_answers_as_per_packet_on_a_seed_style_ruleset(tmp_path):
    ruleset = tmp_path / "rules"
    ruleset.write_text(SEEDLIKE)
    answers = check(ruleset, varied(3000, 1, ["192.0.2", "198.51.100", "203.0.113"]), tmp_path)
    verdicts = {a["verdict"] for a in answers}
    assert verdicts >= {"ACCEPT", "DROP"}, verdicts
    assert {a["ctstate"] for a in answers} >= {"NEW", "ESTABLISHED", "INVALID"}
    assert any("does not depend on" in n for a in answers for n in a.get("notes", ())), "no stand-in was settled"
    assert any(a.get("reason", "").startswith("depends on") for a in answers), "no stand-in was left open"
    assert any("drop: " in n for a in answers for n in a.get("notes", ())), "no drop was logged"


@pytest.mark.skipif(not TUM.is_file(), reason="net-network corpus not present")
def test_batch_answers_as_per_packet_on_tum(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from explain_batch import packets as bench_packets

    lines = bench_packets(1500, TUM.read_text(), seed=7)
    lines += varied(1500, 2, ["131.159.14", "131.159.15", "131.159.20", "188.95.233", "127.0.0"])
    answers = check(TUM, lines, tmp_path)
    assert {a["verdict"] for a in answers} >= {"ACCEPT", "DROP", "UNKNOWN"}


class WholeCopy(Simulator):
    """The simulator as it was before its memory journal: the whole memory copied before every packet."""

    def run(self, pkt):
        before = copy.deepcopy(self.memory)
        res = self._run(pkt, {}, self.memory)
        if res.undecided is None:
            return res
        settled = self._tries(pkt, {}, res.undecided, before)
        if settled is None:
            self.memory = before
            return res
        settled.notes.append(f"the verdict does not depend on {res.reason.removeprefix('depends on ')}")
        return settled

    def _tries(self, pkt, forced, key, before):
        got = []
        for held in (True, False):
            self.memory = copy.deepcopy(before)
            tried = {**forced, key: held}
            res = self._run(pkt, tried, self.memory)
            if res.undecided is not None and len(tried) < MAX_FORKS:
                res = self._tries(pkt, tried, res.undecided, before)
            if res is None or res.verdict == "UNKNOWN":
                return None
            got.append(res)
        return got[1] if got[0].verdict == got[1].verdict else None


def test_the_journal_leaves_the_memory_a_whole_copy_would(tmp_path):
    """Stand-ins tried both ways restart from the memory as it was; a packet left UNKNOWN changes nothing."""
    ruleset = tmp_path / "rules"
    ruleset.write_text(SEEDLIKE)
    rs = next(iter(load(str(ruleset), Source()).rulesets.values()))
    sim, ref = Simulator(rs), WholeCopy(rs)
    tried = 0
    for line in varied(3000, 3, ["192.0.2", "198.51.100", "203.0.113"]):
        try:
            pkt = from_json(json.loads(line))
        except (ValueError, AttributeError):  # SpecError is a ValueError; a line that is no object
            continue
        if pkt.family is not rs.family:
            continue
        got, want = sim.run(pkt), ref.run(pkt)
        assert got.to_json() == want.to_json(), line
        assert sim.memory == ref.memory, line
        tried += got.reason is not None and "depends on" in got.reason or any("does not depend" in n for n in got.notes)
    assert tried > 20 and any(k[0] == "recent" for k in sim.memory) and any(k[0] == "limit" for k in sim.memory)


# Packet classes (semantics/classes.py): a packet whose walk met only classwise tests gets its class's answer
# without a walk. Boundaries of every kind the classes hold (prefixes, port ranges, multiport, martian
# sources), a wildcard interface, raw's NOTRACK, a LOG (classwise) and what is not classwise: a REJECT whose
# note names the sender, -m recent and -m limit, whose answers differ between packets of one class.
CLASSY = """*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -i eth2 -j NOTRACK
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m state --state ESTABLISHED,RELATED,UNTRACKED -j ACCEPT
-A INPUT -m conntrack --ctstate INVALID -j DROP
-A INPUT -p udp -m conntrack --ctstate NEW --ctorigdst 192.0.2.64/26 -j ACCEPT
-A INPUT -s 198.51.100.0/25 -p tcp --dport 1000:1999 -j ACCEPT
-A INPUT -s 198.51.100.128/26 -p udp --sport 53 -j ACCEPT
-A INPUT -d 192.0.2.8/29 -p tcp -m multiport --dports 22,80,8000:8080 -j LOG --log-prefix "web: "
-A INPUT -d 192.0.2.8/29 -p tcp -m multiport --dports 22,80,8000:8080 -j ACCEPT
-A INPUT ! -s 203.0.113.0/24 -i eth+ -p icmp --icmp-type echo-request -j ACCEPT
-A INPUT -p tcp --dport 7 -j REJECT --reject-with tcp-reset
-A INPUT -p tcp --dport 8 -m recent --set --name seen --rsource
-A INPUT -p tcp --dport 8 -m recent --rcheck --hitcount 2 --name seen --rsource -j DROP
-A INPUT -p tcp --dport 8 -j ACCEPT
-A INPUT -p udp --dport 9 -m limit --limit 1/hour --limit-burst 2 -j ACCEPT
-A INPUT -i eth1 -j ACCEPT
-A FORWARD -d 192.0.2.16/28 -o eth0 -j ACCEPT
COMMIT
"""
EDGE_ADDRS = ["198.51.99.255", "198.51.100.0", "198.51.100.1", "198.51.100.127", "198.51.100.128", "198.51.100.191",
              "198.51.100.192", "192.0.2.7", "192.0.2.8", "192.0.2.15", "192.0.2.16", "192.0.2.31", "192.0.2.32",
              "192.0.2.63", "192.0.2.64", "192.0.2.127", "192.0.2.128", "203.0.112.255", "203.0.113.0", "203.0.113.255", "203.0.114.0", "127.0.0.1", "126.255.255.255",
              "128.0.0.0", "0.0.0.1", "224.0.0.1", "255.255.255.255"]
EDGE_ADDRS6 = ["::", "::1", "::2", "2001:db8::1", "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe80::", "fe80::1",
               "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fec0::", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ff00::",
               "ff02::1"]
EDGE_PORTS = [0, 6, 7, 8, 9, 10, 21, 22, 23, 52, 53, 54, 79, 80, 81, 999, 1000, 1999, 2000, 7999, 8000, 8080, 8081,
              65535]


def edges(n: int, seed: int, v6: bool = False) -> list[str]:
    """Packets on each side of every boundary, each class met many times and in any order; and specs whose
    values equal a valid one's in a dict key but not to from_json (22.0, true, 6), or make no key."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        proto = rnd.choice(["tcp", "tcp", "udp", "icmp"])
        spec: dict = {"proto": proto, "src": rnd.choice(EDGE_ADDRS), "dst": rnd.choice(EDGE_ADDRS),
                      "iif": rnd.choice(["eth0", "eth1", "eth2", "eth", "ppp0", "lo"]),
                      "hook": rnd.choice(["INPUT", "INPUT", "FORWARD"]), "oif": rnd.choice(["eth0", "eth1"])}
        if proto == "icmp":
            spec["icmp_type"] = rnd.choice([0, 8, 8, 3])
        else:
            spec["dport"], spec["sport"] = rnd.choice(EDGE_PORTS), rnd.choice(EDGE_PORTS)
            if proto == "tcp":
                spec["tcp_flags"] = rnd.choice([["SYN"], ["ACK"], ["RST"]])
        if rnd.random() < 0.1:
            spec["state"] = rnd.choice(["NEW", "ESTABLISHED", "INVALID"])
        if v6:  # martian on receipt (::1, ff00::/8) or not forwarded (::, fe80::/10)
            spec["src"], spec["dst"] = rnd.choice(EDGE_ADDRS6), rnd.choice(EDGE_ADDRS6)
            spec["proto"] = "icmpv6" if proto == "icmp" else proto
        if i % 23 == 3:
            spec.update(rnd.choice([{"dport": 22.0}, {"dport": True}, {"sport": 1e3}, {"proto": 6}, {"family": 4.0},
                                    {"family": "4"}, {"family": True}, {"tcp_flags": [["SYN"]]}, {"iif": 1},
                                    {"icmp_type": 8.0}, {"hook": None}, {"state": None}, {"dport": -1}]))
        out.append(json.dumps(spec))
    return out


CLASSY6 = """*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -s 2001:db8::/64 -p tcp -m multiport --dports 22,80 -j ACCEPT
-A INPUT -p ipv6-icmp -j ACCEPT
-A INPUT -p tcp --dport 7 -j REJECT --reject-with tcp-reset
COMMIT
"""


@pytest.mark.parametrize(("text", "martians"), [(CLASSY, ("by routing",)), (CLASSY6, ("on receipt", "by ip6_forward"))])
def test_batch_answers_as_per_packet_across_every_class_boundary(tmp_path, text, martians):
    ruleset = tmp_path / "rules"
    ruleset.write_text(text)
    answers = check(ruleset, edges(4000, 5, v6=text is CLASSY6), tmp_path)
    assert {a["verdict"] for a in answers} >= {"ACCEPT", "DROP"}
    assert any(n.startswith("REJECT") for a in answers for n in a.get("notes", ())), "no REJECT"
    for where in martians:
        assert any(a.get("reason", "").startswith("martian") and where in a["reason"] for a in answers), where
    if text is CLASSY:
        assert any(n.startswith("LOG") for a in answers for n in a.get("notes", ())), "no LOG"


def answers_of(ruleset: str, lines: list[str], tmp_path: Path) -> tuple[list[dict], int]:
    """The batch's answers, in this process, and how many packets it walked."""
    from stockade.commands.explain import _batch

    path = tmp_path / "rules"
    path.write_text(ruleset)
    runner = Explainer(load(str(path), Source()).rulesets)
    walks = []
    walk = runner.run
    runner.run = lambda pkt: walks.append(pkt) or walk(pkt)
    out = tmp_path / "answers"
    with out.open("wb") as sink:
        saved = sys.stdout
        sys.stdout = type("Out", (), {"buffer": sink, "write": sink.write, "flush": sink.flush})()
        try:
            _batch(runner, "packets", [line.encode() for line in lines], True)
        finally:
            sys.stdout = saved
    return [json.loads(line) for line in out.read_bytes().splitlines()], len(walks)


def test_a_class_is_walked_once_and_what_is_not_classwise_every_time(tmp_path):
    """The same class (other addresses and ports inside the same intervals): one walk. A REJECT names each
    sender; -m recent and -m limit answer the same class differently packet after packet: walked each time."""
    web = [json.dumps({"proto": "tcp", "src": f"198.51.100.{200 + i % 50}", "dst": f"192.0.2.{8 + i % 8}",
                       "sport": 30000 + i, "dport": 8000 + i % 81, "tcp_flags": ["SYN"], "iif": "eth0"})
           for i in range(200)]
    got, walks = answers_of(CLASSY, web, tmp_path)
    assert walks == 1 and all(a == got[0] for a in got) and got[0]["verdict"] == "ACCEPT"
    assert got[0]["notes"] == ['LOG level 4 prefix "web: "']

    reject = [json.dumps({"proto": "tcp", "src": f"198.51.100.{200 + i}", "dst": "192.0.2.1", "dport": 7,
                          "tcp_flags": ["SYN"], "iif": "eth0"}) for i in range(20)]
    got, walks = answers_of(CLASSY, reject, tmp_path)
    assert walks == 20 and [a["notes"][0].rsplit(" ", 1)[1] for a in got] == [f"198.51.100.{200 + i}"
                                                                               for i in range(20)]

    seen = [json.dumps({"proto": "tcp", "src": "198.51.100.200", "dst": "192.0.2.1", "dport": 8,
                        "tcp_flags": ["SYN"], "iif": "eth0"})] * 4
    limited = [json.dumps({"proto": "udp", "src": "198.51.100.200", "dst": "192.0.2.1", "dport": 9,
                           "iif": "eth0"})] * 4
    got, walks = answers_of(CLASSY, seen + limited, tmp_path)
    assert walks == 8
    assert [a["verdict"] for a in got] == ["ACCEPT", "DROP", "DROP", "DROP", "ACCEPT", "ACCEPT", "DROP", "DROP"]


def test_an_address_on_the_other_side_of_a_boundary_is_another_class(tmp_path):
    """Neighbours across a prefix's edge, a port range's edge and a martian range's edge are walked."""
    def spec(src, dport):
        return json.dumps({"proto": "tcp", "src": src, "dst": "192.0.2.1", "dport": dport, "tcp_flags": ["SYN"],
                           "iif": "eth0"})
    lines = [spec("198.51.100.1", 1500), spec("198.51.100.127", 1999), spec("198.51.100.128", 1999),
             spec("198.51.100.1", 2000), spec("198.51.100.0", 1000), spec("198.51.100.0", 999),
             spec("127.0.0.1", 1500), spec("127.255.255.255", 1500), spec("128.0.0.0", 1500)]
    got, walks = answers_of(CLASSY, lines, tmp_path)
    assert [a["verdict"] for a in got] == ["ACCEPT", "ACCEPT", "DROP", "DROP", "ACCEPT", "DROP", "DROP", "DROP",
                                           "DROP"]
    assert walks == 7  # .127:1999 and .0:1000 are .1:1500's class; each martian source is walked (named)
    assert "127.255.255.255" in got[7]["reason"]


def test_a_stockade_policy_is_answered_by_class_where_no_memory_is_read(tmp_path):
    """A compiled policy: packets of open connections share their class's answer (conntrack's state test
    is classwise); a new connection meets the bogon set and the SYN-flood hashlimit, and is walked each time."""
    policy = (Path(__file__).resolve().parents[1] / "examples" / "003-web-mail-ssh-dns.toml").read_text()
    path = tmp_path / "policy.toml"
    path.write_text(policy)
    check(path, varied(2000, 9, ["192.0.2", "198.51.100", "203.0.113"]), tmp_path)

    def spec(i, state=None):
        return json.dumps({"proto": "tcp", "src": f"203.0.113.{i % 200}", "dst": "192.0.2.1", "sport": 30000 + i,
                           "dport": 9999, "tcp_flags": ["SYN"], "iif": "eth0"} | ({"state": state} if state else {}))
    got, walks = answers_of(policy, [spec(i, "ESTABLISHED") for i in range(50)], tmp_path)
    assert walks == 1 and {a["verdict"] for a in got} == {"ACCEPT"}
    got, walks = answers_of(policy, [spec(i) for i in range(20)], tmp_path)
    assert walks == 20 and {a["verdict"] for a in got} == {"REJECT"}
