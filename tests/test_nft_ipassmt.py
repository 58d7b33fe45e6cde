"""`stockade analyze --ipassmt` on nftables: the sources arriving on each interface the map names are
its addresses, as for iptables (matrix.setting reads `-i X` as `-s <addresses of X>`). The same
rules as an iptables dump and as nft JSON give the same service matrix with the same map."""
from __future__ import annotations

import json
import subprocess
import sys

from .nftjson import ACCEPT, Doc, match, meta, payload

DUMP = """*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i eth0 -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -i eth1 -p tcp -m tcp --dport 80 -j ACCEPT
COMMIT
"""
MAP = "eth0 = [192.0.2.0/24]\neth1 = [198.51.100.0/24,203.0.113.0/25]\nlo = [127.0.0.0/8]\n"


def nft_doc() -> str:
    d = Doc().table("ip", "filter").chain("ip", "filter", "INPUT", "input", 0, "drop")
    d.rule("ip", "filter", "INPUT", match(meta("iifname"), "eth0"), match(payload("tcp", "dport"), 22), ACCEPT)
    d.rule("ip", "filter", "INPUT", match(meta("iifname"), "eth1"), match(payload("tcp", "dport"), 80), ACCEPT)
    return json.dumps({"nftables": d.items})


def analyze(path, *extra: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "analyze", str(path), "--json", "--family", "4",
                        "--service", "tcp/22", "--service", "tcp/80", *extra], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def reach(matrix: dict) -> set[tuple[str, str, bool]]:
    """(source ranges, destination ranges, always?) of every edge, by the classes' addresses."""
    cls = matrix["classes"]
    always = {tuple(e) for e in matrix["always"]}
    return {(", ".join(cls[a]), ", ".join(cls[b]), (a, b) in always) for a, b in matrix["edges"]}


def test_the_map_decides_the_interface_as_for_iptables(tmp_path):
    (tmp_path / "rules.v4").write_text(DUMP)
    (tmp_path / "rules.json").write_text(nft_doc())
    (tmp_path / "ipassmt").write_text(MAP)
    ipt = analyze(tmp_path / "rules.v4", "--ipassmt", str(tmp_path / "ipassmt"))
    nft = analyze(tmp_path / "rules.json", "--ipassmt", str(tmp_path / "ipassmt"))
    for svc, src in (("tcp/22", "192.0.2.0-192.0.2.255"), ("tcp/80", "198.51.100.0-198.51.100.255")):
        assert reach(nft["service_matrix"][svc]) == reach(ipt["service_matrix"][svc]), svc
        edges = reach(nft["service_matrix"][svc])
        assert edges and all(always for _, _, always in edges), edges  # decided: one interface per source
        assert any(s.startswith(src) for s, _, _ in edges), edges
    assert any("interface map" in a for a in nft["assumptions"])


def test_without_a_map_the_interface_stays_undecided(tmp_path):
    (tmp_path / "rules.json").write_text(nft_doc())
    edges = reach(analyze(tmp_path / "rules.json")["service_matrix"]["tcp/22"])
    assert edges and not any(always for _, _, always in edges)  # any source, on eth0 only: "may"


def test_routes_are_refused_on_nftables(tmp_path):
    (tmp_path / "rules.json").write_text(nft_doc())
    (tmp_path / "routes").write_text("default via 192.0.2.1 dev eth0\n")
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "analyze", str(tmp_path / "rules.json"), "--routes",
                        str(tmp_path / "routes")], capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "--routes" in r.stderr and "Traceback" not in r.stderr
