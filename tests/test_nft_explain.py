"""`stockade explain` on an nftables ruleset given as nft JSON (nft text files need the real nft:
tests/kernel/test_nft_file.py)."""
from __future__ import annotations

import json
import subprocess
import sys

from .nftjson import ACCEPT, COUNTER, DROP, Doc, match, payload


def stockade(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stockade.cli", *args], capture_output=True, text=True)


def test_explain_names_table_chain_handle_and_place(tmp_path):
    d = Doc().table("inet", "fw").chain("inet", "fw", "input", "input", 0, "drop")
    ssh = d.rule("inet", "fw", "input", match(payload("tcp", "dport"), 22), COUNTER, ACCEPT)
    d.table("ip", "late").chain("ip", "late", "in", "input", 10)
    late = d.rule("ip", "late", "in", match(payload("ip", "saddr"), "192.0.2.66"), DROP)
    path = tmp_path / "rs.json"
    path.write_text(d.text(indent=2))
    r = stockade("explain", str(path), "--packet", "tcp 192.0.2.5:40000 > 203.0.113.1:22 SYN iif in0")
    assert r.returncode == 0, r.stderr
    assert f"inet fw input handle {ssh} -> ACCEPT {path}:" in r.stdout and "verdict: ACCEPT" in r.stdout
    r = stockade("explain", str(path), "--from", "nft", "--json", "--packet",
                 "tcp 192.0.2.66:40000 > 203.0.113.1:22 SYN iif in0")
    out = json.loads(r.stdout)
    assert out["verdict"] == "DROP" and out["matched"][-1]["handle"] == late  # accepted, then dropped later


def test_bad_nft_json_is_a_positioned_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"nftables": [\n {"rule": {"family": "inet", "table": "nope", "chain": "c", "expr": []}}]}')
    r = stockade("explain", str(path), "--packet", "tcp 192.0.2.5:1 > 203.0.113.1:22 SYN")
    assert r.returncode == 2 and "Traceback" not in r.stderr  # nft JSON no kernel would hold: unusable
    assert r.stderr.startswith(f"{path}:2:2: error: rule for table inet nope"), r.stderr
