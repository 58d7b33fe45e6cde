"""nft text files read through the real nft in a throwaway namespace (kernel/nftfile.py): include, define,
flush ruleset and comments are nft's business, never a grammar of stockade's."""
from __future__ import annotations

import subprocess
import sys

import pytest

from stockade.kernel.nftfile import NftFileError, nft_json_of_file, read_nft_file
from stockade.model.packet import from_short
from stockade.parse.nft import read_nft_json
from stockade.semantics.nft import NftSimulator

MAIN = """#!/usr/sbin/nft -f
# the host's firewall
flush ruleset
define ADMIN = { 192.0.2.0/28, 198.51.100.7 }
include "sets.nft"
table inet filter {
    chain input {
        type filter hook input priority filter; policy drop;   # default deny
        ct state established,related accept
        ip saddr $ADMIN tcp dport 22 counter accept comment "ssh"
        tcp dport @web accept
    }
}
"""
SETS = "table inet filter {\n    set web { type inet_service; elements = { 80, 443 } }\n}\n"


@pytest.fixture
def conf(tmp_path, kernel_ok):
    (tmp_path / "sets.nft").write_text(SETS)
    path = tmp_path / "nftables.conf"
    path.write_text(MAIN)
    return path


def test_text_file_read_by_nft(conf):
    rs = read_nft_json(nft_json_of_file(str(conf)), str(conf), positions=False)
    t = rs.table("inet", "filter")
    assert t is not None and set(t.sets["web"].elements) == {80, 443}
    rules = t.chains["input"].rules
    assert len(rules) == 3 and rules[1].comment == "ssh" and all(r.origin is None for r in rules)  # JSON alone
    sim = NftSimulator(rs)
    assert sim.run(from_short("tcp 192.0.2.9:1 > 203.0.113.1:22 SYN iif in0")).verdict == "ACCEPT"
    assert sim.run(from_short("tcp 192.0.2.99:1 > 203.0.113.1:22 SYN iif in0")).verdict == "DROP"
    assert sim.run(from_short("tcp 192.0.2.99:1 > 203.0.113.1:443 SYN iif in0")).verdict == "ACCEPT"


# Each rule's comment is the line it is written on: blocks, an include, a one-line chain, a rule on
# two lines, `add`/`insert`/bare `rule` commands, rules starting with a set statement or a counter.
PLACES = """flush ruleset
define WEB = { 80, 443 }
table inet t {
  set seen { type ipv4_addr; flags dynamic; }
  chain input {
    type filter hook input priority 0; policy drop;
    ct state established accept comment "7"
    tcp dport $WEB \\
      accept comment "8"
    add @seen { ip saddr } comment "10"
    counter comment "11"
    jump other comment "12"
  }
  chain other { udp dport 53 accept comment "14"; tcp dport 25 drop comment "14"; }
}
include "more.nft"
add rule inet t input tcp dport 22 accept comment "17"
insert rule inet t input iif lo accept comment "18"
table ip u {
  chain fw {
    type filter hook forward priority 10;
    counter comment "22"
  }
}
rule inet t other counter comment "25"
"""
MORE = 'table inet t {\n  chain other {\n    tcp dport 25 drop comment "3"\n  }\n}\n'


def test_rules_of_a_text_file_are_named_by_their_line(tmp_path, kernel_ok):
    (tmp_path / "more.nft").write_text(MORE)
    path = tmp_path / "places.nft"
    path.write_text(PLACES)
    rs = read_nft_file(str(path))
    rules = [r for t in rs.tables for c in t.chains.values() for r in c.rules]
    assert len(rules) == 12
    for r in rules:
        want = str(tmp_path / "more.nft") if r.comment == "3" else str(path)
        assert r.origin is not None and (r.origin.file, r.origin.line) == (want, int(r.comment)), (r, r.origin)
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "explain", str(path), "--packet",
                        "tcp 192.0.2.9:1 > 203.0.113.1:25 SYN iif in0"], capture_output=True, text=True)
    assert f"jump other {path}:12:5" in r.stdout and f"-> DROP {path}:14:51" in r.stdout, r.stdout + r.stderr


def test_explain_reads_an_nft_text_file(conf):
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "explain", str(conf), "--packet",
                        "tcp 192.0.2.9:1 > 203.0.113.1:22 SYN iif in0"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "inet filter input handle" in r.stdout and "-> ACCEPT" in r.stdout and "verdict: ACCEPT" in r.stdout


def test_errors_are_nfts_own_at_their_place(tmp_path, kernel_ok):
    (tmp_path / "sets.nft").write_text("table inet filter {\n    set web { type inet_service; elements = { 80, } }\n}\n")
    path = tmp_path / "nftables.conf"
    path.write_text(MAIN.replace("tcp dport 22", "tcp dport 22 frobnicate"))
    with pytest.raises(NftFileError) as e:
        nft_json_of_file(str(path))
    where = {(d.origin.file.rsplit("/", 1)[-1], d.origin.line) for d in e.value.diagnostics}
    assert ("nftables.conf", 10) in where, str(e.value)
    r = subprocess.run([sys.executable, "-m", "stockade.cli", "explain", str(path), "--packet",
                        "tcp 192.0.2.9:1 > 203.0.113.1:22 SYN"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and f"{path}:10:" in r.stderr  # nft refuses it whole


def test_a_file_naming_interfaces_of_its_machine_loads_with_them(tmp_path, kernel_ok):
    """`iif`/`oif` name a device nft resolves when it loads the file: without one of that name nft refuses
    the file; given the names, the throwaway namespace has them and the listing names them back."""
    path = tmp_path / "nftables.conf"
    path.write_text('table ip t {\n    chain in {\n        type filter hook input priority 0; policy drop;\n'
                    '        iif "sk-wan0" tcp dport 22 accept\n    }\n}\n')
    with pytest.raises(NftFileError) as e:
        nft_json_of_file(str(path))
    assert e.value.diagnostics[0].message.startswith("Interface does not exist")
    rs = read_nft_json(nft_json_of_file(str(path), ("sk-wan0",)), str(path), positions=False)
    sim = NftSimulator(rs)
    assert sim.run(from_short("tcp 192.0.2.9:1 > 203.0.113.1:22 SYN iif sk-wan0")).verdict == "ACCEPT"
    assert sim.run(from_short("tcp 192.0.2.9:1 > 203.0.113.1:22 SYN iif eth0")).verdict == "DROP"


def test_a_trace_too_long_is_cut_off(tmp_path, kernel_ok):
    """nft's trace prints a statement's whole line for each of its values: 30,000 elements on one line would
    be gigabytes. It is cut off, the file read again without it, and its rules keep their handles only."""
    elements = ", ".join(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(30_000))
    path = tmp_path / "big.nft"
    path.write_text(f"table inet t {{\n set s {{ type ipv4_addr; elements = {{ {elements} }} }}\n"
                    " chain c {\n  type filter hook input priority 0;\n  ip saddr @s drop\n }\n}\n")
    rs = read_nft_file(str(path))
    t = rs.table("inet", "t")
    assert len(t.sets["s"].elements) == 30_000
    assert [(r.handle is not None, r.origin) for r in t.chains["c"].rules] == [(True, None)]
