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
